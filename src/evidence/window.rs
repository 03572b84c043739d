//! How often a statement ran within a window, from `pg_stat_statements`' cumulative counters
//! sampled now and then (pure: no I/O, no clock — times come from the server).
//!
//! `pg_stat_statements` keeps one `calls` counter per statement since it first ran (or since
//! the last reset), with no time of use. Sampling the counter turns it into a series; the calls
//! within a window are the increases between the samples from the last one at or before the
//! window's start (the baseline) to now. The window is therefore rounded out to the samples
//! around it: the count may include calls shortly before the window, never misses one inside
//! it. Everything uncertain errs toward "used":
//!
//! - a counter that went down was reset (`pg_stat_statements_reset()`, a crash): its new value
//!   counts whole, and the count is a lower bound (calls between the last sample and the reset
//!   are gone);
//! - a statement that disappeared (evicted when `pg_stat_statements.max` is exceeded, or reset)
//!   may have run between the last sample that had it and its eviction: it is **possibly used**
//!   when that happened inside the window;
//! - a statement first seen inside the window counts all its calls.

/// One sample of one statement's counter: seconds since the Unix epoch (the server's clock)
/// and `calls`, or `None` when the statement had disappeared by then.
pub(crate) type Sample = (f64, Option<i64>);

/// What the samples say about the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InWindow {
    /// Calls counted inside the window.
    pub(crate) calls: i64,
    /// A reset inside the window may have lost calls: `calls` is a lower bound.
    pub(crate) lower_bound: bool,
    /// The statement disappeared inside the window after its last sample: it may have run
    /// before it went.
    pub(crate) possibly_used: bool,
}

impl InWindow {
    /// Whether the statement ran, or may have run, in the window.
    pub(crate) fn used(&self) -> bool {
        self.calls > 0 || self.possibly_used
    }
}

/// The calls within the window that starts at `baseline` (the last snapshot at or before the
/// window's start), from `samples` in time order. Samples at or before the baseline set the
/// starting value; later ones are steps.
pub(crate) fn calls_since(samples: &[Sample], baseline: f64) -> InWindow {
    let mut out = InWindow::default();
    let mut last: Option<i64> = None;
    for &(at, calls) in samples {
        if at <= baseline {
            last = calls;
            continue;
        }
        match (last, calls) {
            (Some(before), Some(now)) if now >= before => out.calls += now - before,
            (Some(_), Some(now)) => {
                out.calls += now;
                out.lower_bound = true;
            }
            (None, Some(now)) => out.calls += now,
            (Some(_), None) => out.possibly_used = true,
            (None, None) => {}
        }
        last = calls;
    }
    out
}

/// The baseline for a window of `window` seconds ending at `now`: the latest snapshot time at
/// or before `now - window`, from `snapshots` (any order). `None` when observation began
/// inside the window (not enough history yet).
pub(crate) fn baseline(snapshots: &[f64], now: f64, window: f64) -> Option<f64> {
    let start = now - window;
    snapshots
        .iter()
        .copied()
        .filter(|t| *t <= start)
        .fold(None, |best: Option<f64>, t| {
            Some(best.map_or(t, |b| b.max(t)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_after_the_baseline_are_counted() {
        let s = [(0.0, Some(10)), (100.0, Some(15)), (200.0, Some(40))];
        assert_eq!(calls_since(&s, 100.0).calls, 25);
        assert_eq!(calls_since(&s, 0.0).calls, 30);
        assert_eq!(calls_since(&s, 200.0).calls, 0);
        assert!(!calls_since(&s, 200.0).used());
    }

    #[test]
    fn unchanged_counters_mean_no_use() {
        let s = [(0.0, Some(7)), (100.0, Some(7)), (200.0, Some(7))];
        assert!(!calls_since(&s, 50.0).used());
    }

    #[test]
    fn a_reset_counts_the_new_value_as_a_lower_bound() {
        let s = [(0.0, Some(100)), (100.0, Some(3))];
        let c = calls_since(&s, 0.0);
        assert_eq!((c.calls, c.lower_bound), (3, true));
        // Reset to zero and not run since: no calls seen, but calls may have been lost.
        let s = [(0.0, Some(100)), (100.0, Some(0))];
        let c = calls_since(&s, 0.0);
        assert_eq!((c.calls, c.lower_bound, c.used()), (0, true, false));
    }

    #[test]
    fn a_statement_that_disappeared_in_the_window_is_possibly_used() {
        let s = [(0.0, Some(5)), (100.0, None)];
        assert!(calls_since(&s, 0.0).possibly_used);
        assert!(calls_since(&s, 0.0).used());
        // Gone before the window: nothing.
        assert!(!calls_since(&s, 150.0).used());
    }

    #[test]
    fn a_statement_first_seen_in_the_window_counts_whole() {
        let s = [(150.0, Some(9))];
        assert_eq!(calls_since(&s, 100.0).calls, 9);
        // Reappearing after an eviction counts whole too.
        let s = [(0.0, Some(5)), (50.0, None), (150.0, Some(2))];
        assert_eq!(calls_since(&s, 100.0).calls, 2);
    }

    #[test]
    fn the_baseline_is_the_last_snapshot_before_the_window() {
        let snaps = [300.0, 0.0, 100.0, 200.0];
        assert_eq!(baseline(&snaps, 350.0, 200.0), Some(100.0));
        assert_eq!(baseline(&snaps, 300.0, 200.0), Some(100.0));
        assert_eq!(baseline(&snaps, 250.0, 300.0), None);
    }
}
