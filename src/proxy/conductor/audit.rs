//! The audit side of the executor: one record per client statement (a multi-step rewrite is
//! one record with its steps), written before the client is answered; records before a COPY
//! go early so the client's `CopyInResponse` is not held, and a program cut short still records
//! what it did.

use bytes::BytesMut;
use tracing::warn;

use crate::audit::Record;
use crate::audit::record::{
    self as audit_record, LockWaited, OverrideUsed, RuleAction, TimeoutsApplied,
};
use crate::protocol::backend;
use crate::protocol::frame::HEADER_LEN;
use crate::protocol::reply::{self, Fields, Report, field};

use super::super::outbox::Outbox;
use super::super::program::AuditedStatement;
use super::super::state::SessionState;
use super::Conductor;

impl Conductor {
    /// The audit records of a program the session's end cut short before it reached its
    /// audit step (the client vanished, the upstream died): the statements are recorded with
    /// what had completed and, for the rest, an error saying why the session ended — never
    /// silently dropped.
    pub fn records_if_cut_short(&mut self, state: &SessionState, why: &str) -> Option<Vec<Record>> {
        if self.audit_emitted || self.audited.len() <= self.audited_written {
            return None;
        }
        self.audit_emitted = true;
        if self.failure.is_none() {
            // The server's own FATAL (a shutdown, a terminated backend) says more than "the
            // connection closed", and it is what the client was told.
            let server_said = self.held_fatal().and_then(|frame| {
                let fields = Fields::decode(frame.get(HEADER_LEN..)?).ok()?;
                Some((fields.get(field::CODE)?, fields.get(field::MESSAGE)?))
            });
            self.failure = Some(server_said.unwrap_or_else(|| {
                (
                    reply::sqlstate::CONNECTION_FAILURE.to_owned(),
                    format!("the session ended before the statement finished: {why}"),
                )
            }));
        }
        Some(self.records(state))
    }

    /// Once the records written before a COPY are confirmed, the answer held back goes to the
    /// client; when they could not be written (`audit_fail_closed`), the COPY is ended from
    /// ddlgate's side instead.
    pub(super) fn settle_copy(&mut self, to_upstream: &mut Outbox, to_client: &mut Outbox) {
        if std::mem::take(&mut self.abort_copy) {
            let mut out = BytesMut::new();
            crate::protocol::copy::put_copy_fail(
                "ddlgate: the audit trail cannot be written (audit_fail_closed)",
                &mut out,
            );
            if let Some(running) = self.running.as_mut() {
                running.copy_in = false;
                // The client never learns of the COPY: told, it would send data for it and,
                // in the extended protocol, a Sync whose ReadyForQuery nobody expects.
                running.forget_copy_in();
                // After a CopyFail the server skips to the next Sync; the request's own was
                // ignored during the COPY.
                if running.extended {
                    crate::protocol::extended::put_sync(&mut out);
                }
            }
            to_upstream.push(out.freeze());
        }
        if self.release_when_audited && !self.waiting_audit {
            self.release_when_audited = false;
            if let Some(running) = self.running.as_mut() {
                running.release(to_client);
            }
        }
    }

