//! Driving a held request: once the session is quiet, it is planned ([`super::super::plan`]) and
//! its program run by the [`Conductor`]; when the program is over, what it taught the engine is
//! kept or forgotten by how it ended, and its outcome counted.

use bytes::Bytes;

use crate::config::policy::Action;

use crate::protocol::backend::TxStatus;
use crate::protocol::frontend::FLUSH_MESSAGE;

use super::super::cancel::Registration;
use super::super::catalog;
use super::super::conductor::{Conductor, Outcome};
use super::super::error::SessionError;
use super::super::plan::{
    self, Held,
    pool::{Job, PLAN_OFF_THREAD_ABOVE, Planned},
};
use super::super::program::AuditedStatement;
use super::super::program::Program;
use super::super::routines;
use super::{AUDIT_WAIT_LIMIT, CatalogRead, EvidenceRead, Session, fill_identity};

/// The rules the evidence of use decides under `settings`: those of its `[evidence]` that are
/// on.
fn evidence_rules(settings: &crate::config::policy::Settings) -> Vec<crate::analysis::RuleId> {
    crate::config::policy::EvidenceSettings::RULES
        .iter()
        .copied()
        .filter(|r| settings.evidence.decides(*r) && settings.action(*r) != Action::Allow)
        .collect()
}

/// Counts what a finished (or cut short) program did.
pub(super) fn count_outcome(metrics: &crate::metrics::Metrics, outcome: &Outcome) {
    metrics
        .lock_timeout_retries
        .increment(u64::from(outcome.retries));
    if let Some(d) = outcome.governed_duration {
        metrics.ddl_duration.record(d.as_secs_f64());
    }
}

/// Counts governed statements by kind and action, refusals and rewrites by rule.
pub(super) fn count_decisions(metrics: &crate::metrics::Metrics, audited: &[AuditedStatement]) {
    for a in audited {
        metrics.statement(&a.kind, a.action.as_str());
        for (rule, action) in &a.rules {
            match (a.action, action) {
                (Action::Reject, Action::Reject | Action::Rewrite) => {
                    metrics.rejection(&rule.to_string());
                }
                (Action::Rewrite, Action::Rewrite) => metrics.rewrite(&rule.to_string()),
                _ => {}
            }
        }
    }
}

