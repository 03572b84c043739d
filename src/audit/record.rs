//! One audit record. Every field is present (null or empty when it does not apply), in this
//! order, so lines are uniform for log pipelines and SQL alike; `prev` comes last. Two fields
//! are the exception and appear only when they apply: `session_authorization` and `steps`.

use serde::Serialize;

use crate::config::policy::Action;

/// What a record is about.
pub(crate) mod event {
    /// A client session passed (or failed) authentication.
    pub(crate) const SESSION_START: &str = "session_start";
    /// A session ended.
    pub(crate) const SESSION_END: &str = "session_end";
    /// A statement the policy governed: DDL, a rule that fired, an override.
    pub(crate) const STATEMENT: &str = "statement";
}

/// How something ended, as the trail spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It succeeded.
    Ok,
    /// It failed (SQLSTATE and message say how).
    Error,
    /// It never ran: an earlier statement of the same request failed.
    NotRun,
}

/// How something ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// `ok`, `error`, or `not_run` (a statement after a failed one in the same request).
    pub status: Status,
    /// The command tag (`CREATE INDEX`, `ALTER TABLE`) when it succeeded.
    pub tag: Option<String>,
    /// The SQLSTATE when it failed.
    pub sqlstate: Option<String>,
    /// The error message when it failed.
    pub message: Option<String>,
}

impl Outcome {
    /// Success with a command tag.
    pub fn ok(tag: Option<String>) -> Self {
        Self {
            status: Status::Ok,
            tag,
            sqlstate: None,
            message: None,
        }
    }

    /// Failure with SQLSTATE and message.
    pub fn error(sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Error,
            tag: None,
            sqlstate: Some(sqlstate.into()),
            message: Some(message.into()),
        }
    }

    /// Never ran: an earlier statement of the same request failed.
    pub fn not_run() -> Self {
        Self {
            status: Status::NotRun,
            tag: None,
            sqlstate: None,
            message: None,
        }
    }
}

/// A rule that fired and the action it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleAction {
    /// The rule id.
    pub rule: String,
    /// `warn`, `reject` or `rewrite`.
    pub action: Action,
}

/// An inline override that was honoured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OverrideUsed {
    /// The rule it allowed.
    pub rule: String,
    /// The reason given.
    pub reason: Option<String>,
}

/// The timeouts a statement ran under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimeoutsApplied {
    /// `brief` or `online`.
    pub class: String,
    /// The policy's `lock_timeout` for the class (a stricter one of the client's was kept).
    pub lock_timeout: String,
    /// The policy's `statement_timeout` for the class.
    pub statement_timeout: String,
}

/// One step of a multi-step rewrite, as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Step {
    /// The step's SQL (redacted like `rewritten_sql` when the policy asks for it).
    pub sql: String,
    /// Attempts made of this step (more than 1 after `lock_not_available` retries); null when
    /// it never ran.
    pub attempts: Option<u32>,
    /// How it ended: `ok` with its command tag, `error`, or `not_run` (an earlier step failed).
    pub outcome: Outcome,
    /// How long its last attempt took; null when it never ran.
    pub duration_ms: Option<u64>,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, without gaps across rotated files.
    pub seq: u64,
    /// When it happened, RFC 3339 in UTC.
    pub ts: String,
    /// Which ddlgate process wrote it (random, per start): a trail written to standard output
    /// starts a new chain at each start, and `audit verify` tells those runs apart by it.
    /// Absent in records written before the field existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// See [`event`].
    pub event: String,
    /// ddlgate's session number (in its logs too).
    pub session: u64,
    /// The client's address and port.
    pub client: String,
    /// The role the client logged in as.
    pub user: String,
    /// The session's authorization when `SET SESSION AUTHORIZATION` changed it from `user`
    /// (as the server reports it); absent otherwise. `SET ROLE` is not reported by the server
    /// and does not show here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_authorization: Option<String>,
    /// The database.
    pub database: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// The policy profile that applied, if any.
    pub profile: Option<String>,
    /// The server's `server_version`.
    pub server_version: Option<String>,
    /// Whether a transaction block was open when the statement was decided.
    pub in_transaction: Option<bool>,
    /// The statement as the client sent it.
    pub sql: Option<String>,
    /// The statement's kind (`CREATE INDEX`, `ALTER TABLE`, …).
    pub kind: Option<String>,
    /// The relations it locks.
    pub relations: Vec<String>,
    /// The strongest lock it takes.
    pub lock: Option<String>,
    /// The rules that fired and their actions.
    pub rules: Vec<RuleAction>,
    /// What ddlgate did: `allow`, `warn`, `reject`, `rewrite`.
    pub action: Option<Action>,
    /// The statements that ran in its place, in order.
    pub rewritten_sql: Vec<String>,
    /// For a multi-step rewrite, how each step ended, in order (the last is the client's
    /// request in its rewritten form); absent otherwise. Records written before this field
    /// existed have none and still verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Why the live catalog proved the statement changes nothing (`DROP TABLE IF EXISTS` of an
    /// absent table, …), when it did: no rule judged it. Absent otherwise (and in records
    /// written before this field existed, which still verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop: Option<String>,
    /// What the evidence of use (`pg_stat_statements` samples) said about the tables and
    /// columns the statement drops, renames or retypes, one sentence each: the contract rules
    /// decided with it. Absent without evidence (and in records written before this field
    /// existed, which still verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// The timeouts it ran under.
    pub timeouts: Option<TimeoutsApplied>,
    /// Overrides honoured.
    #[serde(rename = "override")]
    pub overrides: Vec<OverrideUsed>,
    /// Attempts made (more than 1 after `lock_not_available` retries).
    pub attempts: Option<u32>,
    /// How long ddlgate waited, without queueing, for older transactions holding conflicting
    /// locks before it sent the statement, and whom the last look found; absent when it did
    /// not wait (and in records written before this field existed, which still verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait: Option<LockWaited>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// From the decision to the answer (statements), or the session's length.
    pub duration_ms: Option<u64>,
    /// SHA-256 of the previous line (hex); 64 zeros for the first record of a trail.
    pub prev: String,
}

impl Record {
    /// A record of `event` for a session; the rest is filled by the caller.
    pub fn new(event: &str, session: u64) -> Self {
        Self {
            seq: 0,
            ts: now(),
            run: String::new(),
            event: event.to_owned(),
            session,
            client: String::new(),
            user: String::new(),
            session_authorization: None,
            database: String::new(),
            application_name: String::new(),
            profile: None,
            server_version: None,
            in_transaction: None,
            sql: None,
            kind: None,
            relations: Vec::new(),
            lock: None,
            rules: Vec::new(),
            action: None,
            rewritten_sql: Vec::new(),
            steps: Vec::new(),
            noop: None,
            evidence: Vec::new(),
            timeouts: None,
            overrides: Vec::new(),
            attempts: None,
            lock_wait: None,
            outcome: None,
            duration_ms: None,
            prev: String::new(),
        }
    }
}

/// Waiting for blockers without queueing (see [`Record::lock_wait`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LockWaited {
    /// Time spent waiting.
    pub waited_ms: u64,
    /// The sessions the last look found (pid, `application_name`, state, transaction age,
    /// lock); empty when they had ended.
    pub blockers: Vec<String>,
    /// The sessions ddlgate ended because the policy names them expendable, each with why;
    /// absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
}

/// The current time, RFC 3339, UTC, milliseconds.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
