//! The watch over what a session holds back: each held state of the table in the session's
//! module docs, since when, and a report (log line, `ddlgate_held_long_total{held}`) after
//! [`HELD_REPORT_AFTER`] and again at every doubling. The watch observes; it never cuts a state
//! short.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::Session;

/// After how long something held back is reported (log line and
/// `ddlgate_held_long_total`), and then again at every doubling.
pub(super) const HELD_REPORT_AFTER: Duration = Duration::from_secs(10);

/// What a session holds back: the states of the table in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    /// A request that needs the policy waits for earlier requests' answers.
    Pending,
    /// A large request is being planned on the planning threads.
    Planning,
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
            Self::Planning => "planning",
            Self::Governed => "governed",
            Self::Backoff => "backoff",
            Self::AuditWait => "audit",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Pending => "a request that needs the policy until earlier requests are answered",
            Self::Planning => "a large request while the planning threads plan it",
            Self::Governed => "a governed request's answer until the server finishes it",
            Self::Backoff => "a governed request between attempts",
            Self::AuditWait => "an answer until the audit trail confirms its records",
        }
    }

    /// What ends it: never the client sending more.
    fn exit(self) -> &'static str {
        match self {
            Self::Pending => "the server's ReadyForQuery (COPY data flows past)",
            Self::Planning => "the planning threads' answer",
            Self::Governed => "the server's ReadyForQuery or CopyInResponse",
            Self::Backoff => "the retry timer",
            Self::AuditWait => "the writer's confirmation or the audit wait limit",
        }
    }
}

/// The watch over what a session holds back.
pub(super) struct Watch {
    holding: Holding,
    since: Instant,
    /// How many times it has been reported.
    reports: u32,
    /// Fires at the next report.
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
}

impl Session {
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
        } else if self.planning.is_some() {
            Some(Holding::Planning)
        } else if self.pending.is_some() {
            Some(Holding::Pending)
        } else {
            None
        }
    }

    /// Starts, keeps or ends the watch after an event: a new reason starts a new watch.
    pub(super) fn rewatch(&mut self) {
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
    pub(super) fn report_held_long(&mut self) {
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
}
