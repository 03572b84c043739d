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

use bytes::{Buf, Bytes, BytesMut};
use tracing::{Span, info, warn};

use crate::config::policy::Settings;
use crate::enforce::{Class, Message, Step};
use crate::protocol::backend::tag as bt;
use crate::protocol::backend::{self, TxStatus};
use crate::protocol::frame::{HEADER_LEN, Next, POSTGRES_MESSAGE_LIMIT, frames, next_frame};
use crate::protocol::reply::{self, Fields, Severity, field};
use crate::protocol::rows;
use crate::protocol::{ProtocolError, error::Tag};

use super::client_text::{self, Mapping};
use super::error::SessionError;
use super::outbox::Outbox;
use super::program::{AuditedStatement, Program};
use super::sql::{self, SavedTimeouts};
use super::state::SessionState;
use crate::audit::Record;
use crate::audit::record::{self as audit_record, OverrideUsed, RuleAction, TimeoutsApplied};
use crate::protocol::query::put_query;

/// One thing the conductor does.
#[derive(Debug)]
enum Op {
    /// Words for the client (notices).
    Say(Bytes),
    /// Set the timeouts of a class.
    ApplyTimeouts(Class),
    /// Record the indexes of a table (a `regclass` expression) before a concurrent build.
    ProbeIndexes(String),
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
            Self::Step(_) => "rewrite step",
            Self::Request(_) => "request",
            Self::Restore => "restore timeouts",
            Self::DropNewInvalidIndexes(_) => "find invalid indexes",
            Self::Cleanup(_) => "cleanup",
            Self::Ready => "ready",
            Self::Wait(_) => "wait",
            Self::FindBlockers => "find blockers",
            Self::Deliver => "deliver",
            Self::Audit => "audit",
        }
    }
}

/// An operation sent upstream and not yet answered with `ReadyForQuery`.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one operation's answer, not states of one machine"
)]
struct Running {
    op: Op,
    /// Code and message of the server's error, if it sent one.
    error: Option<(String, String)>,
    /// Rows returned, first column of each (text format).
    rows: Vec<Option<String>>,
    /// Every column of the first row.
    first_row: Vec<Option<String>>,
    /// The client's request is in COPY FROM STDIN: the client's copy data must flow.
    copy_in: bool,
    /// A failed request's `ReadyForQuery` is held back: cleanup runs first.
    hold_ready_on_error: bool,
    /// The answer is collected here instead of being forwarded, while a retry is possible.
    buffer: Option<Vec<Bytes>>,
    /// Bytes in `buffer`.
    buffered: usize,
    /// Part of the answer has reached the client (it outgrew the buffer): no retry.
    answered: bool,
    /// Command tags of the statements the request completed, in order.
    completions: Vec<String>,
    /// Positions of the `ParseComplete`/`CloseComplete` messages not passed to the client.
    hidden_completions: Vec<usize>,
    /// `ParseComplete`/`CloseComplete` messages of the answer so far.
    close_parse_completions: usize,
    /// Where the answer of a pipelined run is.
    pipeline: PipelinedAnswer,
    /// When it was sent.
    started: std::time::Instant,
    /// The client's request ends with `Sync` (extended protocol), not `Query`.
    extended: bool,
    /// After COPY data in an extended-protocol request: the client's next `Sync` passes.
    awaiting_client_sync: bool,
}

/// The answer to a run inside a pipeline.
#[derive(Debug, Default)]
struct PipelinedAnswer {
    /// Messages still to hide at the start of the answer (ddlgate's timeouts).
    hidden_prefix: usize,
    /// A run ending with `Flush`: the number of messages that end its answer.
    expected: Option<u64>,
    /// Such messages seen so far.
    seen: u64,
    /// The answer of a run ending with `Flush` is complete.
    complete: bool,
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
}

