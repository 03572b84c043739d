//! `set-tablespace`: `ALTER TABLE/INDEX … SET TABLESPACE`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands,
    lock_detail,
};
use crate::analysis::parse::ast::AlterTableType;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::SetTablespace,
    summary: "SET TABLESPACE copies the whole relation while blocking reads and writes",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("set_tablespace.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE events SET TABLESPACE pg_default"],
        safe: &["ALTER TABLE events SET (fillfactor = 90)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for _ in alter_subcommands(input, &[AlterTableType::AtSetTableSpace]) {
        out.push(
            input
                .violation(RULE.id, format!("{} … SET TABLESPACE copies every block to the new tablespace while blocking reads and writes", input.facts.kind))
                .with_detail(lock_detail(input.facts))
                .with_help("Move data online with a new table (or pg_repack --tablespace), or run it in a maintenance window."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn tablespace_moves_are_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t SET TABLESPACE fast");
        assert_flagged(RULE.id, "ALTER INDEX i SET TABLESPACE fast");
        assert_ok(RULE.id, "ALTER TABLE t SET (fillfactor = 90)");
    }
}
