//! `prefer-bigint`: columns of type `integer`, `smallint`, `serial` or `smallserial`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, declared_types};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::PreferBigint,
    summary: "32- and 16-bit integer columns can overflow; widening them later rewrites the table",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("prefer_bigint.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN customer_id integer"],
        safe: &["ALTER TABLE orders ADD COLUMN customer_id bigint"],
    },
    check,
    finish: None,
};

/// The built-in type names (as PostgreSQL spells them internally) this rule reports.
const TYPES: &[&str] = &[
    "int4",
    "int2",
    "serial",
    "serial4",
    "smallserial",
    "serial2",
];

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
                        "column {} is a 32- or 16-bit integer: it overflows at 2147483647 (or 32767), and widening it later rewrites the table",
                        declared.column
                    ),
                )
                .with_help("Use bigint (or bigint GENERATED … AS IDENTITY); it costs 4 more bytes per row and never needs the migration."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn small_integer_columns_are_reported() {
        assert_flagged(RULE.id, "CREATE TABLE t (a int)");
        assert_flagged(RULE.id, "CREATE TABLE t (a integer)");
        assert_flagged(RULE.id, "CREATE TABLE t (a int4)");
        assert_flagged(RULE.id, "CREATE TABLE t (a smallint)");
        assert_flagged(RULE.id, "CREATE TABLE t (id serial)");
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN a int2");
        assert_ok(RULE.id, "CREATE TABLE t (a bigint)");
        assert_ok(RULE.id, "CREATE TABLE t (id bigserial)");
        assert_ok(RULE.id, "CREATE TABLE t (a numeric)");
        assert_ok(RULE.id, "CREATE TABLE t (a int8)");
    }
}
