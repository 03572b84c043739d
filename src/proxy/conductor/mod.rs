//! Runs a [`Program`]: ddlgate's own statements around a held client request, on the session's
//! one upstream connection, one at a time.
//!
//! Each operation is sent as a simple `Query` (or, for the client's request, as the client's
//! messages) and is over at its `ReadyForQuery`; only then is the next one sent, so an
//! operation that fails stops what would depend on it. What the client sees is exactly the
//! answer to its own request: ddlgate's statements and their responses are swallowed
//! (asynchronous `ParameterStatus` and `NotificationResponse` messages excepted, which are
//! passed on whenever they come).
//!
//! Timeouts: outside a transaction block the class's `lock_timeout`/`statement_timeout` are set
//! for the session and restored afterwards — only if they still hold ddlgate's value, so a
//! `SET` the request made itself is kept; when the request leaves a transaction block open
//! the restore waits until it ends. Inside a block they are set with `set_config(…, true)`
//! (`SET LOCAL`) and end with it. A value the client set that is already stricter is kept.
//! When the timeouts cannot be applied the request is not sent: the client gets ddlgate's
//! error instead (fail closed).
//!
//! Nothing held back waits on the client. The answer of a governed request is kept back while
//! a retry is possible, while the blockers are named, and until its audit records are written;
//! each of these ends with the server's answer or the audit writer's, never with more client
//! input — except a COPY: when the server asks for COPY data in the middle of such a request
//! (`ALTER …; COPY … FROM STDIN`, or a request held because `COPY … ENCODING …` may change how
//! the server reads text), the records of the statements completed before it are written, then
//! everything kept back goes to the client at once and the request is no longer retried. In the
//! extended protocol the server ignores the `Sync` sent with the request during the COPY, so
//! the client's next `Sync` after its data passes too. When those records cannot be written
//! under `audit_fail_closed`, ddlgate ends the COPY itself (`CopyFail`, and a `Sync` in the
//! extended protocol): the request fails and its implicit transaction rolls back.
//!
//! Failure of a rewrite: a concurrent index build that fails leaves an INVALID index; before
//! the build ddlgate records the table's indexes, and after a failure it drops every INVALID
//! index of the table that was not there before and that no other session is still building.
//! Constraints added by earlier steps are dropped again. The client gets the server's own
//! error, and its `ReadyForQuery` only after the cleanup.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tracing::{Span, info, warn};

use crate::analysis::locks::LockMode;
use crate::config::policy::{LockWait, Settings};
use crate::enforce::{Class, Step};
use crate::protocol::backend::TxStatus;
use crate::protocol::reply::{self, Report};

use super::client_text::{self, Mapping};
use super::outbox::Outbox;
use super::program::{AuditedStatement, Program};
use super::sql::{self, SavedTimeouts};
use super::state::SessionState;
use crate::audit::Record;
use crate::audit::record::{self as audit_record};
use crate::protocol::query::put_query;

use crate::protocol::reply::sqlstate::LOCK_NOT_AVAILABLE;

mod answers;
mod audit;
mod lock_wait;
mod own_wait;
mod retry;
#[cfg(test)]
mod transcripts;

use answers::{Running, with_blockers};
use retry::seed;

