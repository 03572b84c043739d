//! `duplicate-column-assignment`: the same column twice in one `UPDATE … SET`, `INSERT` column
//! list or `CREATE TABLE`.

use std::collections::HashSet;

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::{alter_cmds, string_value, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DuplicateColumnAssignment,
    summary: "The same column named twice in one statement is an error",
    group: Group::Correctness,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("duplicate_column_assignment.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: true,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, status text, note text)",
        flagged: &["ALTER TABLE orders ADD COLUMN shipped boolean, ADD COLUMN shipped boolean"],
        safe: &["ALTER TABLE orders ADD COLUMN shipped boolean, ADD COLUMN shipped_at timestamptz"],
    },
    check,
    finish: None,
};

fn target_names(targets: &[ast::Node]) -> Vec<&str> {
    targets
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::ResTarget(t)) if t.indirection.is_empty() => Some(t.name.as_str()),
            _ => None,
        })
        .collect()
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let (what, names): (&str, Vec<&str>) = match input.node {
        NodeEnum::UpdateStmt(s) => ("UPDATE … SET assigns", target_names(&s.target_list)),
        NodeEnum::InsertStmt(s) => ("INSERT lists", target_names(&s.cols)),
        NodeEnum::CreateStmt(s) => (
            "CREATE TABLE defines",
            s.table_elts
                .iter()
                .filter_map(|e| match &e.node {
                    Some(NodeEnum::ColumnDef(c)) => Some(c.colname.as_str()),
                    _ => None,
                })
                .collect(),
        ),
        NodeEnum::AlterTableStmt(s) => (
            "ALTER TABLE adds",
            alter_cmds(s)
                .filter(|c| subtype(c) == ast::AlterTableType::AtAddColumn)
                .filter_map(|c| match c.def.as_ref().and_then(|d| d.node.as_ref()) {
                    Some(NodeEnum::ColumnDef(col)) => Some(col.colname.as_str()),
                    _ => None,
                })
                .collect(),
        ),
        _ => return,
    };
    let mut seen = HashSet::new();
    let mut reported = HashSet::new();
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        if !seen.insert(name) && reported.insert(name) {
            out.push(
                input
                    .violation(
                        RULE.id,
                        format!(
                            "{what} column {name} more than once; PostgreSQL refuses the statement"
                        ),
                    )
                    .with_help(format!("Name {name} once.")),
            );
        }
    }
    let _ = string_value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn duplicates_are_flagged_once_each() {
        assert_flagged(RULE.id, "UPDATE t SET a = 1, b = 2, a = 3");
        assert_flagged(RULE.id, "INSERT INTO t (a, a) VALUES (1, 2)");
        assert_flagged(RULE.id, "CREATE TABLE t (a int, a text)");
        assert_eq!(
            violations(RULE.id, "UPDATE t SET a = 1, a = 2, a = 3").len(),
            1
        );
    }

    #[test]
    fn distinct_columns_and_subfields_are_fine() {
        assert_ok(RULE.id, "UPDATE t SET a = 1, b = 2");
        assert_ok(RULE.id, "UPDATE t SET arr[1] = 1, arr[2] = 2");
        assert_ok(RULE.id, "INSERT INTO t (a, b) VALUES (1, 2)");
    }
}
