//! `transaction-hygiene`: nested `BEGIN`, `COMMIT` without a transaction, and a `BEGIN` never
//! ended.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::TxControl;
use crate::analysis::context::Context;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::TransactionHygiene,
    summary: "Nested BEGIN, COMMIT outside a transaction, or a BEGIN never ended",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("transaction_hygiene.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["BEGIN; ALTER TABLE orders ADD COLUMN a int"],
        safe: &["BEGIN; ALTER TABLE orders ADD COLUMN a int; COMMIT"],
    },
    check,
    finish: Some(finish),
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let in_block = input.ctx.in_transaction;
    let problem = match input.facts.tx_control {
        Some(TxControl::Begin) if in_block => Some(
            "BEGIN inside a transaction does not start a new one (PostgreSQL only warns): the COMMIT meant for the inner part commits everything",
        ),
        Some(TxControl::Commit | TxControl::Rollback)
            if !in_block && !input.ctx.in_multi_statement_query =>
        {
            Some(
                "COMMIT or ROLLBACK with no transaction open does nothing: the statements before it were already committed one by one",
            )
        }
        Some(TxControl::Savepoint | TxControl::Release | TxControl::RollbackTo) if !in_block => {
            Some(
                "savepoints exist only inside a transaction block; PostgreSQL refuses this statement",
            )
        }
        _ => None,
    };
    if let Some(problem) = problem {
        out.push(
            input.violation(RULE.id, problem).with_help(
                "Make BEGIN and COMMIT match, one level deep (use SAVEPOINT for nesting).",
            ),
        );
    }
}

fn finish(ctx: &Context, _source: &str) -> Vec<Violation> {
    match (&ctx.history.open_begin, ctx.whole_scripts && ctx.in_transaction) {
        (Some(span), true) => vec![Violation {
            rule: RULE.id,
            message: "BEGIN is never followed by COMMIT or ROLLBACK in this script: whatever runs it decides what happens to the open transaction and its locks".to_owned(),
            detail: None,
            help: "End every transaction the script starts.".to_owned(),
            span: span.clone(),
            fix: None,
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn mismatched_transaction_control_is_flagged() {
        assert_flagged(RULE.id, "BEGIN; BEGIN; COMMIT");
        assert_flagged(RULE.id, "SELECT 1; COMMIT");
        assert_flagged(RULE.id, "SAVEPOINT s");
        assert_flagged(RULE.id, "BEGIN; CREATE TABLE t (a int)");
    }

    #[test]
    fn matched_blocks_are_fine_and_sessions_may_leave_one_open() {
        assert_ok(
            RULE.id,
            "BEGIN; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; COMMIT; BEGIN; ROLLBACK",
        );
        let mut session = Context {
            whole_scripts: false,
            ..Context::default()
        };
        assert!(violations_in(RULE.id, "BEGIN", &mut session).is_empty());
        assert!(violations_in(RULE.id, "COMMIT", &mut session).is_empty());
    }
}
