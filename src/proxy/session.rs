//! One client session, from accept to close.
//!
//! After the startup phase ([`super::handshake`]) the session is a pump between two sockets,
//! driven by one task. Both directions are read and written concurrently within one poll loop
//! (never "write this, then read that"): a client that pipelines a large batch while the server
//! streams back results would otherwise deadlock the proxy with both socket buffers full.
//!
//! Client bytes are grouped into requests (see [`super::request`]) and each request passes
//! through [`decision::review`] before it is forwarded. Server bytes are scanned for frame
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
//! | the answer, until its audit records are written | written before the client is answered | the writer's confirmation, or [`AUDIT_WAIT_LIMIT`] (`a_stuck_audit_trail_does_not_hold_the_answer_for_ever`) |
//! | the next attempt after `lock_not_available` | backoff | its timer |
//!
//! Each of these states is watched ([`Holding`]): after [`HELD_REPORT_AFTER`] (10 s), and
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
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::io::poll_read_buf;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::protocol::backend::{self, BackendKey, BackendScanner, TxStatus};
use crate::protocol::frontend::{
    FLUSH_MESSAGE, FrontendItem, FrontendScanner, TERMINATE_MESSAGE, answers_in_pipeline,
    ends_with_ready_for_query, tag as fe, waits_for_sync,
};
use crate::protocol::reply::{Report, Severity, sqlstate};
use crate::protocol::{ProtocolError, error::Tag};

use super::Shared;
use super::cancel::Registration;
use super::conductor::{Conductor, SavedTimeouts};
use super::decision::{self, Held, Review, Unreviewable, Verdict};
use super::error::SessionError;
use super::handshake::{self, ChannelBinding, Established, Failure, Opening};
use super::outbox::Outbox;
use super::phase::{PhaseWatch, ShutdownPhase};
use super::request::{MAX_HELD_BYTES, MessageSpan, Request, RequestEnd};
use super::state::SessionState;
use super::stream::Stream;
use super::upstream;

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

/// Serves one accepted connection until it closes. `admitted` is false when the connection
/// limit is reached: such a connection may still carry a cancel request, but a session is
/// refused with SQLSTATE 53300.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admitted: bool) {
    let id = shared.next_session_id();
    let span = info_span!("session", id, %peer);
    let terminate = shared.terminate.clone();
    // A session still starting up when shutdown turns urgent is simply dropped; a running
    // session handles the signal itself, so it can say goodbye and cancel its query.
    let starting = start(tcp, peer, id, &shared, admitted, span.clone()).instrument(span.clone());
    let started = tokio::select! {
        started = starting => started,
        () = terminate.cancelled() => {
            debug!(parent: &span, "closed during startup by shutdown");
            None
        }
    };
    // The running session is not instrumented: entering a span on every wake-up costs more
    // than the forwarding itself. Its few log lines name the span as their parent instead.
    if let Some(session) = started {
        let began = std::time::Instant::now();
        let ending = session.pump().await;
        info!(
            parent: &span,
            reason = %ending,
            duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "session ended"
        );
    }
}

/// Whether a `replication` startup parameter asks for a walsender: anything but a false
/// boolean as PostgreSQL spells one (`parse_bool`: a prefix of `false` or `no`, `of`/`off`, `0`).
/// Values the server would refuse are refused here too.
fn asks_for_replication(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    let false_word = !v.is_empty() && ("false".starts_with(&v) || "no".starts_with(&v));
    !(false_word || v == "of" || v == "off" || v == "0")
}

/// Why a session is refused before the server is asked, if it is.
fn refusal(
    shared: &Shared,
    client: &Stream,
    startup: &crate::protocol::startup::StartupMessage,
    admitted: bool,
) -> Option<SessionError> {
    if shared.config.require_tls && !client.is_tls() {
        return Some(SessionError::TlsRequired);
    }
    if let Some(mode) = startup
        .param("replication")
        .filter(|v| asks_for_replication(v))
    {
        return Some(SessionError::ReplicationRefused(mode.to_owned()));
    }
    if !admitted {
        shared.metrics.connections_rejected.increment(1);
        return Some(SessionError::TooManyConnections(
            shared.config.max_connections,
        ));
    }
    None
}

