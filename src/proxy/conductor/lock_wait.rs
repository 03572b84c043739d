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
        let Sighting {
            blockers,
            undecided_until,
            to_end,
        } = self.sort_holders(running.rows, now);
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
        if !to_end.is_empty() {
            // End them, then look again soon: their locks go with them.
            self.lock_end_tried
                .extend(to_end.iter().map(|(pid, ..)| *pid));
            self.lock_ending = to_end;
            self.ops.push_front(Op::LookForBlockers);
            self.ops.push_front(Op::Wait(FIRST_POLL));
            self.ops.push_front(Op::EndBlockers(
                self.lock_ending.iter().map(|(pid, ..)| *pid).collect(),
            ));
            self.lock_waited += FIRST_POLL;
            self.lock_blockers = blockers;
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

    /// Which of the transactions a look found are old (blockers), which cannot be told yet,
    /// and which of the old ones the policy says to end.
    fn sort_holders(&mut self, rows: Vec<Option<String>>, now: Instant) -> Sighting {
        let young = self.audit_timeouts.brief.lock_timeout;
        let first_look = !self.lock_looked;
        self.lock_looked = true;
        let mut blockers = Vec::new();
        let mut undecided_until: Option<Instant> = None;
        let mut seen = HashMap::new();
        let mut to_end: Vec<(u32, String, String)> = Vec::new();
        for line in rows.into_iter().flatten() {
            let Some(holder) = Holder::parse(&line) else {
                continue;
            };
            let Holder {
                vxid,
                old,
                description,
                ..
            } = holder;
            if old == "t"
                && let Some(pid) = holder.pid
                && !self.lock_end_tried.contains(&pid)
                && let Some(why) = self
                    .lock_wait
                    .expendable(holder.idle_ms, &holder.application_name)
            {
                to_end.push((pid, description.to_owned(), why));
            }
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
        Sighting {
            blockers,
            undecided_until,
            to_end,
        }
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

    /// The client cancelled its request while ddlgate itself waits (for blockers, or before a
    /// retry), when the server has nothing to cancel: the statement is not sent (again). In
    /// its place goes a statement of ddlgate's that raises the cancel (57014), so the server
    /// ends a transaction block as a cancelled statement would, steps already done are taken
    /// back as after any failure, and the client gets the answer to a cancel. Returns whether
    /// it did.
    pub fn cancel_wait(&mut self) -> bool {
        if self.wake_at.is_none() || self.request_answers.is_some() {
            return false;
        }
        let Some(request) = self.ops.iter().position(|op| matches!(op, Op::Request(_))) else {
            return false;
        };
        let rest = self.ops.split_off(request + 1);
        let cleanup: Vec<Op> = self
            .ops
            .drain(..)
            .filter(|op| matches!(op, Op::DropNewInvalidIndexes(_) | Op::Cleanup(_)))
            .collect();
        let sql = crate::enforce::raising_statement(
            &Report::statement_canceled("canceling statement due to user request").detail(
                "ddlgate was waiting (for a lock without queueing, or before a retry) and did not send the statement.",
            ),
        );
        let mut out = BytesMut::new();
        crate::protocol::query::put_query(
            &super::client_text::encode(&sql, self.mapping),
            &mut out,
        );
        self.ops.extend(cleanup);
        self.ops.push_back(Op::Request(out.freeze()));
        self.ops.extend(rest);
        self.retries_left = 0;
        self.looks = false;
        self.request_looks = false;
        true
    }

    /// The answer to ending blockers: the pids that were ended.
    pub(super) fn ended(&mut self, running: Running) {
        let ending = std::mem::take(&mut self.lock_ending);
        if let Some((code, message)) = &running.error {
            warn!(parent: &self.span, %code, %message, "could not end the blockers the policy names expendable");
            return;
        }
        let ended: Vec<u32> = running
            .rows
            .into_iter()
            .flatten()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        for (pid, description, why) in ending {
            if ended.contains(&pid) {
                info!(parent: &self.span, pid, %description, %why, "ended a blocker");
                self.lock_ended.push(format!("{description}: {why}"));
            } else {
                warn!(parent: &self.span, pid, %description, "not ended: this role may not signal it, or it had ended");
            }
        }
    }

    /// How long the request waited for blockers, for whom (the last look's answer), and whom
    /// it ended.
    pub(super) fn lock_wait_summary(&self) -> Option<(u64, Vec<String>, Vec<String>)> {
        (!self.lock_waited.is_zero()).then(|| {
            (
                u64::try_from(self.lock_waited.as_millis()).unwrap_or(u64::MAX),
                self.lock_blockers.clone(),
                self.lock_ended.clone(),
            )
        })
    }
}

/// What one look found.
struct Sighting {
    /// Old transactions holding or waiting for conflicting locks, described.
    blockers: Vec<String>,
    /// When the first transaction of unknown age will have been seen long enough to tell.
    undecided_until: Option<Instant>,
    /// Blockers the policy says to end: pid, description, why.
    to_end: Vec<(u32, String, String)>,
}

/// One line of [`super::super::sql::lock_conflicts`]'s answer.
struct Holder<'a> {
    vxid: &'a str,
    old: &'a str,
    pid: Option<u32>,
    idle_ms: Option<u64>,
    application_name: String,
    description: &'a str,
}

impl<'a> Holder<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut parts = line.splitn(6, '|');
        let vxid = parts.next()?;
        let old = parts.next()?;
        let pid = parts.next()?.parse().ok();
        let idle_ms = parts.next()?.parse().ok();
        let hex = parts.next()?;
        let description = parts.next()?;
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| hex.get(2 * i..2 * i + 2))
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        Some(Self {
            vxid,
            old,
            pid,
            idle_ms,
            application_name: String::from_utf8_lossy(&bytes).into_owned(),
            description,
        })
    }
}
