//! `set-access-method`: `ALTER TABLE … SET ACCESS METHOD`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands,
    lock_detail,
};
use crate::analysis::parse::ast::AlterTableType;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::SetAccessMethod,
    summary: "SET ACCESS METHOD rewrites the table while blocking reads and writes",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("set_access_method.md"),
    examples: Examples {
        min_server_major: 15,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE events SET ACCESS METHOD heap"],
        safe: &["CREATE TABLE events_v2 (LIKE events INCLUDING ALL) USING heap"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for _ in alter_subcommands(input, &[AlterTableType::AtSetAccessMethod]) {
        out.push(
            input
                .violation(RULE.id, "SET ACCESS METHOD rewrites the whole table while blocking reads and writes")
                .with_detail(lock_detail(input.facts))
                .with_help("Create a new table with the wanted access method, copy in batches, then switch over."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn access_method_changes_are_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t SET ACCESS METHOD heap");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t SET ACCESS METHOD heap",
        );
    }
}