impl Session {
    /// Moves governed requests along: starts the program of a held request once every earlier
    /// request has been answered, and goes back to the client's later requests when it is over.
    pub(super) fn drive(&mut self) -> Result<(), SessionError> {
        loop {
            if let Some(conductor) = self.conductor.as_mut() {
                conductor.advance(&mut self.to_upstream, &mut self.to_client, &mut self.state);
                if let Some(mut records) = conductor.take_audit() {
                    for record in &mut records {
                        fill_identity(record, &self.state, self.profile.as_deref());
                    }
                    match &self.shared.audit {
                        Some(auditor) => {
                            self.audit_wait = Some((
                                auditor.record_and_wait(records),
                                Box::pin(tokio::time::sleep(AUDIT_WAIT_LIMIT)),
                            ));
                        }
                        None => conductor.audited(Ok(()), false),
                    }
                    continue;
                }
                if !conductor.is_finished() {
                    if conductor.wants_copy_data() {
                        return self.on_client_data();
                    }
                    return Ok(());
                }
                if let Some(done) = self.conductor.take() {
                    let outcome = done.into_outcome();
                    if std::mem::take(&mut self.reading_routines) {
                        self.routines_read(outcome.catalog.as_deref());
                    }
                    if std::mem::take(&mut self.routines_changed) {
                        self.shared.routines.invalidate(&self.state.database);
                        self.routines_due = tokio::time::Instant::now();
                    }
                    if let Some(CatalogRead::Running(lookups)) = self.catalog_read.take() {
                        let catalog = outcome
                            .catalog
                            .as_deref()
                            .map(|answer| catalog::read(answer, &lookups))
                            .unwrap_or_default();
                        self.catalog_read = Some(CatalogRead::Done(catalog));
                    }
                    // The conductor read the answer itself: the pipeline is quiet now, still
                    // open after a run that ended with Flush, skipping to Sync after an error.
                    self.unsynced = outcome.pipeline_open;
                    self.pipeline_expected = 0;
                    self.backend
                        .reset_pipeline(outcome.pipeline_open && outcome.request_failed);
                    count_outcome(&self.shared.metrics, &outcome);
                    self.finish_program(&outcome);
                    if outcome.deferred_restore.is_some() {
                        self.deferred_restore = outcome.deferred_restore;
                    }
                }
                if self.pending.is_none() {
                    // Requests that arrived meanwhile were left unscanned. (Scanning them may
                    // start a read of the routines first: that conductor runs now.)
                    self.on_client_data()?;
                    if self.pending.is_none() && self.conductor.is_none() {
                        return Ok(());
                    }
                }
                continue;
            }
            if self.pending.is_none() || self.state.awaiting_ready > 0 {
                return Ok(());
            }
            if !self.pipeline_quiet() {
                // The server sends a pipeline's answers only when flushed, and the client's
                // own Flush or Sync is in the held request: ask for them (Flush has no answer
                // of its own), or the held request would wait for ever.
                if !self.pipeline_flushed {
                    self.to_upstream.push(Bytes::from_static(FLUSH_MESSAGE));
                    self.pipeline_flushed = true;
                }
                return Ok(());
            }
            self.pipeline_flushed = false;
            if let Some(saved) = self.deferred_restore.take() {
                if self.state.tx_status == TxStatus::Idle && !self.unsynced {
                    self.conductor = Some(Box::new(Conductor::restore(saved, self.span.clone())));
                    continue;
                }
                self.deferred_restore = Some(saved);
            }
            if self.start_catalog_read() {
                continue;
            }
            match self.evidence_read {
                // Waiting for the evidence of use: the request is planned when it arrives.
                Some(EvidenceRead::Asked(..)) => return Ok(()),
                Some(EvidenceRead::Done(_)) => {}
                None => {
                    if self.start_evidence_read() {
                        return Ok(());
                    }
                }
            }
            let Some(held) = self.pending.take() else {
                return Ok(());
            };
            self.plan_held(held);
            if self.planning.is_some() {
                return Ok(());
            }
        }
    }

    /// The rules the session's policy (its profile) has on; none in observe mode, where no
    /// catalog fact could change a decision.
    fn enabled_rules(&self) -> Vec<crate::analysis::RuleId> {
        let policy = self.shared.config.policy.current();
        plan::settings_for(&policy, &self.state).1.enabled_rules()
    }

    /// Starts reading the database's routines that run DDL when the session's copy is due and
    /// no newer one is shared (see [`routines`]); returns whether it did. Only in a quiet
    /// moment: nothing in flight, no pipeline open, no failed transaction.
    pub(super) fn start_routines_read(&mut self) -> bool {
        let now = self
            .on_lane
            .woke_at
            .unwrap_or_else(tokio::time::Instant::now);
        let generation = self.shared.routines.generation();
        if now < self.routines_due && generation == self.routines_generation {
            return false;
        }
        self.routines_generation = generation;
        if let Some(fresh) = self.shared.routines.fresh(&self.state.database) {
            self.state.routines = fresh;
            self.routines_due = now + routines::REFRESH / 6;
            return false;
        }
        let quiet = self.state.awaiting_ready == 0
            && !self.unsynced
            && self.state.tx_status != TxStatus::Failed
            && self.conductor.is_none()
            && self.pending.is_none()
            && self.planning.is_none();
        if !quiet {
            self.routines_due = now + std::time::Duration::from_secs(1);
            return false;
        }
        if self.enabled_rules().is_empty() {
            self.routines_due = now + routines::REFRESH;
            return false;
        }
        self.conductor = Some(Box::new(Conductor::read_catalog(
            super::super::sql::routine_definitions().to_owned(),
            self.span.clone(),
        )));
        self.reading_routines = true;
        true
    }

