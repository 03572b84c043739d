//! `json-column`: columns of type `json`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, declared_types};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::JsonColumn,
    summary: "json stores text and re-parses it on every access; jsonb is what you want",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("json_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE events ADD COLUMN payload json"],
        safe: &["ALTER TABLE events ADD COLUMN payload jsonb"],
    },
    check,
    finish: None,
};

/// The built-in type names (as PostgreSQL spells them internally) this rule reports.
const TYPES: &[&str] = &["json"];

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for declared in declared_types(input.node) {
        let Some(name) = declared.builtin() else {
            continue;
        };
        if !TYPES.contains(&name.as_str()) {
            continue;
        }
        out.push(
            input
                .violation(
                    RULE.id,
                    format!(
                        "column {} is json: the text is stored as-is, re-parsed on every access, and has no equality operator or GIN index support",
                        declared.column
                    ),
                )
                .with_help("Use jsonb, unless the exact input text (key order, duplicate keys, whitespace) must be kept."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn json_columns_are_reported() {
        assert_flagged(RULE.id, "CREATE TABLE t (a json)");
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN a json");
        assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN a TYPE json");
        assert_flagged(RULE.id, "CREATE TYPE pair AS (a json)");
        assert_ok(RULE.id, "CREATE TABLE t (a jsonb)");
        assert_ok(RULE.id, "CREATE TABLE t (a text)");
        assert_ok(RULE.id, "CREATE TABLE t (a s.json)");
    }
}
