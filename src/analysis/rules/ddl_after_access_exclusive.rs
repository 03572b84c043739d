//! `ddl-after-access-exclusive`: statements that run while the transaction already holds an
//! `ACCESS EXCLUSIVE` lock on an existing table.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DdlAfterAccessExclusive,
    summary: "Statements after an ACCESS EXCLUSIVE lock in the same transaction keep every query on that table waiting",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("ddl_after_access_exclusive.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, note text); CREATE TABLE audit_log (id bigint)",
        flagged: &[
            "BEGIN; ALTER TABLE orders ADD COLUMN shipped_at timestamptz; \
                    UPDATE audit_log SET id = id + 1; COMMIT",
        ],
        safe: &["BEGIN; UPDATE audit_log SET id = id + 1; \
                 ALTER TABLE orders ADD COLUMN shipped_at timestamptz; COMMIT"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    if input.facts.tx_control.is_some()
        || matches!(input.facts.kind.as_str(), "SET" | "SHOW" | "RESET")
    {
        return;
    }
    let Some(lock) = input.ctx.held_access_exclusive() else {
        return;
    };
    out.push(
        input
            .violation(RULE.id, format!("{} runs while this transaction holds an ACCESS EXCLUSIVE lock on {}: every query on {} waits until COMMIT", input.facts.kind, lock.target, lock.target))
            .with_help("Take the strongest lock last: do everything else first, or commit right after the statement that takes ACCESS EXCLUSIVE."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn work_after_a_strong_lock_is_flagged() {
        let v = violations(
            RULE.id,
            "BEGIN; ALTER TABLE a ADD COLUMN c int; UPDATE b SET x = 1; CREATE INDEX i ON b (x); COMMIT",
        );
        assert_eq!(v.len(), 2);
        assert!(
            v[0].message.contains("ACCESS EXCLUSIVE lock on a"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn strong_lock_last_autocommit_and_new_tables_are_fine() {
        assert_ok(
            RULE.id,
            "BEGIN; UPDATE b SET x = 1; ALTER TABLE a ADD COLUMN c int; COMMIT",
        );
        assert_ok(
            RULE.id,
            "ALTER TABLE a ADD COLUMN c int; UPDATE b SET x = 1",
        );
        assert_ok(
            RULE.id,
            "BEGIN; CREATE TABLE a (x int); ALTER TABLE a ADD COLUMN c int; INSERT INTO a VALUES (1); COMMIT",
        );
        assert_ok(
            RULE.id,
            "BEGIN; ALTER TABLE a ADD COLUMN c int; SET LOCAL lock_timeout = '1s'; COMMIT",
        );
    }
}
