//! One client session, from accept to close.
//!
//! After the startup phase ([`super::handshake`]) the session is a pump between two sockets,
//! driven by one task. Both directions are read and written concurrently within one poll loop
//! (never "write this, then read that"): a client that pipelines a large batch while the server
//! streams back results would otherwise deadlock the proxy with both socket buffers full.
//!
//! A session whose traffic has been ordinary for a while (nothing held, governed or planned)
//! is carried by its worker's fast lane ([`lane`]): the same methods, driven straight from
//! `epoll` instead of the task, until anything needs the task again.
//!
//! Client bytes are grouped into requests (see [`super::request`]) and each request passes
//! through [`super::plan::Review::review`] before it is forwarded. Server bytes are scanned for frame
//! boundaries and the few messages that change session state (`ReadyForQuery`,
//! `ParameterStatus`); everything else is forwarded in the chunks it was read in.
//!
//! # Nothing held back waits on ddlgate itself
//!
//! Whatever the session holds back has an exit that depends only on the server, the audit
//! writer or a clock — never on the client sending more while it waits for an answer. Each
//! state, its exit, and the test that holds it (`tests/it/never_hang.rs` unless named):
//!
//! | held | why | exit |
//! |---|---|---|
//! | a request that needs the policy (`pending`) | earlier requests are not answered yet, so the transaction state is not exact | their `ReadyForQuery`; when one of them is a COPY the server waits for, the client's COPY data (and the `Sync` ending an extended-protocol COPY) flows past the held request (`copy_data_flows_past_a_request_held_behind_the_copy`) |
//! | the same, in an open pipeline | the pipeline's answers are not all in | ddlgate sends `Flush`, so the server sends them (`enforce::ddl_in_a_flushed_pipeline_gets_the_timeouts`) |
//! | a governed request's answer (for a retry, the blockers' names, the audit trail) | a retry is still possible; records come first | the server's `ReadyForQuery`; a `CopyInResponse` releases it at once (`ddl_and_copy_from_stdin_in_one_request_flow`, `…_extended_run_…`, `copy_with_an_encoding_option_is_not_held_for_ever`) |
//! | the client's messages during a governed request | the conductor speaks to the server | its own COPY data always flows, and after it the client's `Sync` |
//! | the answer, until its audit records are written | written before the client is answered | the writer's confirmation, or `AUDIT_WAIT_LIMIT` (`a_stuck_audit_trail_does_not_hold_the_answer_for_ever`) |
//! | the next attempt after `lock_not_available` | backoff | its timer |
//! | a request larger than 256 KiB while it is planned | parsed off the worker, so its other sessions do not stall (`plan::pool`) | the planning threads' answer (`a_large_governed_request_is_planned_off_the_worker`) |
//!
//! Each of these states is watched (`watch::Holding`): after `watch::HELD_REPORT_AFTER` (10 s), and
//! again at every doubling, the session logs a warning naming what it holds, for how long and
//! what will end it, and counts it in `ddlgate_held_long_total{held}`
//! (`a_request_held_for_long_is_reported_with_what_holds_it`). The watch observes; it never cuts
//! a state short — cutting would drop a client's request or a server's answer.
//!
//! Replication connections (`replication=true|database`, whose walsender streams use COPY
//! BOTH) are refused at startup with FATAL 0A000 (`replication_connections_are_refused_cleanly`):
//! ddlgate governs SQL sessions, and a half-proxied WAL stream is worse than a clear refusal.
//! A server that closes the connection without a word (a crashed backend) is passed on as it
//! is: the client's connection closes, as it would on a direct connection.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;

use tokio::time::Instant;
use tokio_util::io::poll_read_buf;
use tracing::{Span, info};

use crate::protocol::backend::{self, BackendKey, BackendScanner};
use crate::protocol::frontend::FrontendScanner;
use crate::protocol::{ProtocolError, error::Tag};

