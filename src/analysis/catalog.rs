//! What the live catalog says about the relations a statement names: whether each exists, its
//! kind, whether the current transaction created it, its columns and which of them are proven
//! not null. The proxy reads these facts on the session's own connection before it plans a
//! governed request (`proxy::catalog`); without them (`check`, or a request planned without a
//! look) every lookup answers "unknown" and the engine keeps its conservative assumptions.
//!
//! The facts are used three ways:
//! - **The operation PostgreSQL performs decides, not the keyword.** `ALTER INDEX t RENAME TO
//!   u` on a table renames the table, and `ALTER VIEW t …` on a table alters the table:
//!   [`resolve_kind`] gives the statement the object type of what it really acts on before it is
//!   classified and judged.
//! - **Proven no-ops are allowed** ([`proven_noop`]): `DROP … IF EXISTS` of relations that do
//!   not exist, `ALTER TABLE IF EXISTS` of an absent table, `ADD COLUMN IF NOT EXISTS` of
//!   existing columns, `SET NOT NULL` on columns that are already `NOT NULL`, `CREATE INDEX IF
//!   NOT EXISTS` of an existing name. No rule judges them; they are audited as no-ops.
//! - **Facts the rules ask for** through the [`super::Context`]: a relation created in the
//!   current transaction is new (nobody else can see it); a partitioned table is known to be
//!   one; a validated `CHECK (c IS NOT NULL)` lets `SET NOT NULL` skip its scan.
//!
//! Facts describe the catalog before the request ran. Once a statement of the request has
//! changed a relation (created, dropped, renamed, altered it), what was read about that name
//! no longer holds: [`Catalog::forget_touched`] drops it, and later statements fall back to
//! what the engine learnt from the statements themselves.

use std::collections::HashMap;

use super::classify::{Facts, LockTarget, RelationName, alter_cmds, drop_object_names, subtype};
use super::context::ColumnType;
use super::parse::{NodeEnum, ast};
use super::rules::{default_object_name, key_names};

/// A fact of the live catalog that a rule's decision depends on (listed per rule in
/// docs/rules.md; a test checks each rule lists what its code asks for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogFact {
    /// Whether the current transaction created the relation (then nobody else sees it, and it
    /// holds only what the transaction put there).
    CreatedInTransaction,
    /// Whether the table is partitioned.
    Partitioned,
    /// The column's current type.
    ColumnType,
    /// Whether a validated `CHECK (column IS NOT NULL)` exists.
    ValidatedNotNullCheck,
    /// Whether the relation is a system catalog.
    SystemCatalog,
    /// Whether an index belongs to an exclusion constraint.
    ExclusionIndex,
    /// Whether the name PostgreSQL would give an index is free in the table's schema.
    FreeIndexName,
}

impl CatalogFact {
    /// How docs/rules.md says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CreatedInTransaction => "whether the current transaction created the table",
            Self::Partitioned => "whether the table is partitioned",
            Self::ColumnType => "the column's current type",
            Self::ValidatedNotNullCheck => "validated `CHECK (column IS NOT NULL)` constraints",
            Self::SystemCatalog => "whether the relation is a system catalog",
            Self::ExclusionIndex => "whether the index belongs to an exclusion constraint",
            Self::FreeIndexName => {
                "whether the index name PostgreSQL would choose is free in the table's schema"
            }
        }
    }
}

/// A relation's kind, from `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// `r`: an ordinary table.
    Table,
    /// `p`: a partitioned table.
    PartitionedTable,
    /// `i`: an index.
    Index,
    /// `I`: a partitioned index.
    PartitionedIndex,
    /// `v`: a view.
    View,
    /// `m`: a materialized view.
    MaterializedView,
    /// `f`: a foreign table.
    ForeignTable,
    /// `S`: a sequence.
    Sequence,
    /// `c` (composite type), `t` (TOAST table), or a kind this version does not know.
    Other,
}

