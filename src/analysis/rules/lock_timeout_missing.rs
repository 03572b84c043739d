//! `lock-timeout-missing`: blocking DDL in a script that never set `lock_timeout`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::LockTarget;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::LockTimeoutMissing,
    summary: "DDL that blocks reads or writes runs without a lock_timeout",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("lock_timeout_missing.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN note text"],
        safe: &["SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN note text"],
    },
    check,
    finish: None,
};

/// Whether the statement waits for a lock that blocks reads or writes on an existing relation.
pub(super) fn blocks_traffic(input: &Input<'_>) -> bool {
    input.facts.ddl
        && input.facts.locks.iter().any(|l| {
            (l.mode.blocks_reads() || l.mode.blocks_writes())
                && !matches!(&l.target, LockTarget::Relation(r) if input.ctx.is_new(r))
        })
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    if input.ctx.timeouts_managed || input.ctx.history.lock_timeout_set || !blocks_traffic(input) {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("{} waits for its lock without a lock_timeout: while it waits, every query on the table queues behind it", input.facts.kind))
            .with_help("Set a short lock timeout first, e.g. SET lock_timeout = '2s'; (SET LOCAL inside the migration's transaction), and retry on failure."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn blocking_ddl_without_a_timeout_is_flagged() {
        assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN c int");
        assert_flagged(RULE.id, "SET lock_timeout = 0; CREATE INDEX i ON t (a)");
        assert_flagged(
            RULE.id,
            "SET LOCAL lock_timeout = '1s'; ALTER TABLE t ADD COLUMN c int",
        );
    }

    #[test]
    fn a_timeout_online_ddl_new_tables_and_the_proxy_are_fine() {
        assert_ok(
            RULE.id,
            "SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN c int",
        );
        assert_ok(
            RULE.id,
            "BEGIN; SET LOCAL lock_timeout = '2s'; ALTER TABLE t ADD COLUMN c int",
        );
        assert_ok(RULE.id, "CREATE INDEX CONCURRENTLY i ON t (a)");
        assert_ok(RULE.id, "CREATE TABLE t (a int); CREATE INDEX i ON t (a)");
        assert_ok(RULE.id, "SELECT 1");
        let mut proxy = Context {
            timeouts_managed: true,
            ..Context::default()
        };
        assert!(violations_in(RULE.id, "ALTER TABLE t ADD COLUMN c int", &mut proxy).is_empty());
    }
}