use super::Shared;
use super::cancel::Registration;
use super::conductor::Conductor;
use super::error::SessionError;
use super::handshake::Established;
use super::outbox::Outbox;
use super::phase::{PhaseWatch, ShutdownPhase};
use super::plan::{self, Held, Review};
use super::request::MessageSpan;
use super::sql::SavedTimeouts;
use super::state::SessionState;
use super::stream::Stream;

mod assemble;
mod close;
mod conduct;
pub(crate) mod lane;
mod startup;
mod watch;

pub(crate) use startup::serve;
use watch::Watch;

/// Read-buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Stop reading a side while this many bytes wait to be written to the other: the proxy never
/// buffers without bound for a peer that does not read.
const HIGH_WATER: usize = 256 * 1024;
/// The largest server message the proxy inspects (`ParameterStatus`, `ReadyForQuery`, …).
const MAX_INSPECTED_BACKEND_MESSAGE: usize = 1 << 20;
/// The audit writer's answer for records written on a session's behalf.
type AuditAck = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// How long a governed request waits for the audit trail to confirm its records before it is
/// answered anyway (the records are still written when the writer catches up; with
/// `audit_fail_closed` the answer is ddlgate's error instead). A stuck disk must not keep a
/// session — and the locks its transaction holds — waiting.
const AUDIT_WAIT_LIMIT: Duration = Duration::from_secs(5);
/// How long last words (a final error, a `Terminate`) may take to deliver when closing.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the pending request's catalog read is.
#[derive(Debug)]
enum CatalogRead {
    /// The read runs; these are the lookups, in the order the answer has them.
    Running(Vec<crate::analysis::catalog::Lookup>),
    /// The facts read (empty when the read failed).
    Done(crate::analysis::catalog::Catalog),
}

/// Where the pending request's evidence of use is (see [`crate::evidence::service`]).
#[derive(Debug)]
enum EvidenceRead {
    /// Asked about these tables and columns; the answer comes on the receiver, and the wait
    /// ends at the timer.
    Asked(
        tokio::sync::oneshot::Receiver<Vec<crate::analysis::usage::Found>>,
        Pin<Box<tokio::time::Sleep>>,
        Vec<(crate::analysis::classify::RelationName, Option<String>)>,
    ),
    /// The answer.
    Done(Vec<crate::analysis::usage::Found>),
}

/// What woke the pump.
#[derive(Debug)]
enum Event {
    ClientData,
    UpstreamData,
    ClientEof,
    UpstreamEof,
    ClientFailed(std::io::Error),
    UpstreamFailed(std::io::Error),
    Drain,
    Terminate,
    /// Draining, and nothing is in flight or open.
    IdleWhileDraining,
    /// The pause before a retry is over.
    RetryDue,
    /// The audit trail answered.
    Audited(Result<(), String>),
    /// The planning threads planned a large request (`None`: they are gone).
    Planned(Option<Box<plan::pool::Planned>>),
    /// Something has been held back for long: time to say so.
    HeldLong,
    /// The evidence of use for the pending request arrived (or the wait for it ended).
    EvidenceRead(Vec<crate::analysis::usage::Found>),
}

