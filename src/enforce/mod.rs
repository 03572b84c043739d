//! Enforcement: what the policy makes of one client request. Pure, like the analysis engine it
//! joins with the policy settings: no I/O, no clock, no sockets.
//!
//! The proxy hands over the text of each statement a request runs, in order, with the
//! [`Context`] of the session; [`decide`] answers per statement with a [`StatementDecision`]:
//! run it as sent, run a safer text in its place, run a sequence of steps (a multi-step
//! rewrite), or refuse it; plus the notices to send and the timeout class it runs under.
//!
//! Decisions taken here, and why:
//! - The strongest action among a statement's violations wins: `reject` over `rewrite` over
//!   `warn`. A rewrite is applied only when exactly one rule asks for one, its fix is marked
//!   safe (an unnamed constraint gets a guessed name, so its fix is not), and the request is
//!   that one statement. Multi-step rewrites (`NOT VALID` then `VALIDATE`, …) also need the
//!   session outside a transaction block, since each step must commit on its own to release
//!   its lock. Otherwise the policy's `rewrite_fallback` applies.
//! - An inline override is honoured when the settings allow it (`on`, or `with-reason` and a
//!   non-empty reason); otherwise the violation stands and the notice says the override was
//!   ignored.
//! - A statement the grammar refuses is left to the server when the server is not newer than
//!   the grammar (PostgreSQL 18): the server refuses it with its own error, exactly as on a
//!   direct connection. On a newer server the policy's `unparsable` action applies, and an
//!   allowed unparsable statement runs under the brief-lock timeouts.
//! - DDL runs under the timeouts of its class: online when every lock it takes blocks neither
//!   reads nor writes, brief otherwise. `DO` and `CALL` that may run DDL get the brief class.

use std::fmt::Write as _;
use std::ops::Range;

use crate::analysis::classify::{Facts, LockTarget};
use crate::analysis::locks::LockMode;
use crate::analysis::parse;
use crate::analysis::rules::lock_detail;
use crate::analysis::violation::{IndexBuild, Undo};
use crate::analysis::{Context, Engine, Override, Report, RuleId, Violation};
use crate::config::policy::{
    Action, Fallback, Overrides, Settings, TimeoutPair, Timeouts, Unparsable,
};
use crate::protocol::reply;

/// The newest PostgreSQL major version whose grammar the parser has.
pub(crate) const GRAMMAR_MAJOR: u32 = 18;

/// Which timeouts a statement runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Takes only locks that block neither reads nor writes: long timeouts.
    Online,
    /// Takes a lock that blocks reads or writes: short timeouts.
    Brief,
}

impl Class {
    /// The class of a statement with these facts, if it needs timeouts at all.
    pub fn of(facts: &Facts) -> Option<Self> {
        if facts.is_online() {
            Some(Self::Online)
        } else if facts.governed() {
            Some(Self::Brief)
        } else {
            None
        }
    }

    /// The policy's timeouts for this class.
    pub fn timeouts(self, timeouts: &Timeouts) -> &TimeoutPair {
        match self {
            Self::Online => &timeouts.online,
            Self::Brief => &timeouts.brief,
        }
    }

    /// Its name in logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Brief => "brief",
        }
    }
}

/// One step of a multi-step rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The statement.
    pub sql: String,
    /// Its timeout class.
    pub class: Option<Class>,
    /// Where it builds indexes concurrently: a failed build leaves an INVALID index there that
    /// must be dropped.
    pub builds_indexes: Option<IndexBuild>,
    /// What takes the step back if a later step fails.
    pub undo: Option<Undo>,
}

/// What happens to a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run it as sent.
    Run,
    /// Run this single statement in its place (same command tag).
    Replace(Step),
    /// Run these statements in its place, in order, each on its own; the last one's command
    /// tag is the original's.
    Steps(Vec<Step>),
    /// Refuse it.
    Reject(reply::Report),
}

