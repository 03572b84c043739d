//! The proxy: accepts clients, opens one upstream connection per session, and pumps the
//! protocol between them. It joins the wire layer ([`crate::protocol`]) to the policy
//! ([`crate::enforce`] over [`crate::analysis`]) and never looks inside SQL itself.
//!
//! **The life of one governed statement.** The session ([`session`]) reads client bytes and
//! groups them into requests — a `Query`, or extended-protocol messages up to their `Sync`
//! ([`request`], [`session`]'s `assemble`); the review ([`plan::Review::review`]) decodes each
//! message with the wire layer's validating readers and lets plain DML pass at once (the hot
//! path: a pre-filter, no parse). A request that runs DDL is held until every earlier request
//! has been answered, so that the transaction state ([`tx`], from the server's
//! `ReadyForQuery`) is exact; then the planner ([`plan::plan`]) asks the policy for a decision
//! and writes a [`program::Program`]: the timeouts to apply, the steps of a rewrite, the
//! client's request as it goes up, and the statements to audit. The executor
//! ([`conductor::Conductor`]) runs it: ddlgate's own statements ([`sql`]) and their answers
//! stay hidden, the request's answer is held back while a retry after `lock_not_available` is
//! possible (large rows and COPY stream through), the audit records are written before the
//! client is answered, and a failed concurrent build is cleaned up. The server's answer then
//! reaches the client, and what the program taught the engine is kept or forgotten by how it
//! ended.
//!
//! | module | job |
//! |---|---|
//! | [`session`] | one client session: startup, request assembly and review, driving programs, the watch over held states, the fast lane for ordinary traffic, closing |
//! | [`plan`] | review (every request) and planning (held requests) |
//! | [`program`] | the contract between planner and executor: data only |
//! | [`conductor`] | the executor: ddlgate's statements, answers, retries, audit hand-off, cleanup |
//! | [`sql`] | every statement ddlgate itself sends |
//! | [`tx`], [`state`] | transaction truth from the server; what a session knows |
//! | [`handshake`], [`upstream`], [`cancel`] | startup and authentication relay, the upstream connection, cancel keys |
//! | [`request`], [`client_text`], [`outbox`], [`stream`] | request spans, client encodings, write queues, plain or TLS sockets |
//! | [`workers`], [`phase`], [`http`] | worker threads, shutdown phases, metrics and health endpoints |
//!
//! Lifecycle: [`Server::bind`] checks the listen address; [`Server::run`] accepts until the
//! [`Shutdown`] drain signal, then stops accepting, lets each session finish what it is doing
//! (a session closes as soon as it is idle: no request in flight, no transaction open), and at
//! the drain deadline (or on the terminate signal) closes the rest with SQLSTATE 57P01.

pub(crate) mod cancel;
pub(crate) mod catalog;
pub(crate) mod client_text;
pub(crate) mod conductor;
pub(crate) mod error;
pub(crate) mod handshake;
pub(crate) mod http;
pub(crate) mod outbox;
pub(crate) mod phase;
pub(crate) mod plan;
pub(crate) mod program;
pub(crate) mod request;
pub(crate) mod routines;
pub(crate) mod sched;
pub(crate) mod session;
pub(crate) mod sql;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod tx;
pub(crate) mod upstream;
pub(crate) mod workers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::audit::Auditor;
use crate::audit::file::FileSink;
use crate::audit::table::{TableSink, Tee};
use crate::config::{AuditConfig, ServeConfig};
use cancel::CancelRegistry;
use phase::{Phase, ShutdownPhase};
use workers::{Job, Workers};

/// Connections over the limit that may be in their startup phase at once, to be told
/// "too many clients" (or to carry a cancel request); more are closed without a word.
const OVER_LIMIT_SLOTS: usize = 64;
/// Pause after an accept error such as EMFILE before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long closed sessions may take to say goodbye after the terminate signal.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The listen socket could not be opened.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// The audit trail could not be opened.
    #[error("{0}")]
    Audit(String),
}