/// Why a running session ended.
#[derive(Debug)]
enum Ending {
    /// The client sent `Terminate`.
    Terminated,
    /// The client closed its socket.
    ClientClosed,
    /// The server closed its socket.
    UpstreamClosed,
    /// Shutdown: closed while idle, or at the drain deadline.
    Shutdown { deadline: bool },
    /// A protocol or I/O failure.
    Failed(SessionError),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Terminated => f.write_str("client terminated the session"),
            Self::ClientClosed => f.write_str("client closed the connection"),
            Self::UpstreamClosed => f.write_str("upstream closed the connection"),
            Self::Shutdown { deadline: false } => f.write_str("shutdown (session was idle)"),
            Self::Shutdown { deadline: true } => f.write_str("shutdown (drain deadline passed)"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// A running session.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one session, not states of one machine"
)]
struct Session {
    shared: Arc<Shared>,
    client: Stream,
    upstream: Stream,
    /// Client bytes read and not yet forwarded: held requests and partial messages.
    client_buf: BytesMut,
    /// Server bytes read and not yet forwarded: a partial inspected message at most.
    upstream_buf: BytesMut,
    to_client: Outbox,
    to_upstream: Outbox,
    frontend: FrontendScanner,
    /// Offset in `client_buf` up to which messages have been found.
    scanned: usize,
    /// Messages of the request being assembled (waiting for its `Sync` or `Flush`).
    held: Vec<MessageSpan>,
    /// Whether extended-protocol messages went upstream without a `Sync` after them: the server
    /// may be busy although no `ReadyForQuery` is awaited.
    unsynced: bool,
    /// Answers the server owes for pipelined messages forwarded since the last `Sync` (see
    /// [`crate::protocol::frontend::answers_in_pipeline`]); compared with what the backend
    /// scanner has counted since the last `ReadyForQuery`.
    pipeline_expected: u64,
    /// ddlgate asked the server for the answers of a pipeline a held request waits on.
    pipeline_flushed: bool,
    backend: BackendScanner,
    state: SessionState,
    /// The server's own cancel key, to stop a running query when the client vanishes.
    upstream_key: Option<BackendKey>,
    /// Keeps this session's cancel key routable for as long as the session lives.
    registration: Option<Registration>,
    /// Cancel requests received before the current program started (see
    /// [`Session::cancel_requested`]).
    cancels_at_program_start: u64,
    /// The client sent `Terminate` or closed: nothing more is read from it.
    client_done: bool,
    /// Shutdown has begun: close as soon as the session is idle.
    draining: bool,
    /// The latest shutdown phase this session has acted on.
    phase_seen: ShutdownPhase,
    /// Wakes this session when the shutdown phase changes (registered at its first poll).
    phase_watch: Option<PhaseWatch>,
    /// The session's span, parent of its log lines.
    span: Span,
    /// Which side is read first in the next poll, alternated for fairness.
    client_first: bool,
    /// The client's prepared statements and portals that run DDL.
    review: Review,
    /// What the policy engine knows about the session's current transaction.
    /// Boxed, like the conductor: the fast path never touches it, and inline it would spread
    /// the fields each forwarded message touches over more cache lines.
    analysis: Box<crate::analysis::Context>,
    /// A request that needs the policy, waiting for the earlier ones to be answered.
    pending: Option<Held>,
    /// The catalog read for the pending request: the names asked about while the read runs,
    /// then the facts it found (see [`super::catalog`]).
    catalog_read: Option<CatalogRead>,
    /// The evidence of use asked for the pending request, then found.
    evidence_read: Option<EvidenceRead>,
    /// When the session next looks whether its copy of the database's routines that run DDL
    /// is current (see [`super::routines`]), and whether a read of them runs.
    routines_due: Instant,
    /// The shared cache's generation the session's copy is from.
    routines_generation: u64,
    reading_routines: bool,
    /// The running program may create, change or drop routines: when it is over, the
    /// database's copy of them is read again.
    routines_changed: bool,
    /// The program running for a held request; while it runs, nothing else goes upstream.
    conductor: Option<Box<Conductor>>,
    /// Timeouts to restore once the transaction block a governed request opened has ended.
    deferred_restore: Option<SavedTimeouts>,
    /// Wakes the session when the conductor's pause before a retry ends.
    retry_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The audit trail's answer for records the conductor waits on, and when ddlgate stops
    /// waiting for it ([`AUDIT_WAIT_LIMIT`]).
    audit_wait: Option<(AuditAck, Pin<Box<tokio::time::Sleep>>)>,
    /// A large held request being planned on the planning threads ([`plan::pool`]); its
    /// program, and the review and context it took along, come back here.
    planning: Option<tokio::sync::oneshot::Receiver<Box<plan::pool::Planned>>>,
    /// The policy profile of the latest decision (for the audit trail).
    profile: Option<String>,
    /// The client ended a COPY that a held request waits behind: its next `Sync`, which
    /// ends an extended-protocol COPY, passes too (see [`Self::copy_flows`]).
    sync_may_follow_copy: bool,
    /// Where the engine's lasting lists ended before the running program was planned, to
    /// forget what it taught if it fails (see [`Self::finish_program`]).
    lessons: Option<crate::analysis::context::LastingMarks>,
    /// What the session holds back now, since when, and when to say so ([`Watch`]).
    watch: Option<Watch>,
    /// When the session started.
    began: std::time::Instant,
    /// The worker's fast lane ([`lane`]), where the session runs while it is quiet.
    lane: Option<lane::Handle>,
    /// Requests in a row that needed nothing but forwarding.
    quiet_requests: u32,
    /// The quiet requests in a row after which the session moves to the lane (see [`lane`]).
    lane_after: u32,
    /// What the lane sets while the session rides it ([`lane`]).
    on_lane: lane::OnLane,
}

