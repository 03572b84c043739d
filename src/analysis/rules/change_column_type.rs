//! `change-column-type`: `ALTER COLUMN … TYPE` that rewrites the table.

use super::{
    ByEvidence, DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, by_evidence,
    is_new_table, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, subtype};
use crate::analysis::context::ColumnType;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::ChangeColumnType,
    summary: "ALTER COLUMN TYPE rewrites the table and its indexes while blocking reads and writes",
    group: Group::Columns,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[CatalogFact::CreatedInTransaction, CatalogFact::ColumnType],
    docs: include_str!("change_column_type.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id integer PRIMARY KEY, note varchar(20))",
        flagged: &["ALTER TABLE orders ALTER COLUMN id TYPE bigint"],
        safe: &["ALTER TABLE orders ADD COLUMN id_new bigint"],
    },
    check,
    finish: None,
};

/// Whether changing `old` to `new` needs no rewrite (a binary-compatible change, or a longer
/// length or precision limit).
pub(crate) fn needs_no_rewrite(old: &ColumnType, new: &ColumnType) -> bool {
    let widened = |old: &[i64], new: &[i64]| match (old, new) {
        (_, []) => true,
        ([a], [b]) => b >= a,
        _ => false,
    };
    if old == new {
        return true;
    }
    match (old.name.as_str(), new.name.as_str()) {
        ("varchar", "text") | ("cidr", "inet") => true,
        ("text", "varchar") => new.mods.is_empty(),
        ("numeric", "numeric") => {
            // `numeric(p)` is `numeric(p, 0)`.
            let full = |m: &[i64]| match m {
                [p] => Some((*p, 0)),
                [p, s] => Some((*p, *s)),
                _ => None,
            };
            match (full(&old.mods), full(&new.mods)) {
                (_, None) if new.mods.is_empty() => true,
                (Some((p, s)), Some((q, t))) => q >= p && s == t,
                _ => false,
            }
        }
        ("varchar", "varchar")
        | ("varbit", "varbit")
        | ("timestamp", "timestamp")
        | ("timestamptz", "timestamptz")
        | ("time", "time")
        | ("timetz", "timetz") => widened(&old.mods, &new.mods),
        // The same fields and at least the precision (PostgreSQL allows more: fields that
        // only drop a smaller unit).
        ("interval", "interval") => match (old.mods.as_slice(), new.mods.as_slice()) {
            (_, []) => true,
            ([range, p], [new_range, q]) => range == new_range && q >= p,
            _ => false,
        },
        _ => false,
    }
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return;
    };
    let Some(table) = stmt.relation.as_ref() else {
        return;
    };
    if is_new_table(input, Some(table)) {
        return;
    }
    let table_name = RelationName::from_range_var(table);
    for cmd in alter_cmds(stmt) {
        if subtype(cmd) != ast::AlterTableType::AtAlterColumnType {
            continue;
        }
        let Some(NodeEnum::ColumnDef(def)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        let Some(new) = def.type_name.as_ref().map(ColumnType::from_type_name) else {
            continue;
        };
        let using = def.raw_default.is_some();
        let old = input.ctx.column_type(&table_name, &cmd.name);
        if !using && old.as_ref().is_some_and(|old| needs_no_rewrite(old, &new)) {
            continue;
        }
        let message = match old {
            Some(old) => format!(
                "ALTER COLUMN {} TYPE {new} (from {old}) rewrites the table and rebuilds its indexes while blocking reads and writes",
                cmd.name
            ),
            None if using => format!(
                "ALTER COLUMN {} TYPE {new} USING … rewrites the table and rebuilds its indexes while blocking reads and writes",
                cmd.name
            ),
            None => format!(
                "ALTER COLUMN {} TYPE {new} rewrites the table and rebuilds its indexes while blocking reads and writes, unless the change is binary-compatible (a longer varchar, varchar to text, a wider numeric precision)",
                cmd.name
            ),
        };
        // The rewrite blocks the whole table whoever reads the column: the evidence never
        // allows it, it only names the statements that read the column.
        let readers = match by_evidence(input, RULE.id, &table_name, Some(&cmd.name)) {
            ByEvidence::Unused => ByEvidence::Without(None),
            other => other,
        };
        out.push(
            input
                .violation(RULE.id, message)
                .with_detail(readers.detail(lock_detail(input.facts)))
                .with_help(format!(
                    "Expand and contract instead: add a new column of type {new}, write both columns from the application, backfill in batches, switch reads, then drop the old column. If the change is binary-compatible, allow it with /* ddlgate:allow change-column-type reason=\"…\" */."
                )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn unknown_or_incompatible_changes_are_flagged() {
        let v = assert_flagged(RULE.id, "ALTER TABLE t ALTER COLUMN id TYPE bigint");
        assert!(
            v.message.contains("unless the change is binary-compatible"),
            "{}",
            v.message
        );
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE t ALTER COLUMN id TYPE text USING id::text",
        );
        assert!(v.message.contains("USING"));
    }

    /// Types known from an earlier migration file decide whether the change rewrites.
    fn after_earlier_file(sql: &str) -> Vec<Violation> {
        let mut ctx = Context::default();
        violations_in(
            RULE.id,
            "CREATE TABLE t (id int, note varchar(20), amount numeric(10,2))",
            &mut ctx,
        );
        ctx.next_script();
        violations_in(RULE.id, sql, &mut ctx)
    }

    #[test]
    fn known_old_types_decide() {
        assert!(after_earlier_file("ALTER TABLE t ALTER COLUMN note TYPE varchar(100)").is_empty());
        assert!(after_earlier_file("ALTER TABLE t ALTER COLUMN note TYPE text").is_empty());
        assert!(
            after_earlier_file("ALTER TABLE t ALTER COLUMN amount TYPE numeric(12,2)").is_empty()
        );
        let v = after_earlier_file("ALTER TABLE t ALTER COLUMN note TYPE varchar(10)");
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("from varchar(20)"),
            "{}",
            v[0].message
        );
        assert_eq!(
            after_earlier_file("ALTER TABLE t ALTER COLUMN id TYPE bigint").len(),
            1
        );
    }

    #[test]
    fn compatibility_table() {
        let ty = |name: &str, mods: &[i64]| ColumnType {
            name: name.into(),
            mods: mods.to_vec(),
        };
        assert!(needs_no_rewrite(&ty("varchar", &[10]), &ty("varchar", &[])));
        assert!(needs_no_rewrite(
            &ty("numeric", &[10, 2]),
            &ty("numeric", &[])
        ));
        assert!(!needs_no_rewrite(
            &ty("numeric", &[10, 2]),
            &ty("numeric", &[12, 3])
        ));
        assert!(!needs_no_rewrite(&ty("int4", &[]), &ty("int8", &[])));
        assert!(!needs_no_rewrite(&ty("text", &[]), &ty("varchar", &[50])));
        assert!(needs_no_rewrite(&ty("cidr", &[]), &ty("inet", &[])));
    }

    #[test]
    fn evidence_names_readers_but_never_allows_the_rewrite() {
        let sql = "ALTER TABLE orders ALTER COLUMN note TYPE integer USING note::integer";
        let mut unused_ctx = with_evidence(RULE.id, "orders", Some("note"), unused());
        assert_eq!(violations_in(RULE.id, sql, &mut unused_ctx).len(), 1);
        let mut used = with_evidence(
            RULE.id,
            "orders",
            Some("note"),
            used_by("SELECT note FROM orders"),
        );
        let found = violations_in(RULE.id, sql, &mut used);
        assert!(
            found[0]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("Still used in the last 24h")),
            "{found:?}"
        );
    }
}
