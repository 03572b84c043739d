//! `truncate-cascade`: `TRUNCATE … CASCADE`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::TruncateCascade,
    summary: "TRUNCATE … CASCADE also empties every table that references the truncated ones",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("truncate_cascade.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE customers (id bigint PRIMARY KEY); \
                CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id))",
        flagged: &["TRUNCATE customers CASCADE"],
        safe: &["TRUNCATE orders"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::TruncateStmt(stmt) = input.node else {
        return;
    };
    if stmt.behavior != ast::DropBehavior::DropCascade as i32 {
        return;
    }
    out.push(
        input
            .violation(RULE.id, "TRUNCATE … CASCADE also empties every table that references these by foreign key, without naming them")
            .with_detail(lock_detail(input.facts))
            .with_help("Name every table to empty in the TRUNCATE itself, so the statement says what it destroys."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn cascade_is_flagged() {
        assert_flagged(RULE.id, "TRUNCATE a, b CASCADE");
        assert_ok(RULE.id, "TRUNCATE a, b");
        assert_ok(RULE.id, "TRUNCATE a RESTRICT");
    }
}
