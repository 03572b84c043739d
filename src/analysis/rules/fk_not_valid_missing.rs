//! `fk-not-valid-missing`: a foreign key added to an existing table without `NOT VALID`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, default_object_name,
    is_new_table, key_names, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, quote_ident, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{Applicability, Edit, Fix, FixStep, Undo, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::FkNotValidMissing,
    summary: "ADD FOREIGN KEY without NOT VALID blocks writes to both tables while every row is checked",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("fk_not_valid_missing.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE customers (id bigint PRIMARY KEY); \
                CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint)",
        flagged: &[
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
        ],
        safe: &[
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID; \
                 ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk",
        ],
    },
    check,
    finish: None,
};

fn is_foreign(c: &ast::Constraint) -> bool {
    c.contype == ast::ConstrType::ConstrForeign as i32
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
                if is_foreign(c) && !c.skip_validation =>
            {
                let fix = (cmds.len() == 1 && table.inh && input.ctx.can_run_outside_transaction())
                    .then(|| not_valid_fix(input, table, c))
                    .flatten();
                let help = match &fix {
                    Some(f) => format!("Add it unvalidated, then validate without blocking writes: {}", f.apply(input.source, input.span)),
                    None => "Add the foreign key with NOT VALID, then run ALTER TABLE … VALIDATE CONSTRAINT … in a separate transaction.".to_owned(),
                };
                out.push(
                    input
                        .violation(RULE.id, "ADD FOREIGN KEY without NOT VALID blocks writes to both tables while every existing row is checked")
                        .with_detail(lock_detail(input.facts))
                        .with_help(help)
                        .with_fix(fix),
                );
            }
            (ast::AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col)))
                if col
                    .constraints
                    .iter()
                    .any(|n| matches!(&n.node, Some(NodeEnum::Constraint(c)) if is_foreign(c))) =>
            {
                out.push(
                    input
                        .violation(RULE.id, "ADD COLUMN … REFERENCES checks every existing row while blocking writes to both tables")
                        .with_detail(lock_detail(input.facts))
                        .with_help("Add the column first, then ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in a separate transaction."),
                );
            }
            _ => {}
        }
    }
}

/// `… NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT name`, naming the constraint when the
/// statement did not (then Unsafe: PostgreSQL would have picked another name on a clash).
fn not_valid_fix(input: &Input<'_>, table: &ast::RangeVar, c: &ast::Constraint) -> Option<Fix> {
    let table_name = RelationName::from_range_var(table);
    let (name, mut edits, applicability) = if c.conname.is_empty() {
        let name = default_object_name(&table.relname, &key_names(&c.fk_attrs), "fkey");
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
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn named_foreign_key_gets_a_safe_two_step_fix() {
        let sql = "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE";
        let v = assert_flagged(RULE.id, sql);
        assert_eq!(v.fix.as_ref().unwrap().applicability, Applicability::Safe);
        assert_eq!(
            v.detail.as_deref(),
            Some(
                "Locks customers and orders in SHARE ROW EXCLUSIVE mode, which blocks writes until the transaction ends."
            )
        );
        assert_fix(
            RULE.id,
            sql,
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE NOT VALID; \
             ALTER TABLE orders VALIDATE CONSTRAINT fk",
        );
    }

    #[test]
    fn unnamed_foreign_key_is_named_as_postgres_would_and_marked_unsafe() {
        let sql = "ALTER TABLE app.orders ADD FOREIGN KEY (customer_id) REFERENCES customers";
        let v = assert_flagged(RULE.id, sql);
        assert_eq!(v.fix.as_ref().unwrap().applicability, Applicability::Unsafe);
        assert_fix(
            RULE.id,
            sql,
            "ALTER TABLE app.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers NOT VALID; \
             ALTER TABLE app.orders VALIDATE CONSTRAINT orders_customer_id_fkey",
        );
    }

    #[test]
    fn column_references_are_flagged_without_fix() {
        assert!(
            assert_flagged(
                RULE.id,
                "ALTER TABLE o ADD COLUMN c bigint REFERENCES p (id)"
            )
            .fix
            .is_none()
        );
    }

    #[test]
    fn not_valid_new_tables_and_transactions() {
        assert_ok(
            RULE.id,
            "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES p (id) NOT VALID",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE o (c int); ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES p (id)",
        );
        let mut in_tx = Context {
            in_transaction: true,
            ..Context::default()
        };
        let v = violations_in(
            RULE.id,
            "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES p (id)",
            &mut in_tx,
        );
        assert!(
            v[0].fix.is_none(),
            "validating in the same transaction gains nothing"
        );
    }
}
