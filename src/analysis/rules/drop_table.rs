//! `drop-table`: dropping a table.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, lock_detail};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::drop_object_names;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropTable,
    summary: "DROP TABLE loses data and breaks running code that still uses the table",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("drop_table.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE old_sessions (id bigint PRIMARY KEY)",
        flagged: &["DROP TABLE old_sessions"],
        safe: &["ALTER TABLE old_sessions RENAME TO old_sessions_to_drop_after_release_42"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::DropStmt(stmt) = input.node else {
        return;
    };
    if stmt.remove_type != ast::ObjectType::ObjectTable as i32 {
        return;
    }
    let existing: Vec<String> = drop_object_names(stmt)
        .into_iter()
        .filter(|n| !input.ctx.is_new(n))
        .map(|n| n.to_string())
        .collect();
    if existing.is_empty() {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("DROP TABLE {} loses its data and breaks any running code that still uses it", existing.join(", ")))
            .with_detail(lock_detail(input.facts))
            .with_help("Drop a table only after every running release stopped using it; record why with /* ddlgate:allow drop-table reason=\"…\" */."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn existing_tables_are_flagged() {
        let v = assert_flagged(RULE.id, "DROP TABLE IF EXISTS a, s.b CASCADE");
        assert!(v.message.contains("a, s.b"), "{}", v.message);
        assert_ok(RULE.id, "CREATE TABLE t (a int); DROP TABLE t");
        assert_ok(RULE.id, "DROP VIEW v");
    }
}
