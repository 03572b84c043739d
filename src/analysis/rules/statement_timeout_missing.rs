//! `statement-timeout-missing`: blocking DDL in a script that never set `statement_timeout`.

use super::lock_timeout_missing::blocks_traffic;
use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::StatementTimeoutMissing,
    summary: "DDL that blocks reads or writes runs without a statement_timeout",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("statement_timeout_missing.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN note text"],
        safe: &["SET statement_timeout = '5s'; ALTER TABLE orders ADD COLUMN note text"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    if input.ctx.timeouts_managed
        || input.ctx.history.statement_timeout_set
        || !blocks_traffic(input)
    {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("{} runs without a statement_timeout: if it turns out slow (a scan, a rewrite) it keeps its lock for as long as it takes", input.facts.kind))
            .with_help("Set a statement timeout first, e.g. SET statement_timeout = '5s';, so a statement that would hold its lock too long is cancelled."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn blocking_ddl_without_a_statement_timeout_is_flagged() {
        assert_flagged(RULE.id, "CREATE INDEX i ON t (a)");
        assert_flagged(
            RULE.id,
            "SET statement_timeout = '0'; ALTER TABLE t ADD COLUMN c int",
        );
        assert_ok(
            RULE.id,
            "SET statement_timeout = '5s'; ALTER TABLE t ADD COLUMN c int",
        );
        assert_ok(
            RULE.id,
            "SET statement_timeout TO 5000; ALTER TABLE t ADD COLUMN c int",
        );
        assert_ok(RULE.id, "VACUUM t");
    }
}
