//! `create-partition-of`: `CREATE TABLE … PARTITION OF` an existing partitioned table.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CreatePartitionOf,
    summary: "CREATE TABLE … PARTITION OF blocks every read and write on the partitioned table",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("create_partition_of.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at)",
        flagged: &[
            "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
        ],
        safe: &["CREATE TABLE events_2027 (LIKE events INCLUDING ALL); \
                 ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::CreateStmt(stmt) = input.node else {
        return;
    };
    let Some(bound) = &stmt.partbound else {
        return;
    };
    let Some(NodeEnum::RangeVar(parent)) = stmt.inh_relations.first().and_then(|n| n.node.as_ref())
    else {
        return;
    };
    let parent = RelationName::from_range_var(parent);
    if input.ctx.is_new(&parent) {
        return;
    }
    let child = stmt
        .relation
        .as_ref()
        .map(RelationName::from_range_var)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let help = if input.ctx.server_major >= 12 && !bound.is_default {
        format!(
            "Create {child} as a standalone table (CREATE TABLE {child} (LIKE {parent} INCLUDING ALL)), then ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES …, which takes only SHARE UPDATE EXCLUSIVE on {parent}."
        )
    } else {
        "Run it with a short lock_timeout at a quiet moment; ATTACH PARTITION is the lighter path from PostgreSQL 12 on (except for a default partition).".to_owned()
    };
    out.push(
        input
            .violation(RULE.id, format!("CREATE TABLE … PARTITION OF {parent} blocks every read and write on {parent} while it waits for and holds its lock"))
            .with_detail(lock_detail(input.facts))
            .with_help(help),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn partitions_of_existing_tables_are_flagged() {
        let v = assert_flagged(RULE.id, "CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2)");
        assert!(v.help.contains("ATTACH PARTITION p2"), "{}", v.help);
        assert_ok(
            RULE.id,
            "CREATE TABLE p (a int) PARTITION BY LIST (a); CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)",
        );
        assert_ok(RULE.id, "CREATE TABLE t (a int)");
    }
}
