//! `add-primary-key`: `ADD PRIMARY KEY` that builds its index under an `ACCESS EXCLUSIVE`
//! lock.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, default_object_name,
    is_new_table, key_names, lock_detail,
};
use crate::analysis::catalog::CatalogFact;
use crate::analysis::classify::{RelationName, alter_cmds, quote_ident, subtype};
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::{Applicability, Fix, FixStep, IndexBuild, Undo, Violation};

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::AddPrimaryKey,
    summary: "ADD PRIMARY KEY builds its index while blocking every read and write on the table",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Rewrite,
    fix: FixAvailability::Sometimes,
    catalog: &[
        CatalogFact::CreatedInTransaction,
        CatalogFact::Partitioned,
        CatalogFact::FreeIndexName,
    ],
    docs: include_str!("add_primary_key.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint NOT NULL, payload text)",
        flagged: &["ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id)"],
        safe: &["CREATE UNIQUE INDEX CONCURRENTLY events_pkey ON events (id)"],
    },
    check,
    finish: None,
};

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
    let cmds: Vec<&ast::AlterTableCmd> = alter_cmds(stmt).collect();
    for cmd in &cmds {
        let constraint = match (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
            (ast::AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c)))
                if c.contype == ast::ConstrType::ConstrPrimary as i32 && c.indexname.is_empty() =>
            {
                Some(c.as_ref())
            }
            (ast::AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col)))
                if col.constraints.iter().any(|n| matches!(&n.node,
                    Some(NodeEnum::Constraint(c)) if c.contype == ast::ConstrType::ConstrPrimary as i32)) =>
            {
                None
            }
            _ => continue,
        };
        // A partitioned table builds no index concurrently, and takes no key USING INDEX.
        let partitioned = !table.inh
            || input
                .ctx
                .is_partitioned(&RelationName::from_range_var(table));
        let fix = constraint
            .filter(|c| {
                cmds.len() == 1
                    && is_plain_key(c)
                    && input.ctx.can_run_outside_transaction()
                    && !partitioned
            })
            .map(|c| index_first_fix(input, table, c, "PRIMARY KEY", "pkey"));
        let help = match &fix {
            Some(f) => format!("Build the index concurrently, then attach it: {}", f.apply(input.source, input.span)),
            None if !partitioned => "Build a unique index with CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … PRIMARY KEY USING INDEX (outside a transaction block).".to_owned(),
            None => "On a partitioned table, first build a matching unique index on each partition with CREATE UNIQUE INDEX CONCURRENTLY: adding the key then attaches them instead of building under the lock.".to_owned(),
        };
        out.push(
            input
                .violation(RULE.id, "ADD PRIMARY KEY builds its index while blocking every read and write on the table")
                .with_detail(lock_detail(input.facts))
                .with_help(format!(
                    "{help} Make the key columns NOT NULL first (see set-not-null), or attaching the key scans the table under the lock."
                ))
                .with_fix(fix),
        );
    }
}

/// Whether the constraint is a plain column list that `CREATE UNIQUE INDEX` can reproduce
/// exactly (no `INCLUDE`, storage options, index tablespace, or exclusion operators).
pub(super) fn is_plain_key(c: &ast::Constraint) -> bool {
    c.including.is_empty()
        && c.options.is_empty()
        && c.indexspace.is_empty()
        && c.where_clause.is_none()
        && !c.without_overlaps
        && !c.keys.is_empty()
}

