//! `add-column-volatile-default`: `ADD COLUMN … DEFAULT <volatile expression>`, which rewrites
//! the table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, is_non_volatile, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddColumnVolatileDefault,
    summary: "ADD COLUMN with a volatile DEFAULT rewrites the table while blocking reads and writes",
    group: Group::Columns,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("add_column_volatile_default.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()"],
        safe: &["ALTER TABLE orders ADD COLUMN token uuid; \
                 ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid()"],
    },
    check,
    finish: None,
};

/// The DEFAULT expression of a column definition, if any.
pub(super) fn default_expr(col: &ast::ColumnDef) -> Option<&ast::Node> {
    col.constraints.iter().find_map(|n| match &n.node {
        Some(NodeEnum::Constraint(c)) if c.contype == ast::ConstrType::ConstrDefault as i32 => {
            c.raw_expr.as_deref()
        }
        _ => None,
    })
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    for cmd in alter_cmds(stmt) {
        let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        if subtype(cmd) != ast::AlterTableType::AtAddColumn {
            continue;
        }
        let Some(default) = default_expr(col) else {
            continue;
        };
        let old_server = input.ctx.server_major < 11;
        if !old_server && is_non_volatile(default) {
            continue;
        }
        let why = if old_server {
            "before PostgreSQL 11 any DEFAULT in ADD COLUMN rewrites the table"
        } else {
            "its DEFAULT is volatile, so every existing row must be written with its own value"
        };
        out.push(
            input
                .violation(RULE.id, format!("ADD COLUMN {} rewrites the whole table while blocking reads and writes: {why}", col.colname))
                .with_detail(lock_detail(input.facts))
                .with_help(format!(
                    "Add the column without a default (or with a constant one), set the default for new rows with ALTER COLUMN {} SET DEFAULT …, then backfill existing rows in batches.",
                    col.colname
                )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn volatile_defaults_are_flagged() {
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
        );
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
        );
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int DEFAULT my_function()",
        );
        assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c float DEFAULT random() * 10",
        );
    }

    #[test]
    fn constant_and_stable_defaults_are_fine_since_11() {
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c int DEFAULT 0");
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now()",
        );
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c text DEFAULT 'x'");
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c int");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
        );
        let mut pg10 = Context::for_server(10);
        assert_eq!(
            violations_in(
                RULE.id,
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
                &mut pg10
            )
            .len(),
            1
        );
    }
}
