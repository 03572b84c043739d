//! `refresh-matview-nonconcurrent`: `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{Applicability, FixStep, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::RefreshMatviewNonconcurrent,
    summary: "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::Sometimes,
    catalog: &[],
    docs: include_str!("refresh_matview_nonconcurrent.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric); \
                CREATE MATERIALIZED VIEW order_totals AS SELECT id, total FROM orders; \
                CREATE UNIQUE INDEX order_totals_id ON order_totals (id)",
        flagged: &["REFRESH MATERIALIZED VIEW order_totals"],
        safe: &["REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::RefreshMatViewStmt(stmt) = input.node else {
        return;
    };
    // WITH NO DATA empties the view: quick, and CONCURRENTLY cannot be combined with it.
    if stmt.concurrent || stmt.skip_data {
        return;
    }
    // CONCURRENTLY needs a unique index on the view, which ddlgate cannot see: the fix is
    // offered, never applied on its own.
    let mut fix = input.after_keyword("view").map(|at| {
        Input::insertion_fix(
            "Add `CONCURRENTLY`",
            at,
            " CONCURRENTLY",
            FixStep::default(),
        )
    });
    if let Some(f) = &mut fix {
        f.applicability = Applicability::Unsafe;
    }
    out.push(
        input
            .violation(RULE.id, "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view until the refresh ends")
            .with_detail(lock_detail(input.facts))
            .with_help("Use REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view, without a WHERE clause, on plain columns).")
            .with_fix(fix),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn flagged_with_an_unsafe_fix() {
        let v = assert_flagged(RULE.id, "REFRESH MATERIALIZED VIEW m");
        assert_eq!(v.fix.as_ref().unwrap().applicability, Applicability::Unsafe);
        assert_fix(
            RULE.id,
            "REFRESH MATERIALIZED VIEW m",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY m",
        );
    }

    #[test]
    fn concurrent_and_no_data_are_fine() {
        assert_ok(RULE.id, "REFRESH MATERIALIZED VIEW CONCURRENTLY m");
        assert_ok(RULE.id, "REFRESH MATERIALIZED VIEW m WITH NO DATA");
    }
}