impl RelKind {
    /// The kind of a `pg_class.relkind` letter.
    pub fn from_relkind(relkind: &str) -> Self {
        match relkind {
            "r" => Self::Table,
            "p" => Self::PartitionedTable,
            "i" => Self::Index,
            "I" => Self::PartitionedIndex,
            "v" => Self::View,
            "m" => Self::MaterializedView,
            "f" => Self::ForeignTable,
            "S" => Self::Sequence,
            _ => Self::Other,
        }
    }

    /// The object type a statement acting on a relation of this kind has.
    fn object_type(self) -> Option<ast::ObjectType> {
        use ast::ObjectType as O;
        Some(match self {
            Self::Table | Self::PartitionedTable => O::ObjectTable,
            Self::Index | Self::PartitionedIndex => O::ObjectIndex,
            Self::View => O::ObjectView,
            Self::MaterializedView => O::ObjectMatview,
            Self::ForeignTable => O::ObjectForeignTable,
            Self::Sequence => O::ObjectSequence,
            Self::Other => return None,
        })
    }
}

/// What the catalog says about one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationFacts {
    /// Its kind; `None`: no relation has this name.
    pub kind: Option<RelKind>,
    /// It is a system catalog (in `pg_catalog` or `pg_toast`).
    pub system: bool,
    /// The current transaction created it: nobody else can see it yet.
    pub created_in_transaction: bool,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// Its columns that are `NOT NULL` (by a valid constraint).
    pub not_null: Vec<String>,
    /// Its columns that a validated `CHECK (column IS NOT NULL)` proves not null.
    pub checked_not_null: Vec<String>,
    /// Its columns' types.
    pub column_types: Vec<(String, ColumnType)>,
    /// It is the index of an exclusion constraint (which has no concurrent rebuild).
    pub exclusion: bool,
}

impl RelationFacts {
    /// Facts about a name no relation has.
    pub fn absent() -> Self {
        Self::default()
    }

    /// Whether a relation has the name.
    pub fn exists(&self) -> bool {
        self.kind.is_some()
    }
}

/// Which relation a lookup asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// The relation a name denotes where the statement runs (its `search_path`).
    Relation(RelationName),
    /// The relation named `name` in the schema of `table`: where `CREATE INDEX` puts an index.
    BesideTable {
        /// The index's name.
        name: String,
        /// The table.
        table: RelationName,
    },
}

/// The facts read for one request, by lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    facts: HashMap<Lookup, RelationFacts>,
}

impl Catalog {
    /// Records what the catalog said.
    pub fn insert(&mut self, lookup: Lookup, facts: RelationFacts) {
        self.facts.insert(lookup, facts);
    }

    /// What the catalog said about the relation a name denotes, if it was asked and nothing
    /// since changed it.
    pub fn relation(&self, name: &RelationName) -> Option<&RelationFacts> {
        self.facts.get(&Lookup::Relation(name.clone()))
    }

    /// What the catalog said about the relation named `name` in the schema of `table`.
    pub fn beside(&self, name: &str, table: &RelationName) -> Option<&RelationFacts> {
        self.facts.get(&Lookup::BesideTable {
            name: name.to_owned(),
            table: table.clone(),
        })
    }