impl Session {
    /// A session whose startup has just completed.
    fn new(
        shared: Arc<Shared>,
        client: Stream,
        upstream: Stream,
        established: Established,
        mut state: SessionState,
        span: Span,
    ) -> Self {
        state.tx_status = established.tx_status;
        state.parameters.extend(established.parameters);
        let observing = shared
            .observer
            .as_ref()
            .map(|o| crate::evidence::observe::Observing::new(Arc::clone(o), &state.database));
        info!(
            parent: &span,
            user = %state.user,
            database = %state.database,
            application_name = %state.application_name(),
            tls = state.client_tls,
            server_version = state.server_version().unwrap_or_default(),
            "session started"
        );
        shared.metrics.connections_total.increment(1);
        shared.metrics.connections_active.increment(1.0);
        if let Some(auditor) = &shared.audit {
            let mut record =
                crate::audit::Record::new(crate::audit::record::event::SESSION_START, state.id);
            fill_identity(&mut record, &state, None);
            record.outcome = Some(crate::audit::Outcome::ok(None));
            auditor.record(record);
        }
        let registration = match (established.client_key, &established.upstream_key) {
            (Some(client_key), Some(upstream_key)) => {
                Some(shared.cancels.register(client_key, upstream_key.clone()))
            }
            _ => None,
        };
        let max_message_bytes = shared.config.max_message_bytes;
        Self {
            shared,
            client,
            upstream,
            client_buf: established.client_leftover,
            upstream_buf: established.upstream_leftover,
            to_client: Outbox::default(),
            to_upstream: Outbox::default(),
            frontend: FrontendScanner::new(max_message_bytes),
            scanned: 0,
            held: Vec::new(),
            unsynced: false,
            pipeline_expected: 0,
            pipeline_flushed: false,
            backend: BackendScanner::new(MAX_INSPECTED_BACKEND_MESSAGE),
            state,
            upstream_key: established.upstream_key,
            registration,
            cancels_at_program_start: 0,
            client_done: false,
            draining: false,
            phase_seen: ShutdownPhase::Running,
            phase_watch: None,
            span,
            client_first: true,
            review: Review::observing(observing),
            analysis: Box::default(),
            pending: None,
            conductor: None,
            deferred_restore: None,
            retry_timer: None,
            audit_wait: None,
            planning: None,
            catalog_read: None,
            evidence_read: None,
            routines_due: Instant::now(),
            routines_generation: 0,
            reading_routines: false,
            routines_changed: false,
            profile: None,
            lessons: None,
            sync_may_follow_copy: false,
            watch: None,
            began: std::time::Instant::now(),
            lane: None,
            quiet_requests: 0,
            lane_after: lane::QUIET_REQUESTS_BEFORE_LANE,
            on_lane: lane::OnLane::default(),
        }
    }

