//! `detach-partition-nonconcurrent`: `DETACH PARTITION` without `CONCURRENTLY` (PostgreSQL 14+).

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands,
    lock_detail,
};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{FixStep, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DetachPartitionNonconcurrent,
    summary: "DETACH PARTITION without CONCURRENTLY blocks every read and write on the partitioned table",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[],
    docs: include_str!("detach_partition_nonconcurrent.md"),
    examples: Examples {
        min_server_major: 14,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at); \
                CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        flagged: &["ALTER TABLE events DETACH PARTITION events_2025"],
        safe: &["ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let cmds = alter_subcommands(input, &[ast::AlterTableType::AtDetachPartition]);
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    for cmd in cmds {
        let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        if p.concurrent {
            continue;
        }
        let fix = (input.ctx.server_major >= 14
            && stmt.cmds.len() == 1
            && input.ctx.can_run_outside_transaction())
        .then(|| {
            Input::insertion_fix(
                "Add `CONCURRENTLY`",
                input.span.end,
                " CONCURRENTLY",
                FixStep::default(),
            )
        });
        let help = match (&fix, input.ctx.server_major >= 14) {
            (Some(f), _) => format!("Detach without blocking queries: {}", f.apply(input.source, input.span)),
            (None, true) => "Use DETACH PARTITION … CONCURRENTLY, alone and outside a transaction block.".to_owned(),
            (None, false) => "Before PostgreSQL 14 there is no concurrent detach; run it with a short lock_timeout at a quiet moment.".to_owned(),
        };
        out.push(
            input
                .violation(RULE.id, "DETACH PARTITION without CONCURRENTLY blocks every read and write on the partitioned table while it waits for and holds its lock")
                .with_detail(lock_detail(input.facts))
                .with_help(help)
                .with_fix(fix),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn plain_detach_is_flagged_and_fixed_since_14() {
        assert_fix(
            RULE.id,
            "ALTER TABLE p DETACH PARTITION p1",
            "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
        );
        let mut pg13 = Context::for_server(13);
        assert!(
            violations_in(RULE.id, "ALTER TABLE p DETACH PARTITION p1", &mut pg13)[0]
                .fix
                .is_none()
        );
    }

    #[test]
    fn concurrent_and_finalize_are_fine() {
        assert_ok(RULE.id, "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY");
        assert_ok(RULE.id, "ALTER TABLE p DETACH PARTITION p1 FINALIZE");
    }
}