impl Conductor {
    /// A conductor for `program`.
    pub fn new(program: Program, span: Span, audit_on: bool) -> Self {
        let mut ops = VecDeque::new();
        if !program.notices.is_empty() {
            let mut out = BytesMut::new();
            for n in &program.notices {
                encode_message(Severity::Warning, n, &mut out);
            }
            ops.push_back(Op::Say(out.freeze()));
        }
        let Settings {
            timeouts, retry, ..
        } = program.settings;
        // A class whose timeouts are both "0" leaves the client's values alone: nothing to set.
        let sets = |class: &Class| !class.timeouts(&timeouts).sets_nothing();
        let mut applied = None;
        for step in program.steps {
            if let Some(class) = step.class.filter(sets)
                && applied != Some(class)
            {
                ops.push_back(Op::ApplyTimeouts(class));
                applied = Some(class);
            }
            if let Some(table) = &step.builds_indexes_on {
                ops.push_back(Op::ProbeIndexes(table.clone()));
            }
            ops.push_back(Op::Step(step));
        }
        if let Some(class) = program.request_class.filter(sets)
            && applied != Some(class)
        {
            ops.push_back(Op::ApplyTimeouts(class));
        }
        if let Some(table) = program.request_builds_indexes_on {
            ops.push_back(Op::ProbeIndexes(table));
        }
        ops.push_back(Op::Request(program.request));
        let request_hidden_completions = program.request_hidden_completions;
        let request_hidden_prefix = program.request_hidden_prefix;
        let request_answers = program.request_answers;
        let retries_left = if program.retryable && program.request_class.is_some() {
            retry.attempts
        } else {
            0
        };
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
            undo: Vec::new(),
            outcome: Outcome::default(),
            span,
            step_log: Vec::new(),
            request_ms: None,
            audited_written: 0,
            release_when_audited: false,
            abort_copy: false,
            streaming_left: 0,
        }
    }

    /// A conductor that refuses the program's request without sending anything: the audit
    /// trail cannot be written and `audit_fail_closed` is on. The refusal itself is offered
    /// to the audit trail (its write is the probe that finds the trail healthy again).
    pub fn refuse(program: Program, span: Span, why: &str) -> Self {
        let mut out = BytesMut::new();
        reply::encode_fields(
            Severity::Error,
            reply::sqlstate::AUDIT_UNAVAILABLE,
            "ddlgate: DDL refused: the audit trail cannot be written",
            Some(why),
            Some("Free space for the audit log (or fix its sink), then run the statement again."),
            &mut out,
        );
        let mut conductor = Self::new(
            Program {
                notices: Vec::new(),
                steps: Vec::new(),
                request_class: None,
                request_builds_indexes_on: None,
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

    /// The audit records of a program the session's end cut short before it reached its
    /// audit step (the client vanished, the upstream died): the statements are recorded with
    /// what had completed and, for the rest, an error saying why the session ended — never
    /// silently dropped.
    pub fn records_if_cut_short(&mut self, state: &SessionState, why: &str) -> Option<Vec<Record>> {
        if self.audit_emitted || self.audited.len() <= self.audited_written {
            return None;
        }
        self.audit_emitted = true;
        if self.failure.is_none() {
            // The server's own FATAL (a shutdown, a terminated backend) says more than "the
            // connection closed", and it is what the client was told.
            let server_said = self.held_fatal().and_then(|frame| {
                let fields = Fields::decode(frame.get(HEADER_LEN..)?).ok()?;
                Some((fields.get(field::CODE)?, fields.get(field::MESSAGE)?))
            });
            self.failure = Some(server_said.unwrap_or_else(|| {
                (
                    reply::sqlstate::CONNECTION_FAILURE.to_owned(),
                    format!("the session ended before the statement finished: {why}"),
                )
            }));
        }
        Some(self.records(state))
    }

    /// The server's FATAL error among the answer held back (for a retry or for the audit
    /// trail), if any. When the upstream then closes, it is the client's explanation: better
    /// than ddlgate's own "closed unexpectedly".
    pub fn held_fatal(&self) -> Option<Bytes> {
        let buffered = self
            .running
            .as_ref()
            .and_then(|r| r.buffer.as_ref())
            .into_iter()
            .flatten();
        buffered.chain(self.held_reply.iter()).find_map(fatal_in)
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
                Op::Cleanup(sql) => sql.clone(),
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
        running.hold_ready_on_error = self.probed.is_some() || !self.undo.is_empty();
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

    /// Handles the complete server messages in `buf` and consumes them.
    pub fn on_upstream(
        &mut self,
        buf: &mut BytesMut,
        to_client: &mut Outbox,
        state: &mut SessionState,
    ) -> Result<(), SessionError> {
        // Consecutive messages passed to the client go as one chunk.
        let mut forward_from = 0usize;
        let mut at = 0usize;
        loop {
            if self.streaming_left > 0 {
                // The rest of a large message streamed through: the client's, unread.
                let n = self.streaming_left.min(buf.len().saturating_sub(at));
                self.streaming_left -= n;
                at = at.saturating_add(n);
                if self.streaming_left > 0 {
                    break;
                }
            }
            let rest = buf.get(at..).unwrap_or_default();
            let (tag, body, message) = match next_frame(rest, POSTGRES_MESSAGE_LIMIT)
                .map_err(SessionError::UpstreamProtocol)?
            {
                Next::Frame(frame) => (frame.tag, frame.body, frame.bytes),
                Next::Partial(header) => {
                    // A large row or COPY data message of the client's answer is not gathered
                    // whole: what was held back of the answer goes out (no retry once the
                    // client has part of it), and the message streams through as it arrives.
                    if header.frame_len > STREAM_ABOVE
                        && let Some(running) = self.running.as_mut()
                        && running.streams(header.tag)
                    {
                        if forward_from < at {
                            to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                            forward_from = at;
                        }
                        running.release(to_client);
                        self.streaming_left = header.frame_len - rest.len();
                        at = buf.len();
                    }
                    break;
                }
                Next::Nothing => break,
            };
            let end = at.saturating_add(message.len());
            let Some(running) = self.running.as_mut() else {
                // Nothing was asked: only asynchronous messages can come now; pass them on.
                at = end;
                continue;
            };
            let copy_was_off = !running.copy_in;
            let forward = running.on_message(tag, body, state)?;
            let copy_started = copy_was_off && running.copy_in && running.buffer.is_some();
            let keep = match &forward {
                Forward::Pass | Forward::Finished { pass_ready: true } => {
                    Some(Bytes::copy_from_slice(message))
                }
                Forward::Replace(bytes) => Some(bytes.clone()),
                Forward::Drop | Forward::Finished { pass_ready: false } => None,
            };
            let passes_through = matches!(forward, Forward::Pass) && running.buffer.is_none();
            if !passes_through {
                if forward_from < at {
                    to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                }
                forward_from = end;
                if let Some(bytes) = keep {
                    running.keep(bytes, to_client);
                }
            }
            at = end;
            if copy_started {
                if forward_from < at {
                    to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                }
                forward_from = at;
                self.copy_started(to_client, state);
                continue;
            }
            if (matches!(forward, Forward::Finished { .. }) || running.pipeline.complete)
                && let Some(running) = self.running.take()
            {
                if matches!(running.op, Op::Request(_)) {
                    self.outcome.request_failed = running.error.is_some();
                }
                self.finished(running, state);
            }
        }
        if forward_from < at {
            to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
        }
        buf.advance(at);
        Ok(())
    }

    /// Once the records written before a COPY are confirmed, the answer held back goes to the
    /// client; when they could not be written (`audit_fail_closed`), the COPY is ended from
    /// ddlgate's side instead.
    fn settle_copy(&mut self, to_upstream: &mut Outbox, to_client: &mut Outbox) {
        if std::mem::take(&mut self.abort_copy) {
            let mut out = BytesMut::new();
            crate::protocol::copy::put_copy_fail(
                "ddlgate: the audit trail cannot be written (audit_fail_closed)",
                &mut out,
            );
            if let Some(running) = self.running.as_mut() {
                running.copy_in = false;
                // After a CopyFail the server skips to the next Sync; the request's own was
                // ignored during the COPY.
                if running.extended {
                    crate::protocol::extended::put_sync(&mut out);
                }
            }
            to_upstream.push(out.freeze());
        }
        if self.release_when_audited && !self.waiting_audit {
            self.release_when_audited = false;
            if let Some(running) = self.running.as_mut() {
                running.release(to_client);
            }
        }
    }

    /// The server asked the client for COPY data in the middle of a request whose answer is
    /// held back (for a retry, for the blockers' names, for the audit trail). Nothing more
    /// can come until the client sends data, and it sends none before it sees the
    /// `CopyInResponse`: the answer so far goes to the client now — after the records of the
    /// statements completed before the COPY are written, so that none is reported done before
    /// it is recorded — and the request can no longer be retried.
    fn copy_started(&mut self, to_client: &mut Outbox, state: &SessionState) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let completed = running.completions.len();
        let written = self.audited_written;
        let done = self
            .audited
            .iter()
            .skip(written)
            .take_while(|a| a.position < completed)
            .count();
        if done == 0 {
            running.release(to_client);
            return;
        }
        self.completions.clone_from(&running.completions);
        let audited = self
            .audited
            .get(written..written.saturating_add(done))
            .unwrap_or_default()
            .to_vec();
        self.audit_out = Some(self.records_of(&audited, state));
        self.audited_written = written.saturating_add(done);
        self.waiting_audit = true;
        self.release_when_audited = true;
    }

    /// An operation got its `ReadyForQuery`: decide what comes next.
    fn finished(&mut self, running: Running, state: &SessionState) {
        let failed = running.error.is_some();
        match running.op {
            Op::ApplyTimeouts(class) => {
                if let Some((code, message)) = &running.error {
                    warn!(parent: &self.span, %code, %message, class = class.as_str(), "could not apply timeouts; the request is not sent");
                    self.ops.clear();
                    let mut out = BytesMut::new();
                    reply::encode_fields(
                        Severity::Error,
                        reply::sqlstate::POLICY_REJECTED,
                        &format!(
                            "ddlgate: could not apply the policy's timeouts before DDL: {message}"
                        ),
                        Some("The statement was not sent."),
                        None,
                        &mut out,
                    );
                    self.failure = Some((
                        reply::sqlstate::POLICY_REJECTED.to_owned(),
                        format!("could not apply the policy's timeouts: {message}"),
                    ));
                    if !self.audited.is_empty() {
                        self.ops.push_back(Op::Audit);
                    }
                    self.ops.push_back(Op::Say(out.freeze()));
                    self.ops.push_back(Op::Ready);
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
            Op::Request(_) | Op::Step(_) => self.attempt_finished(running, state),
            Op::FindBlockers => {
                self.blockers = running.rows.into_iter().flatten().collect();
            }
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

    /// A rewrite step or the client's request got its `ReadyForQuery`: retry it, clean up after
    /// it, or deliver its answer.
    fn attempt_finished(&mut self, running: Running, state: &SessionState) {
        let lock_not_available = running
            .error
            .as_ref()
            .is_some_and(|(code, _)| code == LOCK_NOT_AVAILABLE);
        // Kept in case no later attempt gets through: then it is the answer.
        self.held_reply = running.buffer.unwrap_or_default();
        if lock_not_available && self.retries_left > 0 && !running.answered {
            self.retry(running.op);
            return;
        }
        let ms = u64::try_from(running.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &running.op {
            Op::Request(_) => {
                self.completions = running.completions;
                self.request_ms = Some(ms);
            }
            Op::Step(_) => {
                let outcome = match &running.error {
                    Some((code, message)) => {
                        audit_record::Outcome::error(code.clone(), message.clone())
                    }
                    None => audit_record::Outcome::ok(running.completions.last().cloned()),
                };
                self.step_log.push((self.attempt, outcome, ms));
            }
            _ => {}
        }
        if self.failure.is_none() {
            self.failure.clone_from(&running.error);
        }
        self.conclude(
            running.op,
            running.error.is_some(),
            lock_not_available,
            state,
        );
    }

    /// The last attempt of `op` is over: go on, or take back what was done; either way the
    /// client gets the held answer (with the blockers named after `lock_not_available`).
    fn conclude(&mut self, op: Op, failed: bool, lock_not_available: bool, state: &SessionState) {
        // One audit record per client statement: written when the request is over, or when a
        // step failed and the rest will not run; never once per step.
        let audit_now = failed || !matches!(op, Op::Step(_));
        match op {
            Op::Step(step) => {
                if failed {
                    self.fail(state);
                } else {
                    self.attempt = 1;
                    if let Some(undo) = step.undo {
                        self.undo.push(undo);
                    }
                }
            }
            _ => {
                if failed && (self.probed.is_some() || !self.undo.is_empty()) {
                    self.fail(state);
                } else {
                    self.after_request(state);
                }
            }
        }
        self.ops.push_front(Op::Deliver);
        if !self.audited.is_empty() && audit_now {
            self.ops.push_front(Op::Audit);
        }
        // After an error in a run ending with Flush the server skips everything until the
        // client's Sync, a query of ddlgate's own included: the blockers stay unnamed.
        if lock_not_available && self.request_answers.is_none() {
            self.ops.push_front(Op::FindBlockers);
        }
    }

    /// The audit records of the program's statements, with their outcomes; the session adds
    /// who and where.
    fn records(&self, state: &SessionState) -> Vec<Record> {
        self.records_of(
            self.audited.get(self.audited_written..).unwrap_or_default(),
            state,
        )
    }

    fn records_of(&self, audited: &[AuditedStatement], state: &SessionState) -> Vec<Record> {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let failed_at = self.failure.as_ref().map(|_| self.completions.len());
        audited
            .iter()
            .map(|a| {
                let mut r = Record::new(audit_record::event::STATEMENT, 0);
                r.in_transaction = Some(self.in_transaction);
                r.sql = Some(a.sql.clone());
                r.kind = Some(a.kind.clone());
                r.relations.clone_from(&a.relations);
                r.lock.clone_from(&a.lock);
                r.rules = a
                    .rules
                    .iter()
                    .map(|(rule, action)| RuleAction {
                        rule: rule.clone(),
                        action: action.clone(),
                    })
                    .collect();
                r.action = Some(a.action.to_owned());
                r.rewritten_sql.clone_from(&a.rewritten_sql);
                r.timeouts = a.class.map(|class| {
                    let pair = class.timeouts(&self.audit_timeouts);
                    TimeoutsApplied {
                        class: class.as_str().to_owned(),
                        lock_timeout: crate::config::format_duration(pair.lock_timeout),
                        statement_timeout: crate::config::format_duration(pair.statement_timeout),
                    }
                });
                r.overrides = a
                    .overrides
                    .iter()
                    .map(|(rule, reason)| OverrideUsed {
                        rule: rule.clone(),
                        reason: reason.clone(),
                    })
                    .collect();
                r.attempts = Some(self.attempt);
                r.outcome = Some(self.outcome_of(a.position, failed_at));
                r.duration_ms = Some(duration_ms);
                if a.rewritten_sql.len() > 1 {
                    r.steps = self.steps_of(a, failed_at);
                }
                let _ = state;
                r
            })
            .collect()
    }

    /// The steps of a multi-step rewrite, in order: each one's SQL, attempts, outcome and
    /// duration; the last step is the client's request in its rewritten form.
    fn steps_of(&self, a: &AuditedStatement, failed_at: Option<usize>) -> Vec<audit_record::Step> {
        let last = a.rewritten_sql.len().saturating_sub(1);
        a.rewritten_sql
            .iter()
            .enumerate()
            .map(|(i, sql)| {
                let (attempts, outcome, duration_ms) = match self.step_log.get(i) {
                    Some((attempts, outcome, ms)) => (Some(*attempts), outcome.clone(), Some(*ms)),
                    None if i == last && self.request_sent => (
                        Some(self.attempt),
                        self.outcome_of(a.position, failed_at),
                        self.request_ms,
                    ),
                    None => (None, audit_record::Outcome::not_run(), None),
                };
                audit_record::Step {
                    sql: sql.clone(),
                    attempts,
                    outcome,
                    duration_ms,
                }
            })
            .collect()
    }

    fn outcome_of(&self, position: usize, failed_at: Option<usize>) -> audit_record::Outcome {
        if let Some(tag) = self.completions.get(position) {
            return audit_record::Outcome::ok(Some(tag.clone()));
        }
        match (&self.failure, failed_at) {
            (Some((code, message)), Some(at)) if position == at || !self.request_sent => {
                audit_record::Outcome::error(code.clone(), message.clone())
            }
            (Some(_), _) => audit_record::Outcome::not_run(),
            (None, _) => audit_record::Outcome::ok(None),
        }
    }

    /// Records for the audit trail, once, when the program reaches them.
    pub fn take_audit(&mut self) -> Option<Vec<Record>> {
        self.audit_out.take()
    }

    /// Whether the program waits for the audit trail.
    pub fn waits_for_audit(&self) -> bool {
        self.waiting_audit
    }

    /// The audit trail has written the records, or could not. With `fail_closed`, a client
    /// is never told that a statement succeeded when its record was not written: the success
    /// is replaced by ddlgate's error (the statement did run; the error says so).
    pub fn audited(&mut self, result: Result<(), String>, fail_closed: bool) {
        self.waiting_audit = false;
        let Err(why) = result else {
            return;
        };
        warn!(parent: &self.span, error = %why, "audit records not written");
        if !fail_closed {
            return;
        }
        if std::mem::take(&mut self.release_when_audited) {
            // The statements before the COPY ran but are not recorded: end the COPY from
            // ddlgate's side, so the server fails the request (and, outside a transaction
            // block, rolls them back) before the client is told anything.
            self.abort_copy = true;
            return;
        }
        let already_failed = self
            .held_reply
            .iter()
            .any(|m| m.first() == Some(&backend::tag::ERROR_RESPONSE));
        if already_failed {
            return;
        }
        let ready = self
            .held_reply
            .last()
            .filter(|m| m.first() == Some(&backend::tag::READY_FOR_QUERY))
            .cloned();
        let mut out = BytesMut::new();
        reply::encode_fields(
            Severity::Error,
            reply::sqlstate::AUDIT_UNAVAILABLE,
            "ddlgate: the statement ran, but its audit record could not be written",
            Some(&format!(
                "{why}. Its effect is in the database; audit.fail_closed refuses to report it as done."
            )),
            Some(
                "Free space for the audit log (or fix its sink); ddlgate refuses DDL until a record can be written.",
            ),
            &mut out,
        );
        self.held_reply = vec![out.freeze()];
        self.held_reply.extend(ready);
    }

    /// Dropping what a timed-out attempt left timed out too (it waits for the same
    /// transactions): the queued attempt would fail on the leftover, so it is not sent; the
    /// whole round (wait, clean up, attempt) is tried again while retries last.
    fn cleanup_timed_out(&mut self, state: &SessionState) {
        let Some(pos) = self
            .ops
            .iter()
            .position(|op| matches!(op, Op::Request(_) | Op::Step(_)))
        else {
            return;
        };
        let mut rest = self.ops.split_off(pos);
        let Some(next) = rest.pop_front() else {
            return;
        };
        self.ops = rest;
        if self.retries_left > 0 {
            self.retry(next);
        } else {
            self.conclude(next, true, true, state);
        }
    }

    /// `lock_not_available`: wait, clean up what the attempt left (an INVALID index), and send
    /// the same statement again.
    fn retry(&mut self, op: Op) {
        self.retries_left -= 1;
        self.outcome.retries += 1;
        let exponent = self.attempt.saturating_sub(1).min(20);
        let base = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.retry.max_backoff);
        // Full jitter over the upper half: sessions retrying together spread out.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let fraction = 0.5 + f64::from(u32::try_from(self.jitter % 1000).unwrap_or(0)) / 2000.0;
        let pause = base.mul_f64(fraction);
        self.attempt += 1;
        info!(parent: &self.span, attempt = self.attempt, pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "lock_not_available: retrying");
        self.ops.push_front(op);
        if let Some((_, table)) = &self.probed {
            self.ops
                .push_front(Op::DropNewInvalidIndexes(table.clone()));
        }
        self.ops.push_front(Op::Wait(pause));
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

/// The most of an answer held back while its statement may still be retried.
const MAX_BUFFERED: usize = 1 << 20;

/// A row or COPY data message of a request's answer larger than this is streamed to the
/// client as it arrives instead of being gathered whole: a governed request's memory stays
/// bounded whatever its rows hold.
const STREAM_ABOVE: usize = 64 * 1024;

/// SQLSTATE `55P03 lock_not_available`: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A seed for the retry jitter.
fn seed() -> u64 {
    getrandom::u64().unwrap_or(0x9E37_79B9_7F4A_7C15) | 1
}

/// The message, with the blockers added to its DETAIL when it is the `lock_not_available`
/// error they caused.
fn with_blockers(message: Bytes, blockers: &[String]) -> Bytes {
    if blockers.is_empty() || message.first() != Some(&backend::tag::ERROR_RESPONSE) {
        return message;
    }
    let body = message.get(HEADER_LEN..).unwrap_or_default();
    let Ok(fields) = Fields::decode(body) else {
        return message;
    };
    if fields.code() != LOCK_NOT_AVAILABLE {
        return message;
    }
    let who = format!("Blocked by: {}.", blockers.join("; "));
    let detail = match fields.get(field::DETAIL) {
        Some(d) => format!("{d} {who}"),
        None => who,
    };
    let mut out = BytesMut::new();
    reply::encode_fields(
        Severity::Error,
        LOCK_NOT_AVAILABLE,
        &fields.message(),
        Some(&detail),
        fields.get(field::HINT).as_deref(),
        &mut out,
    );
    out.freeze()
}

/// What happens to one server message.
#[derive(Debug)]
enum Forward {
    /// Pass it to the client.
    Pass,
    /// Swallow it.
    Drop,
    /// Send this instead.
    Replace(Bytes),
    /// It was the operation's `ReadyForQuery`; pass it on or not.
    Finished { pass_ready: bool },
}

impl Running {
    /// Holds a message of the answer back (while a retry is possible) or passes it on. An
    /// answer larger than [`MAX_BUFFERED`] is passed on from then on, and is not retried.
    /// Sends what was held back of the answer and passes the rest through: once the client
    /// has part of the answer, the request is not retried.
    fn release(&mut self, to_client: &mut Outbox) {
        if let Some(buffer) = self.buffer.take() {
            for b in buffer {
                to_client.push(b);
            }
        }
        self.answered = true;
    }

    /// Whether a message with this tag is the client's, passed on unread: a row (`DataRow`)
    /// or COPY data of the client's request, outside ddlgate's hidden prefix.
    fn streams(&self, tag: u8) -> bool {
        matches!(self.op, Op::Request(_))
            && self.pipeline.hidden_prefix == 0
            && matches!(tag, bt::DATA_ROW | bt::COPY_DATA)
    }

    fn keep(&mut self, bytes: Bytes, to_client: &mut Outbox) {
        let Some(buffer) = self.buffer.as_mut() else {
            to_client.push(bytes);
            return;
        };
        self.buffered = self.buffered.saturating_add(bytes.len());
        buffer.push(bytes);
        if self.buffered > MAX_BUFFERED {
            for b in buffer.drain(..) {
                to_client.push(b);
            }
            self.buffer = None;
            self.answered = true;
        }
    }

    fn new(op: Op) -> Self {
        Self {
            op,
            error: None,
            rows: Vec::new(),
            first_row: Vec::new(),
            copy_in: false,
            hold_ready_on_error: false,
            buffer: None,
            buffered: 0,
            answered: false,
            completions: Vec::new(),
            hidden_completions: Vec::new(),
            close_parse_completions: 0,
            pipeline: PipelinedAnswer::default(),
            started: std::time::Instant::now(),
            extended: false,
            awaiting_client_sync: false,
        }
    }

    /// Hides the answer to ddlgate's own messages at the start of a pipelined run, and
    /// notices the end of the answer to a run that ends with `Flush`. Returns whether the
    /// message is hidden.
    fn pipeline_message(&mut self, tag: u8) -> bool {
        let asynchronous = matches!(
            tag,
            bt::NOTICE_RESPONSE | bt::PARAMETER_STATUS | bt::NOTIFICATION_RESPONSE
        );
        let hidden_completion = matches!(tag, bt::PARSE_COMPLETE | bt::CLOSE_COMPLETE)
            && self
                .hidden_completions
                .contains(&self.close_parse_completions);
        let answer = &mut self.pipeline;
        if answer.hidden_prefix > 0 && !asynchronous {
            if tag == backend::tag::ERROR_RESPONSE {
                // ddlgate's statement failed: the client's error now (its run is skipped).
                answer.hidden_prefix = 0;
            } else {
                answer.hidden_prefix -= 1;
                return true;
            }
        }
        if let Some(expected) = answer.expected {
            if tag == backend::tag::ERROR_RESPONSE {
                answer.complete = true;
            } else if backend::ends_a_pipelined_answer(tag) && !hidden_completion {
                answer.seen += 1;
                answer.complete = answer.seen >= expected;
            }
        }
        false
    }

    fn on_message(
        &mut self,
        tag: u8,
        body: &[u8],
        state: &mut SessionState,
    ) -> Result<Forward, SessionError> {
        let is_request = matches!(self.op, Op::Request(_));
        let is_step = matches!(self.op, Op::Step(_));
        if is_request && self.pipeline_message(tag) {
            return Ok(Forward::Drop);
        }
        match tag {
            backend::tag::READY_FOR_QUERY => {
                state
                    .ready_for_query(body, self.error.is_some())
                    .map_err(SessionError::UpstreamProtocol)?;
                self.copy_in = false;
                // The request's answer is held back when a failed rewrite has to be cleaned
                // up first; `Conductor::fail` sends a `ReadyForQuery` at the end.
                let pass = is_request && !(self.error.is_some() && self.hold_ready_on_error);
                Ok(Forward::Finished { pass_ready: pass })
            }
            backend::tag::PARAMETER_STATUS => {
                state
                    .parameter_status(body)
                    .map_err(SessionError::UpstreamProtocol)?;
                Ok(Forward::Pass)
            }
            // NotificationResponse: asynchronous, the client's.
            bt::NOTIFICATION_RESPONSE => Ok(Forward::Pass),
            backend::tag::BACKEND_KEY_DATA => {
                Err(SessionError::UpstreamProtocol(ProtocolError::Unexpected {
                    tag: Tag(tag),
                    context: "after startup",
                }))
            }
            backend::tag::ERROR_RESPONSE => {
                let fields = Fields::decode(body).map_err(SessionError::UpstreamProtocol)?;
                let (code, message) = (fields.code(), fields.message());
                self.error = Some((code.clone(), message.clone()));
                if is_request
                    && code == reply::sqlstate::POLICY_REJECTED
                    && message.starts_with("ddlgate: ")
                {
                    // ddlgate's own refusal, raised by the server: drop the PL/pgSQL context.
                    let mut out = BytesMut::new();
                    reply::encode_fields(
                        Severity::Error,
                        &code,
                        &message,
                        fields.get(field::DETAIL).as_deref(),
                        fields.get(field::HINT).as_deref(),
                        &mut out,
                    );
                    return Ok(Forward::Replace(out.freeze()));
                }
                Ok(if is_request || is_step {
                    Forward::Pass
                } else {
                    Forward::Drop
                })
            }
            backend::tag::NOTICE_RESPONSE => Ok(if is_request || is_step {
                Forward::Pass
            } else {
                Forward::Drop
            }),
            // ParseComplete / CloseComplete: ddlgate's own are not the client's.
            bt::PARSE_COMPLETE | bt::CLOSE_COMPLETE if is_request => {
                let position = self.close_parse_completions;
                self.close_parse_completions += 1;
                Ok(if self.hidden_completions.contains(&position) {
                    Forward::Drop
                } else {
                    Forward::Pass
                })
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended: a statement's end.
            bt::COMMAND_COMPLETE | bt::EMPTY_QUERY_RESPONSE | bt::PORTAL_SUSPENDED
                if is_request =>
            {
                self.completions.push(match tag {
                    bt::COMMAND_COMPLETE => String::from_utf8_lossy(
                        rows::command_tag(body).map_err(SessionError::UpstreamProtocol)?,
                    )
                    .into_owned(),
                    bt::PORTAL_SUSPENDED => "suspended".to_owned(),
                    _ => String::new(),
                });
                Ok(Forward::Pass)
            }
            // CopyInResponse / CopyBothResponse: the client's data must flow.
            bt::COPY_IN_RESPONSE | bt::COPY_BOTH_RESPONSE if is_request => {
                self.copy_in = true;
                Ok(Forward::Pass)
            }
            // DataRow
            bt::DATA_ROW if !is_request => {
                let row: Vec<Option<String>> = rows::data_row(body)
                    .map_err(SessionError::UpstreamProtocol)?
                    .into_iter()
                    .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect();
                if self.rows.is_empty() {
                    self.first_row.clone_from(&row);
                }
                self.rows.push(row.into_iter().next().flatten());
                Ok(Forward::Drop)
            }
            _ if is_request => Ok(Forward::Pass),
            _ => Ok(Forward::Drop),
        }
    }
}

fn encode_message(severity: Severity, m: &Message, out: &mut BytesMut) {
    reply::encode_fields(
        severity,
        m.code,
        &m.message,
        m.detail.as_deref(),
        m.hint.as_deref(),
        out,
    );
}

/// The first `ErrorResponse` of severity FATAL among the whole messages in `bytes`.
fn fatal_in(bytes: &Bytes) -> Option<Bytes> {
    let mut at = 0usize;
    for frame in frames(bytes) {
        let start = at;
        at = at.saturating_add(frame.bytes.len());
        if frame.tag == bt::ERROR_RESPONSE && Fields::decode(frame.body).is_ok_and(|f| f.is_fatal())
        {
            return Some(bytes.slice(start..at));
        }
    }
    None
}