/// Runs the startup phase; returns the ready session, or `None` when there is none to run (a
/// cancel request, a refusal, a failure — each already handled and logged).
async fn start(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Arc<Shared>,
    admitted: bool,
    span: Span,
) -> Option<Session> {
    let config = &shared.config;
    let deadline = Instant::now() + config.startup_timeout;
    let opening = match timeout_at(deadline, handshake::negotiate(tcp, config)).await {
        Err(_) => {
            info!(timeout = ?config.startup_timeout, "client did not send a startup packet in time");
            return None;
        }
        Ok(Err(Failure { client, error })) => {
            end_startup(client, &error).await;
            return None;
        }
        Ok(Ok(opening)) => opening,
    };
    let (mut client, startup) = match opening {
        Opening::Closed => {
            debug!("client closed before startup");
            return None;
        }
        Opening::Cancel(key) => {
            forward_cancel(shared, &key).await;
            return None;
        }
        Opening::Session { client, startup } => (client, startup),
    };
    let user = startup.param("user").unwrap_or_default().to_owned();
    let database = startup.param("database").unwrap_or(&user).to_owned();
    if let Some(refusal) = refusal(shared, &client, &startup, admitted) {
        end_startup(Some(client), &refusal).await;
        return None;
    }
    let connected = timeout_at(deadline, async {
        let mut up = upstream::connect(config).await?;
        let binding = match (&config.client_tls, client.is_tls(), &up.certificate) {
            (Some(tls), true, Some(cert)) if tls.leaf == *cert => ChannelBinding::PassThrough,
            _ => ChannelBinding::Unavailable {
                upstream_tls: up.stream.is_tls(),
            },
        };
        let established =
            handshake::authenticate(&mut client, &mut up.stream, &startup, binding).await?;
        Ok::<_, SessionError>((up.stream, established))
    })
    .await;
    let (upstream, established) = match connected {
        Err(_) => {
            end_startup(
                Some(client),
                &SessionError::StartupTimeout(config.startup_timeout),
            )
            .await;
            return None;
        }
        Ok(Err(error)) => {
            if matches!(
                error,
                SessionError::Upstream(_)
                    | SessionError::UpstreamIo(_)
                    | SessionError::UpstreamProtocol(_)
            ) {
                shared.metrics.upstream_connect_errors.increment(1);
            }
            if let Some(auditor) = &shared.audit
                && !matches!(error, SessionError::ClientGone)
            {
                let mut record =
                    crate::audit::Record::new(crate::audit::record::event::SESSION_START, id);
                record.client = peer.to_string();
                record.user.clone_from(&user);
                record.database.clone_from(&database);
                let (code, message) = refusal_outcome(&error);
                record.outcome = Some(crate::audit::Outcome::error(code, message));
                auditor.record(record);
            }
            end_startup(Some(client), &error).await;
            return None;
        }
        Ok(Ok(pair)) => pair,
    };

    let state = SessionState::new(id, peer, user, database, client.is_tls());
    Some(Session::new(
        Arc::clone(shared),
        client,
        upstream,
        established,
        state,
        span,
    ))
}

/// Tells the client why its session cannot start (when possible), logs, and closes.
async fn end_startup(client: Option<Stream>, error: &SessionError) {
    match error {
        SessionError::ClientGone => debug!("client left during startup"),
        SessionError::Refused { code, message } => {
            info!(%code, reason = %message, "upstream refused the session");
        }
        SessionError::Upstream(_)
        | SessionError::UpstreamIo(_)
        | SessionError::UpstreamProtocol(_) => {
            warn!(error = %error, "session could not start");
        }
        SessionError::ClientProtocol(_) => warn!(error = %error, "session could not start"),
        _ => info!(error = %error, "session could not start"),
    }
    let (Some(mut client), Some(report)) = (client, error.client_report()) else {
        return;
    };
    let mut out = BytesMut::new();
    report.encode(&mut out);
    let _ = timeout(CLOSE_FLUSH_TIMEOUT, async {
        client.write_all(&out).await?;
        client.flush().await?;
        client.shutdown().await
    })
    .await;
}

