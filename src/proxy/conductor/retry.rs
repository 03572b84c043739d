//! Retries and their end: an attempt that failed with `lock_not_available` outside a
//! transaction block is tried again after a jittered backoff, up to the policy's count; each
//! attempt is audited, and the final error names the blockers.

use tracing::info;

use crate::audit::record as audit_record;

use super::super::sql;
use super::super::state::SessionState;
use super::{Conductor, LOCK_NOT_AVAILABLE, Op, Running};

/// A seed for the retry jitter.
pub(super) fn seed() -> u64 {
    getrandom::u64().unwrap_or(0x9E37_79B9_7F4A_7C15) | 1
}

impl Conductor {
    /// Whether a failed request is cleaned up before its answer: a rewrite's earlier steps are
    /// taken back and the INVALID index of its concurrent build dropped (not for the client's
    /// own build, whose leftover is dropped only before a retry).
    pub(super) fn cleans_up_on_failure(&self) -> bool {
        (self.probed.is_some() && !self.build_is_own) || !self.undo.is_empty()
    }

    /// A rewrite step or the client's request got its `ReadyForQuery`: retry it, clean up after
    /// it, or deliver its answer.
    pub(super) fn attempt_finished(&mut self, running: Running, state: &SessionState) {
        let lock_not_available = running
            .error
            .as_ref()
            .is_some_and(|(code, _)| code == LOCK_NOT_AVAILABLE);
        // Kept in case no later attempt gets through: then it is the answer.
        self.held_reply = running.buffer.unwrap_or_default();
        if lock_not_available && self.retries_left > 0 && !running.answered {
            self.retry(running.op);
            return;
        }
        let ms = u64::try_from(running.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &running.op {
            Op::Request(_) => {
                self.completions = running.completions;
                self.request_ms = Some(ms);
            }
            Op::Step(_) => {
                let outcome = match &running.error {
                    Some((code, message)) => {
                        audit_record::Outcome::error(code.clone(), message.clone())
                    }
                    None => audit_record::Outcome::ok(running.completions.last().cloned()),
                };
                self.step_log.push((self.attempt, outcome, ms));
            }
            _ => {}
        }
        if self.failure.is_none() {
            self.failure.clone_from(&running.error);
        }
        self.conclude(
            running.op,
            running.error.is_some(),
            lock_not_available,
            state,
        );
    }

    /// The last attempt of `op` is over: go on, or take back what was done; either way the
    /// client gets the held answer (with the blockers named after `lock_not_available`).
    pub(super) fn conclude(
        &mut self,
        op: Op,
        failed: bool,
        lock_not_available: bool,
        state: &SessionState,
    ) {
        // One audit record per client statement: written when the request is over, or when a
        // step failed and the rest will not run; never once per step.
        let audit_now = failed || !matches!(op, Op::Step(_));
        let cleans_up = self.cleans_up_on_failure();
        match op {
            Op::Step(step) => {
                if failed {
                    self.fail(state);
                } else {
                    self.attempt = 1;
                    if let Some(undo) = &step.undo {
                        self.undo.push(sql::undo(undo));
                    }
                }
            }
            _ => {
                if failed && cleans_up {
                    self.fail(state);
                } else {
                    self.after_request(state);
                }
            }
        }
        self.ops.push_front(Op::Deliver);
        if !self.audited.is_empty() && audit_now {
            self.ops.push_front(Op::Audit);
        }
        // After an error in a run ending with Flush the server skips everything until the
        // client's Sync, a query of ddlgate's own included: the blockers stay unnamed.
        if lock_not_available && self.request_answers.is_none() {
            self.ops.push_front(Op::FindBlockers);
        }
    }

    /// Dropping what a timed-out attempt left timed out too (it waits for the same
    /// transactions): the queued attempt would fail on the leftover, so it is not sent; the
    /// whole round (wait, clean up, attempt) is tried again while retries last.
    pub(super) fn cleanup_timed_out(&mut self, state: &SessionState) {
        let Some(pos) = self
            .ops
            .iter()
            .position(|op| matches!(op, Op::Request(_) | Op::Step(_)))
        else {
            return;
        };
        let mut rest = self.ops.split_off(pos);
        let Some(next) = rest.pop_front() else {
            return;
        };
        self.ops = rest;
        if self.retries_left > 0 {
            self.retry(next);
        } else {
            self.conclude(next, true, true, state);
        }
    }

    /// `lock_not_available`: wait, clean up what the attempt left (an INVALID index), and send
    /// the same statement again.
    pub(super) fn retry(&mut self, op: Op) {
        self.retries_left -= 1;
        self.outcome.retries += 1;
        let exponent = self.attempt.saturating_sub(1).min(20);
        let base = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.retry.max_backoff);
        // Full jitter over the upper half: sessions retrying together spread out.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let fraction = 0.5 + f64::from(u32::try_from(self.jitter % 1000).unwrap_or(0)) / 2000.0;
        let pause = base.mul_f64(fraction);
        self.attempt += 1;
        info!(parent: &self.span, attempt = self.attempt, pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "lock_not_available: retrying");
        let looks = match &op {
            Op::Request(_) => self.request_looks,
            Op::Step(step) => self.looks && step.class == Some(crate::enforce::Class::Brief),
            _ => false,
        };
        self.ops.push_front(op);
        if looks {
            self.ops.push_front(Op::LookForBlockers);
        }
        if let Some((_, table)) = &self.probed {
            self.ops
                .push_front(Op::DropNewInvalidIndexes(table.clone()));
        }
        self.ops.push_front(Op::Wait(pause));
    }
}
