//! Planning large requests off the worker threads.
//!
//! A session's worker thread serves many sessions; parsing and analysing a governed request of
//! several megabytes there stalls all of them (measured with `benches/stall.py`: a 10 MB
//! governed statement held one worker for about 300 ms at a time). Requests larger than
//! [`PLAN_OFF_THREAD_ABOVE`] are therefore reviewed without a parse (they are held, which is
//! the stricter choice) and planned on a small fixed pool of threads of their own — fixed,
//! because `libpg_query` leaks a pthread key for every thread that ever parses. Small requests,
//! all of ordinary traffic, stay on the worker: handing them over would cost more than it
//! saves.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::analysis::Context;
use crate::config::policy::Settings;

use super::super::program::Program;
use super::super::state::SessionState;
use super::super::tx::Since;
use super::{Held, Review};

/// Requests larger than this (bytes) are planned on the pool, and their text is not parsed
/// during the review.
pub(crate) const PLAN_OFF_THREAD_ABOVE: usize = 256 * 1024;

/// Threads in the pool: large governed requests are rare, and two let one wait while the
/// other works.
const THREADS: usize = 2;

/// Everything [`super::plan`] needs, moved to the pool and back.
#[derive(Debug)]
pub(crate) struct Job {
    /// The held request.
    pub held: Held,
    /// A copy of the session's state.
    pub state: SessionState,
    /// The session's review, moved out while the job runs.
    pub review: Review,
    /// The session's engine context, moved out while the job runs.
    pub ctx: Box<Context>,
    /// The settings in force.
    pub settings: Settings,
    /// A pipeline is open.
    pub unsynced: bool,
    /// Transaction boundaries since the last plan.
    pub since: Since,
}

/// A planned request, with the review and context it was planned with (to go back into the
/// session).
#[derive(Debug)]
pub(crate) struct Planned {
    /// The program.
    pub program: Program,
    /// The session's review.
    pub review: Review,
    /// The session's engine context.
    pub ctx: Box<Context>,
}

impl Job {
    /// Plans it here.
    pub(crate) fn run(mut self) -> Planned {
        let program = super::plan(
            self.held,
            &self.state,
            &mut self.review,
            &mut self.ctx,
            &self.settings,
            self.unsynced,
            self.since,
        );
        Planned {
            program,
            review: self.review,
            ctx: self.ctx,
        }
    }
}

type Queued = (Job, oneshot::Sender<Box<Planned>>);

/// The pool: a queue and its threads.
#[derive(Debug)]
pub(crate) struct PlanPool {
    jobs: Mutex<mpsc::Sender<Queued>>,
}

impl PlanPool {
    /// Starts the pool's threads.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Queued>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..THREADS {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("ddlgate-plan-{n}"))
                .stack_size(crate::analysis::STACK_SIZE)
                .spawn(move || {
                    loop {
                        // The lock is held only to take one job.
                        let next = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok((job, done)) = next else {
                            // The server is gone.
                            return;
                        };
                        let _ = done.send(Box::new(job.run()));
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(jobs),
        })
    }

    /// Queues a job; its plan arrives on the receiver. When the pool is gone the job comes
    /// back, to be planned in place.
    #[expect(
        clippy::result_large_err,
        reason = "the job is moved in and must come back whole when it cannot be queued"
    )]
    pub(crate) fn submit(&self, job: Job) -> Result<oneshot::Receiver<Box<Planned>>, Job> {
        let (done, planned) = oneshot::channel();
        let Ok(jobs) = self.jobs.lock() else {
            return Err(job);
        };
        match jobs.send((job, done)) {
            Ok(()) => Ok(planned),
            Err(mpsc::SendError((job, _))) => Err(job),
        }
    }
}