    /// Adds what another read said.
    pub fn merge(&mut self, other: Catalog) {
        self.facts.extend(other.facts);
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Forgets what a statement that ran changed: every name it locks, creates or drops (and
    /// anything in the schema of a table it touches, for an index name). What remains known
    /// is what no statement of the request has touched.
    pub fn forget_touched(&mut self, node: &NodeEnum, facts: &Facts) {
        if self.facts.is_empty() || !facts.ddl {
            return;
        }
        let mut touched: Vec<RelationName> = facts.creates.clone();
        for lock in &facts.locks {
            if let LockTarget::Relation(r) | LockTarget::TableOfIndex(r) = &lock.target {
                touched.push(r.clone());
            }
        }
        if let NodeEnum::DropStmt(s) = node {
            touched.extend(drop_object_names(s));
        }
        if let NodeEnum::RenameStmt(s) = node {
            touched.push(RelationName {
                schema: s
                    .relation
                    .as_ref()
                    .and_then(|r| (!r.schemaname.is_empty()).then(|| r.schemaname.clone())),
                name: s.newname.clone(),
            });
        }
        self.facts.retain(|lookup, _| match lookup {
            Lookup::Relation(name) => !touched.iter().any(|t| t.name == name.name),
            Lookup::BesideTable { name, table } => !touched
                .iter()
                .any(|t| t.name == *name || t.name == table.name),
        });
    }
}

/// The lookups whose answers decide about a governed statement: the relations it acts on, the
/// objects it drops, and the name of an index it creates.
pub(crate) fn lookups(node: &NodeEnum, facts: &Facts) -> Vec<Lookup> {
    let mut out: Vec<Lookup> = Vec::new();
    let mut add = |lookup: Lookup| {
        if !out.contains(&lookup) {
            out.push(lookup);
        }
    };
    for lock in &facts.locks {
        if let LockTarget::Relation(r) = &lock.target {
            add(Lookup::Relation(r.clone()));
        }
    }
    match node {
        NodeEnum::DropStmt(s) if drops_relations(s) => {
            for name in drop_object_names(s) {
                add(Lookup::Relation(name));
            }
        }
        NodeEnum::RenameStmt(s) => {
            if let Some(rv) = &s.relation {
                add(Lookup::Relation(RelationName::from_range_var(rv)));
            }
        }
        NodeEnum::AlterTableStmt(s) => {
            if let Some(rv) = &s.relation {
                let table = RelationName::from_range_var(rv);
                add(Lookup::Relation(table.clone()));
                // The name PostgreSQL would give an unnamed key's index, to see it is free.
                for name in unnamed_key_index_names(s, rv) {
                    add(Lookup::BesideTable {
                        name,
                        table: table.clone(),
                    });
                }
            }
        }
        NodeEnum::IndexStmt(s) => {
            if let Some(rv) = &s.relation {
                let table = RelationName::from_range_var(rv);
                add(Lookup::Relation(table.clone()));
                if s.if_not_exists && !s.idxname.is_empty() {
                    add(Lookup::BesideTable {
                        name: s.idxname.clone(),
                        table,
                    });
                }
            }
        }
        _ => {}
    }
    out
}

/// The default index names of the unnamed `PRIMARY KEY` and `UNIQUE` constraints an `ALTER
/// TABLE` adds.
fn unnamed_key_index_names(s: &ast::AlterTableStmt, table: &ast::RangeVar) -> Vec<String> {
    alter_cmds(s)
        .filter(|cmd| subtype(cmd) == ast::AlterTableType::AtAddConstraint)
        .filter_map(|cmd| match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::Constraint(c)) if c.conname.is_empty() && c.indexname.is_empty() => {
                let columns = key_names(&c.keys);
                if c.contype == ast::ConstrType::ConstrPrimary as i32 {
                    Some(default_object_name(&table.relname, &[], "pkey"))
                } else if c.contype == ast::ConstrType::ConstrUnique as i32 {
                    Some(default_object_name(&table.relname, &columns, "key"))
                } else {
                    None
                }
            }
            _ => None,
        })
        .collect()
}