/// What the policy decided for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementDecision {
    /// Where the statement is in its text.
    pub span: Range<usize>,
    /// The statement's kind (`CREATE INDEX`, …), or `unparsable`.
    pub kind: String,
    /// Whether the policy governs it: DDL, a statement that may run DDL, or an explicit
    /// `LOCK TABLE` that blocks writes (see [`Facts::governed`]).
    pub ddl: bool,
    /// What happens to it.
    pub plan: Plan,
    /// The timeout class it runs under as planned (for `Steps`: see each step).
    pub class: Option<Class>,
    /// Warnings to send before it runs.
    pub notices: Vec<reply::Report>,
    /// The rules that fired and the action each got (audited).
    pub rules: Vec<(RuleId, Action)>,
    /// Overrides honoured: rule and reason.
    pub overrides: Vec<(RuleId, Option<String>)>,
    /// The relations it locks, as quoted, possibly schema-qualified names (to name who blocks
    /// them).
    pub relations: Vec<String>,
    /// Whether it begins or ends a transaction block (a request holding one is not retried).
    pub transaction_control: bool,
    /// The strongest lock it takes (`ACCESS EXCLUSIVE`, …).
    pub lock: Option<String>,
    /// The same, as a mode (to find which sessions' locks it would queue behind).
    pub lock_mode: Option<LockMode>,
    /// Why the live catalog proves it changes nothing, when it does (no rule judged it).
    pub noop: Option<String>,
    /// What the evidence of use says about the tables and columns it drops, renames or
    /// retypes (audited; each also sent as a NOTICE).
    pub evidence: Vec<String>,
    /// Where it builds an index concurrently as sent (a rewrite's steps say their own).
    pub builds_indexes: Option<IndexBuild>,
}

/// Where the statements run, beyond what [`Context`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The request runs exactly one statement, so it may be rewritten into several.
    pub single_statement: bool,
}

/// Decides about every statement of `source` (one simple-protocol query string, or the text of
/// one `Parse`), updating `ctx` as they would run.
pub fn decide(
    engine: &Engine,
    settings: &Settings,
    source: &str,
    ctx: &mut Context,
    situation: Situation,
) -> Vec<StatementDecision> {
    let reports = engine.analyze(source, ctx);
    decisions(settings, source, &reports, ctx, situation)
}

/// [`decide`] on statements already parsed from `source` (with the context's
/// `standard_conforming_strings`).
pub(crate) fn decide_parsed(
    engine: &Engine,
    settings: &Settings,
    source: &str,
    parsed: Vec<parse::Parsed>,
    ctx: &mut Context,
    situation: Situation,
) -> Vec<StatementDecision> {
    let reports = engine.analyze_parsed(source, parsed, ctx);
    decisions(settings, source, &reports, ctx, situation)
}

/// The policy's decisions about statements already analysed (`reports`, from the engine with
/// this `ctx`): what `ddlgate check` reports is what the proxy would do.
pub(crate) fn decisions(
    settings: &Settings,
    source: &str,
    reports: &[crate::analysis::Report],
    ctx: &mut Context,
    situation: Situation,
) -> Vec<StatementDecision> {
    let mut refused = false;
    reports
        .iter()
        .map(|report| {
            let mut d = decide_statement(settings, source, report, ctx, situation);
            // Nothing after a refused statement runs: the server aborts the rest.
            if refused {
                d.notices.clear();
            }
            refused |= matches!(d.plan, Plan::Reject(_));
            d
        })
        .collect()
}