    /// The server asked the client for COPY data in the middle of a request whose answer is
    /// held back (for a retry, for the blockers' names, for the audit trail). Nothing more
    /// can come until the client sends data, and it sends none before it sees the
    /// `CopyInResponse`: the answer so far goes to the client now — after the records of the
    /// statements completed before the COPY are written, so that none is reported done before
    /// it is recorded — and the request can no longer be retried.
    pub(super) fn copy_started(&mut self, to_client: &mut Outbox, state: &SessionState) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let completed = running.completions.len();
        let written = self.audited_written;
        let done = self
            .audited
            .iter()
            .skip(written)
            .take_while(|a| a.position < completed)
            .count();
        if done == 0 {
            running.release(to_client);
            return;
        }
        self.completions.clone_from(&running.completions);
        let audited = self
            .audited
            .get(written..written.saturating_add(done))
            .unwrap_or_default()
            .to_vec();
        self.audit_out = Some(self.records_of(&audited, state));
        self.audited_written = written.saturating_add(done);
        self.waiting_audit = true;
        self.release_when_audited = true;
    }

    /// The audit records of the program's statements, with their outcomes; the session adds
    /// who and where.
    pub(super) fn records(&self, state: &SessionState) -> Vec<Record> {
        self.records_of(
            self.audited.get(self.audited_written..).unwrap_or_default(),
            state,
        )
    }

    pub(super) fn records_of(
        &self,
        audited: &[AuditedStatement],
        state: &SessionState,
    ) -> Vec<Record> {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let failed_at = self.failure.as_ref().map(|_| self.completions.len());
        audited
            .iter()
            .map(|a| {
                let mut r = Record::new(audit_record::event::STATEMENT, 0);
                r.in_transaction = Some(self.in_transaction);
                r.sql = Some(a.sql.clone());
                r.kind = Some(a.kind.clone());
                r.relations.clone_from(&a.relations);
                r.lock.clone_from(&a.lock);
                r.rules = a
                    .rules
                    .iter()
                    .map(|(rule, action)| RuleAction {
                        rule: rule.to_string(),
                        action: *action,
                    })
                    .collect();
                r.action = Some(a.action);
                r.rewritten_sql.clone_from(&a.rewritten_sql);
                r.noop.clone_from(&a.noop);
                r.evidence.clone_from(&a.evidence);
                r.timeouts = a.class.map(|class| {
                    let pair = class.timeouts(&self.audit_timeouts);
                    TimeoutsApplied {
                        class: class.as_str().to_owned(),
                        lock_timeout: crate::config::format_duration(pair.lock_timeout),
                        statement_timeout: crate::config::format_duration(pair.statement_timeout),
                    }
                });
                r.overrides = a
                    .overrides
                    .iter()
                    .map(|(rule, reason)| OverrideUsed {
                        rule: rule.clone(),
                        reason: reason.clone(),
                    })
                    .collect();
                r.attempts = Some(self.attempt);
                r.lock_wait = self
                    .lock_wait_summary()
                    .filter(|_| a.class == Some(crate::enforce::Class::Brief))
                    .map(|(waited_ms, blockers, ended)| LockWaited {
                        waited_ms,
                        blockers,
                        ended,
                    });
                r.outcome = Some(self.outcome_of(a.position, failed_at));
                r.duration_ms = Some(duration_ms);
                if a.rewritten_sql.len() > 1 {
                    r.steps = self.steps_of(a, failed_at);
                }
                let _ = state;
                r
            })
            .collect()
    }

    /// The steps of a multi-step rewrite, in order: each one's SQL, attempts, outcome and
    /// duration; the last step is the client's request in its rewritten form.
    pub(super) fn steps_of(
        &self,
        a: &AuditedStatement,
        failed_at: Option<usize>,
    ) -> Vec<audit_record::Step> {
        let last = a.rewritten_sql.len().saturating_sub(1);
        a.rewritten_sql
            .iter()
            .enumerate()
            .map(|(i, sql)| {
                let (attempts, outcome, duration_ms) = match self.step_log.get(i) {
                    Some((attempts, outcome, ms)) => (Some(*attempts), outcome.clone(), Some(*ms)),
                    None if i == last && self.request_sent => (
                        Some(self.attempt),
                        self.outcome_of(a.position, failed_at),
                        self.request_ms,
                    ),
                    None => (None, audit_record::Outcome::not_run(), None),
                };
                audit_record::Step {
                    sql: sql.clone(),
                    attempts,
                    outcome,
                    duration_ms,
                }
            })
            .collect()
    }

    pub(super) fn outcome_of(
        &self,
        position: usize,
        failed_at: Option<usize>,
    ) -> audit_record::Outcome {
        if let Some(tag) = self.completions.get(position) {
            return audit_record::Outcome::ok(Some(tag.clone()));
        }
        match (&self.failure, failed_at) {
            (Some((code, message)), Some(at)) if position == at || !self.request_sent => {
                audit_record::Outcome::error(code.clone(), message.clone())
            }
            (Some(_), _) => audit_record::Outcome::not_run(),
            (None, _) => audit_record::Outcome::ok(None),
        }
    }

    /// Records for the audit trail, once, when the program reaches them.
    pub fn take_audit(&mut self) -> Option<Vec<Record>> {
        self.audit_out.take()
    }

    /// The audit trail has written the records, or could not. With `fail_closed`, a client
    /// is never told that a statement succeeded when its record was not written: the success
    /// is replaced by ddlgate's error (the statement did run; the error says so).
    pub fn audited(&mut self, result: Result<(), String>, fail_closed: bool) {
        self.waiting_audit = false;
        let Err(why) = result else {
            return;
        };
        warn!(parent: &self.span, error = %why, "audit records not written");
        if !fail_closed {
            return;
        }
        if std::mem::take(&mut self.release_when_audited) {
            // The statements before the COPY ran but are not recorded: end the COPY from
            // ddlgate's side, so the server fails the request (and, outside a transaction
            // block, rolls them back) before the client is told anything.
            self.abort_copy = true;
            return;
        }
        let already_failed = self
            .held_reply
            .iter()
            .any(|m| m.first() == Some(&backend::tag::ERROR_RESPONSE));
        if already_failed {
            return;
        }
        let ready = self
            .held_reply
            .last()
            .filter(|m| m.first() == Some(&backend::tag::READY_FOR_QUERY))
            .cloned();
        let mut out = BytesMut::new();
        Report::audit_unavailable("the statement ran, but its audit record could not be written")
            .detail(format!(
                "{why}. Its effect is in the database; audit.fail_closed refuses to report it as done."
            ))
            .hint("Free space for the audit log (or fix its sink); ddlgate refuses DDL until a record can be written.")
            .encode(&mut out);
        self.held_reply = vec![out.freeze()];
        self.held_reply.extend(ready);
    }
}
