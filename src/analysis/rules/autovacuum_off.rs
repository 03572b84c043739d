//! `autovacuum-off`: turning autovacuum off for a table.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AutovacuumOff,
    summary: "autovacuum_enabled = false lets the table bloat and risks transaction-ID wraparound",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("autovacuum_off.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE events SET (autovacuum_enabled = false)"],
        safe: &["ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.01)"],
    },
    check,
    finish: None,
};

/// Whether a reloption list turns autovacuum off (`autovacuum_enabled` or
/// `toast.autovacuum_enabled` set to a false value).
fn disables_autovacuum(options: &[ast::Node]) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "autovacuum_enabled" => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::String(s)) => matches!(
                    s.sval.to_ascii_lowercase().as_str(),
                    "false" | "off" | "0" | "no" | "f" | "n"
                ),
                // Bare keywords (`off`) arrive as a type name.
                Some(NodeEnum::TypeName(t)) => t
                    .names
                    .last()
                    .and_then(crate::analysis::classify::string_value)
                    .is_some_and(|v| {
                        matches!(v.to_ascii_lowercase().as_str(), "false" | "off" | "no")
                    }),
                Some(NodeEnum::Integer(i)) => i.ival == 0,
                Some(NodeEnum::Boolean(b)) => !b.boolval,
                _ => false,
            }
        }
        _ => false,
    })
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let off = match input.node {
        NodeEnum::CreateStmt(s) => disables_autovacuum(&s.options),
        NodeEnum::AlterTableStmt(_) => {
            alter_subcommands(input, &[ast::AlterTableType::AtSetRelOptions])
                .into_iter()
                .any(|cmd| match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                    Some(NodeEnum::List(l)) => disables_autovacuum(&l.items),
                    _ => false,
                })
        }
        _ => false,
    };
    if off {
        out.push(
            input
                .violation(RULE.id, "autovacuum_enabled = false stops autovacuum on this table: dead rows accumulate, statistics go stale, and PostgreSQL still has to vacuum it before transaction IDs wrap around")
                .with_help("Tune the table's autovacuum thresholds instead (autovacuum_vacuum_scale_factor, autovacuum_vacuum_cost_limit), or schedule VACUUM if you really turn it off."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn turning_autovacuum_off_is_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t SET (autovacuum_enabled = false)");
        assert_flagged(
            RULE.id,
            "ALTER TABLE t SET (toast.autovacuum_enabled = off, fillfactor = 70)",
        );
        assert_flagged(
            RULE.id,
            "CREATE TABLE t (a int) WITH (autovacuum_enabled = 0)",
        );
    }

    #[test]
    fn other_settings_are_fine() {
        assert_ok(RULE.id, "ALTER TABLE t SET (autovacuum_enabled = true)");
        assert_ok(
            RULE.id,
            "ALTER TABLE t SET (autovacuum_vacuum_scale_factor = 0.01)",
        );
        assert_ok(RULE.id, "ALTER TABLE t RESET (autovacuum_enabled)");
    }
}
