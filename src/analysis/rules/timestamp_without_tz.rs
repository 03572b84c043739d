//! `timestamp-without-tz`: columns of type `timestamp` (without time zone).

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, declared_types};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::TimestampWithoutTz,
    summary: "timestamp without time zone stores a wall-clock reading, not an instant",
    group: Group::Style,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("timestamp_without_tz.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE events ADD COLUMN happened_at timestamp"],
        safe: &["ALTER TABLE events ADD COLUMN happened_at timestamptz"],
    },
    check,
    finish: None,
};

/// The built-in type names (as PostgreSQL spells them internally) this rule reports.
const TYPES: &[&str] = &["timestamp"];

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
                        "column {} is timestamp without time zone: it records a wall-clock reading, not a point in time",
                        declared.column
                    ),
                )
                .with_help("Use timestamptz (timestamp with time zone); it stores an instant in UTC and converts on input and output."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn timestamp_without_time_zone_is_reported() {
        assert_flagged(RULE.id, "CREATE TABLE t (a timestamp)");
        assert_flagged(RULE.id, "CREATE TABLE t (a timestamp(3) without time zone)");
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN a timestamp");
        assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN a TYPE timestamp");
        assert_ok(RULE.id, "CREATE TABLE t (a timestamptz)");
        assert_ok(RULE.id, "CREATE TABLE t (a timestamp with time zone)");
        assert_ok(RULE.id, "CREATE TABLE t (a date)");
    }
}