    /// The routines' read is over: the session and every other of its database take the
    /// result (a failed read leaves the copy as it was, and is tried again later).
    fn routines_read(&mut self, answer: Option<&str>) {
        self.routines_due = tokio::time::Instant::now() + routines::REFRESH;
        let Some(answer) = answer else {
            return;
        };
        let read = std::sync::Arc::new(routines::read(answer, self.state.server_major()));
        self.shared
            .routines
            .store(&self.state.database, std::sync::Arc::clone(&read));
        self.state.routines = read;
    }

    /// Starts reading the catalog facts the pending request is to be planned with, when it
    /// names relations and a read is possible (see [`catalog`]); returns whether it did.
    fn start_catalog_read(&mut self) -> bool {
        if self.catalog_read.is_some() {
            return false;
        }
        let Some(held) = self.pending.as_ref() else {
            return false;
        };
        if self.state.tx_status == TxStatus::Failed || self.unsynced {
            return false;
        }
        // Facts only change what rules decide: with every rule off (observe mode) there is
        // nothing to look up for.
        let rules = self.enabled_rules();
        if rules.is_empty() {
            return false;
        }
        let utf8 = self
            .state
            .parameter("client_encoding")
            .is_none_or(|e| e.eq_ignore_ascii_case("UTF8") || e.eq_ignore_ascii_case("UNICODE"));
        let lookups = catalog::lookups_for(held, &self.state, &rules, utf8);
        if lookups.is_empty() {
            return false;
        }
        self.conductor = Some(Box::new(Conductor::read_catalog(
            catalog::query(&lookups),
            self.span.clone(),
        )));
        self.catalog_read = Some(CatalogRead::Running(lookups));
        true
    }