fn decide_statement(
    settings: &Settings,
    source: &str,
    report: &Report,
    ctx: &Context,
    situation: Situation,
) -> StatementDecision {
    let finding = match &report.result {
        Ok(finding) => finding,
        Err(error) => return unparsable(settings, report.span.clone(), &error.message, ctx),
    };
    let mut decision = StatementDecision {
        span: report.span.clone(),
        kind: finding.facts.kind.clone(),
        ddl: finding.facts.governed(),
        plan: Plan::Run,
        class: Class::of(&finding.facts),
        notices: Vec::new(),
        rules: Vec::new(),
        overrides: Vec::new(),
        relations: finding
            .facts
            .locks
            .iter()
            .filter_map(|l| match &l.target {
                LockTarget::Relation(r) => Some(r.to_string()),
                _ => None,
            })
            .collect(),
        transaction_control: finding.facts.tx_control.is_some(),
        lock: finding.facts.strongest_lock().map(|m| m.to_string()),
        lock_mode: finding.facts.strongest_lock(),
        noop: finding.noop.clone(),
        evidence: finding.evidence.clone(),
        builds_indexes: finding.facts.concurrent_build.clone(),
    };
    for summary in &finding.evidence {
        decision
            .notices
            .push(reply::Report::notice(format!("evidence: {summary}")));
    }
    let mut in_force: Vec<&Violation> = finding.violations.iter().collect();
    for (violation, o) in &finding.overridden {
        if override_permitted(settings.overrides, o) {
            if let Ok(rule) = o.rule {
                decision.overrides.push((rule, o.reason.clone()));
            }
            continue;
        }
        if settings.action(violation.rule) != Action::Allow {
            decision.notices.push(reply::Report::warning(format!(
                "override of {} ignored: {}",
                violation.rule,
                match settings.overrides {
                    Overrides::Off => "this policy does not honour inline overrides",
                    _ => "this policy requires a reason=\"…\"",
                }
            )));
        }
        in_force.push(violation);
    }
    let acting: Vec<(&Violation, Action)> = in_force
        .into_iter()
        .map(|v| (v, settings.action(v.rule)))
        .filter(|(_, a)| *a != Action::Allow)
        .collect();
    decision.rules = acting.iter().map(|(v, a)| (v.rule, *a)).collect();

    if let Some((v, _)) = acting.iter().find(|(_, a)| *a == Action::Reject) {
        decision.plan = Plan::Reject(rejection(v, &finding.facts));
        return decision;
    }
    let rewrites: Vec<&Violation> = acting
        .iter()
        .filter(|(_, a)| *a == Action::Rewrite)
        .map(|(v, _)| *v)
        .collect();
    if let Some(first) = rewrites.first() {
        match rewrite_plan(source, &report.span, &rewrites, ctx, situation) {
            Some(plan) => {
                decision.class = match &plan {
                    Plan::Replace(step) => step.class,
                    _ => None,
                };
                decision.plan = plan;
            }
            None => match settings.rewrite_fallback {
                Fallback::Reject => {
                    let mut m = rejection(first, &finding.facts);
                    m.message.push_str(" (no automatic rewrite is valid here)");
                    decision.plan = Plan::Reject(m);
                    return decision;
                }
                Fallback::Warn => decision.notices.push(warning(first, &finding.facts)),
            },
        }
    }
    for (v, _) in acting.iter().filter(|(_, a)| *a == Action::Warn) {
        decision.notices.push(warning(v, &finding.facts));
    }
    decision
}

fn override_permitted(setting: Overrides, o: &Override) -> bool {
    match setting {
        Overrides::Off => false,
        Overrides::On => true,
        Overrides::WithReason => o.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
    }
}

fn unparsable(
    settings: &Settings,
    span: Range<usize>,
    error: &str,
    ctx: &Context,
) -> StatementDecision {
    let mut decision = StatementDecision {
        span,
        kind: "unparsable".to_owned(),
        ddl: false,
        plan: Plan::Run,
        class: None,
        notices: Vec::new(),
        rules: Vec::new(),
        overrides: Vec::new(),
        relations: Vec::new(),
        transaction_control: false,
        lock: None,
        lock_mode: None,
        noop: None,
        evidence: Vec::new(),
        builds_indexes: None,
    };
    if ctx.server_major <= GRAMMAR_MAJOR {
        // The server refuses it too, with its own words.
        return decision;
    }
    let message = reply::Report::syntax_error(format!("unparsable: {error}")).detail(format!(
        "The server runs PostgreSQL {}, newer than ddlgate's grammar (PostgreSQL {GRAMMAR_MAJOR}), so the statement cannot be analysed.",
        ctx.server_major
    ));
    match settings.unparsable {
        Unparsable::Allow => decision.class = Some(Class::Brief),
        Unparsable::Warn => {
            decision.class = Some(Class::Brief);
            decision.notices.push(message.downgraded_to_warning());
        }
        Unparsable::Reject => decision.plan = Plan::Reject(message),
    }
    decision
}

