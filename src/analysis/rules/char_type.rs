//! `char-type`: columns of type `char(n)` / `character(n)`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, declared_types};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CharType,
    summary: "char(n) pads with spaces and is no faster than text",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("char_type.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE countries (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE countries ADD COLUMN code char(2)"],
        safe: &["ALTER TABLE countries ADD COLUMN code text CHECK (length(code) = 2)"],
    },
    check,
    finish: None,
};

/// The built-in type names (as PostgreSQL spells them internally) this rule reports.
const TYPES: &[&str] = &["bpchar"];

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
                        "column {} is char(n): values are blank-padded to the length, and trailing spaces are ignored in comparisons",
                        declared.column
                    ),
                )
                .with_help("Use text (with a CHECK (length(col) = n) constraint if the length matters)."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn char_columns_are_reported() {
        assert_flagged(RULE.id, "CREATE TABLE t (a char(3))");
        assert_flagged(RULE.id, "CREATE TABLE t (a character(3))");
        assert_flagged(RULE.id, "CREATE TABLE t (a bpchar)");
        assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN a TYPE char(5)");
        assert_ok(RULE.id, "CREATE TABLE t (a text)");
        assert_ok(RULE.id, "CREATE TABLE t (a \"char\")");
        assert_ok(RULE.id, "CREATE TABLE t (a varchar(3))");
        assert_ok(RULE.id, "CREATE TABLE t (a myschema.bpchar)");
    }
}