/// Whether the catalog may change what the statement is, whatever the rules say of it without
/// facts: a keyword that may name another kind of relation, an `IF [NOT] EXISTS` (or a `SET
/// NOT NULL`) the catalog may prove a no-op, an index on what may be a partitioned table.
pub(crate) fn may_resolve(node: &NodeEnum) -> bool {
    use ast::ObjectType as O;
    match node {
        NodeEnum::RenameStmt(s) => s.relation.is_some(),
        NodeEnum::AlterObjectSchemaStmt(s) => s.relation.is_some(),
        NodeEnum::AlterTableStmt(s) => {
            s.missing_ok
                || O::try_from(s.objtype) != Ok(O::ObjectTable)
                || alter_cmds(s).any(|cmd| {
                    (subtype(cmd) == ast::AlterTableType::AtAddColumn && cmd.missing_ok)
                        || subtype(cmd) == ast::AlterTableType::AtSetNotNull
                })
        }
        NodeEnum::DropStmt(s) => s.missing_ok && drops_relations(s),
        // Also `CONCURRENTLY`: on a partitioned table PostgreSQL refuses it, and the catalog
        // says so (`partitioned-index` gives the per-partition procedure).
        NodeEnum::IndexStmt(_) => true,
        _ => false,
    }
}

/// Whether a `DROP` removes relations (not functions, types, …).
fn drops_relations(s: &ast::DropStmt) -> bool {
    use ast::ObjectType as O;
    matches!(
        O::try_from(s.remove_type),
        Ok(O::ObjectTable
            | O::ObjectIndex
            | O::ObjectView
            | O::ObjectMatview
            | O::ObjectSequence
            | O::ObjectForeignTable)
    )
}

/// Gives the statement the object type of the relation it really acts on, where PostgreSQL
/// accepts one keyword for another: `ALTER INDEX`, `ALTER VIEW`, `ALTER MATERIALIZED VIEW`,
/// `ALTER FOREIGN TABLE`, `ALTER SEQUENCE` and `ALTER TABLE` each work on relations of the
/// other kinds for many subcommands (`RENAME`, `RENAME COLUMN`, `SET SCHEMA`, `OWNER TO`, …).
pub(crate) fn resolve_kind(node: &mut NodeEnum, catalog: &Catalog) {
    if catalog.is_empty() {
        return;
    }
    let actual = |rv: Option<&ast::RangeVar>| {
        let facts = catalog.relation(&RelationName::from_range_var(rv?))?;
        facts.kind?.object_type()
    };
    match node {
        NodeEnum::RenameStmt(s) => {
            let Some(kind) = actual(s.relation.as_ref()) else {
                return;
            };
            let renames_relation = matches!(
                ast::ObjectType::try_from(s.rename_type),
                Ok(ast::ObjectType::ObjectTable
                    | ast::ObjectType::ObjectIndex
                    | ast::ObjectType::ObjectView
                    | ast::ObjectType::ObjectMatview
                    | ast::ObjectType::ObjectForeignTable
                    | ast::ObjectType::ObjectSequence)
            );
            if renames_relation {
                s.rename_type = kind as i32;
            }
            s.relation_type = kind as i32;
        }
        NodeEnum::AlterTableStmt(s) => {
            if let Some(kind) = actual(s.relation.as_ref()) {
                s.objtype = kind as i32;
            }
        }
        NodeEnum::AlterObjectSchemaStmt(s) => {
            if let Some(kind) = actual(s.relation.as_ref()) {
                s.object_type = kind as i32;
            }
        }
        _ => {}
    }
}

