//! How the threads that serve sessions are scheduled: Linux's `SCHED_BATCH` by default.
//!
//! Nearly everything such a thread does is woken by a peer that has just sent something and is
//! about to block waiting for the answer: a client that sent a query, a server that sent its
//! result. Under the default policy the woken thread often preempts that peer in the few
//! microseconds before it would have blocked anyway, and the peer must then be switched back
//! in to reach its `recv`: two context switches per message that buy nothing. `SCHED_BATCH`
//! is the same fair scheduling (same share of CPU, same nice value) without that wake-up
//! preemption, so the thread runs when the peer blocks, usually with more work waiting.
//! Measured on the 2-core machine where pgbench, PostgreSQL and the proxy share the cores, the
//! same build with and without it in alternated rounds: 3–13 % less CPU per transaction at 1
//! and 8 clients and more throughput at 8, little change at 32 (the README's performance
//! section has the numbers and the commands).
//!
//! The cost is on a machine whose cores are all busy with work that does not block: a woken
//! serving thread waits for the running task's turn to end (at most one scheduler slice, a few
//! milliseconds) instead of preempting it. `sched_batch = false` keeps the default policy.
//!
//! Only the worker and fast-lane threads change; the acceptor, the audit and evidence threads
//! keep the policy ddlgate was started with.

use tracing::warn;

/// Puts the calling thread under `SCHED_BATCH` when `batch` is set; a refusal (a seccomp
/// profile, another kernel) is logged and the thread keeps its policy.
pub(crate) fn serving_thread(batch: bool) {
    if !batch {
        return;
    }
    if let Err(e) = set_batch() {
        warn!(error = %e, "cannot schedule a serving thread under SCHED_BATCH; it keeps the default policy");
    }
}

#[cfg(target_os = "linux")]
fn set_batch() -> std::io::Result<()> {
    // Linux applies sched_setscheduler(0, …) to the calling thread, and keeps its nice value.
    scheduler::set_self_policy(scheduler::Policy::Batch, 0)
        .map_err(|()| std::io::Error::last_os_error())
}

#[cfg(not(target_os = "linux"))]
fn set_batch() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SCHED_BATCH exists on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::serving_thread;

    /// The scheduling policy of the calling thread, from `/proc/thread-self/stat` (field 41).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; fields after it start past its `)`.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    /// `SCHED_BATCH` in Linux's numbering.
    const BATCH: u32 = 3;

    #[test]
    fn a_serving_thread_runs_under_sched_batch_unless_turned_off() {
        let inherited = policy();
        assert_ne!(inherited, BATCH, "the test must start under another policy");
        let batch = std::thread::spawn(|| {
            serving_thread(true);
            policy()
        });
        let normal = std::thread::spawn(|| {
            serving_thread(false);
            policy()
        });
        assert_eq!(batch.join().unwrap(), BATCH);
        assert_eq!(normal.join().unwrap(), inherited);
        // Only the thread that asked changed.
        assert_eq!(policy(), inherited);
    }
}