/// One thing the conductor does.
#[derive(Debug)]
enum Op {
    /// Words for the client (notices).
    Say(Bytes),
    /// Set the timeouts of a class.
    ApplyTimeouts(Class),
    /// Record the indexes of a table (a `regclass` expression) before a concurrent build.
    ProbeIndexes(String),
    /// Read the catalog facts a request is planned with (see `super::catalog`).
    ReadCatalog(String),
    /// A rewrite step; its errors go to the client.
    Step(Step),
    /// The client's request.
    Request(Bytes),
    /// Put the client's timeouts back.
    Restore,
    /// Drop the INVALID indexes a failed build left on this table.
    DropNewInvalidIndexes(String),
    /// A cleanup statement whose failure is only logged.
    Cleanup(String),
    /// The client's `ReadyForQuery`, held back during cleanup.
    Ready,
    /// Pause before the next attempt.
    Wait(Duration),
    /// Ask who holds locks on the relations the request needed.
    FindBlockers,
    /// Look for older transactions the next statement's lock would queue behind (see
    /// `lock_wait`).
    LookForBlockers,
    /// End the sessions (pids) the policy names expendable among those blockers.
    EndBlockers(Vec<u32>),
    /// Before a concurrent build: look for the client's own idle transactions it would wait
    /// for (see `own_wait`).
    LookForOwnSnapshots,
    /// Send the client the answer to its request, held back while it might be retried.
    Deliver,
    /// Write the audit records and wait until they are written.
    Audit,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Self::Say(_) => "say",
            Self::ApplyTimeouts(_) => "apply timeouts",
            Self::ProbeIndexes(_) => "probe indexes",
            Self::ReadCatalog(_) => "read catalog",
            Self::Step(_) => "rewrite step",
            Self::Request(_) => "request",
            Self::Restore => "restore timeouts",
            Self::DropNewInvalidIndexes(_) => "find invalid indexes",
            Self::Cleanup(_) => "cleanup",
            Self::Ready => "ready",
            Self::Wait(_) => "wait",
            Self::FindBlockers => "find blockers",
            Self::LookForBlockers => "look for blockers",
            Self::EndBlockers(_) => "end blockers",
            Self::LookForOwnSnapshots => "look for the client's own open transactions",
            Self::Deliver => "deliver",
            Self::Audit => "audit",
        }
    }
}

/// What a finished program leaves for the session.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Timeouts to restore once the transaction block the request opened has ended.
    pub deferred_restore: Option<SavedTimeouts>,
    /// Retries after `lock_not_available`.
    pub retries: u32,
    /// How long a governed request took, from the decision to the answer.
    pub governed_duration: Option<Duration>,
    /// The request was a pipelined run ending with `Flush`: the pipeline is still open.
    pub pipeline_open: bool,
    /// The request's answer held an error (the server skips the rest of the pipeline).
    pub request_failed: bool,
    /// Something of the program failed: a step, the timeouts, the request, or it was refused
    /// before it ran.
    pub failed: bool,
    /// The server's answer to a catalog read ([`Conductor::read_catalog`]); `None` when it
    /// failed.
    pub catalog: Option<String>,
}

