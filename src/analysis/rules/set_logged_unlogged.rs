//! `set-logged-unlogged`: `ALTER TABLE … SET LOGGED / SET UNLOGGED`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands,
    lock_detail,
};
use crate::analysis::parse::ast::AlterTableType;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::SetLoggedUnlogged,
    summary: "SET LOGGED / SET UNLOGGED rewrites the table while blocking reads and writes",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("set_logged_unlogged.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE UNLOGGED TABLE imports (id bigint PRIMARY KEY, payload text)",
        flagged: &["ALTER TABLE imports SET LOGGED"],
        safe: &["CREATE TABLE imports_logged (LIKE imports INCLUDING ALL)"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for cmd in alter_subcommands(
        input,
        &[AlterTableType::AtSetLogged, AlterTableType::AtSetUnLogged],
    ) {
        let what = if cmd.subtype == AlterTableType::AtSetLogged as i32 {
            "SET LOGGED"
        } else {
            "SET UNLOGGED"
        };
        out.push(
            input
                .violation(RULE.id, format!("{what} rewrites the whole table (writing all of it to WAL for SET LOGGED) while blocking reads and writes"))
                .with_detail(lock_detail(input.facts))
                .with_help("Create a new table with the wanted persistence, copy the data in batches, and switch over; or do it in a maintenance window."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn persistence_changes_are_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t SET LOGGED");
        assert_flagged(RULE.id, "ALTER TABLE t SET UNLOGGED");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t SET UNLOGGED",
        );
    }
}
