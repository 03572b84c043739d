//! Test helpers for rules: the ok / flagged / fixed trio. A fix is applied, re-parsed, and
//! re-checked: it must parse and must not trigger the rule it fixes.
#![allow(clippy::panic)]

use crate::analysis::context::Context;
use crate::analysis::engine::Engine;
use crate::analysis::parse::{Options, parse_script};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// Every violation of `rule` in `sql`, analysed in `ctx`.
pub(crate) fn violations_in(rule: RuleId, sql: &str, ctx: &mut Context) -> Vec<Violation> {
    Engine::new([rule])
        .analyze(sql, ctx)
        .into_iter()
        .flat_map(|r| match r.result {
            Ok(f) => f.violations,
            Err(e) => panic!("test SQL does not parse: {} in {sql:?}", e.message),
        })
        .collect()
}

/// Every violation of `rule` in `sql`, outside a transaction, on PostgreSQL 15.
pub(crate) fn violations(rule: RuleId, sql: &str) -> Vec<Violation> {
    violations_in(rule, sql, &mut Context::default())
}

/// Asserts `sql` is clean for `rule`.
pub(crate) fn assert_ok(rule: RuleId, sql: &str) {
    let found = violations(rule, sql);
    assert!(found.is_empty(), "{rule} flagged {sql:?}: {found:#?}");
}

/// Asserts `sql` has exactly one violation of `rule`, and returns it.
pub(crate) fn assert_flagged(rule: RuleId, sql: &str) -> Violation {
    let mut found = violations(rule, sql);
    assert_eq!(found.len(), 1, "{rule} on {sql:?}: {found:#?}");
    found.remove(0)
}

/// Asserts the violation's fix turns `sql` into `expected`, which parses and which `rule` no
/// longer flags (in a fresh context, as the proxy would run it).
pub(crate) fn assert_fix(rule: RuleId, sql: &str, expected: &str) {
    let v = assert_flagged(rule, sql);
    let fix = v
        .fix
        .unwrap_or_else(|| panic!("{rule} offered no fix for {sql:?}"));
    let span = 0..sql.len();
    let fixed = fix.apply(sql, &span);
    assert_eq!(fixed, expected);
    let statements = parse_script(&fixed, Options::default());
    for p in &statements {
        assert!(p.tree.is_ok(), "fixed SQL does not parse: {fixed:?}");
    }
    assert_eq!(
        statements.len(),
        fix.steps.len(),
        "the fix describes {} steps, its text has {} statements: {fixed:?}",
        fix.steps.len(),
        statements.len()
    );
    let again = violations(rule, &fixed);
    assert!(
        again.is_empty(),
        "the fix still violates {rule}: {again:#?}"
    );
}

/// A context whose evidence of use says `evidence` about `table` (`column`, as the statement
/// names them), deciding `rule`.
pub(crate) fn with_evidence(
    rule: RuleId,
    table: &str,
    column: Option<&str>,
    evidence: crate::analysis::usage::Evidence,
) -> Context {
    use crate::analysis::classify::RelationName;
    use crate::analysis::usage::{Evidences, Found, Target};
    Context {
        evidence: Evidences {
            rules: vec![rule],
            found: vec![Found {
                name: RelationName {
                    schema: None,
                    name: table.to_owned(),
                },
                column: column.map(str::to_owned),
                target: Some(Target {
                    schema: "public".to_owned(),
                    table: table.to_owned(),
                    column: column.map(str::to_owned),
                }),
                evidence,
            }],
        },
        ..Context::default()
    }
}

/// Evidence that nothing used the target in a day.
pub(crate) fn unused() -> crate::analysis::usage::Evidence {
    crate::analysis::usage::Evidence::Observed {
        seconds: 86_400,
        tracked: 1_284,
        uses: Vec::new(),
    }
}

/// Evidence that one statement used the target 412 times in a day.
pub(crate) fn used_by(text: &str) -> crate::analysis::usage::Evidence {
    crate::analysis::usage::Evidence::Observed {
        seconds: 86_400,
        tracked: 1_284,
        uses: vec![crate::analysis::usage::UsedBy {
            queryid: 42,
            text: text.to_owned(),
            calls: 412,
            lower_bound: false,
            possibly: false,
            how: crate::analysis::usage::Use::Column,
            observed: false,
        }],
    }
}
