//! `enum-add-value-order`: `ALTER TYPE … ADD VALUE … BEFORE/AFTER`, and `ADD VALUE` where it
//! cannot run.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::EnumAddValueOrder,
    summary: "ADD VALUE … BEFORE/AFTER changes how existing values sort and compare",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("enum_add_value_order.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TYPE order_status AS ENUM ('new', 'shipped')",
        flagged: &["ALTER TYPE order_status ADD VALUE 'paid' BEFORE 'shipped'"],
        safe: &["ALTER TYPE order_status ADD VALUE 'paid'"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterEnumStmt(stmt) = input.node else {
        return;
    };
    if !stmt.old_val.is_empty() {
        return;
    }
    if !input.ctx.can_run_outside_transaction() && input.ctx.server_major < 12 {
        out.push(
            input
                .violation(RULE.id, "ALTER TYPE … ADD VALUE cannot run inside a transaction block before PostgreSQL 12")
                .with_help("Run it on its own, outside a transaction."),
        );
        return;
    }
    if !stmt.new_val_neighbor.is_empty() {
        let place = if stmt.new_val_is_after {
            "after"
        } else {
            "before"
        };
        out.push(
            input
                .violation(RULE.id, format!("adding '{}' {place} '{}' changes the sort order code may rely on (ORDER BY, <, >)", stmt.new_val, stmt.new_val_neighbor))
                .with_detail(Some("Values added in the middle also make comparisons of this enum slower: PostgreSQL can no longer compare by OID.".to_owned()))
                .with_help("Add new values at the end, unless every reader is ready for the new order."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn values_in_the_middle_are_flagged() {
        assert_flagged(RULE.id, "ALTER TYPE s ADD VALUE 'x' BEFORE 'b'");
        assert_flagged(
            RULE.id,
            "ALTER TYPE s ADD VALUE IF NOT EXISTS 'x' AFTER 'a'",
        );
        assert_ok(RULE.id, "ALTER TYPE s ADD VALUE 'x'");
        assert_ok(RULE.id, "ALTER TYPE s RENAME VALUE 'a' TO 'b'");
    }

    #[test]
    fn in_a_transaction_before_12_it_fails() {
        let mut ctx = Context {
            in_transaction: true,
            ..Context::for_server(11)
        };
        assert_eq!(
            violations_in(RULE.id, "ALTER TYPE s ADD VALUE 'x'", &mut ctx).len(),
            1
        );
        let mut ctx = Context {
            in_transaction: true,
            ..Context::for_server(15)
        };
        assert!(violations_in(RULE.id, "ALTER TYPE s ADD VALUE 'x'", &mut ctx).is_empty());
    }
}
