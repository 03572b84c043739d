//! `drop-column`: dropping a column.

use super::{
    ByEvidence, DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, by_evidence,
    is_new_table,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropColumn,
    summary: "DROP COLUMN loses data and breaks running code that still reads or writes it",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("drop_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, legacy_flag boolean)",
        flagged: &["ALTER TABLE users DROP COLUMN legacy_flag"],
        safe: &["ALTER TABLE users ALTER COLUMN legacy_flag DROP NOT NULL"],
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
    let Some(table) = stmt.relation.as_ref().map(RelationName::from_range_var) else {
        return;
    };
    for cmd in alter_cmds(stmt) {
        if subtype(cmd) == ast::AlterTableType::AtDropColumn {
            let evidence = by_evidence(input, RULE.id, &table, Some(&cmd.name));
            if matches!(evidence, ByEvidence::Unused) {
                continue;
            }
            out.push(
                input
                    .violation(RULE.id, format!("DROP COLUMN {} loses its data and breaks any running code that still uses it", cmd.name))
                    .with_detail(evidence.detail(Some("The drop is quick (a brief ACCESS EXCLUSIVE lock, no rewrite), but it cannot be undone and the deployed code may still name the column.".to_owned())))
                    .with_help(evidence.help(format!(
                        "Contract only after every running release stopped using {0}: first stop reading and writing it, deploy, then drop it with /* ddlgate:allow drop-column reason=\"…\" */.",
                        cmd.name
                    ), &cmd.name)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn drops_are_flagged_unless_the_table_is_new() {
        assert_flagged(RULE.id, "ALTER TABLE t DROP COLUMN c");
        assert_flagged(RULE.id, "ALTER TABLE t DROP COLUMN IF EXISTS c CASCADE");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (c int, d int); ALTER TABLE t DROP COLUMN c",
        );
        assert_ok(RULE.id, "ALTER TABLE t DROP CONSTRAINT c");
    }

    #[test]
    fn evidence_of_use_decides() {
        let sql = "ALTER TABLE orders DROP COLUMN note";
        let mut unused_ctx = with_evidence(RULE.id, "orders", Some("note"), unused());
        assert!(violations_in(RULE.id, sql, &mut unused_ctx).is_empty());
        let mut used = with_evidence(
            RULE.id,
            "orders",
            Some("note"),
            used_by("SELECT note FROM orders WHERE id = $1"),
        );
        let found = violations_in(RULE.id, sql, &mut used);
        assert_eq!(found.len(), 1);
        let detail = found[0].detail.clone().unwrap_or_default();
        assert!(
            detail.contains("Still used in the last 24h by 1 statement: queryid 42, 412 calls: SELECT note FROM orders WHERE id = $1"),
            "{detail}"
        );
        let mut without = with_evidence(
            RULE.id,
            "orders",
            Some("note"),
            crate::analysis::usage::Evidence::Unavailable(
                "samples span 2h of the 24h needed".into(),
            ),
        );
        let found = violations_in(RULE.id, sql, &mut without);
        assert!(
            found[0]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("No evidence of use to go by: samples span 2h")),
            "{found:?}"
        );
        // Evidence about another column decides nothing here.
        let mut other = with_evidence(RULE.id, "orders", Some("email"), unused());
        assert_eq!(violations_in(RULE.id, sql, &mut other).len(), 1);
        // A policy that leaves the rule out of [evidence] keeps the plain refusal.
        let mut ignored = with_evidence(RULE.id, "orders", Some("note"), unused());
        ignored.evidence.rules.clear();
        assert_eq!(violations_in(RULE.id, sql, &mut ignored).len(), 1);
    }
}
