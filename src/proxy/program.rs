//! The contract between the planner ([`super::plan`]) and the executor
//! ([`super::conductor`]): what runs for one held request, in what order, under which
//! timeouts, and what the audit trail records about it. Data only: the planner fills it, the
//! conductor carries it out, and neither reaches into the other.

use bytes::Bytes;

use crate::analysis::RuleId;
use crate::analysis::locks::LockMode;
use crate::analysis::violation::IndexBuild;
use crate::config::policy::{Action, Settings};
use crate::enforce::{Class, Step};
use crate::protocol::reply::Report;

use super::client_text::Mapping;

/// What the conductor runs for one held request.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one request, not states of one machine"
)]
pub struct Program {
    /// Warnings for the client, sent before anything runs.
    pub notices: Vec<Report>,
    /// Statements that run before the client's request, each on its own (a multi-step
    /// rewrite); an error in one goes to the client and the request is not sent.
    pub steps: Vec<Step>,
    /// The client's request, as it goes upstream.
    pub request: Bytes,
    /// Whether the server answers the request with `ReadyForQuery`.
    pub request_ends_with_ready: bool,
    /// Whether the request is a run of extended-protocol messages rather than a simple
    /// `Query` (the server then ignores its `Sync` during a COPY).
    pub request_is_extended: bool,
    /// The timeouts the request runs under.
    pub request_class: Option<Class>,
    /// Where the request builds indexes concurrently.
    pub request_builds_indexes: Option<IndexBuild>,
    /// Whether that build is the client's own statement, sent as it is (not a rewrite): the
    /// INVALID index a failed attempt leaves is then dropped only before ddlgate retries it
    /// (the retry would fail on its name); after the last attempt the client finds what a
    /// direct connection leaves.
    pub request_build_is_own: bool,
    /// Whether a transaction block is open (timeouts are then `SET LOCAL`).
    pub in_transaction: bool,
    /// Whether the request may be sent again after `lock_not_available`: outside a
    /// transaction block, and neither beginning nor ending one.
    pub retryable: bool,
    /// The relations its DDL locks (`regclass` expressions), to name who blocks them.
    pub relations: Vec<String>,
    /// The strongest lock its DDL takes on them, to find whom it would queue behind.
    pub lock_mode: Option<LockMode>,
    /// The settings in force (timeouts).
    pub settings: Settings,
    /// The statements the audit trail records, in the order they run.
    pub audited: Vec<AuditedStatement>,
    /// How many statements the request runs so far (positions of `audited`).
    pub(crate) statements_seen: usize,
    /// Positions, among the `CloseComplete`/`ParseComplete` messages of the request's answer,
    /// of those that answer messages ddlgate added (a deferred statement's decided text).
    pub request_hidden_completions: Vec<usize>,
    /// Messages at the start of the request's answer that answer ddlgate's own statement
    /// before a pipelined run (its timeouts, see [`PIPELINE_TIMEOUTS_ANSWERS`]).
    pub request_hidden_prefix: usize,
    /// For a run that ends with `Flush` (no `ReadyForQuery`): how many messages end its
    /// answer (see [`crate::protocol::frontend::answers_in_pipeline`]).
    pub request_answers: Option<u64>,
    /// How the text of the steps was read from the client's encoding: they are sent back in it.
    pub mapping: Mapping,
}

/// The answer to ddlgate's timeouts before a pipelined run: `CloseComplete` (statement),
/// `CloseComplete` (portal), `ParseComplete`, `BindComplete`, `DataRow`, `CommandComplete`.
pub(crate) const PIPELINE_TIMEOUTS_ANSWERS: usize = 6;

impl Default for Program {
    /// A program that sends nothing and sets nothing.
    fn default() -> Self {
        Self {
            notices: Vec::new(),
            steps: Vec::new(),
            request: Bytes::new(),
            request_ends_with_ready: true,
            request_is_extended: false,
            request_class: None,
            request_builds_indexes: None,
            request_build_is_own: false,
            in_transaction: false,
            retryable: false,
            relations: Vec::new(),
            lock_mode: None,
            settings: Settings::default(),
            audited: Vec::new(),
            statements_seen: 0,
            request_hidden_completions: Vec::new(),
            request_hidden_prefix: 0,
            request_answers: None,
            mapping: Mapping::Identity,
        }
    }
}

/// What the audit trail records about one governed statement.
#[derive(Debug, Clone)]
pub struct AuditedStatement {
    /// Its position among the statements the request runs (0-based): the n-th command
    /// completion of the answer is its own.
    pub position: usize,
    /// As the client sent it.
    pub sql: String,
    /// Its kind.
    pub kind: String,
    /// Relations it locks.
    pub relations: Vec<String>,
    /// Its strongest lock.
    pub lock: Option<String>,
    /// Rules that fired and their actions.
    pub rules: Vec<(RuleId, Action)>,
    /// What the policy did with it.
    pub action: Action,
    /// What ran in its place.
    pub rewritten_sql: Vec<String>,
    /// Its timeout class.
    pub class: Option<Class>,
    /// Overrides honoured.
    pub overrides: Vec<(String, Option<String>)>,
    /// Why the catalog proves it changes nothing, when it does.
    pub noop: Option<String>,
    /// What the evidence of use said about the tables and columns it drops, renames or
    /// retypes.
    pub evidence: Vec<String>,
}
