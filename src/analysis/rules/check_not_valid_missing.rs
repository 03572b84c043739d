//! `check-not-valid-missing`: a `CHECK` constraint added to an existing table without
//! `NOT VALID`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, default_object_name,
    is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, quote_ident, string_value, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{Applicability, Edit, Fix, FixStep, Undo, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CheckNotValidMissing,
    summary: "ADD CHECK without NOT VALID blocks reads and writes while every row is checked",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("check_not_valid_missing.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)",
        flagged: &["ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0)"],
        safe: &[
            "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID; \
                 ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive",
        ],
    },
    check,
    finish: None,
};

fn is_check(c: &ast::Constraint) -> bool {
    c.contype == ast::ConstrType::ConstrCheck as i32
}

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
        match (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
            (ast::AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c)))
                if is_check(c) && !c.skip_validation =>
            {
                let fix = (cmds.len() == 1 && table.inh && input.ctx.can_run_outside_transaction())
                    .then(|| not_valid_fix(input, table, c))
                    .flatten();
                let help = match &fix {
                    Some(f) => format!("Add it unvalidated, then validate without blocking: {}", f.apply(input.source, input.span)),
                    None => "Add the constraint with NOT VALID, then run ALTER TABLE … VALIDATE CONSTRAINT … in a separate transaction.".to_owned(),
                };
                out.push(
                    input
                        .violation(RULE.id, "ADD CHECK without NOT VALID blocks every read and write on the table while each row is checked")
                        .with_detail(lock_detail(input.facts))
                        .with_help(help)
                        .with_fix(fix),
                );
            }
            (ast::AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col)))
                if col
                    .constraints
                    .iter()
                    .any(|n| matches!(&n.node, Some(NodeEnum::Constraint(c)) if is_check(c))) =>
            {
                out.push(
                    input
                        .violation(RULE.id, "ADD COLUMN … CHECK checks every existing row while blocking reads and writes")
                        .with_detail(lock_detail(input.facts))
                        .with_help("Add the column first, then ADD CONSTRAINT … CHECK (…) NOT VALID, then VALIDATE CONSTRAINT in a separate transaction."),
                );
            }
            _ => {}
        }
    }
}

/// The first column an expression mentions, which PostgreSQL uses to name a CHECK.
fn first_column(node: &ast::Node) -> Option<String> {
    match &node.node {
        Some(NodeEnum::ColumnRef(c)) => c.fields.last().and_then(string_value).map(str::to_owned),
        Some(NodeEnum::AExpr(e)) => e
            .lexpr
            .as_deref()
            .and_then(first_column)
            .or_else(|| e.rexpr.as_deref().and_then(first_column)),
        Some(NodeEnum::BoolExpr(b)) => b.args.iter().find_map(first_column),
        Some(NodeEnum::NullTest(n)) => n.arg.as_deref().and_then(first_column),
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().and_then(first_column),
        Some(NodeEnum::FuncCall(f)) => f.args.iter().find_map(first_column),
        _ => None,
    }
}

fn not_valid_fix(input: &Input<'_>, table: &ast::RangeVar, c: &ast::Constraint) -> Option<Fix> {
    let table_name = RelationName::from_range_var(table);
    let (name, mut edits, applicability) = if c.conname.is_empty() {
        let column = c.raw_expr.as_deref().and_then(first_column);
        let columns: Vec<&str> = column.as_deref().into_iter().collect();
        let name = default_object_name(&table.relname, &columns, "check");
        let at = input.after_keyword("add")?;
        let edit = Edit {
            range: at..at,
            text: format!(" CONSTRAINT {}", quote_ident(&name)),
        };
        (name, vec![edit], Applicability::Unsafe)
    } else {
        (c.conname.clone(), Vec::new(), Applicability::Safe)
    };
    let end = input.span.end;
    edits.push(Edit {
        range: end..end,
        text: format!(
            " NOT VALID; ALTER TABLE {table_name} VALIDATE CONSTRAINT {}",
            quote_ident(&name)
        ),
    });
    let added = FixStep::undone_by(Undo::DropConstraint {
        table: table_name,
        name,
    });
    Some(Fix {
        title: "Add `NOT VALID`, then `VALIDATE CONSTRAINT`".to_owned(),
        edits,
        applicability,
        steps: vec![added, FixStep::default()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn named_check_gets_a_safe_fix() {
        assert_fix(
            RULE.id,
            "ALTER TABLE t ADD CONSTRAINT positive CHECK (n > 0)",
            "ALTER TABLE t ADD CONSTRAINT positive CHECK (n > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT positive",
        );
    }

    #[test]
    fn unnamed_check_is_named_after_its_first_column() {
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE t ADD CHECK (lower(email) <> '' AND n > 0)",
        );
        assert_eq!(v.fix.as_ref().unwrap().applicability, Applicability::Unsafe);
        assert_fix(
            RULE.id,
            "ALTER TABLE t ADD CHECK (n > 0)",
            "ALTER TABLE t ADD CONSTRAINT t_n_check CHECK (n > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT t_n_check",
        );
    }

    #[test]
    fn not_valid_and_new_tables_are_fine() {
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD CONSTRAINT c CHECK (n > 0) NOT VALID",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (n int); ALTER TABLE t ADD CONSTRAINT c CHECK (n > 0)",
        );
        assert_ok(RULE.id, "ALTER TABLE t ADD CONSTRAINT u UNIQUE (n)");
    }

    #[test]
    fn column_check_is_flagged() {
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN c int CHECK (c > 0)")
                .fix
                .is_none()
        );
    }
}
