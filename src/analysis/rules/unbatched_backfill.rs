//! `unbatched-backfill`: `UPDATE` or `DELETE` without `WHERE` on an existing table.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::UnbatchedBackfill,
    summary: "UPDATE or DELETE without WHERE changes every row in one long transaction",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("unbatched_backfill.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, status text)",
        flagged: &["UPDATE orders SET status = 'new'"],
        safe: &["UPDATE orders SET status = 'new' WHERE id BETWEEN 1 AND 10000 AND status IS NULL"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let (what, relation, where_clause) = match input.node {
        NodeEnum::UpdateStmt(s) => ("UPDATE", s.relation.as_ref(), s.where_clause.is_some()),
        NodeEnum::DeleteStmt(s) => ("DELETE", s.relation.as_ref(), s.where_clause.is_some()),
        _ => return,
    };
    if where_clause || is_new_table(input, relation) {
        return;
    }
    let table = relation.map(|r| r.relname.as_str()).unwrap_or_default();
    out.push(
        input
            .violation(RULE.id, format!("{what} without WHERE changes every row of {table} in one transaction: every row stays locked until it ends, and the WAL burst lags replicas"))
            .with_help(format!("Backfill in batches by key range (… WHERE id BETWEEN $1 AND $2), committing between batches{}.", if what == "DELETE" { ", or TRUNCATE if the table is to be emptied" } else { "" })),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn whole_table_updates_and_deletes_are_flagged() {
        assert_flagged(RULE.id, "UPDATE t SET a = 1");
        assert!(
            assert_flagged(RULE.id, "DELETE FROM t")
                .help
                .contains("TRUNCATE")
        );
        assert_ok(RULE.id, "UPDATE t SET a = 1 WHERE id < 100");
        assert_ok(RULE.id, "CREATE TABLE t (a int); UPDATE t SET a = 1");
    }
}
