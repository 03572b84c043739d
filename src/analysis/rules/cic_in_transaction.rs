//! `cic-in-transaction`: a `CONCURRENTLY` statement inside a transaction block.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::has_option;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CicInTransaction,
    summary: "A CONCURRENTLY statement inside a transaction block (or a multi-statement query) fails",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("cic_in_transaction.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint)",
        flagged: &[
            "BEGIN; CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id); COMMIT",
        ],
        safe: &["CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id)"],
    },
    check,
    finish: None,
};

/// Whether the statement is one of the `CONCURRENTLY` forms PostgreSQL refuses in a
/// transaction block.
fn concurrent_form(node: &NodeEnum) -> Option<&'static str> {
    match node {
        NodeEnum::IndexStmt(s) if s.concurrent => Some("CREATE INDEX CONCURRENTLY"),
        NodeEnum::DropStmt(s) if s.concurrent => Some("DROP INDEX CONCURRENTLY"),
        NodeEnum::ReindexStmt(s) if has_option(&s.params, "concurrently") => {
            Some("REINDEX CONCURRENTLY")
        }
        NodeEnum::AlterTableStmt(s)
            if s.cmds.iter().any(|c| {
                matches!(&c.node,
                Some(NodeEnum::AlterTableCmd(cmd))
                    if cmd.subtype == ast::AlterTableType::AtDetachPartition as i32
                    && matches!(cmd.def.as_ref().and_then(|d| d.node.as_ref()),
                        Some(NodeEnum::PartitionCmd(p)) if p.concurrent))
            }) =>
        {
            Some("DETACH PARTITION CONCURRENTLY")
        }
        _ => None,
    }
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let Some(form) = concurrent_form(input.node) else {
        return;
    };
    if input.ctx.can_run_outside_transaction() {
        return;
    }
    let place = if input.ctx.in_transaction {
        "inside a transaction block"
    } else {
        "in a query string with several statements, which PostgreSQL runs as one transaction"
    };
    out.push(
        input
            .violation(RULE.id, format!("{form} cannot run {place}: PostgreSQL will refuse it"))
            .with_detail(Some("PostgreSQL raises 25001 (active_sql_transaction) for this statement in a transaction block.".to_owned()))
            .with_help("Run it on its own, outside any transaction: mark the migration non-transactional in your migration tool."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn every_concurrent_form_in_a_block_is_flagged() {
        for sql in [
            "BEGIN; CREATE INDEX CONCURRENTLY i ON t (a)",
            "BEGIN; DROP INDEX CONCURRENTLY i",
            "BEGIN; REINDEX INDEX CONCURRENTLY i",
            "BEGIN; ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
        ] {
            assert_flagged(RULE.id, sql);
        }
    }

    #[test]
    fn a_multi_statement_query_is_a_transaction_too() {
        let mut ctx = Context {
            in_multi_statement_query: true,
            ..Context::default()
        };
        let v = violations_in(
            RULE.id,
            "SELECT 1; CREATE INDEX CONCURRENTLY i ON t (a)",
            &mut ctx,
        );
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("several statements"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn outside_a_block_and_after_commit_is_fine() {
        assert_ok(RULE.id, "CREATE INDEX CONCURRENTLY i ON t (a)");
        assert_ok(
            RULE.id,
            "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a)",
        );
        assert_ok(RULE.id, "BEGIN; REFRESH MATERIALIZED VIEW CONCURRENTLY m");
    }
}