/// Runs one program.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one program, not states of one machine"
)]
pub struct Conductor {
    ops: VecDeque<Op>,
    running: Option<Running>,
    in_transaction: bool,
    /// The client's values, once the first `ApplyTimeouts` has read them.
    saved: Option<SavedTimeouts>,
    /// The indexes of the table before a concurrent build (`{oid,…}`), and the table.
    probed: Option<(String, String)>,
    /// The probed build is the client's own statement ([`Program::request_build_is_own`]).
    build_is_own: bool,
    /// SQL taking back the rewrite steps done so far.
    undo: Vec<String>,
    outcome: Outcome,
    span: Span,
    /// Retries left after `lock_not_available`, and how they are spaced.
    retries_left: u32,
    retry: crate::config::policy::Retry,
    /// Attempts made of the current statement (1 for the first).
    attempt: u32,
    /// The relations the request locks, to name their blockers.
    relations: Vec<String>,
    /// The answer held back while a retry was possible.
    held_reply: Vec<Bytes>,
    /// The program's audit records have been produced (they are written once).
    audit_emitted: bool,
    /// Who held locks on `relations` when the last attempt gave up.
    blockers: Vec<String>,
    /// When the pause before the next attempt ends.
    wake_at: Option<std::time::Instant>,
    /// State of the jitter generator.
    jitter: u64,
    /// The statements to audit; empty when no audit trail is configured.
    audited: Vec<AuditedStatement>,
    /// Command tags of the request's completed statements (last attempt).
    completions: Vec<String>,
    /// The first error that ended the program (a step's or the request's).
    failure: Option<(String, String)>,
    /// Whether the client's request reached the server.
    request_sent: bool,
    /// When the program started.
    started: std::time::Instant,
    /// Records ready for the audit trail, until the session takes them.
    audit_out: Option<Vec<Record>>,
    /// Waiting for the audit trail to confirm the records.
    waiting_audit: bool,
    /// The policy's timeouts of each class.
    audit_timeouts: crate::config::policy::Timeouts,
    /// Whether the program runs DDL or statements the policy acted on.
    governed: bool,
    /// Completions in the request's answer that answer ddlgate's own messages (see
    /// [`Program::request_hidden_completions`]); the client never sees them.
    request_hidden_completions: Vec<usize>,
    /// See [`Program::request_hidden_prefix`].
    request_hidden_prefix: usize,
    /// See [`Program::request_answers`].
    request_answers: Option<u64>,
    /// See [`Program::mapping`]: ddlgate's statements go up in the client's encoding.
    mapping: Mapping,
    /// See [`Program::request_is_extended`].
    request_extended: bool,
    /// How each step of a multi-step rewrite ended (the request, its last step, excluded):
    /// attempts, outcome, duration. One audit record carries them all.
    step_log: Vec<(u32, audit_record::Outcome, u64)>,
    /// How long the request's last attempt took.
    request_ms: Option<u64>,
    /// Leading entries of `audited` already written (a COPY inside the request made the
    /// statements before it reach the trail early, see [`Conductor::copy_started`]).
    audited_written: usize,
    /// The answer held back so far is released to the client once the audit records being
    /// written are confirmed: the request is in COPY and the client must get its
    /// `CopyInResponse` to go on.
    release_when_audited: bool,
    /// The records before a COPY could not be written under `audit_fail_closed`: ddlgate
    /// sends the server a `CopyFail` in the client's place.
    abort_copy: bool,
    /// Bytes still to come of a large row or COPY data message that is streamed to the client
    /// as it arrives (see [`STREAM_ABOVE`]).
    streaming_left: usize,
    /// The policy's looking before queueing.
    lock_wait: LockWait,
    /// The strongest lock the request's DDL takes on `relations`.
    lock_mode: Option<LockMode>,
    /// Whether statements that take `lock_mode` look before they are sent.
    looks: bool,
    /// Whether the client's request itself looks first (it runs under the brief timeouts).
    request_looks: bool,
    /// How long the request has waited for blockers so far.
    lock_waited: Duration,
    /// The pause before the next look.
    lock_poll: Duration,
    /// When the client was last told whom ddlgate waits for.
    lock_noticed: Option<std::time::Instant>,
    /// Whom the last look found.
    lock_blockers: Vec<String>,
    /// Whether a look has been answered.
    lock_looked: bool,
    /// When each transaction holding a conflicting lock was first seen, by virtual
    /// transaction id (those of the last look).
    lock_first_seen: std::collections::HashMap<String, std::time::Instant>,
    /// Transactions of unknown age that were there at the first look.
    lock_there_at_first: std::collections::HashSet<String>,
    /// Sessions being ended: pid, description, why.
    lock_ending: Vec<(u32, String, String)>,
    /// Sessions ddlgate tried to end (each is tried once).
    lock_end_tried: Vec<u32>,
    /// Sessions ended, described, with why.
    lock_ended: Vec<String>,
    /// The client's own idle transactions the first look before a concurrent build found
    /// (`pid|transaction start|state change`), to be found again after a pause.
    own_seen: Option<Vec<String>>,
}

