//! A decision becomes request text: the policy's decisions about the statements of one text
//! are applied to it (replacements, refusals as raising `DO` blocks, multi-step rewrites),
//! and what the conductor and the audit trail need is written into the [`Program`].

use crate::analysis::parse;
use crate::analysis::violation::IndexBuild;
use crate::analysis::{Context, Engine};
use crate::config::policy::{Action, Settings};
use crate::enforce::{self, Class, Plan, Situation, Step};
use crate::protocol::reply::Report;

use super::super::client_text::Mapping;
use super::super::program::{AuditedStatement, Program};
use super::ParsedText;

/// Decides about a simple-protocol query string; returns the text that goes upstream.
pub(super) fn decide_query(
    text: &str,
    mapping: Mapping,
    reviewed: Option<ParsedText>,
    engine: &Engine,
    settings: &Settings,
    ctx: &mut Context,
    program: &mut Program,
) -> String {
    ctx.query_string = true;
    let situation = Situation {
        single_statement: true,
    };
    let decisions = match reviewed {
        Some(parsed) => {
            enforce::decide_parsed(engine, settings, text, parsed.statements, ctx, situation)
        }
        None => enforce::decide(engine, settings, text, ctx, situation),
    };
    let mut notices = Vec::new();
    let (sql, class, steps, builds) = apply(text, decisions, &mut notices, program);
    program.notices.extend(notices);
    program.request_class = program.request_class.max(class);
    if !steps.is_empty() {
        program.mapping = mapping;
    }
    program.steps = steps;
    program.request_builds_indexes = builds;
    sql
}

/// Applies the decisions to the text: replaced and refused statements, notices, the class the
/// text runs under, the steps before it and whether it builds indexes concurrently.
pub(super) fn apply(
    text: &str,
    decisions: Vec<enforce::StatementDecision>,
    notices: &mut Vec<Report>,
    program: &mut Program,
) -> (String, Option<Class>, Vec<Step>, Option<IndexBuild>) {
    let mut sql = String::with_capacity(text.len());
    let mut at = 0;
    let mut class = None;
    let mut before = Vec::new();
    let mut builds = None;
    for d in decisions {
        let position = program.statements_seen;
        program.statements_seen += 1;
        if let Some(audited) =
            audited_statement(text, &d, position, program.settings.audit_redact_literals)
        {
            program.audited.push(audited);
        }
        notices.extend(d.notices);
        program.retryable &= !d.transaction_control;
        if !d.relations.is_empty() {
            program.lock_mode = program.lock_mode.max(d.lock_mode);
        }
        for r in d.relations {
            if !program.relations.contains(&r) {
                program.relations.push(r);
            }
        }
        let replacement = match d.plan {
            Plan::Run => {
                class = class.max(d.class);
                // A concurrent build sent as it is: ddlgate's retry must not fail on the
                // INVALID index a timed-out attempt leaves.
                if builds.is_none() && d.builds_indexes.is_some() {
                    builds = d.builds_indexes;
                    program.request_build_is_own = true;
                }
                None
            }
            Plan::Replace(step) => {
                class = class.max(step.class);
                builds = builds.or(step.builds_indexes);
                Some(step.sql)
            }
            Plan::Steps(mut steps) => match steps.pop() {
                Some(last) => {
                    class = class.max(last.class);
                    builds = builds.or(last.builds_indexes);
                    before = steps;
                    Some(last.sql)
                }
                None => None,
            },
            Plan::Reject(message) => Some(enforce::raising_statement(&message)),
        };
        if let Some(replacement) = replacement {
            sql.push_str(text.get(at..d.span.start).unwrap_or_default());
            sql.push_str(&replacement);
            at = d.span.end;
        }
    }
    sql.push_str(text.get(at..).unwrap_or_default());
    (sql, class, before, builds)
}

/// The audit view of a decision, for statements the policy governs: DDL (or dynamic DDL), a
/// rule that fired, an override, a refusal.
fn audited_statement(
    text: &str,
    d: &enforce::StatementDecision,
    position: usize,
    redact: bool,
) -> Option<AuditedStatement> {
    let shown = |sql: &str| {
        if redact {
            parse::redact_literals(sql)
        } else {
            sql.to_owned()
        }
    };
    let refused = matches!(d.plan, Plan::Reject(_));
    if !d.ddl && d.rules.is_empty() && d.overrides.is_empty() && !refused {
        return None;
    }
    let (action, rewritten_sql, class) = match &d.plan {
        Plan::Run if d.rules.is_empty() => (Action::Allow, Vec::new(), d.class),
        Plan::Run => (Action::Warn, Vec::new(), d.class),
        Plan::Replace(step) => (Action::Rewrite, vec![shown(&step.sql)], step.class),
        Plan::Steps(steps) => (
            Action::Rewrite,
            steps.iter().map(|s| shown(&s.sql)).collect(),
            steps.iter().filter_map(|s| s.class).max(),
        ),
        Plan::Reject(_) => (Action::Reject, Vec::new(), None),
    };
    Some(AuditedStatement {
        position,
        sql: shown(text.get(d.span.clone()).unwrap_or_default()),
        kind: d.kind.clone(),
        relations: d.relations.clone(),
        lock: d.lock.clone(),
        rules: d.rules.clone(),
        action,
        rewritten_sql,
        class,
        overrides: d
            .overrides
            .iter()
            .map(|(r, reason)| (r.to_string(), reason.clone()))
            .collect(),
        noop: d.noop.clone(),
        evidence: d.evidence.clone(),
    })
}
