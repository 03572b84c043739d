//! `create-enum`: `CREATE TYPE … AS ENUM`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CreateEnum,
    summary: "Enum values cannot be removed or reordered; a lookup table or CHECK constraint can change",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("create_enum.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "",
        flagged: &["CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped')"],
        safe: &["CREATE TABLE order_statuses (status text PRIMARY KEY)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::CreateEnumStmt(stmt) = input.node else {
        return;
    };
    let name = stmt
        .type_name
        .iter()
        .filter_map(crate::analysis::classify::string_value)
        .collect::<Vec<_>>()
        .join(".");
    out.push(
        input
            .violation(
                RULE.id,
                format!(
                    "enum type {name}: values can be added but never removed or reordered without recreating the type and rewriting every table that uses it"
                ),
            )
            .with_help(
                "Use a text column with a CHECK (col IN (…)) constraint (replaceable online with NOT VALID + VALIDATE), or a lookup table with a foreign key.",
            ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn enum_types_are_reported() {
        assert_flagged(RULE.id, "CREATE TYPE mood AS ENUM ('sad', 'ok')");
        assert_flagged(RULE.id, "CREATE TYPE s.mood AS ENUM ()");
        assert_ok(RULE.id, "CREATE TYPE pair AS (a int, b int)");
        assert_ok(RULE.id, "ALTER TYPE mood ADD VALUE 'happy'");
        assert_ok(
            RULE.id,
            "CREATE DOMAIN mood AS text CHECK (VALUE IN ('sad', 'ok'))",
        );
    }
}