    /// The conductor's pause is over (or a cancel request came in while it waited).
    fn retry_due(&mut self) {
        let cancelled = self.cancel_requested();
        let span = self.span.clone();
        if let Some(c) = self.conductor.as_mut() {
            if cancelled && c.cancel_wait() {
                info!(parent: &span, "cancel request: ddlgate stopped waiting and does not send the statement");
            }
            c.wake();
        }
    }

    async fn pump(mut self: Box<Self>) -> Ending {
        let first = self
            .on_client_data()
            .and_then(|()| self.on_upstream_data())
            .and_then(|()| self.drive());
        if let Err(e) = first {
            return self.close(Ending::Failed(e)).await;
        }
        self.rewatch();
        loop {
            let event = if self.may_take_lane() {
                let Some(lane) = self.lane.clone() else {
                    continue;
                };
                match self.take_lane(&lane).await {
                    Ok((session, exit)) => {
                        self = session;
                        match exit {
                            lane::Exit::Needs => None,
                            lane::Exit::Event(event) => Some(event),
                            lane::Exit::Failed(e) => return self.close(Ending::Failed(e)).await,
                        }
                    }
                    Err(ending) => return ending,
                }
            } else {
                Some(poll_fn(|cx| self.poll_event(cx)).await)
            };
            let quiet_request = matches!(event, Some(Event::ClientData));
            // `None`: back from the lane with something held; `drive` takes it from here.
            let Some(event) = event else {
                if let Err(e) = self.drive() {
                    return self.close(Ending::Failed(e)).await;
                }
                self.rewatch();
                if self.client_done {
                    return self.close(Ending::Terminated).await;
                }
                continue;
            };
            tracing::trace!(parent: &self.span, ?event, "session event");
            let step = match event {
                Event::ClientData => self.on_client_data(),
                Event::UpstreamData => self.on_upstream_data(),
                Event::ClientEof => return self.close(Ending::ClientClosed).await,
                Event::UpstreamEof => return self.close(Ending::UpstreamClosed).await,
                Event::ClientFailed(e) => {
                    return self.close(Ending::Failed(SessionError::ClientIo(e))).await;
                }
                Event::UpstreamFailed(e) => {
                    return self
                        .close(Ending::Failed(SessionError::UpstreamIo(e)))
                        .await;
                }
                Event::Drain => {
                    self.draining = true;
                    Ok(())
                }
                Event::Terminate => return self.close(Ending::Shutdown { deadline: true }).await,
                Event::IdleWhileDraining => {
                    return self.close(Ending::Shutdown { deadline: false }).await;
                }
                Event::RetryDue => {
                    self.retry_due();
                    Ok(())
                }
                Event::Audited(result) => {
                    let fail_closed = self.shared.audit.as_ref().is_some_and(|a| a.fail_closed);
                    if let Some(c) = self.conductor.as_mut() {
                        c.audited(result, fail_closed);
                    }
                    Ok(())
                }
                Event::HeldLong => {
                    self.report_held_long();
                    Ok(())
                }
                Event::Planned(planned) => self.planned(planned),
                Event::EvidenceRead(found) => {
                    self.evidence_read = Some(EvidenceRead::Done(found));
                    Ok(())
                }
            };
            if let Err(e) = step.and_then(|()| self.drive()) {
                return self.close(Ending::Failed(e)).await;
            }
            if !self.lane_can_keep() {
                self.quiet_requests = 0;
            } else if quiet_request {
                self.quiet_requests = self.quiet_requests.saturating_add(1);
            }
            self.rewatch();
            if self.client_done {
                // The Terminate is queued; close() delivers it.
                return self.close(Ending::Terminated).await;
            }
        }
    }

