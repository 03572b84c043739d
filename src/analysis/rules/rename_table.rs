//! `rename-table`: renaming a table that running code uses.

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
    id: RuleId::RenameTable,
    summary: "RENAME TABLE breaks every running query that uses the old name",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("rename_table.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE customer (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE customer RENAME TO customers"],
        safe: &["CREATE VIEW customers AS SELECT * FROM customer"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::RenameStmt(stmt) = input.node else {
        return;
    };
    let kind = ast::ObjectType::try_from(stmt.rename_type).unwrap_or(ast::ObjectType::Undefined);
    if !matches!(
        kind,
        ast::ObjectType::ObjectTable | ast::ObjectType::ObjectView | ast::ObjectType::ObjectMatview
    ) || is_new_table(input, stmt.relation.as_ref())
    {
        return;
    }
    let Some(rv) = stmt.relation.as_ref() else {
        return;
    };
    let old = rv.relname.as_str();
    let evidence = by_evidence(input, RULE.id, &RelationName::from_range_var(rv), None);
    if matches!(evidence, ByEvidence::Unused) {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("renaming {old} to {} breaks every query of the running application that still uses the old name", stmt.newname))
            .with_detail(evidence.detail(Some("The rename is instant, but the deployed code is not renamed with it.".to_owned())))
            .with_help(format!(
                "Rename and leave a view under the old name for the transition (ALTER TABLE {old} RENAME TO {new}; CREATE VIEW {old} AS SELECT * FROM {new}) in one transaction, then drop the view once no code uses it.",
                new = stmt.newname
            )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn table_renames_are_flagged_unless_new() {
        assert_flagged(RULE.id, "ALTER TABLE customer RENAME TO customers");
        assert_flagged(RULE.id, "ALTER VIEW v RENAME TO w");
        assert_ok(RULE.id, "CREATE TABLE a (x int); ALTER TABLE a RENAME TO b");
        assert_ok(RULE.id, "ALTER TABLE a RENAME COLUMN x TO y");
        assert_ok(RULE.id, "ALTER INDEX i RENAME TO j");
    }

    #[test]
    fn evidence_of_use_decides() {
        let sql = "ALTER TABLE orders RENAME TO purchases";
        let mut unused_ctx = with_evidence(RULE.id, "orders", None, unused());
        assert!(violations_in(RULE.id, sql, &mut unused_ctx).is_empty());
        let mut used = with_evidence(RULE.id, "orders", None, used_by("SELECT * FROM orders"));
        assert_eq!(violations_in(RULE.id, sql, &mut used).len(), 1);
    }
}
