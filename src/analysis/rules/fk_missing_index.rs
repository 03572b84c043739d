//! `fk-missing-index`: a foreign key whose referencing columns no index leads with.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::context::Context;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::FkMissingIndex,
    summary: "A foreign key without an index on its columns makes every delete on the referenced table scan this one",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction],
    docs: include_str!("fk_missing_index.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE customers (id bigint PRIMARY KEY)",
        flagged: &[
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id))",
        ],
        safe: &[
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id)); \
                 CREATE INDEX orders_customer_idx ON orders (customer_id)",
        ],
    },
    check,
    finish: Some(finish),
};

fn check(_input: &Input<'_>, _out: &mut Vec<Violation>) {
    // Decided at the end of the script: an index created after the foreign key counts.
}

fn finish(ctx: &Context, _source: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    for fk in &ctx.history.foreign_keys {
        // Only tables whose indexes ddlgate has seen created can be judged.
        if !ctx.history.schema.knows_table(&fk.table) && !ctx.is_new(&fk.table) {
            continue;
        }
        if ctx
            .history
            .schema
            .has_index_leading_with(&fk.table, &fk.columns)
        {
            continue;
        }
        let cols = fk.columns.join(", ");
        out.push(Violation {
            rule: RULE.id,
            message: format!("no index on {} ({cols}): deleting or updating a referenced row scans {} while holding its locks", fk.table, fk.table),
            detail: Some("PostgreSQL indexes the referenced key, never the referencing columns.".to_owned()),
            help: format!("CREATE INDEX CONCURRENTLY ON {} ({cols});", fk.table),
            span: fk.span.clone(),
            fix: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn foreign_keys_without_an_index_are_flagged() {
        let v = assert_flagged(
            RULE.id,
            "CREATE TABLE o (id int PRIMARY KEY, c int REFERENCES p (id))",
        );
        assert!(v.help.contains("ON o (c)"), "{}", v.help);
        assert_flagged(
            RULE.id,
            "CREATE TABLE o (a int, b int, FOREIGN KEY (a, b) REFERENCES p (x, y)); CREATE INDEX ON o (a)",
        );
    }

    #[test]
    fn an_index_anywhere_in_the_script_counts() {
        assert_ok(
            RULE.id,
            "CREATE TABLE o (c int REFERENCES p (id)); CREATE INDEX i ON o (c)",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE o (a int, b int, FOREIGN KEY (b, a) REFERENCES p (x, y), PRIMARY KEY (a, b))",
        );
        assert_ok(RULE.id, "CREATE TABLE o (c int UNIQUE REFERENCES p (id))");
    }

    #[test]
    fn unknown_tables_are_not_judged() {
        assert_ok(
            RULE.id,
            "ALTER TABLE o ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES p (id) NOT VALID",
        );
    }
}
