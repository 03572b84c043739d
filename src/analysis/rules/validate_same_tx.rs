//! `validate-same-tx`: `VALIDATE CONSTRAINT` in the transaction that added the constraint
//! `NOT VALID`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::ValidateSameTx,
    summary: "VALIDATE CONSTRAINT in the transaction that added it NOT VALID keeps the strong lock during the scan",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("validate_same_tx.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE customers (id bigint PRIMARY KEY); \
                CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint)",
        flagged: &["BEGIN; \
                    ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID; \
                    ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk; \
                    COMMIT"],
        safe: &["BEGIN; \
                 ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID; \
                 COMMIT; \
                 ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    let Some(table) = stmt.relation.as_ref().map(RelationName::from_range_var) else {
        return;
    };
    for cmd in alter_cmds(stmt) {
        if subtype(cmd) != ast::AlterTableType::AtValidateConstraint {
            continue;
        }
        let added_here = input
            .ctx
            .history
            .not_validated
            .iter()
            .find(|n| n.table.may_be(&table) && n.constraint == cmd.name);
        // On tables created in this transaction nobody else waits: the lock blocks no one.
        let blocks_others = added_here.is_some_and(|n| {
            !input.ctx.is_new(&n.table)
                || n.references.as_ref().is_some_and(|r| !input.ctx.is_new(r))
        });
        if blocks_others {
            out.push(
                input
                    .violation(
                        RULE.id,
                        format!("VALIDATE CONSTRAINT {} runs in the transaction that added it NOT VALID, so the scan happens under the lock NOT VALID was meant to avoid", cmd.name),
                    )
                    .with_detail(Some(format!(
                        "The ADD CONSTRAINT earlier in this transaction still holds its lock on {table} until COMMIT."
                    )))
                    .with_help("Commit after adding the constraint NOT VALID, and validate it in a separate transaction (a separate migration for tools that wrap each migration in one)."),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn validate_after_not_valid_in_one_transaction_is_flagged() {
        assert_flagged(
            RULE.id,
            "BEGIN; ALTER TABLE t ADD CONSTRAINT c CHECK (n > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT c; COMMIT",
        );
    }

    #[test]
    fn separate_transactions_are_fine() {
        assert_ok(
            RULE.id,
            "BEGIN; ALTER TABLE t ADD CONSTRAINT c CHECK (n > 0) NOT VALID; COMMIT; ALTER TABLE t VALIDATE CONSTRAINT c",
        );
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD CONSTRAINT c CHECK (n > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT c",
        );
        assert_ok(RULE.id, "BEGIN; ALTER TABLE t VALIDATE CONSTRAINT other");
    }

    #[test]
    fn tables_created_in_the_same_transaction_block_nobody() {
        assert_ok(
            RULE.id,
            "BEGIN; CREATE TABLE u (id bigint PRIMARY KEY); CREATE TABLE o (id bigint, uid bigint); \
             ALTER TABLE o ADD CONSTRAINT o_fk FOREIGN KEY (uid) REFERENCES u (id) NOT VALID; \
             ALTER TABLE o VALIDATE CONSTRAINT o_fk; COMMIT",
        );
        // The referenced table is visible to everyone: its lock is held through the scan.
        assert_flagged(
            RULE.id,
            "BEGIN; CREATE TABLE o (id bigint, uid bigint); \
             ALTER TABLE o ADD CONSTRAINT o_fk FOREIGN KEY (uid) REFERENCES users (id) NOT VALID; \
             ALTER TABLE o VALIDATE CONSTRAINT o_fk; COMMIT",
        );
    }
}