/// Why the statement is proven to change nothing, when the catalog proves it.
pub(crate) fn proven_noop(node: &NodeEnum, catalog: &Catalog) -> Option<String> {
    if catalog.is_empty() {
        return None;
    }
    match node {
        NodeEnum::DropStmt(s) if s.missing_ok && drops_relations(s) => {
            let names = drop_object_names(s);
            let all_absent = !names.is_empty()
                && names
                    .iter()
                    .all(|n| catalog.relation(n).is_some_and(|f| !f.exists()));
            all_absent.then(|| {
                let list: Vec<String> = names.iter().map(ToString::to_string).collect();
                format!("none of {} exists", list.join(", "))
            })
        }
        NodeEnum::AlterTableStmt(s) => {
            let rv = s.relation.as_ref()?;
            let table = RelationName::from_range_var(rv);
            let facts = catalog.relation(&table)?;
            if !facts.exists() {
                return s
                    .missing_ok
                    .then(|| format!("{table} does not exist (IF EXISTS)"));
            }
            let cmds: Vec<&ast::AlterTableCmd> = alter_cmds(s).collect();
            if cmds.is_empty() {
                return None;
            }
            let mut why = Vec::new();
            for cmd in cmds {
                why.push(noop_subcommand(cmd, facts)?);
            }
            Some(format!("{table}: {}", why.join("; ")))
        }
        NodeEnum::RenameStmt(s) if s.missing_ok => {
            let table = RelationName::from_range_var(s.relation.as_ref()?);
            catalog
                .relation(&table)
                .filter(|f| !f.exists())
                .map(|_| format!("{table} does not exist (IF EXISTS)"))
        }
        NodeEnum::IndexStmt(s) if s.if_not_exists && !s.idxname.is_empty() => {
            let table = RelationName::from_range_var(s.relation.as_ref()?);
            catalog
                .beside(&s.idxname, &table)
                .filter(|f| f.exists())
                .map(|_| {
                    format!(
                        "a relation named {} already exists (IF NOT EXISTS)",
                        s.idxname
                    )
                })
        }
        _ => None,
    }
}

