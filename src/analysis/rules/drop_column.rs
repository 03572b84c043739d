//! `drop-column`: dropping a column.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropColumn,
    summary: "DROP COLUMN loses data and breaks running code that still reads or writes it",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("drop_column.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, legacy_flag boolean)",
        flagged: &["ALTER TABLE users DROP COLUMN legacy_flag"],
        safe: &["ALTER TABLE users ALTER COLUMN legacy_flag DROP NOT NULL"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    for cmd in alter_cmds(stmt) {
        if subtype(cmd) == ast::AlterTableType::AtDropColumn {
            out.push(
                input
                    .violation(RULE.id, format!("DROP COLUMN {} loses its data and breaks any running code that still uses it", cmd.name))
                    .with_detail(Some("The drop is quick (a brief ACCESS EXCLUSIVE lock, no rewrite), but it cannot be undone and the deployed code may still name the column.".to_owned()))
                    .with_help(format!(
                        "Contract only after every running release stopped using {0}: first stop reading and writing it, deploy, then drop it with /* ddlgate:allow drop-column reason=\"…\" */.",
                        cmd.name
                    )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn drops_are_flagged_unless_the_table_is_new() {
        assert_flagged(RULE.id, "ALTER TABLE t DROP COLUMN c");
        assert_flagged(RULE.id, "ALTER TABLE t DROP COLUMN IF EXISTS c CASCADE");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (c int, d int); ALTER TABLE t DROP COLUMN c",
        );
        assert_ok(RULE.id, "ALTER TABLE t DROP CONSTRAINT c");
    }
}
