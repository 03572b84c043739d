//! `drop-not-null`: `ALTER COLUMN … DROP NOT NULL`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropNotNull,
    summary: "DROP NOT NULL lets running code meet NULLs it never handled, and is costly to undo",
    group: Group::Columns,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("drop_not_null.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)",
        flagged: &["ALTER TABLE users ALTER COLUMN email DROP NOT NULL"],
        safe: &["ALTER TABLE users ALTER COLUMN email SET DEFAULT ''"],
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
        if subtype(cmd) == ast::AlterTableType::AtDropNotNull {
            out.push(
                input
                    .violation(RULE.id, format!("DROP NOT NULL on {} lets NULLs in that code reading the column may not handle, and setting it back later scans the table under an ACCESS EXCLUSIVE lock", cmd.name))
                    .with_help("Make sure every reader handles NULL before allowing it; this is usually the first step of removing a column (expand/contract)."),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn drop_not_null_is_flagged_on_existing_tables() {
        assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN c DROP NOT NULL");
        assert_ok(
            RULE.id,
            "CREATE TABLE t (c int NOT NULL); ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
        );
        assert_ok(RULE.id, "ALTER TABLE t ALTER COLUMN c SET NOT NULL");
    }
}