/// Signals that stop a running server.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop accepting and close sessions as they become idle.
    pub drain: CancellationToken,
    /// Close every session now (also fired by the server itself at the drain deadline).
    pub terminate: CancellationToken,
}

/// State shared by all sessions of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The validated configuration.
    pub config: Arc<ServeConfig>,
    /// Cancel keys of live sessions.
    pub cancels: Arc<CancelRegistry>,
    /// Fired when shutdown begins.
    pub drain: CancellationToken,
    /// Fired when sessions must close now.
    pub terminate: CancellationToken,
    /// The same two signals as a phase running sessions can check cheaply.
    pub phase: Arc<Phase>,
    next_session_id: AtomicU64,
    /// The audit trail's writer, if one is configured.
    pub audit: Option<Auditor>,
    /// What sessions count.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Threads that plan requests too large to plan on a worker (see [`plan::pool`]).
    pub plan_pool: plan::pool::PlanPool,
    /// Each database's routines that run DDL (see [`routines`]).
    pub routines: routines::RoutineCache,
    /// Where sessions ask for evidence of use, when ddlgate samples `pg_stat_statements`.
    pub evidence: Option<crate::evidence::service::Asker>,
    /// Where sessions count the statements they run, when ddlgate observes them.
    pub observer: Option<Arc<crate::evidence::observe::Observer>>,
}

impl Shared {
    fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A bound, not yet running proxy.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Arc<ServeConfig>,
    auditor: Option<Auditor>,
}

impl Server {
    /// Opens the listen socket.
    pub async fn bind(config: ServeConfig) -> Result<Self, BindError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| BindError::Listen {
                    addr: config.listen,
                    error,
                })?;
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| BindError::Listen { addr, error })?,
            ),
        };
        let auditor = match &config.audit {
            None => None,
            Some(audit) => Some(open_audit(audit).map_err(BindError::Audit)?),
        };
        Ok(Self {
            listener,
            metrics_listener,
            config: Arc::new(config),
            auditor,
        })
    }

    /// The address metrics are served on, if any (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts what runs beside the sessions: the metrics endpoint (the evidence sampler and
    /// service start with the shared state, on their own thread).
    fn start_side_tasks(&mut self, shared: &Arc<Shared>) {
        if let Some(listener) = self.metrics_listener.take() {
            tokio::spawn(http::serve(listener, Arc::clone(shared)));
        }
    }

    /// The state all sessions share.
    fn shared(&self, shutdown: &Shutdown, plan_pool: plan::pool::PlanPool) -> Arc<Shared> {
        Arc::new(Shared {
            config: Arc::clone(&self.config),
            cancels: Arc::new(CancelRegistry::default()),
            drain: shutdown.drain.clone(),
            terminate: shutdown.terminate.clone(),
            phase: Arc::new(Phase::default()),
            next_session_id: AtomicU64::new(1),
            audit: self.auditor.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            plan_pool,
            routines: routines::RoutineCache::default(),
            observer: self
                .config
                .evidence
                .as_ref()
                .and_then(|e| e.observer.clone()),
            evidence: self.config.evidence.clone().map(|sampling| {
                crate::evidence::service::Asker::start(sampling, shutdown.drain.clone())
            }),
        })
    }

    /// Accepts and serves clients until `shutdown.drain` fires, then drains and returns. Fails
    /// only when it cannot start serving (its worker threads cannot be created).
    pub async fn run(mut self, shutdown: Shutdown) -> io::Result<()> {
        let plan_pool = plan::pool::PlanPool::start()
            .inspect_err(|e| tracing::error!(error = %e, "cannot start the planning threads"))?;
        let shared = self.shared(&shutdown, plan_pool);
        self.start_side_tasks(&shared);
        let sessions = Arc::new(Semaphore::new(self.config.max_connections));
        let over_limit = Arc::new(Semaphore::new(OVER_LIMIT_SLOTS));
        let tracker = TaskTracker::new();
        let workers = match Workers::start(
            self.config.worker_threads,
            self.config.sched_batch,
            &shared,
            &tracker,
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start worker threads");
                return Err(e);
            }
        };
        info!(
            listen = %self.local_addr().map_or_else(|_| self.config.listen.to_string(), |a| a.to_string()),
            upstream = %self.config.upstream,
            tls = self.config.client_tls.is_some(),
            upstream_tls = %self.config.upstream_tls_mode,
            workers = self.config.worker_threads,
            sched_batch = self.config.sched_batch,
            "ddlgate is accepting connections"
        );
        loop {
            let accepted = tokio::select! {
                () = shutdown.drain.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) if is_transient_accept_error(&e) => {
                    debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            tune_socket(&tcp, self.config.tcp_keepalive);
            let (admitted, permit) = if let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() {
                (true, permit)
            } else if let Ok(slot) = Arc::clone(&over_limit).try_acquire_owned() {
                (false, slot)
            } else {
                debug!(%peer, "connection dropped: limit reached and no slot to say so");
                continue;
            };
            match tcp.into_std() {
                Ok(tcp) => workers.dispatch(Job {
                    tcp,
                    peer,
                    admitted,
                    permit,
                }),
                Err(e) => debug!(%peer, error = %e, "cannot hand the connection to a worker"),
            }
        }
        drop(workers.close());
        drop(self.listener);
        shared.phase.advance(ShutdownPhase::Draining);
        tracker.close();
        info!(
            sessions = tracker.len(),
            "stopped accepting; draining sessions"
        );
        tokio::select! {
            () = tracker.wait() => {}
            () = tokio::time::sleep(self.config.shutdown_timeout) => {
                info!(sessions = tracker.len(), "drain deadline passed; closing remaining sessions");
            }
            () = shutdown.terminate.cancelled() => {
                info!(sessions = tracker.len(), "closing remaining sessions now");
            }
        }
        shutdown.terminate.cancel();
        shared.phase.advance(ShutdownPhase::Terminating);
        if tokio::time::timeout(TERMINATE_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!(sessions = tracker.len(), "sessions still closing at exit");
        }
        info!("ddlgate stopped");
        Ok(())
    }
}