impl Conductor {
    /// A conductor for `program`.
    pub fn new(mut program: Program, span: Span, audit_on: bool) -> Self {
        let Settings {
            timeouts, retry, ..
        } = program.settings;
        let lock_wait = program.settings.lock_wait.clone();
        // Runs ending with `Flush` carry their own timeouts inside the pipeline: nothing of
        // ddlgate's may run before them.
        // Without a brief lock_timeout an attempt is not bounded, nor is "young" defined.
        let looks = lock_wait.enabled()
            && !timeouts.brief.lock_timeout.is_zero()
            && !program.relations.is_empty()
            && program.lock_mode.is_some_and(LockMode::blocks_writes)
            && program.request_answers.is_none()
            && program.request_hidden_prefix == 0;
        let request_looks = looks && program.request_class == Some(Class::Brief);
        let retries_left = if program.retryable && program.request_class.is_some() {
            retry.attempts
        } else {
            0
        };
        // The client's own concurrent build is probed only where ddlgate may retry it: outside
        // a transaction block, so nothing of ddlgate's runs before a statement the server is
        // going to refuse anyway.
        if program.request_build_is_own && retries_left == 0 {
            program.request_builds_indexes = None;
        }
        let build_is_own = program.request_build_is_own;
        // A concurrent build cannot run inside a transaction block: there the server refuses
        // it, and nothing needs looking at first.
        let builds_concurrently = !program.in_transaction
            && (program.request_build_is_own
                || program.request_builds_indexes.is_some()
                || program.steps.iter().any(|s| s.builds_indexes.is_some()));
        let mut ops = ops_of(&mut program, looks);
        if builds_concurrently {
            let at = usize::from(matches!(ops.front(), Some(Op::Say(_))));
            ops.insert(at, Op::LookForOwnSnapshots);
        }
        let request_hidden_completions = program.request_hidden_completions;
        let request_hidden_prefix = program.request_hidden_prefix;
        let request_answers = program.request_answers;
        let governed = program.request_class.is_some() || !program.audited.is_empty();
        Self {
            governed,
            mapping: program.mapping,
            request_extended: program.request_is_extended,
            request_hidden_completions,
            request_hidden_prefix,
            request_answers,
            audited: if audit_on {
                program.audited
            } else {
                Vec::new()
            },
            completions: Vec::new(),
            failure: None,
            request_sent: false,
            started: std::time::Instant::now(),
            audit_out: None,
            waiting_audit: false,
            audit_timeouts: timeouts,
            retries_left,
            retry,
            attempt: 1,
            relations: program.relations,
            held_reply: Vec::new(),
            audit_emitted: false,
            blockers: Vec::new(),
            wake_at: None,
            jitter: seed(),
            ops,
            running: None,
            in_transaction: program.in_transaction,
            saved: None,
            probed: None,
            build_is_own,
            undo: Vec::new(),
            outcome: Outcome::default(),
            span,
            step_log: Vec::new(),
            request_ms: None,
            audited_written: 0,
            release_when_audited: false,
            abort_copy: false,
            streaming_left: 0,
            lock_wait,
            lock_mode: program.lock_mode,
            looks,
            request_looks,
            lock_waited: Duration::ZERO,
            lock_poll: lock_wait::FIRST_POLL,
            lock_noticed: None,
            lock_blockers: Vec::new(),
            lock_looked: false,
            lock_first_seen: std::collections::HashMap::new(),
            lock_there_at_first: std::collections::HashSet::new(),
            lock_ending: Vec::new(),
            lock_end_tried: Vec::new(),
            lock_ended: Vec::new(),
            own_seen: None,
        }
    }

    /// A conductor that refuses the program's request without sending anything: the audit
    /// trail cannot be written and `audit_fail_closed` is on. The refusal itself is offered
    /// to the audit trail (its write is the probe that finds the trail healthy again).
    pub fn refuse(program: Program, span: Span, why: &str) -> Self {
        let mut out = BytesMut::new();
        Report::audit_unavailable("DDL refused: the audit trail cannot be written")
            .detail(why)
            .hint("Free space for the audit log (or fix its sink), then run the statement again.")
            .encode(&mut out);
        let mut conductor = Self::new(
            Program {
                notices: Vec::new(),
                steps: Vec::new(),
                request_class: None,
                request_builds_indexes: None,
                ..program
            },
            span,
            true,
        );
        conductor.ops.clear();
        conductor.failure = Some((
            reply::sqlstate::AUDIT_UNAVAILABLE.to_owned(),
            "refused: the audit trail cannot be written".to_owned(),
        ));
        conductor.ops.push_back(Op::Audit);
        conductor.ops.push_back(Op::Say(out.freeze()));
        conductor.ops.push_back(Op::Ready);
        conductor
    }

    /// A conductor that only reads the catalog facts a held request will be planned with: one
    /// statement of ddlgate's own, whose answer the client never sees.
    pub fn read_catalog(sql: String, span: Span) -> Self {
        let mut conductor = Self::new(Program::default(), span, false);
        conductor.ops.clear();
        conductor.ops.push_back(Op::ReadCatalog(sql));
        conductor
    }

