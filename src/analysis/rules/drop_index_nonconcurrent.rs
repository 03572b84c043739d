//! `drop-index-nonconcurrent`: `DROP INDEX` without `CONCURRENTLY`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::drop_object_names;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{FixStep, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropIndexNonconcurrent,
    summary: "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[CatalogFact::CreatedInTransaction, CatalogFact::Partitioned],
    docs: include_str!("drop_index_nonconcurrent.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint); \
                CREATE INDEX orders_customer_idx ON orders (customer_id)",
        flagged: &["DROP INDEX orders_customer_idx"],
        safe: &["DROP INDEX CONCURRENTLY orders_customer_idx"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::DropStmt(stmt) = input.node else {
        return;
    };
    if stmt.remove_type != ast::ObjectType::ObjectIndex as i32 || stmt.concurrent {
        return;
    }
    let names = drop_object_names(stmt);
    if names.iter().all(|n| input.ctx.is_new(n)) {
        return;
    }
    // DROP INDEX CONCURRENTLY takes one index and no CASCADE, and no partitioned index.
    let partitioned = names.iter().any(|n| input.ctx.is_partitioned_index(n));
    let rewritable = names.len() == 1
        && stmt.behavior != ast::DropBehavior::DropCascade as i32
        && input.ctx.can_run_outside_transaction()
        && !partitioned;
    let fix = rewritable
        .then(|| input.after_keyword("index"))
        .flatten()
        .map(|at| {
            Input::insertion_fix(
                "Add `CONCURRENTLY`",
                at,
                " CONCURRENTLY",
                FixStep::default(),
            )
        });
    let help = match &fix {
        Some(f) => format!("Drop it without blocking queries: {}", f.apply(input.source, input.span)),
        None if partitioned => "A partitioned index cannot be dropped concurrently: drop it when the partitions are quiet (ddlgate's lock_timeout keeps the wait short).".to_owned(),
        None => "Drop each index with its own DROP INDEX CONCURRENTLY (no CASCADE), outside a transaction block.".to_owned(),
    };
    out.push(
        input
            .violation(RULE.id, "DROP INDEX without CONCURRENTLY blocks reads and writes on the table while it waits for and holds its lock")
            .with_detail(lock_detail(input.facts))
            .with_help(help)
            .with_fix(fix),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn flagged_and_fixed() {
        assert_fix(
            RULE.id,
            "DROP INDEX IF EXISTS s.i",
            "DROP INDEX CONCURRENTLY IF EXISTS s.i",
        );
    }

    #[test]
    fn several_indexes_or_cascade_have_no_fix() {
        assert!(assert_flagged(RULE.id, "DROP INDEX a, b").fix.is_none());
        assert!(
            assert_flagged(RULE.id, "DROP INDEX a CASCADE")
                .fix
                .is_none()
        );
    }

    #[test]
    fn fine_forms() {
        assert_ok(RULE.id, "DROP INDEX CONCURRENTLY i");
        assert_ok(RULE.id, "DROP TABLE t");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); CREATE INDEX i ON t (a); DROP INDEX i",
        );
    }
}
