//! `add-unique-constraint`: `ADD CONSTRAINT … UNIQUE` that builds its index under an
//! `ACCESS EXCLUSIVE` lock.

use super::add_primary_key::{index_first_fix, is_plain_key};
use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddUniqueConstraint,
    summary: "ADD UNIQUE builds its index while blocking every read and write on the table",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[
        CatalogFact::CreatedInTransaction,
        CatalogFact::Partitioned,
        CatalogFact::FreeIndexName,
    ],
    docs: include_str!("add_unique_constraint.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text)",
        flagged: &["ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)"],
        safe: &["CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    let Some(table) = stmt.relation.as_ref() else {
        return;
    };
    if is_new_table(input, Some(table)) {
        return;
    }
    let cmds: Vec<&ast::AlterTableCmd> = alter_cmds(stmt).collect();
    for cmd in &cmds {
        let constraint = match (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
            (ast::AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c)))
                if c.contype == ast::ConstrType::ConstrUnique as i32 && c.indexname.is_empty() =>
            {
                Some(c.as_ref())
            }
            (ast::AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col)))
                if col.constraints.iter().any(|n| matches!(&n.node,
                    Some(NodeEnum::Constraint(c)) if c.contype == ast::ConstrType::ConstrUnique as i32)) =>
            {
                None
            }
            _ => continue,
        };
        // A partitioned table builds no index concurrently, and takes no key USING INDEX.
        let partitioned = !table.inh
            || input
                .ctx
                .is_partitioned(&RelationName::from_range_var(table));
        let fix = constraint
            .filter(|c| {
                cmds.len() == 1
                    && is_plain_key(c)
                    && input.ctx.can_run_outside_transaction()
                    && !partitioned
            })
            .map(|c| index_first_fix(input, table, c, "UNIQUE", "key"));
        let help = match &fix {
            Some(f) => format!("Build the index concurrently, then attach it: {}", f.apply(input.source, input.span)),
            None if !partitioned => "Build a unique index with CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX (outside a transaction block).".to_owned(),
            None => "On a partitioned table, first build a matching unique index on each partition with CREATE UNIQUE INDEX CONCURRENTLY: adding the key then attaches them instead of building under the lock.".to_owned(),
        };
        out.push(
            input
                .violation(
                    RULE.id,
                    "ADD UNIQUE builds its index while blocking every read and write on the table",
                )
                .with_detail(lock_detail(input.facts))
                .with_help(help)
                .with_fix(fix),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;
    use crate::analysis::violation::Applicability;

    #[test]
    fn named_unique_is_built_concurrently_then_attached() {
        assert_fix(
            RULE.id,
            "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
            "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email); \
             ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key",
        );
    }

    #[test]
    fn unnamed_unique_gets_postgres_default_name_and_an_unsafe_fix() {
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE s.users ADD UNIQUE NULLS NOT DISTINCT (email, tenant)",
        );
        let fix = v.fix.unwrap();
        assert_eq!(fix.applicability, Applicability::Unsafe);
        assert_eq!(
            fix.apply(
                "ALTER TABLE s.users ADD UNIQUE NULLS NOT DISTINCT (email, tenant)",
                &v.span
            ),
            "CREATE UNIQUE INDEX CONCURRENTLY users_email_tenant_key ON s.users (email, tenant) NULLS NOT DISTINCT; \
             ALTER TABLE s.users ADD CONSTRAINT users_email_tenant_key UNIQUE USING INDEX users_email_tenant_key"
        );
    }

    #[test]
    fn using_index_new_tables_and_column_forms() {
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD CONSTRAINT k UNIQUE USING INDEX k",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t ADD UNIQUE (a)",
        );
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN c int UNIQUE")
                .fix
                .is_none()
        );
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t ADD UNIQUE (a) INCLUDE (b)")
                .fix
                .is_none()
        );
    }
}
