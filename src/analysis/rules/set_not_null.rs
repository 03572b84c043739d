//! `set-not-null`: `ALTER COLUMN … SET NOT NULL` on an existing table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, default_object_name,
    is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, quote_ident, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{Applicability, FixStep, Undo, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::SetNotNull,
    summary: "SET NOT NULL blocks reads and writes while every row is checked",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[
        CatalogFact::CreatedInTransaction,
        CatalogFact::ValidatedNotNullCheck,
    ],
    docs: include_str!("set_not_null.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text)",
        flagged: &["ALTER TABLE users ALTER COLUMN email SET NOT NULL"],
        safe: &[
            "ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID; \
                 ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null; \
                 ALTER TABLE users ALTER COLUMN email SET NOT NULL; \
                 ALTER TABLE users DROP CONSTRAINT users_email_not_null",
        ],
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
    // A valid CHECK (c IS NOT NULL) added just before lets SET NOT NULL skip its scan, so the
    // last step of the safe procedure is not reported.
    let proven_by_check = |column: &str| {
        input
            .ctx
            .proven_not_null(&RelationName::from_range_var(table), column)
    };
    for cmd in &cmds {
        if subtype(cmd) != ast::AlterTableType::AtSetNotNull || proven_by_check(&cmd.name) {
            continue;
        }
        let rewritable = cmds.len() == 1
            && table.inh
            && input.ctx.server_major >= 12
            && input.ctx.can_run_outside_transaction();
        let fix = rewritable.then(|| {
            let (sql, steps) = safe_sequence(table, &cmd.name, input.ctx.server_major);
            input.replacement_fix(
                "Check with a NOT VALID constraint first, then validate it",
                sql,
                Applicability::Safe,
                steps,
            )
        });
        let help = match &fix {
            Some(f) => format!("Validate without blocking, then set it: {}", f.apply(input.source, input.span)),
            None if input.ctx.server_major >= 12 => "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE it in a separate transaction, then SET NOT NULL (no scan needed) and drop the CHECK.".to_owned(),
            None => "Before PostgreSQL 12 SET NOT NULL always scans; a validated CHECK (column IS NOT NULL) NOT VALID constraint is the non-blocking alternative.".to_owned(),
        };
        out.push(
            input
                .violation(RULE.id, format!("SET NOT NULL on {} blocks every read and write on the table while each row is checked", cmd.name))
                .with_detail(lock_detail(input.facts))
                .with_help(help)
                .with_fix(fix),
        );
    }
}

/// The non-blocking sequence. PostgreSQL 18 has `NOT NULL … NOT VALID`; 12–17 use a CHECK that
/// lets `SET NOT NULL` skip its scan, then drop it. The first step adds the constraint a later
/// failure must drop again.
fn safe_sequence(table: &ast::RangeVar, column: &str, server_major: u32) -> (String, Vec<FixStep>) {
    let t = RelationName::from_range_var(table);
    let col = quote_ident(column);
    let constraint = default_object_name(&table.relname, &[column], "not_null");
    let name = quote_ident(&constraint);
    let (sql, count) = if server_major >= 18 {
        (
            format!(
                "ALTER TABLE {t} ADD CONSTRAINT {name} NOT NULL {col} NOT VALID; \
                 ALTER TABLE {t} VALIDATE CONSTRAINT {name}"
            ),
            2,
        )
    } else {
        (
            format!(
                "ALTER TABLE {t} ADD CONSTRAINT {name} CHECK ({col} IS NOT NULL) NOT VALID; \
                 ALTER TABLE {t} VALIDATE CONSTRAINT {name}; \
                 ALTER TABLE {t} ALTER COLUMN {col} SET NOT NULL; \
                 ALTER TABLE {t} DROP CONSTRAINT {name}"
            ),
            4,
        )
    };
    let mut steps = vec![FixStep::undone_by(Undo::DropConstraint {
        table: t,
        name: constraint,
    })];
    steps.resize(count, FixStep::default());
    (sql, steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn rewritten_through_a_check_before_postgres_18() {
        assert_fix(
            RULE.id,
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
            "ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID; \
             ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null; \
             ALTER TABLE users ALTER COLUMN email SET NOT NULL; \
             ALTER TABLE users DROP CONSTRAINT users_email_not_null",
        );
    }

    #[test]
    fn postgres_18_uses_native_not_null_not_valid() {
        let mut pg18 = Context::for_server(18);
        let v = violations_in(
            RULE.id,
            "ALTER TABLE app.users ALTER email SET NOT NULL",
            &mut pg18,
        );
        let fixed = v[0]
            .fix
            .as_ref()
            .unwrap()
            .apply("ALTER TABLE app.users ALTER email SET NOT NULL", &v[0].span);
        assert_eq!(
            fixed,
            "ALTER TABLE app.users ADD CONSTRAINT users_email_not_null NOT NULL email NOT VALID; \
             ALTER TABLE app.users VALIDATE CONSTRAINT users_email_not_null"
        );
        assert!(violations_in(RULE.id, &fixed, &mut Context::for_server(18)).is_empty());
    }

    #[test]
    fn no_fix_before_12_or_in_a_transaction() {
        let mut pg11 = Context::for_server(11);
        assert!(
            violations_in(RULE.id, "ALTER TABLE t ALTER c SET NOT NULL", &mut pg11)[0]
                .fix
                .is_none()
        );
        let mut tx = Context {
            in_transaction: true,
            ..Context::default()
        };
        assert!(
            violations_in(RULE.id, "ALTER TABLE t ALTER c SET NOT NULL", &mut tx)[0]
                .fix
                .is_none()
        );
    }

    /// The manual procedure, one statement per request (psql -f in autocommit) or one
    /// migration file each: the validated CHECK is remembered across them, so the final
    /// SET NOT NULL is not rewritten again (into a CHECK of the same name).
    #[test]
    fn a_check_validated_in_an_earlier_script_proves_the_column() {
        let mut ctx = Context::default();
        for step in [
            "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID",
            "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn",
        ] {
            violations_in(RULE.id, step, &mut ctx);
            ctx.next_script();
        }
        assert!(
            violations_in(
                RULE.id,
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
                &mut ctx
            )
            .is_empty()
        );
        // Another column is not proven.
        assert_eq!(
            violations_in(
                RULE.id,
                "ALTER TABLE users ALTER COLUMN name SET NOT NULL",
                &mut ctx
            )
            .len(),
            1
        );
    }

    #[test]
    fn new_tables_and_drop_not_null_are_fine() {
        assert_ok(
            RULE.id,
            "CREATE TABLE t (c int); ALTER TABLE t ALTER c SET NOT NULL",
        );
        assert_ok(RULE.id, "ALTER TABLE t ALTER c DROP NOT NULL");
    }
}