/// Relays a client's cancel request to the backend it targets, if a live session owns the key.
async fn forward_cancel(shared: &Shared, key: &BackendKey) {
    let Some(upstream_key) = shared.cancels.lookup(key) else {
        // PostgreSQL says nothing either: an unknown key must not be distinguishable.
        info!(pid = key.pid, "cancel request with an unknown key ignored");
        return;
    };
    match upstream::cancel(&shared.config, &upstream_key).await {
        Ok(()) => info!(pid = key.pid, "cancel request forwarded"),
        Err(e) => warn!(pid = key.pid, error = %e, "cancel request could not be forwarded"),
    }
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
    /// Something has been held back for long: time to say so.
    HeldLong,
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

/// After how long something held back is reported (log line and
/// `ddlgate_held_long_total`), and then again at every doubling.
const HELD_REPORT_AFTER: Duration = Duration::from_secs(10);

/// What a session holds back: the states of the table in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// A request that needs the policy waits for earlier requests' answers.
    Pending,
    /// A governed request runs; its answer is kept for a retry, the blockers or the trail.
    Governed,
    /// A governed request pauses before its next attempt.
    Backoff,
    /// An answer waits for its audit records to be confirmed.
    AuditWait,
}

impl Holding {
    /// The label in logs and metrics.
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Governed => "governed",
            Self::Backoff => "backoff",
            Self::AuditWait => "audit",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Pending => "a request that needs the policy until earlier requests are answered",
            Self::Governed => "a governed request's answer until the server finishes it",
            Self::Backoff => "a governed request between attempts",
            Self::AuditWait => "an answer until the audit trail confirms its records",
        }
    }

    /// What ends it: never the client sending more.
    fn exit(self) -> &'static str {
        match self {
            Self::Pending => "the server's ReadyForQuery (COPY data flows past)",
            Self::Governed => "the server's ReadyForQuery or CopyInResponse",
            Self::Backoff => "the retry timer",
            Self::AuditWait => "the writer's confirmation or the audit wait limit",
        }
    }
}