    /// Asks for the evidence of use about the tables and columns the pending request drops,
    /// renames or retypes, when ddlgate samples `pg_stat_statements` and the session's policy
    /// lets the evidence decide a rule that is on; returns whether it asked.
    fn start_evidence_read(&mut self) -> bool {
        let Some(asker) = self.shared.evidence.as_ref() else {
            return false;
        };
        let Some(held) = self.pending.as_ref() else {
            return false;
        };
        if self.state.tx_status == TxStatus::Failed {
            return false;
        }
        let policy = self.shared.config.policy.current();
        let (_, settings) = plan::settings_for(&policy, &self.state);
        if evidence_rules(&settings).is_empty() {
            return false;
        }
        let mut targets = Vec::new();
        for (_, parsed) in &held.parsed {
            for statement in &parsed.statements {
                if let Ok(node) = &statement.tree {
                    for target in crate::analysis::usage::targets(node) {
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                }
            }
        }
        if targets.is_empty() {
            return false;
        }
        let window = crate::evidence::judge::Window {
            window: settings.evidence.window,
            min_observation: settings.evidence.min_observation,
        };
        let answer = asker.ask(&self.state.database, targets.clone(), window);
        self.evidence_read = Some(EvidenceRead::Asked(
            answer,
            Box::pin(tokio::time::sleep(crate::evidence::service::ANSWER_LIMIT)),
            targets,
        ));
        true
    }

    /// Plans a held request now that the session is quiet: in place, or — when it is large —
    /// on the planning threads, which send the program back ([`Self::planned`]).
    fn plan_held(&mut self, held: Held) {
        // The facts read for this request, and only for it.
        self.analysis.catalog = match self.catalog_read.take() {
            Some(CatalogRead::Done(catalog)) => catalog,
            _ => crate::analysis::catalog::Catalog::default(),
        };
        self.sync_may_follow_copy = false;
        let policy = self.shared.config.policy.current();
        let (profile, settings) = plan::settings_for(&policy, &self.state);
        // The evidence asked for this request, and only for it.
        self.analysis.evidence = match self.evidence_read.take() {
            Some(EvidenceRead::Done(found)) => crate::analysis::usage::Evidences {
                rules: evidence_rules(&settings),
                found,
            },
            _ => crate::analysis::usage::Evidences::default(),
        };
        self.profile = profile;
        self.lessons = Some(self.analysis.lasting_marks());
        let since = self.state.tx.take();
        let job = Job {
            held,
            state: self.state.clone(),
            review: std::mem::take(&mut self.review),
            ctx: std::mem::take(&mut self.analysis),
            settings,
            unsynced: self.unsynced,
            since,
        };
        let job = if job.held.bytes.len() > PLAN_OFF_THREAD_ABOVE {
            tracing::debug!(parent: &self.span, bytes = job.held.bytes.len(), "planning a large request off the worker");
            match self.shared.plan_pool.submit(job) {
                Ok(planned) => {
                    self.planning = Some(planned);
                    return;
                }
                Err(job) => job,
            }
        } else {
            job
        };
        let Planned {
            program,
            review,
            ctx,
        } = job.run();
        self.review = review;
        self.analysis = ctx;
        self.analysis.evidence = crate::analysis::usage::Evidences::default();
        self.start_program(program);
    }

    /// A large request came back from the planning threads: its program starts.
    pub(super) fn planned(&mut self, planned: Option<Box<Planned>>) -> Result<(), SessionError> {
        let Some(planned) = planned else {
            return Err(SessionError::PlanningStopped);
        };
        let Planned {
            program,
            review,
            ctx,
        } = *planned;
        self.review = review;
        self.analysis = ctx;
        self.analysis.evidence = crate::analysis::usage::Evidences::default();
        self.start_program(program);
        Ok(())
    }

    /// Starts the conductor on a planned program — or on its refusal, when the audit trail
    /// is known broken and `audit_fail_closed` is on.
    fn start_program(&mut self, program: Program) {
        self.routines_changed = program
            .audited
            .iter()
            .any(|a| routines::may_change_routines(&a.kind));
        if self.routines_changed {
            // Now, and again when the program is over: the client may have its answer (and
            // another session call the routine) before the program's last statement of its
            // own has run.
            self.shared.routines.invalidate(&self.state.database);
        }
        {
            count_decisions(&self.shared.metrics, &program.audited);
            let audit = self.shared.audit.as_ref();
            if let Some(auditor) =
                audit.filter(|a| a.fail_closed && !a.is_healthy() && !program.audited.is_empty())
            {
                let why = format!(
                    "The last audit write failed ({} record(s) lost since start); audit_fail_closed is on.",
                    auditor.write_errors()
                );
                self.conductor = Some(Box::new(Conductor::refuse(
                    program,
                    self.span.clone(),
                    &why,
                )));
            } else {
                self.cancels_at_program_start = self
                    .registration
                    .as_ref()
                    .map_or(0, Registration::cancel_requests);
                self.conductor = Some(Box::new(Conductor::new(
                    program,
                    self.span.clone(),
                    audit.is_some(),
                )));
            }
        }
    }

    /// Brings the engine's context up to date once a planned program is over. The plan
    /// recorded its statements as if they all succeeded; the server has now answered:
    /// - a failed program taught nothing that lasts (its transaction, if still open, is
    ///   failed and can only roll back);
    /// - with no transaction open now, the transaction the request ran in is over (committed
    ///   unless it failed), so none of its facts may reach the next request;
    /// - boundaries the program's own statements crossed are accounted for by the plan.
    pub(super) fn finish_program(&mut self, outcome: &Outcome) {
        let Some(marks) = self.lessons.take() else {
            return;
        };
        if outcome.failed {
            self.analysis.forget_lessons_since(&marks);
        }
        if self.state.tx_status == TxStatus::Idle && !outcome.pipeline_open {
            self.analysis.end_transaction(!outcome.failed);
        }
        let _ = self.state.tx.take();
    }
}
