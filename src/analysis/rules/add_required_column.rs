//! `add-required-column`: `ADD COLUMN … NOT NULL` without a default.

use super::add_column_volatile_default::default_expr;
use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, col_is_serial, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddRequiredColumn,
    summary: "ADD COLUMN … NOT NULL without a DEFAULT fails on a table with rows and breaks running inserts",
    group: Group::Columns,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("add_required_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE users ADD COLUMN plan text NOT NULL"],
        safe: &["ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free'"],
    },
    check,
    finish: None,
};

fn has_constraint(col: &ast::ColumnDef, kind: ast::ConstrType) -> bool {
    col.constraints
        .iter()
        .any(|n| matches!(&n.node, Some(NodeEnum::Constraint(c)) if c.contype == kind as i32))
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    for cmd in alter_cmds(stmt) {
        if subtype(cmd) != ast::AlterTableType::AtAddColumn {
            continue;
        }
        let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        let required = col.is_not_null || has_constraint(col, ast::ConstrType::ConstrNotnull);
        let supplies_values = default_expr(col).is_some()
            || col_is_serial(col)
            || !col.identity.is_empty()
            || has_constraint(col, ast::ConstrType::ConstrIdentity)
            || has_constraint(col, ast::ConstrType::ConstrGenerated);
        if required && !supplies_values {
            out.push(
                input
                    .violation(RULE.id, format!("ADD COLUMN {} NOT NULL without a DEFAULT fails if the table has rows, and rejects inserts from code that does not set it yet", col.colname))
                    .with_help(format!(
                        "Add it with a constant default (ADD COLUMN {} … NOT NULL DEFAULT <value> is instant since PostgreSQL 11), or add it nullable, backfill, then set NOT NULL without a scan (see set-not-null).",
                        col.colname
                    )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn not_null_without_default_is_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN c int NOT NULL");
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int CONSTRAINT nn NOT NULL",
        );
    }

    #[test]
    fn defaults_and_generated_values_are_fine() {
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0");
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c int");
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c bigserial NOT NULL");
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int NOT NULL GENERATED ALWAYS AS IDENTITY",
        );
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int NOT NULL GENERATED ALWAYS AS (a + 1) STORED",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN c int NOT NULL",
        );
    }
}