    /// Whether the client sent a cancel request since the current program started.
    fn cancel_requested(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|r| r.cancel_requests() != self.cancels_at_program_start)
    }

    /// Whether nothing is in flight in either direction and no transaction is open.
    fn is_idle(&self) -> bool {
        self.state.is_idle()
            && !self.unsynced
            && self.client_buf.is_empty()
            && self.held.is_empty()
            && self.pending.is_none()
            && self.planning.is_none()
            && self.conductor.is_none()
            && self.to_upstream.is_empty()
            && self.to_client.is_empty()
    }

    /// Makes progress on all writes, then returns the first read or signal that is ready.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(Err(e)) = self.to_upstream.poll_drain(cx, &mut self.upstream) {
            return Poll::Ready(Event::UpstreamFailed(e));
        }
        if let Poll::Ready(Err(e)) = self.to_client.poll_drain(cx, &mut self.client) {
            return Poll::Ready(Event::ClientFailed(e));
        }
        // Checked here, after the writes: a reply queued for the client a moment ago has to
        // be delivered before the session counts as idle, and no other event may follow.
        if self.draining && self.is_idle() {
            return Poll::Ready(Event::IdleWhileDraining);
        }
        if let Some((wait, limit)) = self.audit_wait.as_mut() {
            let result = match Pin::new(wait).poll(cx) {
                Poll::Ready(result) => {
                    Some(result.unwrap_or_else(|_| Err("the audit writer has stopped".to_owned())))
                }
                Poll::Pending => limit.as_mut().poll(cx).is_ready().then(|| {
                    Err(format!(
                        "the audit trail did not confirm the record within {} s (it is written when the writer catches up)",
                        AUDIT_WAIT_LIMIT.as_secs()
                    ))
                }),
            };
            if let Some(result) = result {
                self.audit_wait = None;
                return Poll::Ready(Event::Audited(result));
            }
        }
        if let Some(watch) = self.watch.as_mut()
            && watch.timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::HeldLong);
        }
        if let Some(planning) = self.planning.as_mut()
            && let Poll::Ready(planned) = Pin::new(planning).poll(cx)
        {
            self.planning = None;
            return Poll::Ready(Event::Planned(planned.ok()));
        }
        if let Some(EvidenceRead::Asked(answer, limit, targets)) = self.evidence_read.as_mut() {
            let found = match Pin::new(answer).poll(cx) {
                Poll::Ready(Ok(found)) => Some(found),
                Poll::Ready(Err(_)) => Some(crate::evidence::service::without(
                    targets,
                    "the evidence service has stopped",
                )),
                Poll::Pending => limit.as_mut().poll(cx).is_ready().then(|| {
                    crate::evidence::service::without(
                        targets,
                        &format!(
                            "no answer within {} s",
                            crate::evidence::service::ANSWER_LIMIT.as_secs()
                        ),
                    )
                }),
            };
            if let Some(found) = found {
                self.evidence_read = None;
                return Poll::Ready(Event::EvidenceRead(found));
            }
        }
        if let Some(at) = self.conductor.as_deref().and_then(Conductor::wake_at) {
            let deadline = Instant::from_std(at);
            let timer = self
                .retry_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                self.retry_timer = None;
                return Poll::Ready(Event::RetryDue);
            }
        }
        self.client_first = !self.client_first;
        let read = if self.client_first {
            self.poll_read_client(cx)
                .or_else(|| self.poll_read_upstream(cx))
        } else {
            self.poll_read_upstream(cx)
                .or_else(|| self.poll_read_client(cx))
        };
        if let Some(event) = read {
            return Poll::Ready(event);
        }
        if self.phase_watch.is_none() {
            self.phase_watch = Some(self.shared.phase.watch(self.state.id, cx.waker()));
        }
        let phase = self.shared.phase.get();
        if phase > self.phase_seen {
            self.phase_seen = phase;
            return Poll::Ready(if phase == ShutdownPhase::Terminating {
                Event::Terminate
            } else {
                Event::Drain
            });
        }
        Poll::Pending
    }

    fn poll_read_client(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        if self.client_done
            || self.to_upstream.len() >= HIGH_WATER
            || ((self.pending.is_some() || self.planning.is_some() || self.conductor.is_some())
                && self.client_buf.len() >= HIGH_WATER)
        {
            return None;
        }
        let missing = self.frontend.missing(&self.client_buf, self.scanned);
        reserve_for_read(&mut self.client_buf, missing);
        match poll_read_buf(Pin::new(&mut self.client), cx, &mut self.client_buf) {
            Poll::Ready(Ok(0)) => Some(Event::ClientEof),
            Poll::Ready(Ok(_)) => Some(Event::ClientData),
            Poll::Ready(Err(e)) => Some(Event::ClientFailed(e)),
            Poll::Pending => None,
        }
    }

    fn poll_read_upstream(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        if self.to_client.len() >= HIGH_WATER {
            return None;
        }
        reserve_for_read(&mut self.upstream_buf, 0);
        match poll_read_buf(Pin::new(&mut self.upstream), cx, &mut self.upstream_buf) {
            Poll::Ready(Ok(0)) => Some(Event::UpstreamEof),
            Poll::Ready(Ok(_)) => Some(Event::UpstreamData),
            Poll::Ready(Err(e)) => Some(Event::UpstreamFailed(e)),
            Poll::Pending => None,
        }
    }

    /// Scans newly read server bytes, updates session state, and queues them for the client.
    fn on_upstream_data(&mut self) -> Result<(), SessionError> {
        if let Some(conductor) = self.conductor.as_mut() {
            return conductor.on_upstream(
                &mut self.upstream_buf,
                &mut self.to_client,
                &mut self.state,
            );
        }
        let Self {
            backend,
            upstream_buf,
            state,
            ..
        } = self;
        let done = scan_upstream(backend, state, upstream_buf)?;
        if done > 0 {
            self.count_bytes_out(done as u64);
            let chunk = self.upstream_buf.split_to(done).freeze();
            self.to_client.push(chunk);
        }
        Ok(())
    }
}