/// The watch over what a session holds back.
struct Watch {
    holding: Holding,
    since: Instant,
    /// How many times it has been reported.
    reports: u32,
    /// Fires at the next report.
    timer: Pin<Box<tokio::time::Sleep>>,
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
    _registration: Option<Registration>,
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
    analysis: crate::analysis::Context,
    /// A request that needs the policy, waiting for the earlier ones to be answered.
    pending: Option<Held>,
    /// The program running for a held request; while it runs, nothing else goes upstream.
    conductor: Option<Conductor>,
    /// Timeouts to restore once the transaction block a governed request opened has ended.
    deferred_restore: Option<SavedTimeouts>,
    /// Wakes the session when the conductor's pause before a retry ends.
    retry_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The audit trail's answer for records the conductor waits on, and when ddlgate stops
    /// waiting for it ([`AUDIT_WAIT_LIMIT`]).
    audit_wait: Option<(AuditAck, Pin<Box<tokio::time::Sleep>>)>,
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
            _registration: registration,
            client_done: false,
            draining: false,
            phase_seen: ShutdownPhase::Running,
            phase_watch: None,
            span,
            client_first: true,
            review: Review::default(),
            analysis: crate::analysis::Context::default(),
            pending: None,
            conductor: None,
            deferred_restore: None,
            retry_timer: None,
            audit_wait: None,
            profile: None,
            lessons: None,
            sync_may_follow_copy: false,
            watch: None,
            began: std::time::Instant::now(),
        }
    }

    async fn pump(mut self) -> Ending {
        let first = self
            .on_client_data()
            .and_then(|()| self.on_upstream_data())
            .and_then(|()| self.drive());
        if let Err(e) = first {
            return self.close(Ending::Failed(e)).await;
        }
        self.rewatch();
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
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
                    if let Some(c) = self.conductor.as_mut() {
                        c.wake();
                    }
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
            };
            if let Err(e) = step.and_then(|()| self.drive()) {
                return self.close(Ending::Failed(e)).await;
            }
            self.rewatch();
            if self.client_done {
                // The Terminate is queued; close() delivers it.
                return self.close(Ending::Terminated).await;
            }
        }
    }

    /// What the session holds back now, the most specific reason first.
    fn holding(&self) -> Option<Holding> {
        if self.audit_wait.is_some() {
            Some(Holding::AuditWait)
        } else if let Some(c) = &self.conductor {
            Some(if c.wake_at().is_some() {
                Holding::Backoff
            } else {
                Holding::Governed
            })
        } else if self.pending.is_some() {
            Some(Holding::Pending)
        } else {
            None
        }
    }

    /// Starts, keeps or ends the watch after an event: a new reason starts a new watch.
    fn rewatch(&mut self) {
        match (self.holding(), &self.watch) {
            (None, None) => {}
            (None, Some(_)) => self.watch = None,
            (Some(now), Some(w)) if w.holding == now => {}
            (Some(now), _) => {
                let since = Instant::now();
                self.watch = Some(Watch {
                    holding: now,
                    since,
                    reports: 0,
                    timer: Box::pin(tokio::time::sleep_until(since + HELD_REPORT_AFTER)),
                });
            }
        }
    }

    /// Says that something has been held back for long, what and why, and when it will say
    /// so again (after twice as long).
    fn report_held_long(&mut self) {
        let span = self.span.clone();
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        watch.reports = watch.reports.saturating_add(1);
        let held_for = watch.since.elapsed();
        warn!(
            parent: &span,
            held = watch.holding.as_str(),
            held_s = held_for.as_secs(),
            exit = watch.holding.exit(),
            "held back for {} s: {}",
            held_for.as_secs(),
            watch.holding.what()
        );
        self.shared.metrics.held_long(watch.holding.as_str());
        let next = HELD_REPORT_AFTER
            .saturating_mul(1u32 << watch.reports.min(16))
            .max(held_for + HELD_REPORT_AFTER);
        watch.timer.as_mut().reset(watch.since + next);
    }

    /// Whether nothing is in flight in either direction and no transaction is open.
    fn is_idle(&self) -> bool {
        self.state.is_idle()
            && !self.unsynced
            && self.client_buf.is_empty()
            && self.held.is_empty()
            && self.pending.is_none()
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
        if let Some(at) = self.conductor.as_ref().and_then(Conductor::wake_at) {
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
            || ((self.pending.is_some() || self.conductor.is_some())
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

    /// Groups newly read client bytes into requests, reviews each, and queues what is decided.
    fn on_client_data(&mut self) -> Result<(), SessionError> {
        let mut forward_to = 0;
        let copy_only = self.copy_flows();
        if (self.pending.is_some() || self.conductor.is_some()) && !copy_only {
            return Ok(());
        }
        while !self.client_done {
            if copy_only && !self.copy_flows() {
                break;
            }
            let Some(item) = self
                .frontend
                .next(&self.client_buf, self.scanned)
                .map_err(SessionError::ClientProtocol)?
            else {
                break;
            };
            match item {
                FrontendItem::CopyChunk { end } => {
                    if !self.held.is_empty() {
                        self.review_part()?;
                    }
                    self.scanned = end;
                    forward_to = end;
                }
                FrontendItem::Message { tag, end } if copy_only => {
                    // Inside the COPY of a governed request: only its data, end and failure
                    // (and the Flush/Sync the server ignores during COPY) pass.
                    if ![fe::COPY_DONE, fe::COPY_FAIL, fe::FLUSH, fe::SYNC].contains(&tag) {
                        break;
                    }
                    match self.conductor.as_mut() {
                        Some(c) => match tag {
                            fe::SYNC => c.client_synced(),
                            fe::FLUSH => {}
                            _ => c.copy_finished(),
                        },
                        // An extended-protocol COPY ends with the client's next Sync (the
                        // server ignored the one sent during the COPY).
                        None => self.sync_may_follow_copy = tag != fe::SYNC,
                    }
                    self.scanned = end;
                    forward_to = end;
                }
                FrontendItem::Message { tag, end } => {
                    self.held.push(MessageSpan {
                        tag,
                        start: self.scanned,
                        end,
                    });
                    self.scanned = end;
                    if waits_for_sync(tag) {
                        continue;
                    }
                    match self.review_held(RequestEnd::Complete)? {
                        Verdict::Hold => {
                            self.hold_request(forward_to);
                            return Ok(());
                        }
                        Verdict::Unreviewable(why) => return Err(self.unreviewable(why)),
                        Verdict::Forward => {}
                    }
                    forward_to = end;
                    if ends_with_ready_for_query(tag) {
                        self.state.awaiting_ready += 1;
                        self.unsynced = false;
                    } else if tag == fe::TERMINATE {
                        self.client_done = true;
                    }
                }
            }
        }
        let held_bytes = self
            .held
            .first()
            .map_or(0, |first| self.scanned - first.start);
        if held_bytes > MAX_HELD_BYTES {
            self.review_part()?;
            forward_to = self.scanned;
            self.unsynced = true;
        }
        if forward_to > 0 {
            self.shared.metrics.bytes_in.increment(forward_to as u64);
            let chunk = self.client_buf.split_to(forward_to).freeze();
            self.scanned -= forward_to;
            for span in &mut self.held {
                span.start -= forward_to;
                span.end -= forward_to;
            }
            self.to_upstream.push(chunk);
        }
        if self.client_done {
            // Nothing after Terminate is meaningful.
            self.client_buf.clear();
            self.held.clear();
            self.scanned = 0;
        }
        Ok(())
    }

    /// Whether the client's COPY data must flow although a request is held back or governed:
    /// the server waits for it, in the governed request itself or in an earlier request that
    /// the held one waits behind. Without it the session would wait on itself.
    fn copy_flows(&self) -> bool {
        match &self.conductor {
            Some(c) => c.wants_copy_data(),
            None => {
                self.pending.is_some()
                    && (self.backend.server_awaits_copy_data() || self.sync_may_follow_copy)
            }
        }
    }

    /// Reviews the held part of a run that is forwarded before its end. A part that holds a
    /// statement the policy governs ends the session before anything of it is sent: the
    /// statement cannot be decided without the rest of the run, and must not pass unreviewed.
    /// The attempt is audited.
    fn review_part(&mut self) -> Result<(), SessionError> {
        match self.review_held(RequestEnd::Partial)? {
            Verdict::Unreviewable(why) => Err(self.unreviewable(why)),
            Verdict::Forward | Verdict::Hold => Ok(()),
        }
    }

    /// Ends the session over a request that can be neither decided nor forwarded, with its
    /// audit record.
    fn unreviewable(&mut self, why: Unreviewable) -> SessionError {
        let error = match why {
            Unreviewable::TooLarge => SessionError::UnreviewableRun {
                limit: MAX_HELD_BYTES,
            },
            Unreviewable::EncodingChanged => SessionError::EncodingChangedInRun,
        };
        warn!(why = ?why, "a request ddlgate cannot review; closing the session");
        if let Some(auditor) = &self.shared.audit {
            let mut record =
                crate::audit::Record::new(crate::audit::record::event::STATEMENT, self.state.id);
            fill_identity(&mut record, &self.state, self.profile.as_deref());
            record.in_transaction = Some(self.state.tx_status != TxStatus::Idle);
            record.sql = self.review.unreviewable_statement();
            record.action = Some("reject".to_owned());
            record.outcome = error.client_report().map(|report| crate::audit::Outcome {
                status: "error".to_owned(),
                tag: None,
                sqlstate: Some(report.code.to_owned()),
                message: Some(report.message),
            });
            auditor.record(record);
        }
        error
    }

    /// Hands the held messages to the decision point as one request. A request to forward is
    /// left in the buffer; one to hold keeps its messages in `held` for [`Self::hold_request`].
    fn review_held(&mut self, end: RequestEnd) -> Result<Verdict, SessionError> {
        let request = Request::new(&self.client_buf, &self.held, end);
        let in_flight = self.state.awaiting_ready > 0 || self.unsynced;
        let mut verdict = self
            .review
            .review(&request, &self.state, in_flight)
            .map_err(SessionError::ClientProtocol)?;
        // Taken whatever the verdict: only a forwarded request's effect is the tracker's (a
        // held one is simulated statement by statement when it is planned).
        let (tx_effect, alone) = self.review.take_forwarded_tx();
        if end == RequestEnd::Complete
            && self.deferred_restore.is_some()
            && verdict == Verdict::Forward
        {
            verdict = Verdict::Hold;
        }
        if verdict == Verdict::Forward {
            // A pipeline is open once a message that the server answers in it has gone up
            // without a Sync after it (a Flush alone opens nothing: psycopg sends one after
            // each Sync).
            for message in &self.held {
                if ends_with_ready_for_query(message.tag) {
                    self.pipeline_expected = 0;
                    self.unsynced = false;
                } else if answers_in_pipeline(message.tag) > 0 {
                    self.pipeline_expected += answers_in_pipeline(message.tag);
                    self.unsynced = true;
                }
            }
            self.held.clear();
            self.state.tx.forwarded(tx_effect, alone);
        }
        Ok(verdict)
    }

    /// Whether every pipelined message sent since the last `Sync` has been answered (or an
    /// error made the server skip the rest), so that the next run's answer starts with its
    /// own first message. Without an open pipeline, `awaiting_ready` says it all.
    fn pipeline_quiet(&self) -> bool {
        if !self.unsynced {
            return true;
        }
        let (answers, failed) = self.backend.pipeline();
        failed || answers >= self.pipeline_expected
    }

    /// Forwards the bytes before the request in `held` (up to `forward_to`) and takes the
    /// request out of the buffer to wait for [`Self::drive`].
    fn hold_request(&mut self, forward_to: usize) {
        let start = self.held.first().map_or(forward_to, |m| m.start);
        let end = self.held.last().map_or(start, |m| m.end);
        if start > 0 {
            let chunk = self.client_buf.split_to(start).freeze();
            self.to_upstream.push(chunk);
        }
        let bytes = self.client_buf.split_to(end - start).freeze();
        let spans = self
            .held
            .drain(..)
            .map(|m| MessageSpan {
                tag: m.tag,
                start: m.start - start,
                end: m.end - start,
            })
            .collect();
        self.scanned = 0;
        self.pending = Some(Held { bytes, spans });
    }

    /// Moves governed requests along: starts the program of a held request once every earlier
    /// request has been answered, and goes back to the client's later requests when it is over.
    fn drive(&mut self) -> Result<(), SessionError> {
        loop {
            if let Some(conductor) = self.conductor.as_mut() {
                conductor.advance(&mut self.to_upstream, &mut self.to_client, &mut self.state);
                if let Some(mut records) = conductor.take_audit() {
                    for record in &mut records {
                        fill_identity(record, &self.state, self.profile.as_deref());
                    }
                    match &self.shared.audit {
                        Some(auditor) => {
                            self.audit_wait = Some((
                                auditor.record_and_wait(records),
                                Box::pin(tokio::time::sleep(AUDIT_WAIT_LIMIT)),
                            ));
                        }
                        None => conductor.audited(Ok(()), false),
                    }
                    continue;
                }
                if !conductor.is_finished() {
                    if conductor.wants_copy_data() {
                        return self.on_client_data();
                    }
                    return Ok(());
                }
                if let Some(done) = self.conductor.take() {
                    let outcome = done.into_outcome();
                    // The conductor read the answer itself: the pipeline is quiet now, still
                    // open after a run that ended with Flush, skipping to Sync after an error.
                    self.unsynced = outcome.pipeline_open;
                    self.pipeline_expected = 0;
                    self.backend
                        .reset_pipeline(outcome.pipeline_open && outcome.request_failed);
                    count_outcome(&self.shared.metrics, &outcome);
                    self.finish_program(&outcome);
                    if outcome.deferred_restore.is_some() {
                        self.deferred_restore = outcome.deferred_restore;
                    }
                }
                if self.pending.is_none() {
                    // Requests that arrived meanwhile were left unscanned.
                    self.on_client_data()?;
                    if self.pending.is_none() {
                        return Ok(());
                    }
                }
                continue;
            }
            if self.pending.is_none() || self.state.awaiting_ready > 0 {
                return Ok(());
            }
            if !self.pipeline_quiet() {
                // The server sends a pipeline's answers only when flushed, and the client's
                // own Flush or Sync is in the held request: ask for them (Flush has no answer
                // of its own), or the held request would wait for ever.
                if !self.pipeline_flushed {
                    self.to_upstream.push(Bytes::from_static(FLUSH_MESSAGE));
                    self.pipeline_flushed = true;
                }
                return Ok(());
            }
            self.pipeline_flushed = false;
            if let Some(saved) = self.deferred_restore.take() {
                if self.state.tx_status == TxStatus::Idle && !self.unsynced {
                    self.conductor = Some(Conductor::restore(saved, self.span.clone()));
                    continue;
                }
                self.deferred_restore = Some(saved);
            }
            let Some(held) = self.pending.take() else {
                return Ok(());
            };
            self.sync_may_follow_copy = false;
            let policy = self.shared.config.policy.current();
            let (profile, settings) = decision::settings_for(&policy, &self.state);
            self.profile = profile;
            self.lessons = Some(self.analysis.lasting_marks());
            let since = self.state.tx.take();
            let program = decision::plan(
                held,
                &self.state,
                &mut self.review,
                &mut self.analysis,
                &settings,
                self.unsynced,
                since,
            );
            count_decisions(&self.shared.metrics, &program.audited);
            let audit = self.shared.audit.as_ref();
            if let Some(auditor) =
                audit.filter(|a| a.fail_closed && !a.is_healthy() && !program.audited.is_empty())
            {
                let why = format!(
                    "The last audit write failed ({} record(s) lost since start); audit_fail_closed is on.",
                    auditor.write_errors()
                );
                self.conductor = Some(Conductor::refuse(program, self.span.clone(), &why));
            } else {
                self.conductor = Some(Conductor::new(program, self.span.clone(), audit.is_some()));
            }
        }
    }

    /// Brings the engine's context up to date once a planned program is over. The plan
    /// recorded its statements as if they all succeeded; the server has now answered:
    /// - a failed program taught nothing that lasts (its transaction, if still open, is
    ///   failed and can only roll back);
    /// - with no transaction open now, the transaction the request ran in is over (committed
    ///   unless it failed), so none of its facts may reach the next request;
    /// - boundaries the program's own statements crossed are accounted for by the plan.
    fn finish_program(&mut self, outcome: &super::conductor::Outcome) {
        let Some(marks) = self.lessons.take() else {
            return;
        };
        if outcome.failed {
            self.analysis.forget_lessons_since(&marks);
        }
        if self.state.tx_status == TxStatus::Idle && !outcome.pipeline_open {
            self.analysis.end_transaction(!outcome.failed);
        }
        let _ = self.state.tx.take();
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
        let done = backend
            .scan(upstream_buf, |message| {
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
            .map_err(SessionError::UpstreamProtocol)?;
        if done > 0 {
            self.shared.metrics.bytes_out.increment(done as u64);
            let chunk = self.upstream_buf.split_to(done).freeze();
            self.to_client.push(chunk);
        }
        Ok(())
    }

    /// Records the end of the session in the audit trail.
    fn audit_session_end(&self, ending: &Ending) {
        let Some(auditor) = &self.shared.audit else {
            return;
        };
        let mut record =
            crate::audit::Record::new(crate::audit::record::event::SESSION_END, self.state.id);
        fill_identity(&mut record, &self.state, self.profile.as_deref());
        record.outcome = Some(crate::audit::Outcome {
            status: if matches!(ending, Ending::Failed(_)) {
                "error"
            } else {
                "ok"
            }
            .to_owned(),
            tag: None,
            sqlstate: None,
            message: Some(ending.to_string()),
        });
        record.duration_ms =
            Some(u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX));
        auditor.record(record);
    }

    /// What the client is told as the session ends: the server's own FATAL error held back
    /// with a governed statement's answer, or ddlgate's report.
    fn last_words(&self, ending: &Ending) -> (Option<Bytes>, Option<Report>) {
        // The server's last words (administrator shutdown, crash), held back with a governed
        // statement's answer: the client gets them instead of a report of ddlgate's own.
        let held_fatal = match ending {
            Ending::UpstreamClosed => self.conductor.as_ref().and_then(Conductor::held_fatal),
            _ => None,
        };
        let client_report = match ending {
            // A server that closes without a word (a crashed backend) is passed on as it is:
            // the client sees the connection close, as it would on a direct connection, and
            // ddlgate's log and the session's end record say what happened.
            Ending::Terminated | Ending::ClientClosed | Ending::UpstreamClosed => None,
            Ending::Shutdown { deadline } => Some(
                Report::new(
                    Severity::Fatal,
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection because ddlgate is shutting down",
                )
                .detail(if *deadline {
                    "The drain deadline passed before the session became idle."
                } else {
                    "The session was idle."
                }),
            ),
            Ending::Failed(e) => e.client_report(),
        };
        (held_fatal, client_report)
    }

    /// Ends the session: last words to each side, a cancel for a query left running, close.
    async fn close(mut self, ending: Ending) -> Ending {
        let in_flight = self.state.awaiting_ready > 0 || self.unsynced || self.conductor.is_some();
        let (held_fatal, client_report) = self.last_words(&ending);
        if let Ending::UpstreamClosed
        | Ending::Failed(
            SessionError::ClientProtocol(_)
            | SessionError::UpstreamProtocol(_)
            | SessionError::UpstreamIo(_),
        ) = &ending
        {
            warn!(parent: &self.span, error = %ending, "closing session");
        }
        let client_gone = matches!(
            ending,
            Ending::ClientClosed | Ending::Failed(SessionError::ClientIo(_))
        );
        let upstream_usable = !matches!(
            ending,
            Ending::UpstreamClosed
                | Ending::Failed(SessionError::UpstreamIo(_) | SessionError::UpstreamProtocol(_))
        );
        // A backend waiting on a lock does not notice its socket closing; cancel it so it
        // leaves neither a lock nor a lock-queue entry behind.
        let closing_upstream = upstream_usable && !matches!(ending, Ending::Terminated);
        let cancel_key = (closing_upstream && in_flight)
            .then(|| self.upstream_key.clone())
            .flatten();
        if closing_upstream {
            self.to_upstream.push(Bytes::from_static(TERMINATE_MESSAGE));
        }
        if let Some(fatal) = held_fatal.filter(|_| !client_gone) {
            self.to_client.push(fatal);
        }
        if let Some(report) = client_report.filter(|_| !client_gone) {
            let mut out = BytesMut::new();
            report.encode(&mut out);
            self.to_client.push(out.freeze());
        }
        let Self {
            client,
            upstream,
            to_client,
            to_upstream,
            ..
        } = &mut self;
        let _ = timeout(
            CLOSE_FLUSH_TIMEOUT,
            poll_fn(|cx| {
                let up = if upstream_usable {
                    to_upstream.poll_drain(cx, upstream)
                } else {
                    Poll::Ready(Ok(()))
                };
                let down = if client_gone {
                    Poll::Ready(Ok(()))
                } else {
                    to_client.poll_drain(cx, client)
                };
                match (up, down) {
                    (Poll::Pending, _) | (_, Poll::Pending) => Poll::Pending,
                    _ => Poll::Ready(()),
                }
            }),
        )
        .await;
        // Awaited rather than spawned: the worker runtime may stop as soon as its last session
        // ends, and the cancel must not be lost with it.
        if let Some(key) = cancel_key
            && let Err(e) = upstream::cancel(&self.shared.config, &key).await
        {
            warn!(parent: &self.span, error = %e, "could not cancel the upstream query of a closed session");
        }
        let _ = timeout(CLOSE_FLUSH_TIMEOUT, async {
            let _ = self.upstream.shutdown().await;
            let _ = self.client.shutdown().await;
        })
        .await;
        // A program cut short by the close (its client gone after the answer, before the
        // restore) still counts.
        if let Some(conductor) = self.conductor.take() {
            self.finish_cut_short(conductor, &ending);
        }
        self.audit_session_end(&ending);
        self.shared.metrics.connections_active.decrement(1.0);
        ending
    }
}

impl Session {
    /// A program the session's end cut short: its statements still get their audit records
    /// (with how the session ended), and what it did still counts.
    fn finish_cut_short(&self, mut conductor: Conductor, ending: &Ending) {
        if let (Some(auditor), Some(mut records)) = (
            &self.shared.audit,
            conductor.records_if_cut_short(&self.state, &ending.to_string()),
        ) {
            for record in &mut records {
                fill_identity(record, &self.state, self.profile.as_deref());
            }
            for record in records {
                auditor.record(record);
            }
        }
        count_outcome(&self.shared.metrics, &conductor.into_outcome());
    }
}

/// Counts what a finished (or cut short) program did.
fn count_outcome(metrics: &crate::metrics::Metrics, outcome: &super::conductor::Outcome) {
    metrics
        .lock_timeout_retries
        .increment(u64::from(outcome.retries));
    if let Some(d) = outcome.governed_duration {
        metrics.ddl_duration.record(d.as_secs_f64());
    }
}

/// Counts governed statements by kind and action, refusals and rewrites by rule.
fn count_decisions(metrics: &crate::metrics::Metrics, audited: &[decision::AuditedStatement]) {
    for a in audited {
        metrics.statement(&a.kind, a.action);
        for (rule, action) in &a.rules {
            match (a.action, action.as_str()) {
                ("reject", "reject" | "rewrite") => metrics.rejection(rule),
                ("rewrite", "rewrite") => metrics.rewrite(rule),
                _ => {}
            }
        }
    }
}

/// SQLSTATE and message of a session that could not start: the server's own for a refusal,
/// else those of the report ddlgate sends.
fn refusal_outcome(error: &SessionError) -> (String, String) {
    match error {
        SessionError::Refused { code, message } => (code.clone(), message.clone()),
        other => (
            other.client_report().map_or("08006", |r| r.code).to_owned(),
            other.to_string(),
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::asks_for_replication;

    #[test]
    fn replication_is_asked_for_by_anything_but_a_false_boolean() {
        for yes in [
            "database", "true", "on", "1", "yes", "t", "DATABASE", "maybe",
        ] {
            assert!(asks_for_replication(yes), "{yes}");
        }
        for no in [
            "false", "f", "fal", "off", "of", "0", "no", "n", "OFF", " false ",
        ] {
            assert!(!asks_for_replication(no), "{no}");
        }
    }
}
