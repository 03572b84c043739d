//! `reindex-nonconcurrent`: `REINDEX` without `CONCURRENTLY` (PostgreSQL 12+).

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, has_option};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{FixStep, IndexBuild, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::ReindexNonconcurrent,
    summary: "REINDEX without CONCURRENTLY blocks writes to the table and reads through the index",
    group: Group::IndexAndMaintenance,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[CatalogFact::SystemCatalog, CatalogFact::ExclusionIndex],
    docs: include_str!("reindex_nonconcurrent.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint); \
                CREATE INDEX orders_customer_idx ON orders (customer_id)",
        flagged: &["REINDEX INDEX orders_customer_idx", "REINDEX TABLE orders"],
        safe: &[
            "REINDEX INDEX CONCURRENTLY orders_customer_idx",
            "REINDEX TABLE CONCURRENTLY orders",
        ],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::ReindexStmt(stmt) = input.node else {
        return;
    };
    // REINDEX CONCURRENTLY exists since PostgreSQL 12; system catalogs cannot use it.
    let kind =
        ast::ReindexObjectType::try_from(stmt.kind).unwrap_or(ast::ReindexObjectType::Undefined);
    if has_option(&stmt.params, "concurrently")
        || input.ctx.server_major < 12
        || kind == ast::ReindexObjectType::ReindexObjectSystem
        || on_system_catalogs(input, stmt)
    {
        return;
    }
    let keyword = match kind {
        ast::ReindexObjectType::ReindexObjectIndex => "index",
        ast::ReindexObjectType::ReindexObjectTable => "table",
        ast::ReindexObjectType::ReindexObjectSchema => "schema",
        _ => "database",
    };
    let fix = input
        .ctx
        .can_run_outside_transaction()
        .then(|| input.after_keyword(keyword))
        .flatten()
        .map(|at| Input::insertion_fix("Add `CONCURRENTLY`", at, " CONCURRENTLY", rebuild(stmt)));
    let help = match &fix {
        Some(f) => format!(
            "Rebuild without blocking: {}",
            f.apply(input.source, input.span)
        ),
        None => "Use REINDEX … CONCURRENTLY outside a transaction block.".to_owned(),
    };
    out.push(
        input
            .violation(RULE.id, "REINDEX without CONCURRENTLY blocks writes to the table and queries that use the index until the rebuild ends")
            .with_detail(lock_detail(input.facts))
            .with_help(help)
            .with_fix(fix),
    );
}

/// Whether the rebuild is of system catalogs (their schema named, or the catalog says so) or of
/// an exclusion constraint's index: those have no concurrent rebuild, so there is nothing
/// safer to offer.
fn on_system_catalogs(input: &Input<'_>, stmt: &ast::ReindexStmt) -> bool {
    let system_schema = |s: &str| s == "pg_catalog" || s == "pg_toast";
    if system_schema(&stmt.name) {
        return true;
    }
    stmt.relation.as_ref().is_some_and(|rv| {
        let name = RelationName::from_range_var(rv);
        system_schema(&rv.schemaname) || input.ctx.is_system(&name)
            // An exclusion constraint's index has no concurrent rebuild either.
            || input.ctx.is_exclusion_index(&name)
    })
}

/// Where a concurrent rebuild adds its new indexes: on the table, or beside the index. A
/// schema's or database's rebuild spans tables no single cleanup can name.
fn rebuild(stmt: &ast::ReindexStmt) -> FixStep {
    let Some(name) = stmt.relation.as_ref().map(RelationName::from_range_var) else {
        return FixStep::default();
    };
    match ast::ReindexObjectType::try_from(stmt.kind) {
        Ok(ast::ReindexObjectType::ReindexObjectTable) => {
            FixStep::building(IndexBuild::OnTable(name))
        }
        Ok(ast::ReindexObjectType::ReindexObjectIndex) => {
            FixStep::building(IndexBuild::BesideIndex(name))
        }
        _ => FixStep::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn each_form_gets_concurrently_after_its_object_keyword() {
        assert_fix(RULE.id, "REINDEX INDEX i", "REINDEX INDEX CONCURRENTLY i");
        assert_fix(
            RULE.id,
            "REINDEX (VERBOSE) TABLE t",
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t",
        );
        assert_fix(
            RULE.id,
            "REINDEX SCHEMA app",
            "REINDEX SCHEMA CONCURRENTLY app",
        );
    }

    #[test]
    fn concurrent_system_and_old_servers_are_not_flagged() {
        assert_ok(RULE.id, "REINDEX (CONCURRENTLY) INDEX i");
        assert_ok(RULE.id, "REINDEX TABLE CONCURRENTLY t");
        assert_ok(RULE.id, "REINDEX SYSTEM");
        let mut pg11 = Context::for_server(11);
        assert!(violations_in(RULE.id, "REINDEX INDEX i", &mut pg11).is_empty());
    }
}
