//! `vacuum-full-cluster`: `VACUUM FULL` and `CLUSTER`, which rewrite a table under an
//! `ACCESS EXCLUSIVE` lock.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::VacuumFullCluster,
    summary: "VACUUM FULL and CLUSTER rewrite the table while blocking every read and write",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("vacuum_full_cluster.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY, payload text)",
        flagged: &["VACUUM FULL events", "CLUSTER events USING events_pkey"],
        safe: &["VACUUM (ANALYZE) events"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let what = match input.node {
        NodeEnum::VacuumStmt(_) if input.facts.kind == "VACUUM FULL" => "VACUUM FULL",
        NodeEnum::ClusterStmt(_) => "CLUSTER",
        _ => return,
    };
    out.push(
        input
            .violation(RULE.id, format!("{what} rewrites the whole table while blocking every read and write on it"))
            .with_detail(lock_detail(input.facts))
            .with_help("Use plain VACUUM to reclaim space for reuse, or an online rewrite tool (pg_repack, pg_squeeze) to shrink the table without the long lock."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn full_vacuum_and_cluster_are_flagged() {
        assert_flagged(RULE.id, "VACUUM FULL t");
        assert_flagged(RULE.id, "VACUUM (FULL, VERBOSE) t");
        assert_flagged(RULE.id, "CLUSTER t USING t_pkey");
        assert_flagged(RULE.id, "CLUSTER");
    }

    #[test]
    fn plain_vacuum_and_analyze_are_fine() {
        assert_ok(RULE.id, "VACUUM t");
        assert_ok(RULE.id, "VACUUM (FULL false) t");
        assert_ok(RULE.id, "ANALYZE t");
    }
}
