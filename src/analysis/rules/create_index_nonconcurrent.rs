//! `create-index-nonconcurrent`: `CREATE INDEX` without `CONCURRENTLY` on an existing table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{FixStep, IndexBuild, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CreateIndexNonconcurrent,
    summary: "CREATE INDEX without CONCURRENTLY blocks writes to the table for the whole build",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[CatalogFact::CreatedInTransaction, CatalogFact::Partitioned],
    docs: include_str!("create_index_nonconcurrent.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint)",
        flagged: &["CREATE INDEX orders_customer_idx ON orders (customer_id)"],
        safe: &["CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::IndexStmt(stmt) = input.node else {
        return;
    };
    if stmt.concurrent || is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    let table = stmt.relation.as_ref().map(RelationName::from_range_var);
    // A partitioned table cannot build concurrently: `partitioned-index` says what to do.
    if table.as_ref().is_some_and(|t| input.ctx.is_partitioned(t)) {
        return;
    }
    let fix = input
        .ctx
        .can_run_outside_transaction()
        .then(|| Some((input.after_keyword("index")?, table?)))
        .flatten()
        .map(|(at, table)| {
            let step = FixStep::building(IndexBuild::OnTable(table));
            Input::insertion_fix("Add `CONCURRENTLY`", at, " CONCURRENTLY", step)
        });
    let help = match &fix {
        Some(f) => format!("Build it without blocking writes: {}", f.apply(input.source, input.span)),
        None => "Build it with CREATE INDEX CONCURRENTLY, outside a transaction block (mark the migration non-transactional).".to_owned(),
    };
    out.push(
        input
            .violation(RULE.id, "CREATE INDEX without CONCURRENTLY blocks writes to the table until the index is built")
            .with_detail(lock_detail(input.facts))
            .with_help(help)
            .with_fix(fix),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn plain_index_on_an_existing_table_is_flagged_and_fixed() {
        let v = assert_flagged(RULE.id, "CREATE UNIQUE INDEX IF NOT EXISTS i ON s.t (a)");
        assert_eq!(
            v.detail.as_deref(),
            Some("Locks s.t in SHARE mode, which blocks writes until the transaction ends.")
        );
        assert_fix(
            RULE.id,
            "CREATE UNIQUE INDEX IF NOT EXISTS i ON s.t (a)",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a)",
        );
        assert_fix(
            RULE.id,
            "create index on t using gin (doc)",
            "create index CONCURRENTLY on t using gin (doc)",
        );
    }

    #[test]
    fn concurrent_builds_and_new_tables_are_fine() {
        assert_ok(RULE.id, "CREATE INDEX CONCURRENTLY i ON t (a)");
        assert_ok(RULE.id, "CREATE TABLE t (a int); CREATE INDEX i ON t (a)");
    }

    #[test]
    fn inside_a_transaction_block_there_is_no_fix() {
        let mut ctx = Context {
            in_transaction: true,
            ..Context::default()
        };
        let v = violations_in(RULE.id, "CREATE INDEX i ON t (a)", &mut ctx);
        assert_eq!(v.len(), 1);
        assert!(v[0].fix.is_none());
        assert!(v[0].help.contains("outside a transaction block"));
    }
}
