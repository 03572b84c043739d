//! `add-exclusion-constraint`: `ADD CONSTRAINT … EXCLUDE` on an existing table.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{alter_cmds, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddExclusionConstraint,
    summary: "ADD EXCLUDE builds its index while blocking every read and write, with no concurrent alternative",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("add_exclusion_constraint.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE bookings (room int, during tsrange)",
        flagged: &[
            "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)",
        ],
        safe: &[
            "CREATE TABLE bookings_v2 (room int, during tsrange, EXCLUDE USING gist (during WITH &&))",
        ],
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
        if let (ast::AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c))) =
            (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref()))
            && c.contype == ast::ConstrType::ConstrExclusion as i32
        {
            out.push(
                input
                    .violation(RULE.id, "ADD EXCLUDE builds its index while blocking every read and write on the table; exclusion constraints cannot be built concurrently or attached from an index")
                    .with_detail(lock_detail(input.facts))
                    .with_help("Add exclusion constraints when the table is created, or in a maintenance window on a small table (allow with /* ddlgate:allow add-exclusion-constraint reason=\"…\" */)."),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn exclusion_on_existing_tables_is_flagged() {
        assert_flagged(
            RULE.id,
            "ALTER TABLE b ADD EXCLUDE USING gist (during WITH &&)",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE b (during tsrange); ALTER TABLE b ADD EXCLUDE USING gist (during WITH &&)",
        );
        assert_ok(RULE.id, "ALTER TABLE b ADD CONSTRAINT u UNIQUE (x)");
    }
}
