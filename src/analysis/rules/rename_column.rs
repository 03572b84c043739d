//! `rename-column`: renaming a column that running code uses.

use super::{
    ByEvidence, DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, by_evidence,
    is_new_table,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::RenameColumn,
    summary: "RENAME COLUMN breaks every running query that uses the old name",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("rename_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, mail text)",
        flagged: &["ALTER TABLE users RENAME COLUMN mail TO email"],
        safe: &["ALTER TABLE users ADD COLUMN email text"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::RenameStmt(stmt) = input.node else {
        return;
    };
    if stmt.rename_type != ast::ObjectType::ObjectColumn as i32
        || is_new_table(input, stmt.relation.as_ref())
    {
        return;
    }
    let Some(table) = stmt.relation.as_ref().map(RelationName::from_range_var) else {
        return;
    };
    let evidence = by_evidence(input, RULE.id, &table, Some(&stmt.subname));
    if matches!(evidence, ByEvidence::Unused) {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("RENAME COLUMN {} breaks every query of the running application that still uses that name", stmt.subname))
            .with_detail(evidence.detail(Some("The rename is instant, but the deployed code is not renamed with it; queries fail until the new version is everywhere.".to_owned())))
            .with_help(evidence.help(format!(
                "Expand and contract: add {new}, write both columns, backfill, move reads to {new}, then drop {old} in a later release; allow the rename only once no code uses {old} (/* ddlgate:allow rename-column reason=\"…\" */).",
                new = stmt.newname,
                old = stmt.subname
            ), &stmt.subname)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn column_renames_are_flagged_unless_the_table_is_new() {
        assert_flagged(RULE.id, "ALTER TABLE t RENAME COLUMN a TO b");
        assert_flagged(RULE.id, "ALTER TABLE t RENAME a TO b");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t RENAME COLUMN a TO b",
        );
        assert_ok(RULE.id, "ALTER TABLE t RENAME TO u");
    }

    #[test]
    fn evidence_of_use_decides() {
        let sql = "ALTER TABLE orders RENAME COLUMN note TO comment";
        let mut unused_ctx = with_evidence(RULE.id, "orders", Some("note"), unused());
        assert!(violations_in(RULE.id, sql, &mut unused_ctx).is_empty());
        let mut used = with_evidence(
            RULE.id,
            "orders",
            Some("note"),
            used_by("SELECT note FROM orders"),
        );
        assert_eq!(violations_in(RULE.id, sql, &mut used).len(), 1);
    }
}
