//! `partitioned-index`: `CREATE INDEX` on a partitioned table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::PartitionedIndex,
    summary: "CREATE INDEX on a partitioned table locks every partition and cannot be built concurrently",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction, CatalogFact::Partitioned],
    docs: include_str!("partitioned_index.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at); \
                CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        flagged: &["CREATE INDEX events_at_idx ON events (at)"],
        safe: &["CREATE INDEX events_at_idx ON ONLY events (at)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::IndexStmt(stmt) = input.node else {
        return;
    };
    let Some(rv) = stmt.relation.as_ref() else {
        return;
    };
    // ON ONLY creates an invalid parent index and touches no partition: the safe first step.
    if !rv.inh || is_new_table(input, Some(rv)) {
        return;
    }
    let table = RelationName::from_range_var(rv);
    if !input.ctx.is_partitioned(&table) {
        return;
    }
    let how = if stmt.concurrent {
        "CREATE INDEX CONCURRENTLY is not supported on a partitioned table and fails"
    } else {
        "CREATE INDEX on a partitioned table builds the index on every partition while blocking writes to all of them"
    };
    out.push(
        input
            .violation(RULE.id, how)
            .with_detail(lock_detail(input.facts))
            .with_help(format!(
                "Create the parent index with CREATE INDEX … ON ONLY {table} (…), build each partition's index with CREATE INDEX CONCURRENTLY, then ALTER INDEX <parent index> ATTACH PARTITION <partition index> for each; the parent index becomes valid when all are attached."
            )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    fn after_partitioned_table(sql: &str) -> Vec<Violation> {
        let mut ctx = Context::default();
        violations_in(
            RULE.id,
            "CREATE TABLE p (a int) PARTITION BY LIST (a)",
            &mut ctx,
        );
        ctx.next_script();
        violations_in(RULE.id, sql, &mut ctx)
    }

    #[test]
    fn indexes_on_known_partitioned_tables_are_flagged() {
        assert_eq!(after_partitioned_table("CREATE INDEX i ON p (a)").len(), 1);
        assert!(
            after_partitioned_table("CREATE INDEX CONCURRENTLY i ON p (a)")[0]
                .message
                .contains("not supported")
        );
    }

    #[test]
    fn on_only_unknown_and_new_tables_are_fine() {
        assert!(after_partitioned_table("CREATE INDEX i ON ONLY p (a)").is_empty());
        assert!(after_partitioned_table("CREATE INDEX i ON other (a)").is_empty());
        assert_ok(
            RULE.id,
            "CREATE TABLE p (a int) PARTITION BY LIST (a); CREATE INDEX i ON p (a)",
        );
    }
}