/// Accept errors that concern only the connection being accepted.
/// Opens the audit sinks and starts the writer. The chain continues from the file when there
/// is one, otherwise from this instance's last record in the table.
fn open_audit(audit: &AuditConfig) -> Result<Auditor, String> {
    let mut sinks: Vec<Box<dyn crate::audit::Sink>> = Vec::new();
    let mut chain = None;
    match &audit.path {
        Some(path) if path.as_os_str() == "-" => sinks.push(Box::new(crate::audit::StdoutSink)),
        Some(path) => {
            let (sink, resumed) = FileSink::open(path, audit.rotate_bytes, audit.rotate_after)?;
            sinks.push(Box::new(sink));
            chain = Some(resumed);
        }
        None => {}
    }
    if let Some(target) = &audit.table {
        let resume = chain.is_none() && audit.path.is_none();
        let (sink, resumed) = TableSink::start(target, resume)?;
        sinks.push(Box::new(sink));
        if resume {
            chain = resumed;
        }
    }
    let sink: Box<dyn crate::audit::Sink> = if sinks.len() == 1 {
        sinks.remove(0)
    } else {
        Box::new(Tee::new(sinks))
    };
    Auditor::start(
        sink,
        chain.unwrap_or_default(),
        audit.fsync,
        audit.fail_closed,
        audit.anchor.clone(),
    )
    .map_err(|e| format!("cannot start the audit writer: {e}"))
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Sets `TCP_NODELAY` (the protocol is request/response: Nagle would add latency to every
/// small message) and keepalive (so a peer that vanished without a FIN is noticed).
fn tune_socket(tcp: &TcpStream, keepalive: Option<Duration>) {
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if let Some(idle) = keepalive {
        let params = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(10))
            .with_retries(6);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
            debug!(error = %e, "cannot set TCP keepalive");
        }
    }
}
