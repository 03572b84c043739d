//! `multiple-alter-same-table`: a second `ALTER TABLE` that rewrites or scans a table an earlier
//! one in the same transaction or script already rewrote or scanned.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::MultipleAlterSameTable,
    summary: "Several ALTER TABLE statements that each rewrite or scan one table read it several times",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("multiple_alter_same_table.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id int PRIMARY KEY, total int)",
        flagged: &[
            "ALTER TABLE orders ALTER COLUMN id TYPE bigint; ALTER TABLE orders ALTER COLUMN total TYPE bigint",
        ],
        safe: &["ALTER TABLE orders ALTER COLUMN id TYPE bigint, ALTER COLUMN total TYPE bigint"],
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
    if earlier > 0 && (input.facts.rewrites || input.facts.scans) {
        out.push(
            input
                .violation(RULE.id, format!("{table} is read in full again: an earlier ALTER TABLE in this {} already rewrote or scanned it, and each pass holds the lock for the table's whole size", if input.ctx.in_transaction || input.ctx.in_multi_statement_query { "transaction" } else { "script" }))
                .with_help(format!("Combine the changes into one statement: ALTER TABLE {table} <change>, <change>, …;")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn repeated_full_table_passes_are_flagged() {
        assert_eq!(
            violations(
                RULE.id,
                "ALTER TABLE t ALTER a TYPE bigint; ALTER TABLE u ALTER b TYPE bigint; ALTER TABLE t ALTER c TYPE bigint"
            )
            .len(),
            1
        );
        // A scan (validation) after a rewrite reads the table again.
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ALTER a TYPE bigint; ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)",
        );
        assert_ok(
            RULE.id,
            "ALTER TABLE t ALTER a TYPE bigint, ALTER c TYPE bigint",
        );
        // Metadata-only changes are cheap, however many there are.
        assert_ok(RULE.id, "ALTER TABLE t ADD a int; ALTER TABLE t ADD b int");
        assert_ok(
            RULE.id,
            "ALTER TABLE t ALTER a TYPE bigint; ALTER TABLE t ADD b int",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (x int); ALTER TABLE t ALTER x TYPE bigint; ALTER TABLE t ALTER x TYPE text",
        );
        assert_ok(
            RULE.id,
            "BEGIN; ALTER TABLE t ALTER a TYPE bigint; COMMIT; BEGIN; ALTER TABLE t ALTER b TYPE bigint; COMMIT",
        );
    }
}
