//! `drop-table`: dropping a table.

use super::{
    ByEvidence, DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, by_evidence,
    lock_detail,
};
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
    let mut existing: Vec<String> = Vec::new();
    let mut detail = lock_detail(input.facts);
    let mut help = "Drop a table only after every running release stopped using it; record why with /* ddlgate:allow drop-table reason=\"…\" */.".to_owned();
    for name in drop_object_names(stmt) {
        if input.ctx.is_new(&name) {
            continue;
        }
        let evidence = by_evidence(input, RULE.id, &name, None);
        if matches!(evidence, ByEvidence::Unused) {
            continue;
        }
        detail = evidence.detail(detail);
        help = evidence.help(help, &name.to_string());
        existing.push(name.to_string());
    }
    if existing.is_empty() {
        return;
    }
    out.push(
        input
            .violation(
                RULE.id,
                format!(
                    "DROP TABLE {} loses its data and breaks any running code that still uses it",
                    existing.join(", ")
                ),
            )
            .with_detail(detail)
            .with_help(help),
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

    #[test]
    fn evidence_of_use_decides_per_table() {
        let mut unused_ctx = with_evidence(RULE.id, "orders", None, unused());
        assert!(violations_in(RULE.id, "DROP TABLE orders", &mut unused_ctx).is_empty());
        // The unused table is left out of the refusal; the one without evidence stays in it.
        let found = violations_in(RULE.id, "DROP TABLE orders, invoices", &mut unused_ctx);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.starts_with("DROP TABLE invoices "),
            "{}",
            found[0].message
        );
        let mut used = with_evidence(RULE.id, "orders", None, used_by("SELECT * FROM orders"));
        assert_eq!(
            violations_in(RULE.id, "DROP TABLE orders", &mut used).len(),
            1
        );
    }
}
