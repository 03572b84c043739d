//! `add-generated-stored-column`: `ADD COLUMN … GENERATED ALWAYS AS (…) STORED`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddGeneratedStoredColumn,
    summary: "ADD COLUMN … GENERATED … STORED rewrites the table while blocking reads and writes",
    group: Group::Columns,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("add_generated_stored_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE items (id bigint PRIMARY KEY, price numeric, qty int)",
        flagged: &[
            "ALTER TABLE items ADD COLUMN total numeric GENERATED ALWAYS AS (price * qty) STORED",
        ],
        safe: &["ALTER TABLE items ADD COLUMN total numeric"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    for cmd in alter_cmds(stmt) {
        let (ast::AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col))) =
            (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref()))
        else {
            continue;
        };
        let stored = col.constraints.iter().any(|n| {
            matches!(&n.node, Some(NodeEnum::Constraint(c))
                if c.contype == ast::ConstrType::ConstrGenerated as i32 && c.generated_kind != "v")
        });
        if !stored {
            continue;
        }
        let virtual_hint = if input.ctx.server_major >= 18 {
            " On PostgreSQL 18, a VIRTUAL generated column (the default without STORED) is computed on read and added instantly."
        } else {
            ""
        };
        out.push(
            input
                .violation(RULE.id, format!("ADD COLUMN {} … STORED computes and writes the value for every row, rewriting the table while blocking reads and writes", col.colname))
                .with_detail(lock_detail(input.facts))
                .with_help(format!(
                    "Add a plain nullable column, fill it for new rows with a trigger, backfill old rows in batches, then use it.{virtual_hint}"
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
    fn stored_generated_columns_are_flagged() {
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED",
        );
        assert!(!v.help.contains("VIRTUAL"));
        let mut pg18 = Context::for_server(18);
        let v = violations_in(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED",
            &mut pg18,
        );
        assert!(v[0].help.contains("VIRTUAL"));
    }

    #[test]
    fn virtual_plain_and_new_tables_are_fine() {
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) VIRTUAL",
        );
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN c int");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED",
        );
    }
}