/// `CREATE UNIQUE INDEX CONCURRENTLY name ON t (cols); ALTER TABLE t ADD CONSTRAINT name
/// <kind> USING INDEX name`. Unnamed constraints get PostgreSQL's default name and an Unsafe
/// fix (PostgreSQL would have chosen another name on a clash).
pub(super) fn index_first_fix(
    input: &Input<'_>,
    table: &ast::RangeVar,
    c: &ast::Constraint,
    kind: &str,
    suffix: &str,
) -> Fix {
    let columns = key_names(&c.keys);
    let (name, applicability) = if c.conname.is_empty() {
        let columns_in_name: &[&str] = if suffix == "pkey" { &[] } else { &columns };
        let name = default_object_name(&table.relname, columns_in_name, suffix);
        // PostgreSQL takes the first free name of `name`, `name1`, …: when the catalog shows
        // `name` free in the table's schema, the guess is what PostgreSQL would choose.
        let free = input
            .ctx
            .catalog
            .beside(&name, &RelationName::from_range_var(table))
            .is_some_and(|f| !f.exists());
        let applicability = if free {
            Applicability::Safe
        } else {
            Applicability::Unsafe
        };
        (name, applicability)
    } else {
        (c.conname.clone(), Applicability::Safe)
    };
    let t = RelationName::from_range_var(table);
    // The index is built in the table's schema; if attaching it fails, it goes again, so that
    // the migration can be run once more as written.
    let build = FixStep {
        builds_indexes: Some(IndexBuild::OnTable(t.clone())),
        undo: Some(Undo::DropIndex(RelationName {
            schema: t.schema.clone(),
            name: name.clone(),
        })),
        checked: None,
    };
    let name = quote_ident(&name);
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let nulls = if c.nulls_not_distinct {
        " NULLS NOT DISTINCT"
    } else {
        ""
    };
    let mut timing = String::new();
    if c.deferrable {
        timing.push_str(" DEFERRABLE");
        if c.initdeferred {
            timing.push_str(" INITIALLY DEFERRED");
        }
    }
    input.replacement_fix(
        "Build the index concurrently, then attach it",
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {name} ON {t} ({cols}){nulls}; \
             ALTER TABLE {t} ADD CONSTRAINT {name} {kind} USING INDEX {name}{timing}"
        ),
        applicability,
        vec![build, FixStep::default()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn primary_key_is_built_concurrently_then_attached() {
        assert_fix(
            RULE.id,
            "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id)",
            "CREATE UNIQUE INDEX CONCURRENTLY events_pkey ON events (id); \
             ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_pkey",
        );
    }

    #[test]
    fn unnamed_primary_key_is_named_table_pkey() {
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE \"Events\" ADD PRIMARY KEY (id, \"Seq\")",
        );
        let fix = v.fix.unwrap();
        assert_eq!(fix.applicability, Applicability::Unsafe);
        assert_eq!(
            fix.apply(
                "ALTER TABLE \"Events\" ADD PRIMARY KEY (id, \"Seq\")",
                &v.span
            ),
            "CREATE UNIQUE INDEX CONCURRENTLY \"Events_pkey\" ON \"Events\" (id, \"Seq\"); \
             ALTER TABLE \"Events\" ADD CONSTRAINT \"Events_pkey\" PRIMARY KEY USING INDEX \"Events_pkey\""
        );
    }

    /// With the catalog showing the default name free in the table's schema, the name is what
    /// PostgreSQL would choose: the fix is safe; taken (or unknown), it stays a guess.
    #[test]
    fn a_default_name_the_catalog_shows_free_makes_the_fix_safe() {
        use crate::analysis::catalog::{Catalog, Lookup, RelationFacts};
        let sql = "ALTER TABLE events ADD PRIMARY KEY (id)";
        let table = RelationName {
            schema: None,
            name: "events".into(),
        };
        let with = |facts: RelationFacts| {
            let mut ctx = crate::analysis::Context::default();
            let mut catalog = Catalog::default();
            catalog.insert(
                Lookup::BesideTable {
                    name: "events_pkey".into(),
                    table: table.clone(),
                },
                facts,
            );
            ctx.catalog = catalog;
            violations_in(RULE.id, sql, &mut ctx)[0]
                .fix
                .as_ref()
                .unwrap()
                .applicability
        };
        assert_eq!(with(RelationFacts::absent()), Applicability::Safe);
        let taken = RelationFacts {
            kind: Some(crate::analysis::catalog::RelKind::Index),
            ..RelationFacts::default()
        };
        assert_eq!(with(taken), Applicability::Unsafe);
    }

    /// A partitioned table (known from the catalog, or by `ONLY`) builds no index concurrently
    /// and takes no key USING INDEX: no rewrite is offered.
    #[test]
    fn partitioned_tables_get_no_index_first_rewrite() {
        use crate::analysis::catalog::{Catalog, Lookup, RelKind, RelationFacts};
        let mut ctx = crate::analysis::Context::default();
        let mut catalog = Catalog::default();
        catalog.insert(
            Lookup::Relation(RelationName {
                schema: None,
                name: "events".into(),
            }),
            RelationFacts {
                kind: Some(RelKind::PartitionedTable),
                ..RelationFacts::default()
            },
        );
        ctx.catalog = catalog;
        let v = violations_in(
            RULE.id,
            "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id)",
            &mut ctx,
        );
        assert!(v[0].fix.is_none());
        assert!(
            v[0].help.contains("On a partitioned table"),
            "{}",
            v[0].help
        );
        let v = assert_flagged(
            RULE.id,
            "ALTER TABLE ONLY t ADD CONSTRAINT t_pkey PRIMARY KEY (id)",
        );
        assert!(v.fix.is_none());
    }

    #[test]
    fn fine_forms() {
        assert_ok(
            RULE.id,
            "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey",
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (id int); ALTER TABLE t ADD PRIMARY KEY (id)",
        );
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t ADD COLUMN id bigint PRIMARY KEY")
                .fix
                .is_none()
        );
    }
}
