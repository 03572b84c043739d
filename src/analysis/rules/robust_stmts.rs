//! `robust-stmts` (opt-in): statements that fail when a migration is re-run.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::RobustStmts,
    summary: "CREATE without IF NOT EXISTS or DROP without IF EXISTS fails when the migration is re-run",
    group: Group::Correctness,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("robust_stmts.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint)",
        flagged: &["CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id)"],
        safe: &[
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_idx ON orders (customer_id)",
        ],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let missing = match input.node {
        NodeEnum::CreateStmt(s) if !s.if_not_exists => Some("CREATE TABLE … IF NOT EXISTS"),
        NodeEnum::IndexStmt(s) if !s.if_not_exists => Some("CREATE INDEX … IF NOT EXISTS"),
        NodeEnum::CreateSeqStmt(s) if !s.if_not_exists => Some("CREATE SEQUENCE … IF NOT EXISTS"),
        NodeEnum::CreateSchemaStmt(s) if !s.if_not_exists => Some("CREATE SCHEMA … IF NOT EXISTS"),
        NodeEnum::DropStmt(s) if !s.missing_ok => Some("DROP … IF EXISTS"),
        NodeEnum::AlterTableStmt(s) => alter_cmds(s).find_map(|c| match subtype(c) {
            ast::AlterTableType::AtAddColumn if !c.missing_ok => Some("ADD COLUMN … IF NOT EXISTS"),
            ast::AlterTableType::AtDropColumn if !c.missing_ok => Some("DROP COLUMN … IF EXISTS"),
            ast::AlterTableType::AtDropConstraint if !c.missing_ok => {
                Some("DROP CONSTRAINT … IF EXISTS")
            }
            _ => None,
        }),
        _ => None,
    };
    if let Some(form) = missing {
        out.push(
            input
                .violation(RULE.id, format!("{} fails if the migration runs again (after a partial failure, say); use {form}", input.facts.kind))
                .with_help(format!("Write it as {form}, so a retried migration converges.")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn non_idempotent_forms_are_flagged() {
        assert_flagged(RULE.id, "CREATE TABLE t (a int)");
        assert_flagged(RULE.id, "DROP INDEX CONCURRENTLY i");
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN c int");
        assert_ok(RULE.id, "CREATE TABLE IF NOT EXISTS t (a int)");
        assert_ok(RULE.id, "DROP INDEX CONCURRENTLY IF EXISTS i");
        assert_ok(RULE.id, "ALTER TABLE t ADD COLUMN IF NOT EXISTS c int");
    }
}
