//! `multiple-alter-same-table`: several `ALTER TABLE` statements on one table in a transaction
//! or script.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::classify::RelationName;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub static RULE: RuleMeta = RuleMeta {
    id: RuleId::MultipleAlterSameTable,
    summary: "Several ALTER TABLE statements on one table take its lock (and may rewrite it) several times",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    docs: include_str!("multiple_alter_same_table.md"),
    examples: Examples {
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN a int; ALTER TABLE orders ADD COLUMN b int"],
        safe: &["ALTER TABLE orders ADD COLUMN a int, ADD COLUMN b int"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    let Some(rv) = stmt.relation.as_ref() else {
        return;
    };
    if is_new_table(input, Some(rv)) {
        return;
    }
    let table = RelationName::from_range_var(rv);
    let earlier = input
        .ctx
        .history
        .alters
        .iter()
        .find(|(t, _)| *t == table)
        .map_or(0, |(_, n)| *n);
    if earlier > 0 {
        out.push(
            input
                .violation(RULE.id, format!("{table} is altered again: each ALTER TABLE waits for its lock separately, and each rewrite copies the table again"))
                .with_help(format!("Combine the changes into one statement: ALTER TABLE {table} <change>, <change>, …;")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn repeated_alters_are_flagged() {
        assert_eq!(
            violations(
                RULE.id,
                "ALTER TABLE t ADD a int; ALTER TABLE u ADD b int; ALTER TABLE t ADD c int"
            )
            .len(),
            1
        );
        assert_ok(RULE.id, "ALTER TABLE t ADD a int, ADD c int");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (x int); ALTER TABLE t ADD a int; ALTER TABLE t ADD b int",
        );
        assert_ok(
            RULE.id,
            "BEGIN; ALTER TABLE t ADD a int; COMMIT; BEGIN; ALTER TABLE t ADD b int; COMMIT",
        );
    }
}
