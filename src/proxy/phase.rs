//! The server's shutdown phase, as sessions see it.
//!
//! A running session checks the phase on every wake-up, so the check is one atomic load. To be
//! woken when the phase changes, a session registers its task's waker once (a task's waker does
//! not change on the single-threaded worker runtimes), and every change wakes all registered
//! sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ShutdownPhase {
    /// Serving normally.
    Running = 0,
    /// Shutdown has begun: sessions close as soon as they are idle.
    Draining = 1,
    /// The drain deadline has passed: sessions close now.
    Terminating = 2,
}

/// The phase and the sessions to wake when it changes.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    value: AtomicU8,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Phase {
    /// The current phase.
    pub(crate) fn get(&self) -> ShutdownPhase {
        match self.value.load(Ordering::Acquire) {
            0 => ShutdownPhase::Running,
            1 => ShutdownPhase::Draining,
            _ => ShutdownPhase::Terminating,
        }
    }

    /// Moves forward to `phase` (never back) and wakes every watching session.
    pub(crate) fn advance(&self, phase: ShutdownPhase) {
        self.value.fetch_max(phase as u8, Ordering::AcqRel);
        for waker in self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            waker.wake_by_ref();
        }
    }

    /// Wakes `waker` at every phase change until the returned guard is dropped.
    pub(crate) fn watch(self: &Arc<Self>, id: u64, waker: &Waker) -> PhaseWatch {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, waker.clone());
        PhaseWatch {
            phase: Arc::clone(self),
            id,
        }
    }
}

/// A session's registration for phase changes.
#[derive(Debug)]
pub(crate) struct PhaseWatch {
    phase: Arc<Phase>,
    id: u64,
}

impl Drop for PhaseWatch {
    fn drop(&mut self) {
        self.phase
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn advancing_wakes_watchers_and_never_goes_back() {
        let phase = Arc::new(Phase::default());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let watch = phase.watch(7, &waker);
        assert_eq!(phase.get(), ShutdownPhase::Running);
        phase.advance(ShutdownPhase::Terminating);
        phase.advance(ShutdownPhase::Draining);
        assert_eq!(phase.get(), ShutdownPhase::Terminating);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        drop(watch);
        phase.advance(ShutdownPhase::Terminating);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }
}
