//! Thread-per-core execution: a fixed set of worker threads, each running a single-threaded
//! runtime that owns its sessions outright.
//!
//! A session's two sockets are always polled by the thread that owns them, so forwarding a
//! message never wakes another thread. With tokio's work-stealing runtime the same traffic cost
//! a futex wake-up every few queries and about a fifth more CPU per query (measured with
//! pgbench; see benches/). Connections are handed to the worker with the fewest live sessions.
//! The fixed set of threads is also where SQL will be parsed, which `libpg_query` requires (it
//! leaks a thread-local key per thread that ever parses).
//!
//! Each worker also has a fast-lane thread (`session::lane`): its sessions move there while
//! their traffic is ordinary, and are then served from `epoll` directly, without the runtime's
//! per-wake-up cost; they come back to their task for anything else. So a worker is two
//! threads, each owning the sockets it polls at any moment.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, warn};

use super::{Shared, session};

/// An accepted connection on its way to a worker.
#[derive(Debug)]
pub(crate) struct Job {
    /// The client socket, detached from the accepting runtime.
    pub tcp: std::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether it got a session slot, and the slot (or over-limit slot) it holds.
    pub admitted: bool,
    /// Released when the connection's task ends.
    pub permit: OwnedSemaphorePermit,
}

/// One worker: where to send it connections and how many it is serving.
#[derive(Debug)]
struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    load: Arc<AtomicUsize>,
}

/// The worker threads of a server.
#[derive(Debug)]
pub(crate) struct Workers {
    lanes: Vec<Lane>,
    threads: Vec<JoinHandle<()>>,
}

/// Decrements a worker's session count when a session's task ends, however it ends.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` worker threads, each with its lane thread, under `SCHED_BATCH` when
    /// `batch` is set ([`super::sched`]). Each tracks its sessions in `tracker` and, once no
    /// more connections come, waits until the tracker is closed and empty before it exits.
    pub(crate) fn start(
        count: usize,
        batch: bool,
        shared: &Arc<Shared>,
        tracker: &TaskTracker,
    ) -> io::Result<Self> {
        let mut lanes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (jobs, mut inbox) = mpsc::unbounded_channel::<Job>();
            let load = Arc::new(AtomicUsize::new(0));
            let lane = session::lane::start(index, &shared.phase, batch)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let shared = Arc::clone(shared);
            let tracker = tracker.clone();
            let worker_load = Arc::clone(&load);
            let span = tracing::Span::current();
            let thread = std::thread::Builder::new()
                .name(format!("ddlgate-worker-{index}"))
                // Sessions analyse statements on this thread.
                .stack_size(crate::analysis::STACK_SIZE)
                .spawn(move || {
                    super::sched::serving_thread(batch);
                    runtime.block_on(
                        async move {
                            while let Some(job) = inbox.recv().await {
                                let tcp = match TcpStream::from_std(job.tcp) {
                                    Ok(tcp) => tcp,
                                    Err(e) => {
                                        warn!(error = %e, "cannot adopt an accepted connection");
                                        continue;
                                    }
                                };
                                worker_load.fetch_add(1, Ordering::Relaxed);
                                let guard = LoadGuard(Arc::clone(&worker_load));
                                let shared = Arc::clone(&shared);
                                let (peer, admitted, permit) = (job.peer, job.admitted, job.permit);
                                let lane = Some(lane.clone());
                                tokio::spawn(tracker.track_future(async move {
                                    Box::pin(session::serve(tcp, peer, shared, admitted, lane))
                                        .await;
                                    drop(permit);
                                    drop(guard);
                                }));
                            }
                            drop(lane);
                            tracker.wait().await;
                        }
                        .instrument(span),
                    );
                })?;
            lanes.push(Lane { jobs, load });
            threads.push(thread);
        }
        Ok(Self { lanes, threads })
    }

    /// Hands a connection to the least loaded worker.
    pub(crate) fn dispatch(&self, job: Job) {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.load.load(Ordering::Relaxed));
        if let Some(lane) = lane
            && lane.jobs.send(job).is_err()
        {
            warn!("a worker thread has stopped; connection dropped");
        }
    }

    /// Stops handing out connections; the threads finish once their sessions have.
    pub(crate) fn close(self) -> Vec<JoinHandle<()>> {
        drop(self.lanes);
        self.threads
    }
}
