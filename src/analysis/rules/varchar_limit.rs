//! `varchar-limit`: columns of type `varchar(n)` (a length limit in the type).

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, declared_types};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::VarcharLimit,
    summary: "varchar(n) gives no speed and its limit is awkward to change",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("varchar_limit.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE users ADD COLUMN email varchar(255)"],
        safe: &["ALTER TABLE users ADD COLUMN email text"],
    },
    check,
    finish: None,
};

/// The built-in type names (as PostgreSQL spells them internally) this rule reports.
const TYPES: &[&str] = &["varchar"];

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for declared in declared_types(input.node) {
        let Some(name) = declared.builtin() else {
            continue;
        };
        if !TYPES.contains(&name.as_str()) || !declared.has_modifier() {
            continue;
        }
        out.push(
            input
                .violation(
                    RULE.id,
                    format!(
                        "column {} is varchar(n): the limit buys no performance, and lowering it later rewrites the table",
                        declared.column
                    ),
                )
                .with_help("Use text, and a CHECK (char_length(col) <= n) constraint if the limit is a business rule (added NOT VALID and validated separately, it can be changed without a rewrite)."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn varchar_with_a_length_is_reported() {
        assert_flagged(RULE.id, "CREATE TABLE t (a varchar(10))");
        assert_flagged(RULE.id, "CREATE TABLE t (a character varying(10))");
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN a varchar(3)");
        assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN a TYPE varchar(20)");
        assert_ok(RULE.id, "CREATE TABLE t (a varchar)");
        assert_ok(RULE.id, "CREATE TABLE t (a text)");
        assert_ok(RULE.id, "CREATE TABLE t (a s.varchar(10))");
    }
}