/// Scans server bytes (see [`Session::on_upstream_data`]): how many leading bytes may go to
/// the client.
fn scan_upstream(
    backend: &mut BackendScanner,
    state: &mut SessionState,
    bytes: &[u8],
) -> Result<usize, SessionError> {
    backend
        .scan(bytes, |message| {
            match message.tag {
                backend::tag::READY_FOR_QUERY => {
                    state.ready_for_query(message.body, message.after_error)?;
                }
                backend::tag::PARAMETER_STATUS => state.parameter_status(message.body)?,
                // The real key must never reach the client; the server sends it only at
                // startup, so one now is a server bug.
                tag => {
                    return Err(ProtocolError::Unexpected {
                        tag: Tag(tag),
                        context: "after startup",
                    });
                }
            }
            Ok(())
        })
        .map_err(SessionError::UpstreamProtocol)
}

/// Who and where, for an audit record.
fn fill_identity(record: &mut crate::audit::Record, state: &SessionState, profile: Option<&str>) {
    record.session = state.id;
    record.client = state.peer.to_string();
    record.user.clone_from(&state.user);
    record.session_authorization = state
        .parameter("session_authorization")
        .filter(|now| *now != state.user)
        .map(str::to_owned);
    record.database.clone_from(&state.database);
    state
        .application_name()
        .clone_into(&mut record.application_name);
    record.profile = profile.map(str::to_owned);
    record.server_version = state.server_version().map(str::to_owned);
}

/// Makes room for the next read: at least a chunk, or the rest of a large message at once.
fn reserve_for_read(buf: &mut BytesMut, missing: usize) {
    let want = missing.max(READ_CHUNK / 4);
    if buf.capacity() - buf.len() < want {
        buf.reserve(want.max(READ_CHUNK));
    }
}
