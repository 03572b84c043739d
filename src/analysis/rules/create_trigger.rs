//! `create-trigger`: `CREATE TRIGGER` on an existing table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::CreateTrigger,
    summary: "CREATE TRIGGER blocks writes while it is added and changes every later write to the table",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("create_trigger.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, updated_at timestamptz); \
                CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
        flagged: &[
            "CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()",
        ],
        safe: &[
            "CREATE TABLE orders_v2 (id bigint PRIMARY KEY, updated_at timestamptz); \
                 CREATE TRIGGER orders_v2_touch BEFORE UPDATE ON orders_v2 FOR EACH ROW EXECUTE FUNCTION touch()",
        ],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::CreateTrigStmt(stmt) = input.node else {
        return;
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("CREATE TRIGGER {} waits for running writes and blocks new ones while it is added, and then runs on every matching write", stmt.trigname))
            .with_detail(lock_detail(input.facts))
            .with_help("Keep the trigger function cheap and free of DDL, and add it with a short lock_timeout."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn triggers_on_existing_tables_are_flagged() {
        assert_flagged(
            RULE.id,
            "CREATE TRIGGER t AFTER INSERT ON o FOR EACH ROW EXECUTE FUNCTION f()",
        );
        assert_flagged(
            RULE.id,
            "CREATE OR REPLACE TRIGGER t AFTER INSERT ON o FOR EACH ROW EXECUTE FUNCTION f()",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE o (a int); CREATE TRIGGER t AFTER INSERT ON o FOR EACH ROW EXECUTE FUNCTION f()",
        );
    }
}
