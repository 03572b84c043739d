//! Looking before queueing: before a statement whose lock blocks the application's reads or
//! writes is sent, ddlgate asks on the session's connection which other transactions hold (or
//! wait for) a conflicting lock on its tables and are not about to end. While one does,
//! ddlgate waits — polling with backoff, never holding a place in the lock queue, so the
//! application's queries keep running — up to the policy's `lock_wait.max_wait` for the whole
//! request, telling the client whom it waits for at most every `notice_interval`. Then the
//! statement is sent under the brief class's short `lock_timeout`: a transaction that began
//! between the look and the attempt stalls the application at most that long, and the attempt
//! that times out is retried (outside a transaction block), looking again first.
//!
//! "Not about to end": a transaction younger than that `lock_timeout` that is not idle is not
//! waited for — on a busy table there is always one, and it ends within the attempt. Where the
//! role cannot see other roles' transaction ages (no `pg_read_all_stats`), age is observed
//! instead: a transaction holding a conflicting lock at the first look is waited for until it
//! ends or has been seen for that `lock_timeout` (then it is old); one that appears at a later
//! look began after the look before.
//!
//! A failed look (or a failed transaction, where the server answers nothing) sends the
//! statement at once, as without looking.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::{info, warn};

use crate::protocol::reply::Report;

use super::answers::Running;
use super::{Conductor, Op};

/// The first pause between two looks; doubled after each, up to [`MAX_POLL`].
pub(super) const FIRST_POLL: Duration = Duration::from_millis(25);
/// The longest pause between two looks: a blocker that ends is noticed within it.
const MAX_POLL: Duration = Duration::from_millis(500);

impl Conductor {
    /// The answer to a look: go on, or wait and look again.
    pub(super) fn looked(&mut self, running: Running) {
        if let Some((code, message)) = &running.error {
            warn!(parent: &self.span, %code, %message, "could not look for lock holders; sending the statement at once");
            return;
        }
        let now = Instant::now();
        let young = self.audit_timeouts.brief.lock_timeout;
        let first_look = !self.lock_looked;
        self.lock_looked = true;
        let mut blockers = Vec::new();
        let mut undecided_until: Option<Instant> = None;
        let mut seen = HashMap::new();
        for line in running.rows.into_iter().flatten() {
            let mut parts = line.splitn(3, '|');
            let (Some(vxid), Some(old), Some(description)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let first_seen = self.lock_first_seen.get(vxid).copied().unwrap_or(now);
            seen.insert(vxid.to_owned(), first_seen);
            match old {
                "t" => blockers.push(description.to_owned()),
                "f" => {}
                // Its age is not visible to this role: it is old once ddlgate has seen it for
                // as long as the attempt may wait. One that was not there at an earlier look
                // began since; one there at the first look may be of any age: undecided.
                _ if now.duration_since(first_seen) >= young => {
                    blockers.push(description.to_owned());
                }
                _ if first_look || self.lock_there_at_first.contains(vxid) => {
                    if first_look {
                        self.lock_there_at_first.insert(vxid.to_owned());
                    }
                    let decided_at = first_seen + young;
                    undecided_until =
                        Some(undecided_until.map_or(decided_at, |u| u.min(decided_at)));
                }
                _ => {}
            }
        }
        self.lock_first_seen = seen;
        if blockers.is_empty() && undecided_until.is_none() {
            return;
        }
        let left = self.lock_wait.max_wait.saturating_sub(self.lock_waited);
        if left.is_zero() {
            info!(parent: &self.span, blockers = ?blockers, "still blocked after lock_wait.max_wait; attempting under the short lock_timeout");
            if !blockers.is_empty() {
                self.lock_blockers = blockers;
            }
            return;
        }
        let pause = match undecided_until {
            _ if !blockers.is_empty() => {
                let pause = self.lock_poll;
                self.lock_poll = self.lock_poll.saturating_mul(2).min(MAX_POLL);
                pause
            }
            Some(at) => at
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            None => self.lock_poll,
        }
        .min(left);
        self.lock_waited += pause;
        self.ops.push_front(Op::LookForBlockers);
        self.ops.push_front(Op::Wait(pause));
        if blockers.is_empty() {
            return;
        }
        let notice_due = self
            .lock_noticed
            .is_none_or(|at| now.duration_since(at) >= self.lock_wait.notice_interval);
        if notice_due {
            self.lock_noticed = Some(now);
            let mut out = BytesMut::new();
            self.waiting_notice(&blockers).encode(&mut out);
            self.ops.push_front(Op::Say(out.freeze()));
        }
        self.lock_blockers = blockers;
    }

    fn waiting_notice(&self, blockers: &[String]) -> Report {
        let mode = self.lock_mode.map_or("its", |m| m.sql_name());
        Report::notice(format!(
            "waiting without queueing for the {mode} lock on {}: {} older transaction{} hold{} a conflicting lock",
            self.relations.join(", "),
            blockers.len(),
            if blockers.len() == 1 { "" } else { "s" },
            if blockers.len() == 1 { "s" } else { "" },
        ))
        .detail(blockers.join("\n"))
        .hint(format!(
            "The application's queries keep running meanwhile. ddlgate waits up to {} in all (lock_wait.max_wait), then tries under lock_timeout {}.",
            humantime::format_duration(self.lock_wait.max_wait),
            humantime::format_duration(self.audit_timeouts.brief.lock_timeout),
        ))
    }

    /// How long the request waited for blockers, and for whom (the last look's answer).
    pub(super) fn lock_wait_summary(&self) -> Option<(u64, Vec<String>)> {
        (!self.lock_waited.is_zero()).then(|| {
            (
                u64::try_from(self.lock_waited.as_millis()).unwrap_or(u64::MAX),
                self.lock_blockers.clone(),
            )
        })
    }
}