/// Why one `ALTER TABLE` subcommand changes nothing, if it does not.
fn noop_subcommand(cmd: &ast::AlterTableCmd, facts: &RelationFacts) -> Option<String> {
    match subtype(cmd) {
        ast::AlterTableType::AtAddColumn if cmd.missing_ok => {
            let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
            else {
                return None;
            };
            facts
                .columns
                .contains(&col.colname)
                .then(|| format!("column {} already exists (IF NOT EXISTS)", col.colname))
        }
        ast::AlterTableType::AtSetNotNull => facts
            .not_null
            .contains(&cmd.name)
            .then(|| format!("column {} is already NOT NULL", cmd.name)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::classify::{ClassifyOptions, classify};
    use crate::analysis::parse::{Options, parse_script};

    fn node(sql: &str) -> NodeEnum {
        parse_script(sql, Options::default())
            .remove(0)
            .tree
            .unwrap()
    }

    fn name(n: &str) -> RelationName {
        RelationName {
            schema: None,
            name: n.to_owned(),
        }
    }

    fn table(columns: &[&str], not_null: &[&str]) -> RelationFacts {
        RelationFacts {
            kind: Some(RelKind::Table),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            not_null: not_null.iter().map(|c| (*c).to_owned()).collect(),
            ..RelationFacts::default()
        }
    }

    #[test]
    fn a_rename_through_another_keyword_becomes_the_tables_rename() {
        let mut catalog = Catalog::default();
        catalog.insert(Lookup::Relation(name("victim")), table(&["a"], &[]));
        let mut stmt = node("ALTER INDEX victim RENAME TO victim_old");
        resolve_kind(&mut stmt, &catalog);
        let NodeEnum::RenameStmt(s) = &stmt else {
            panic!()
        };
        assert_eq!(s.rename_type, ast::ObjectType::ObjectTable as i32);

        let mut stmt = node("ALTER VIEW victim RENAME COLUMN a TO b");
        resolve_kind(&mut stmt, &catalog);
        let NodeEnum::RenameStmt(s) = &stmt else {
            panic!()
        };
        assert_eq!(s.rename_type, ast::ObjectType::ObjectColumn as i32);
        assert_eq!(s.relation_type, ast::ObjectType::ObjectTable as i32);

        // Unknown names keep the keyword's type.
        let mut stmt = node("ALTER INDEX other RENAME TO x");
        resolve_kind(&mut stmt, &catalog);
        let NodeEnum::RenameStmt(s) = &stmt else {
            panic!()
        };
        assert_eq!(s.rename_type, ast::ObjectType::ObjectIndex as i32);
    }

    #[test]
    fn no_ops_are_proven_only_by_facts() {
        let mut catalog = Catalog::default();
        catalog.insert(Lookup::Relation(name("gone")), RelationFacts::absent());
        catalog.insert(Lookup::Relation(name("t")), table(&["a", "b"], &["a"]));
        catalog.insert(
            Lookup::BesideTable {
                name: "t_a_idx".into(),
                table: name("t"),
            },
            RelationFacts {
                kind: Some(RelKind::Index),
                ..RelationFacts::default()
            },
        );
        let noop = |sql: &str| proven_noop(&node(sql), &catalog);
        assert!(noop("DROP TABLE IF EXISTS gone").is_some());
        assert!(noop("DROP TABLE gone").is_none(), "no IF EXISTS: an error");
        assert!(noop("DROP TABLE IF EXISTS gone, t").is_none());
        assert!(
            noop("DROP TABLE IF EXISTS unknown").is_none(),
            "not looked up"
        );
        assert!(noop("ALTER TABLE IF EXISTS gone ADD COLUMN c int").is_some());
        assert!(noop("ALTER TABLE t ADD COLUMN IF NOT EXISTS a int").is_some());
        assert!(noop("ALTER TABLE t ADD COLUMN IF NOT EXISTS c int").is_none());
        assert!(noop("ALTER TABLE t ADD COLUMN a int").is_none());
        assert!(noop("ALTER TABLE t ALTER COLUMN a SET NOT NULL").is_some());
        assert!(noop("ALTER TABLE t ALTER COLUMN b SET NOT NULL").is_none());
        assert!(
            noop("ALTER TABLE t ALTER COLUMN a SET NOT NULL, ALTER COLUMN b SET NOT NULL")
                .is_none()
        );
        assert!(noop("CREATE INDEX IF NOT EXISTS t_a_idx ON t (a)").is_some());
        assert!(noop("ALTER TABLE IF EXISTS gone RENAME COLUMN a TO b").is_some());
        assert!(noop("ALTER TABLE IF EXISTS t RENAME COLUMN a TO b").is_none());
        assert!(noop("CREATE INDEX t_a_idx ON t (a)").is_none());
        assert!(noop("CREATE INDEX IF NOT EXISTS t_b_idx ON t (b)").is_none());
    }

    #[test]
    fn what_a_statement_changes_is_forgotten() {
        let mut catalog = Catalog::default();
        catalog.insert(Lookup::Relation(name("t")), table(&["a"], &[]));
        catalog.insert(Lookup::Relation(name("u")), table(&["a"], &[]));
        let stmt = node("ALTER TABLE t ADD COLUMN b int");
        let facts = classify(&stmt, ClassifyOptions { server_major: 17 });
        catalog.forget_touched(&stmt, &facts);
        assert!(catalog.relation(&name("t")).is_none());
        assert!(catalog.relation(&name("u")).is_some());
    }

    #[test]
    fn lookups_name_what_decides() {
        let stmt = node("CREATE INDEX IF NOT EXISTS i ON s.t (a)");
        let facts = classify(&stmt, ClassifyOptions { server_major: 17 });
        let found = lookups(&stmt, &facts);
        assert!(found.contains(&Lookup::Relation(RelationName {
            schema: Some("s".into()),
            name: "t".into()
        })));
        assert!(found.contains(&Lookup::BesideTable {
            name: "i".into(),
            table: RelationName {
                schema: Some("s".into()),
                name: "t".into()
            }
        }));
        let stmt = node("ALTER TABLE t ADD PRIMARY KEY (id)");
        let facts = classify(&stmt, ClassifyOptions { server_major: 17 });
        assert!(lookups(&stmt, &facts).contains(&Lookup::BesideTable {
            name: "t_pkey".into(),
            table: name("t")
        }));
        let stmt = node("DROP TABLE IF EXISTS a, b CASCADE");
        let facts = classify(&stmt, ClassifyOptions { server_major: 17 });
        assert_eq!(
            lookups(&stmt, &facts),
            [Lookup::Relation(name("a")), Lookup::Relation(name("b"))]
        );
    }
}