    /// A conductor that only restores timeouts left from an earlier request.
    pub fn restore(saved: SavedTimeouts, span: Span) -> Self {
        let mut conductor = Self::new(Program::default(), span, false);
        conductor.ops.clear();
        conductor.ops.push_back(Op::Restore);
        conductor.saved = Some(saved);
        conductor
    }

    /// Whether everything has run.
    pub fn is_finished(&self) -> bool {
        self.running.is_none() && self.ops.is_empty()
    }

    /// Whether the client's COPY data should be forwarded now.
    pub fn wants_copy_data(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.copy_in || r.awaiting_client_sync)
    }

    /// The client ended (or failed) its COPY data. The server ignored the `Sync` an
    /// extended-protocol request sent before the data: the client's next one must pass, or
    /// the server and ddlgate would wait for each other.
    pub fn copy_finished(&mut self) {
        if let Some(running) = self.running.as_mut() {
            running.copy_in = false;
            running.awaiting_client_sync = running.extended;
        }
    }

    /// The client's `Sync` after its COPY data went upstream.
    pub fn client_synced(&mut self) {
        if let Some(running) = self.running.as_mut() {
            running.awaiting_client_sync = false;
        }
    }

    /// What the session keeps once the program is over.
    pub fn into_outcome(mut self) -> Outcome {
        if self.governed {
            self.outcome.governed_duration = Some(self.started.elapsed());
        }
        self.outcome.failed = self.failure.is_some() || self.outcome.request_failed;
        self.outcome
    }

    /// When the conductor wants to be woken (a pause between attempts).
    pub fn wake_at(&self) -> Option<std::time::Instant> {
        self.wake_at
    }

    /// The pause is over.
    pub fn wake(&mut self) {
        self.wake_at = None;
    }

    /// Sends what can be sent now.
    pub fn advance(
        &mut self,
        to_upstream: &mut Outbox,
        to_client: &mut Outbox,
        state: &mut SessionState,
    ) {
        self.settle_copy(to_upstream, to_client);
        while self.running.is_none() && self.wake_at.is_none() && !self.waiting_audit {
            let Some(op) = self.ops.pop_front() else {
                return;
            };
            let sql = match &op {
                Op::Say(bytes) => {
                    to_client.push(bytes.clone());
                    continue;
                }
                Op::Ready => {
                    let mut out = BytesMut::new();
                    reply::ready_for_query(state.tx_status, &mut out);
                    to_client.push(out.freeze());
                    continue;
                }
                Op::Audit => {
                    self.audit_emitted = true;
                    let records = self.records(state);
                    // All of them may have been written already, before a COPY.
                    if !records.is_empty() {
                        self.audit_out = Some(records);
                        self.waiting_audit = true;
                    }
                    continue;
                }
                Op::Request(bytes) => {
                    to_upstream.push(bytes.clone());
                    self.start_request(op, state);
                    continue;
                }
                Op::Wait(pause) => {
                    self.wake_at = Some(std::time::Instant::now() + *pause);
                    continue;
                }
                Op::Deliver => {
                    for message in self.held_reply.drain(..) {
                        to_client.push(with_blockers(message, &self.blockers));
                    }
                    continue;
                }
                Op::FindBlockers => {
                    if self.relations.is_empty() {
                        continue;
                    }
                    sql::blockers(&self.relations)
                }
                Op::LookForBlockers => {
                    let Some(mode) = self.lock_mode else {
                        continue;
                    };
                    let young_ms =
                        u64::try_from(self.audit_timeouts.brief.lock_timeout.as_millis())
                            .unwrap_or(u64::MAX);
                    sql::lock_conflicts(&self.relations, mode, young_ms)
                }
                Op::EndBlockers(pids) => sql::end_backends(pids),
                Op::LookForOwnSnapshots => sql::own_idle_snapshots().to_owned(),
                Op::ApplyTimeouts(class) => self.apply_sql(*class),
                Op::ProbeIndexes(table) => sql::index_oids(table),
                Op::Step(step) => step.sql.clone(),
                Op::Restore => match &self.saved {
                    Some(saved) => saved.restore_sql(),
                    None => continue,
                },
                Op::DropNewInvalidIndexes(table) => {
                    let before = self
                        .probed
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), |(b, _)| b.clone());
                    sql::new_invalid_indexes(table, &before)
                }
                Op::ReadCatalog(sql) | Op::Cleanup(sql) => sql.clone(),
            };
            tracing::debug!(parent: &self.span, op = op.name(), %sql, "ddlgate statement");
            let mut out = BytesMut::new();
            put_query(&client_text::encode(&sql, self.mapping), &mut out);
            to_upstream.push(out.freeze());
            state.awaiting_ready += 1;
            let buffer = matches!(op, Op::Step(_));
            let mut running = Running::new(op);
            if buffer {
                // A step's words reach the client only once it is known whether it is retried.
                running.buffer = Some(Vec::new());
            }
            self.running = Some(running);
        }
    }

    /// The client's request has been sent: expect its answer.
    fn start_request(&mut self, op: Op, state: &mut SessionState) {
        self.request_sent = true;
        if self.request_answers.is_none() {
            state.awaiting_ready += 1;
        }
        self.outcome.pipeline_open = self.request_answers.is_some();
        let mut running = Running::new(op);
        running.extended = self.request_extended;
        running
            .hidden_completions
            .clone_from(&self.request_hidden_completions);
        running.pipeline.hidden_prefix = self.request_hidden_prefix;
        running.pipeline.expected = self.request_answers;
        // Cleanup runs before the client's ReadyForQuery, except after the client's own build
        // (its leftover is dropped only before a retry, and a retry holds the whole answer).
        running.hold_ready_on_error = self.cleans_up_on_failure();
        if self.retries_left > 0 || !self.relations.is_empty() || !self.audited.is_empty() {
            running.buffer = Some(Vec::new());
        }
        self.running = Some(running);
    }

    /// The statement that applies a class's timeouts, keeping a stricter value of the client's.
    fn apply_sql(&self, class: Class) -> String {
        let saved = self.saved.as_ref().map(SavedTimeouts::client_ms);
        sql::apply_timeouts(
            class.timeouts(&self.audit_timeouts),
            self.in_transaction,
            saved,
        )
    }

    /// An operation got its `ReadyForQuery`: decide what comes next.
    fn finished(&mut self, running: Running, state: &SessionState) {
        let failed = running.error.is_some();
        match running.op {
            Op::ApplyTimeouts(class) => {
                if let Some((code, message)) = &running.error {
                    warn!(parent: &self.span, %code, %message, class = class.as_str(), "could not apply timeouts; the request is not sent");
                    self.refuse_unsent(
                        &Report::policy_rejected(format!(
                            "could not apply the policy's timeouts before DDL: {message}"
                        ))
                        .detail("The statement was not sent."),
                        format!("could not apply the policy's timeouts: {message}"),
                    );
                    return;
                }
                let row = running.first_row;
                if let Some(saved) = self.saved.as_mut() {
                    saved.applied_again(&row);
                } else if !self.in_transaction {
                    self.saved = SavedTimeouts::from_row(&row);
                }
            }
            Op::ProbeIndexes(table) => {
                if !failed {
                    let before = running
                        .rows
                        .first()
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "{}".to_owned());
                    self.probed = Some((before, table));
                }
            }
            Op::ReadCatalog(_) => {
                if let Some((code, message)) = &running.error {
                    warn!(parent: &self.span, %code, %message, "could not read the catalog; planning without its facts");
                } else {
                    self.outcome.catalog = running.rows.first().cloned().flatten();
                }
            }
            Op::Request(_) | Op::Step(_) => self.attempt_finished(running, state),
            Op::FindBlockers => {
                self.blockers = running.rows.into_iter().flatten().collect();
            }
            Op::LookForBlockers => self.looked(running),
            Op::EndBlockers(_) => self.ended(running),
            Op::LookForOwnSnapshots => self.looked_for_own(running),
            Op::DropNewInvalidIndexes(_) => {
                for index in running.rows.into_iter().flatten().rev() {
                    info!(parent: &self.span, %index, "dropping the INVALID index a failed concurrent build left behind");
                    self.ops
                        .push_front(Op::Cleanup(sql::drop_index_concurrently(&index)));
                }
            }
            Op::Restore | Op::Cleanup(_) => {
                if let Some((code, message)) = &running.error {
                    warn!(parent: &self.span, %code, %message, "ddlgate's cleanup statement failed");
                    if code == LOCK_NOT_AVAILABLE && matches!(running.op, Op::Cleanup(_)) {
                        self.cleanup_timed_out(state);
                    }
                }
            }
            Op::Say(_) | Op::Ready | Op::Wait(_) | Op::Deliver | Op::Audit => {}
        }
    }

    /// Nothing more is sent: the request is refused with `report` (ZD001) and audited as
    /// failed with `why`, before anything of its own reached the server.
    fn refuse_unsent(&mut self, report: &Report, why: String) {
        self.ops.clear();
        let mut out = BytesMut::new();
        report.encode(&mut out);
        self.failure = Some((reply::sqlstate::POLICY_REJECTED.to_owned(), why));
        if !self.audited.is_empty() {
            self.ops.push_back(Op::Audit);
        }
        self.ops.push_back(Op::Say(out.freeze()));
        self.ops.push_back(Op::Ready);
    }

    /// The client's request is answered: restore timeouts now or when its transaction ends.
    fn after_request(&mut self, state: &SessionState) {
        if self.in_transaction {
            return;
        }
        if let Some(saved) = &self.saved {
            // After a run ending with Flush the pipeline is open: restore after its Sync.
            if state.tx_status == TxStatus::Idle && self.request_answers.is_none() {
                self.ops.push_front(Op::Restore);
            } else {
                self.outcome.deferred_restore = Some(saved.clone());
            }
        }
    }

    /// A rewrite failed: take back what it did, then answer the client.
    fn fail(&mut self, state: &SessionState) {
        self.ops.clear();
        if !self.undo.is_empty() {
            self.ops.push_back(Op::ApplyTimeouts(Class::Brief));
        }
        for undo in self.undo.drain(..).rev() {
            self.ops.push_back(Op::Cleanup(undo));
        }
        if let Some((_, table)) = &self.probed {
            self.ops.push_back(Op::ApplyTimeouts(Class::Online));
            self.ops.push_back(Op::DropNewInvalidIndexes(table.clone()));
        }
        if self.saved.is_some() && state.tx_status == TxStatus::Idle && !self.in_transaction {
            self.ops.push_back(Op::Restore);
        }
        self.ops.push_back(Op::Ready);
    }
}

