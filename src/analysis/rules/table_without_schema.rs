//! `table-without-schema` (opt-in): DDL that names relations without a schema.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::LockTarget;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::TableWithoutSchema,
    summary: "DDL naming a relation without its schema depends on search_path",
    group: Group::Correctness,
    opt_in: true,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("table_without_schema.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["ALTER TABLE orders ADD COLUMN note text"],
        safe: &["ALTER TABLE public.orders ADD COLUMN note text"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    if !input.facts.ddl {
        return;
    }
    let mut unqualified: Vec<String> = input
        .facts
        .locks
        .iter()
        .filter_map(|l| match &l.target {
            LockTarget::Relation(r) | LockTarget::TableOfIndex(r) if r.schema.is_none() => {
                Some(r.name.clone())
            }
            _ => None,
        })
        .chain(
            input
                .facts
                .creates
                .iter()
                .filter(|r| r.schema.is_none())
                .map(|r| r.name.clone()),
        )
        .collect();
    unqualified.sort();
    unqualified.dedup();
    if unqualified.is_empty() {
        return;
    }
    out.push(
        input
            .violation(
                RULE.id,
                format!(
                    "{} names {} without a schema: which relation it means depends on search_path",
                    input.facts.kind,
                    unqualified.join(", ")
                ),
            )
            .with_help("Qualify relation names in migrations (schema.table)."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn unqualified_relations_in_ddl_are_flagged() {
        assert_flagged(RULE.id, "CREATE TABLE t (a int)");
        assert_flagged(RULE.id, "CREATE INDEX i ON t (a)");
        // An index always lives in its table's schema.
        assert_ok(RULE.id, "CREATE INDEX i ON s.t (a)");
        assert_ok(RULE.id, "CREATE TABLE s.t (a int)");
        assert_ok(RULE.id, "SELECT * FROM t");
    }
}