fn rejection(v: &Violation, facts: &Facts) -> reply::Report {
    reply::Report::policy_rejected(format!("{}: {}", v.rule, v.message))
        .with_detail(detail_with_lock(v, facts))
        .with_hint((!v.help.is_empty()).then(|| v.help.clone()))
}

fn warning(v: &Violation, facts: &Facts) -> reply::Report {
    rejection(v, facts).downgraded_to_warning()
}

/// The rule's detail, with the lock the statement takes (and on which table) when the detail
/// does not already say it.
fn detail_with_lock(v: &Violation, facts: &Facts) -> Option<String> {
    let lock = lock_detail(facts);
    match (&v.detail, lock) {
        (Some(d), Some(l)) if !d.contains(&l) => Some(format!("{l} {d}")),
        (Some(d), _) => Some(d.clone()),
        (None, l) => l,
    }
}

/// The rewrite of one statement, when exactly one safe fix applies here. Its steps come from
/// the fix as data: the rule says what each statement of its text does, and the engine's check
/// of the text says where each is and what it locks, so nothing here parses or walks a tree.
fn rewrite_plan(
    source: &str,
    span: &Range<usize>,
    rewrites: &[&Violation],
    ctx: &Context,
    situation: Situation,
) -> Option<Plan> {
    let [violation] = rewrites else {
        return None;
    };
    let fix = violation.fix.as_ref()?;
    if fix.applicability != crate::analysis::Applicability::Safe || !situation.single_statement {
        return None;
    }
    let text = fix.apply(source, span);
    let mut steps = Vec::with_capacity(fix.steps.len());
    for step in &fix.steps {
        let checked = step.checked.as_ref()?;
        steps.push(Step {
            sql: text.get(checked.span.clone())?.to_owned(),
            class: Class::of(&checked.facts),
            builds_indexes: step.builds_indexes.clone(),
            undo: step.undo.clone(),
        });
    }
    match steps.len() {
        0 => None,
        1 => steps.pop().map(Plan::Replace),
        _ if ctx.in_transaction => None,
        _ => Some(Plan::Steps(steps)),
    }
}

/// A SQL string literal.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `DO` block that raises `message` as an error on the server, so the server itself fails the
/// statement (aborting the transaction, skipping to `Sync`) exactly as a failing statement would.
pub(crate) fn raising_statement(message: &reply::Report) -> String {
    let mut sql = format!(
        "DO $ddlgate$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}",
        quote_literal(message.code),
        quote_literal(&message.text())
    );
    if let Some(detail) = &message.detail {
        let _ = write!(sql, ", DETAIL = {}", quote_literal(detail));
    }
    if let Some(hint) = &message.hint {
        let _ = write!(sql, ", HINT = {}", quote_literal(hint));
    }
    sql.push_str("; END $ddlgate$");
    // A message containing the dollar-quote tag would end the block early; fall back to a
    // plain literal-free form, which still fails the statement.
    if message.message.contains("$ddlgate$")
        || message
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("$ddlgate$"))
        || message
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("$ddlgate$"))
    {
        return format!(
            "DO $ddlgate$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = 'ddlgate: statement refused by policy'; END $ddlgate$",
            quote_literal(message.code)
        );
    }
    sql
}

#[cfg(test)]
mod tests;