/// What runs for a program, in order: its notices, then each step and the request, each after
/// the timeouts of its class (when they change), the index probe of a concurrent build, and —
/// with `looks` — a look for blockers before those under the brief timeouts.
fn ops_of(program: &mut Program, looks: bool) -> VecDeque<Op> {
    let mut ops = VecDeque::new();
    if !program.notices.is_empty() {
        let mut out = BytesMut::new();
        for n in &program.notices {
            n.encode(&mut out);
        }
        ops.push_back(Op::Say(out.freeze()));
    }
    let timeouts = program.settings.timeouts;
    // A class whose timeouts are both "0" leaves the client's values alone: nothing to set.
    let sets = |class: &Class| !class.timeouts(&timeouts).sets_nothing();
    let mut applied = None;
    for step in std::mem::take(&mut program.steps) {
        if let Some(class) = step.class.filter(sets)
            && applied != Some(class)
        {
            ops.push_back(Op::ApplyTimeouts(class));
            applied = Some(class);
        }
        if let Some(build) = &step.builds_indexes {
            ops.push_back(Op::ProbeIndexes(sql::index_table(build)));
        }
        if looks && step.class == Some(Class::Brief) {
            ops.push_back(Op::LookForBlockers);
        }
        ops.push_back(Op::Step(step));
    }
    if let Some(class) = program.request_class.filter(sets)
        && applied != Some(class)
    {
        ops.push_back(Op::ApplyTimeouts(class));
    }
    if let Some(build) = &program.request_builds_indexes {
        ops.push_back(Op::ProbeIndexes(sql::index_table(build)));
    }
    if looks && program.request_class == Some(Class::Brief) {
        ops.push_back(Op::LookForBlockers);
    }
    ops.push_back(Op::Request(std::mem::take(&mut program.request)));
    ops
}
