//! What the engine knows about where a statement runs: the server, whether a transaction block
//! is open, and what the transaction (or, for `check`, the script) has done so far.
//!
//! # Transaction-scoped facts
//!
//! Most of what the engine remembers belongs to one transaction and must end with it, or a
//! later transaction inherits an exemption it does not have. [`History`] keeps them apart:
//!
//! | fact | ends |
//! |---|---|
//! | `created`: relations created (so new, empty, invisible to others) | with the transaction in the proxy ([`NewObjects::Transaction`]); with the script in `check` ([`NewObjects::Script`]); forgotten on `ROLLBACK TO SAVEPOINT` |
//! | `held_locks`: locks taken so far | with the transaction |
//! | `not_validated`: constraints added `NOT VALID` | with the transaction |
//! | `statements_in_transaction`, `open_begin`, `alters` | with the transaction |
//! | `SET LOCAL` of a timeout | with the transaction (the session's value returns) |
//! | `uncommitted`: `CHECK (c IS NOT NULL)` constraints and validated not-null columns learnt in the open transaction | kept (moved to the lasting lists) only when it commits; dropped on rollback; the exemptions among them are forgotten on `ROLLBACK TO SAVEPOINT` |
//! | `schema.columns`, `schema.indexes`: column types and indexes learnt | with the transaction in the proxy; the sequence of scripts in `check` |
//! | `schema.partitioned`: tables seen created `PARTITION BY` | the session or the sequence of scripts (it only makes the engine stricter) |
//! | `not_null_checks`, `validated_not_null`, session-level timeouts | the session or the sequence of scripts |
//!
//! The proxy keeps two kinds of fact past a transaction: a `CHECK (c IS NOT NULL)` that a
//! transaction proven to have committed added or validated (it lets a later `SET NOT NULL`
//! skip its scan, the last step of the safe procedure), and the partitioned tables it has seen
//! created (which only make it stricter). Everything else a statement that starts a
//! transaction is judged by is what a fresh session would know.
//!
//! Ending a transaction is [`Context::end_transaction`]; `ROLLBACK TO SAVEPOINT` is
//! [`Context::rollback_to_savepoint`], which only ever makes the engine stricter: it forgets
//! exemptions (what was created, what was proven not null), never restrictions.
//!
//! The invariant the proxy builds on: for a statement that starts a transaction, the decision
//! is the one a fresh session would get, apart from what the lasting lists say.

use super::catalog::{Catalog, RelKind};
use super::classify::{Facts, Lock, RelationName, TxControl};
use super::locks::LockMode;

/// The oldest server major version ddlgate reasons about.
pub(crate) const DEFAULT_SERVER_MAJOR: u32 = 15;

/// Facts about the surroundings of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about the session, not states of one machine"
)]
pub struct Context {
    /// The server's major version (from `server_version`, or `--pg-version`).
    pub server_major: u32,
    /// Whether an explicit transaction block (`BEGIN`) is open.
    pub in_transaction: bool,
    /// Whether the statement is one of several in one simple-protocol query string, which
    /// PostgreSQL runs as one implicit transaction.
    pub in_multi_statement_query: bool,
    /// Whether `standard_conforming_strings` is on.
    pub standard_conforming_strings: bool,
    /// Whether the caller applies `lock_timeout`/`statement_timeout` itself (the proxy does),
    /// so scripts need not.
    pub timeouts_managed: bool,
    /// Whether each analysed text is one simple-protocol query string (the proxy), so that one
    /// holding several statements runs them as one implicit transaction.
    pub query_string: bool,
    /// Whether each analysed text is a whole script (a migration file), so a transaction left
    /// open at its end is a mistake. Through the proxy each request is a part of a session.
    pub whole_scripts: bool,
    /// What the current transaction (or script) has done so far.
    pub history: History,
    /// How long a created relation counts as new.
    pub new_objects: NewObjects,
    /// The timeouts the proxy applies before DDL (meaningful when `timeouts_managed`).
    pub managed_timeouts: ManagedTimeouts,
    /// Changes to `lock_timeout`/`statement_timeout` made by earlier statements of the
    /// current request (the proxy starts each request with none): they run after ddlgate
    /// applied its timeouts, so they can undo them.
    pub request_timeout_changes: Vec<TimeoutChange>,
    /// What the live catalog said about the relations the request names, before it ran
    /// (empty in `check`, and for requests planned without a look).
    pub catalog: Catalog,
    /// The database's routines that run DDL (empty in `check`).
    pub routines: std::sync::Arc<super::routines::Routines>,
    /// Evidence of use for the contract rules (empty where none is kept).
    pub(crate) evidence: super::usage::Evidences,
}

/// How long a relation created by an earlier statement counts as new (empty, used by nobody).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NewObjects {
    /// Until the end of the script: `check` reads a migration file as one deployment, so what
    /// an earlier statement of the file created is not yet in use by the application.
    #[default]
    Script,
    /// Until the end of the transaction that created it: the proxy sees a live database, where
    /// a committed table is visible to every session and may already hold data.
    Transaction,
}

/// The timeouts the proxy applies before DDL, in milliseconds (0: it sets none), by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManagedTimeouts {
    /// DDL taking locks that block reads or writes: `(lock_timeout, statement_timeout)`.
    pub brief_ms: (u64, u64),
    /// Online DDL (`CONCURRENTLY`, `VALIDATE`): `(lock_timeout, statement_timeout)`.
    pub online_ms: (u64, u64),
}

/// Which timeout a statement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutSetting {
    /// `lock_timeout`.
    Lock,
    /// `statement_timeout`.
    Statement,
}

impl TimeoutSetting {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lock => "lock_timeout",
            Self::Statement => "statement_timeout",
        }
    }
}

/// A statement's change to a timeout setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutChange {
    /// The setting.
    pub setting: TimeoutSetting,
    /// The new value in milliseconds; `None` when it cannot be known from the text (`RESET`,
    /// `DEFAULT`, `RESET ALL`, a computed `set_config`, an `UPDATE` of `pg_settings`).
    pub value_ms: Option<u64>,
    /// How the statement did it, for messages (`SET lock_timeout = 0`, `RESET ALL`, …).
    pub how: String,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            server_major: DEFAULT_SERVER_MAJOR,
            in_transaction: false,
            in_multi_statement_query: false,
            standard_conforming_strings: true,
            timeouts_managed: false,
            query_string: false,
            whole_scripts: true,
            history: History::default(),
            new_objects: NewObjects::Script,
            managed_timeouts: ManagedTimeouts::default(),
            request_timeout_changes: Vec::new(),
            catalog: Catalog::default(),
            routines: std::sync::Arc::default(),
            evidence: super::usage::Evidences::default(),
        }
    }
}

impl Context {
    /// A context for a session on a server of this major version.
    pub fn for_server(server_major: u32) -> Self {
        Self {
            server_major,
            ..Self::default()
        }
    }

    /// Whether statements that refuse transaction blocks (`CONCURRENTLY`, `VACUUM`, …) can run
    /// here.
    pub fn can_run_outside_transaction(&self) -> bool {
        !self.in_transaction && !self.in_multi_statement_query
    }

    /// Whether the relation was created earlier in this transaction or script, so it is new
    /// and empty, and nobody else can be using it: seen created, or — what decides in the
    /// proxy — created by the current transaction according to the catalog (also when a
    /// function, a `DO` block or another request of the transaction created it).
    pub fn is_new(&self, relation: &RelationName) -> bool {
        self.history.created.may_contain(relation)
            || self
                .catalog
                .relation(relation)
                .is_some_and(|f| f.created_in_transaction)
    }

    /// Whether the table is partitioned: seen created `PARTITION BY`, or so in the catalog.
    pub fn is_partitioned(&self, table: &RelationName) -> bool {
        self.history.schema.is_partitioned(table)
            || self
                .catalog
                .relation(table)
                .is_some_and(|f| f.kind == Some(RelKind::PartitionedTable))
    }

    /// The column's type: as an earlier statement of the session set it, or as the catalog has
    /// it.
    pub fn column_type(&self, table: &RelationName, column: &str) -> Option<ColumnType> {
        if let Some(t) = self.history.column_type(table, column) {
            return Some(t.clone());
        }
        self.catalog.relation(table).and_then(|f| {
            f.column_types
                .iter()
                .find(|(c, _)| c == column)
                .map(|(_, t)| t.clone())
        })
    }

    /// Whether the index is partitioned, according to the catalog.
    pub fn is_partitioned_index(&self, index: &RelationName) -> bool {
        self.catalog
            .relation(index)
            .is_some_and(|f| f.kind == Some(RelKind::PartitionedIndex))
    }

    /// Whether the index belongs to an exclusion constraint, according to the catalog.
    pub fn is_exclusion_index(&self, index: &RelationName) -> bool {
        self.catalog.relation(index).is_some_and(|f| f.exclusion)
    }

    /// Whether the relation is a system catalog, according to the catalog.
    pub fn is_system(&self, relation: &RelationName) -> bool {
        self.catalog.relation(relation).is_some_and(|f| f.system)
    }

    /// Updates the history after a statement with these facts has run.
    pub fn record(&mut self, facts: &Facts) {
        match facts.tx_control {
            // A BEGIN inside an implicit transaction (a query string) turns it into the block:
            // what ran before it is part of the same transaction.
            Some(TxControl::Begin) => self.in_transaction = true,
            Some(TxControl::Commit) => self.end_transaction(true),
            Some(TxControl::Rollback | TxControl::Prepare) => self.end_transaction(false),
            Some(TxControl::RollbackTo) => self.rollback_to_savepoint(),
            _ => {}
        }
        if self.in_transaction || self.in_multi_statement_query {
            self.history.statements_in_transaction += 1;
            for lock in &facts.locks {
                match self
                    .history
                    .held_locks
                    .iter_mut()
                    .find(|l| l.target == lock.target)
                {
                    Some(held) => held.mode = held.mode.max(lock.mode),
                    None => self.history.held_locks.push(lock.clone()),
                }
            }
        }
        for created in &facts.creates {
            self.history.created.insert(created);
        }
    }

    /// The transaction ends (`COMMIT`, `ROLLBACK`, the end of an implicit transaction, or —
    /// in the proxy — whatever the server's `ReadyForQuery` showed): every fact of the
    /// transaction ends with it. What it taught that lasts is kept only when it `committed`.
    pub fn end_transaction(&mut self, committed: bool) {
        let h = &mut self.history;
        h.held_locks.clear();
        h.not_validated.clear();
        h.statements_in_transaction = 0;
        h.open_begin = None;
        h.alters.clear();
        if self.new_objects == NewObjects::Transaction || !committed {
            h.created = RelationSet::default();
        }
        if self.new_objects == NewObjects::Transaction {
            // On a live database what a transaction taught about column types and indexes
            // may be changed by any other session, and a known type or index can only exempt:
            // the next transaction is judged as in a fresh session. Partitioned tables seen
            // are kept: that knowledge only makes ddlgate stricter (it refuses a CREATE INDEX
            // it could otherwise only rewrite into a CONCURRENTLY that PostgreSQL refuses).
            h.schema.columns.clear();
            h.schema.indexes.clear();
        }
        let learnt = std::mem::take(&mut h.uncommitted);
        let timeouts = h.session_timeouts;
        if committed {
            h.not_null_checks.extend(learnt.not_null_checks);
            h.validated_not_null.extend(learnt.validated_not_null);
            let (lock, statement) = learnt.session_timeouts.unwrap_or(timeouts);
            h.session_timeouts = (lock, statement);
        }
        // SET LOCAL ends here; the session's own value returns.
        (h.lock_timeout_set, h.statement_timeout_set) = h.session_timeouts;
        self.in_transaction = false;
    }

    /// `ROLLBACK TO SAVEPOINT`: what was created or proven since the savepoint is gone, and
    /// ddlgate cannot tell which facts came before it, so every exemption of the transaction
    /// is forgotten. Restrictions (locks held, constraints added `NOT VALID`) stay: being
    /// stricter is safe, being looser is not.
    pub fn rollback_to_savepoint(&mut self) {
        self.history.created = RelationSet::default();
        self.history.uncommitted = Uncommitted::default();
    }

    /// Whether the statement runs in an explicit or implicit transaction of several
    /// statements, so that what it teaches lasts only if that transaction commits.
    fn learns_uncommitted(&self) -> bool {
        self.in_transaction || self.in_multi_statement_query
    }

    /// Learns that `CHECK (column IS NOT NULL)` named `constraint` exists on `table`.
    pub fn learn_not_null_check(
        &mut self,
        table: RelationName,
        constraint: String,
        column: String,
    ) {
        let entry = (table, constraint, column);
        if self.learns_uncommitted() {
            self.history.uncommitted.not_null_checks.push(entry);
        } else {
            self.history.not_null_checks.push(entry);
        }
    }

    /// Learns that a valid check proves `column` of `table` not null.
    pub fn learn_validated_not_null(&mut self, table: RelationName, column: String) {
        if self.learns_uncommitted() {
            self.history
                .uncommitted
                .validated_not_null
                .push((table, column));
        } else {
            self.history.validated_not_null.push((table, column));
        }
    }

    /// The columns of `table` that the not-null check named `constraint` is about.
    pub fn not_null_check_columns(&self, table: &RelationName, constraint: &str) -> Vec<String> {
        self.history
            .not_null_checks
            .iter()
            .chain(&self.history.uncommitted.not_null_checks)
            .filter(|(t, name, _)| t.may_be(table) && name == constraint)
            .map(|(_, _, column)| column.clone())
            .collect()
    }

    /// Whether a validated check proves `column` of `table` not null: one validated in this
    /// session, or one the catalog shows.
    pub fn proven_not_null(&self, table: &RelationName, column: &str) -> bool {
        self.history
            .validated_not_null
            .iter()
            .chain(&self.history.uncommitted.validated_not_null)
            .any(|(t, c)| t.may_be(table) && c == column)
            || self
                .catalog
                .relation(table)
                .is_some_and(|f| f.checked_not_null.iter().any(|c| c == column))
    }

    /// A timeout setting changed: `local` for `SET LOCAL` (ends with the transaction).
    pub fn learn_timeout_set(&mut self, setting: TimeoutSetting, set: bool, local: bool) {
        match setting {
            TimeoutSetting::Lock => self.history.lock_timeout_set = set,
            TimeoutSetting::Statement => self.history.statement_timeout_set = set,
        }
        if local {
            return;
        }
        let h = &mut self.history;
        let mut session = h.uncommitted.session_timeouts.unwrap_or(h.session_timeouts);
        match setting {
            TimeoutSetting::Lock => session.0 = set,
            TimeoutSetting::Statement => session.1 = set,
        }
        if self.in_transaction || self.in_multi_statement_query {
            self.history.uncommitted.session_timeouts = Some(session);
        } else {
            self.history.session_timeouts = session;
        }
    }

    /// Where the lasting lists end now, to forget what a request taught if it fails (see
    /// [`Self::forget_lessons_since`]).
    pub fn lasting_marks(&self) -> LastingMarks {
        let h = &self.history;
        LastingMarks {
            columns: h.schema.columns.len(),
            partitioned: h.schema.partitioned.len(),
            indexes: h.schema.indexes.len(),
            not_null_checks: h.not_null_checks.len(),
            validated_not_null: h.validated_not_null.len(),
            session_timeouts: h.session_timeouts,
        }
    }

    /// A request failed: what it taught that lasts is forgotten (a failed `CREATE TABLE`
    /// describes a table that does not exist; a `COMMIT` inside it may not have committed).
    /// The lists only grow while a request is analysed, so cutting them back is exact.
    pub fn forget_lessons_since(&mut self, marks: &LastingMarks) {
        let h = &mut self.history;
        h.schema.columns.truncate(marks.columns);
        h.schema.partitioned.truncate(marks.partitioned);
        h.schema.indexes.truncate(marks.indexes);
        h.not_null_checks.truncate(marks.not_null_checks);
        h.validated_not_null.truncate(marks.validated_not_null);
        h.session_timeouts = marks.session_timeouts;
    }

    /// Moves on to the next script of a sequence (the next migration file): nothing in it is
    /// new any more and no transaction is open, but the column types learnt so far still hold.
    /// A script that left its transaction open is taken as committed (the tool that runs it
    /// commits at the end).
    pub fn next_script(&mut self) {
        self.end_transaction(true);
        let h = std::mem::take(&mut self.history);
        self.history = History {
            schema: h.schema,
            not_null_checks: h.not_null_checks,
            validated_not_null: h.validated_not_null,
            session_timeouts: h.session_timeouts,
            lock_timeout_set: h.lock_timeout_set,
            statement_timeout_set: h.statement_timeout_set,
            ..History::default()
        };
        self.in_transaction = false;
        self.in_multi_statement_query = false;
    }

    /// The strongest lock held so far in this transaction that blocks reads, if any.
    pub fn held_access_exclusive(&self) -> Option<&Lock> {
        self.history
            .held_locks
            .iter()
            .filter(|l| l.mode == LockMode::AccessExclusive)
            .find(|l| !matches!(&l.target, super::classify::LockTarget::Relation(r) if self.is_new(r)))
    }
}

/// What has happened so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Relations created earlier (in this transaction, or anywhere before in a script).
    pub created: RelationSet,
    /// Locks taken by earlier statements of the open transaction; held until it ends.
    pub held_locks: Vec<Lock>,
    /// Constraints added `NOT VALID` in the open transaction.
    pub not_validated: Vec<NotValidated>,
    /// Statements run so far in the open transaction.
    pub statements_in_transaction: usize,
    /// Whether a `lock_timeout` (other than 0) is in force: set earlier in the session or
    /// script, or by `SET LOCAL` in the open transaction.
    pub lock_timeout_set: bool,
    /// Whether a `statement_timeout` (other than 0) is in force (like `lock_timeout_set`).
    pub statement_timeout_set: bool,
    /// The session-level `(lock_timeout_set, statement_timeout_set)` of committed `SET`s:
    /// what is in force again when the transaction ends.
    pub session_timeouts: (bool, bool),
    /// What earlier scripts and statements taught about the schema; kept across scripts.
    pub schema: Schema,
    /// Foreign keys added in this script, checked for a supporting index when it ends.
    pub foreign_keys: Vec<ForeignKeySeen>,
    /// Whether a `BEGIN` opened the transaction that is still open, and where.
    pub open_begin: Option<std::ops::Range<usize>>,
    /// `ALTER TABLE` statements per table, in this transaction (or script, outside one), that
    /// rewrote or scanned it.
    pub alters: Vec<(RelationName, usize)>,
    /// `CHECK (column IS NOT NULL)` constraints added earlier: `(table, constraint, column)`.
    pub not_null_checks: Vec<(RelationName, String, String)>,
    /// Columns proven not null by a validated check: `SET NOT NULL` on them needs no scan.
    pub validated_not_null: Vec<(RelationName, String)>,
    /// What the open transaction taught that lasts only if it commits.
    pub uncommitted: Uncommitted,
}

/// Lengths of the lasting lists at one moment (see [`Context::lasting_marks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastingMarks {
    columns: usize,
    partitioned: usize,
    indexes: usize,
    not_null_checks: usize,
    validated_not_null: usize,
    session_timeouts: (bool, bool),
}

/// Facts learnt in the open transaction that outlive it only if it commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uncommitted {
    /// `CHECK (column IS NOT NULL)` constraints added: `(table, constraint, column)`.
    pub not_null_checks: Vec<(RelationName, String, String)>,
    /// Columns proven not null by a check validated in this transaction.
    pub validated_not_null: Vec<(RelationName, String)>,
    /// Session-level timeout `SET`s made in this transaction (see `History::session_timeouts`).
    pub session_timeouts: Option<(bool, bool)>,
}

/// A constraint added `NOT VALID` in the open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotValidated {
    /// The table it was added to.
    pub table: RelationName,
    /// Its name.
    pub constraint: String,
    /// For a foreign key, the table it references (locked too, and validated against).
    pub references: Option<RelationName>,
}

impl History {
    /// The type a column was last given, if known.
    pub fn column_type(&self, table: &RelationName, column: &str) -> Option<&ColumnType> {
        self.schema
            .columns
            .iter()
            .rev()
            .find(|(t, c, _)| t.may_be(table) && c == column)
            .map(|(_, _, ty)| ty)
    }
}

/// A set of relation names, looked up by name first: a long migration file creates thousands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationSet {
    /// Relation name → the schemas it was named with (`None`: unqualified).
    by_name: std::collections::HashMap<String, Vec<Option<String>>>,
}

impl RelationSet {
    /// Adds a relation.
    pub fn insert(&mut self, relation: &RelationName) {
        let schemas = self.by_name.entry(relation.name.clone()).or_default();
        if !schemas.contains(&relation.schema) {
            schemas.push(relation.schema.clone());
        }
    }

    /// Whether the set holds `relation`, named the same way (with the same schema, or none).
    pub fn may_contain(&self, relation: &RelationName) -> bool {
        self.by_name.get(&relation.name).is_some_and(|schemas| {
            // Exactly as named: `app.t` created and `t` used later may be different tables
            // (the search_path decides), and a wrong "new" would exempt a live table.
            schemas.contains(&relation.schema)
        })
    }

    /// Forgets the relations created under an unqualified name: after the `search_path`
    /// changes, the same unqualified name may denote another, older table.
    pub fn forget_unqualified(&mut self) {
        self.by_name.retain(|_, schemas| {
            schemas.retain(Option::is_some);
            !schemas.is_empty()
        });
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Schema facts learnt from the statements seen so far (in this and earlier scripts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// Column types: `(table, column, type)`, latest last.
    pub columns: Vec<(RelationName, String, ColumnType)>,
    /// Tables created `PARTITION BY …`.
    pub partitioned: Vec<RelationName>,
    /// Indexes (and primary keys, unique constraints) by table: their key columns in order.
    pub indexes: Vec<(RelationName, Vec<String>)>,
}

impl Schema {
    /// Whether the table is known to be partitioned.
    pub fn is_partitioned(&self, table: &RelationName) -> bool {
        self.partitioned.iter().any(|t| t.may_be(table))
    }

    /// Whether an index on `table` starts with exactly `columns`, in any order.
    pub fn has_index_leading_with(&self, table: &RelationName, columns: &[String]) -> bool {
        self.indexes.iter().any(|(t, keys)| {
            t.may_be(table)
                && keys.len() >= columns.len()
                && keys.iter().take(columns.len()).all(|k| columns.contains(k))
        })
    }

    /// Whether anything is known about the table's indexes (it was created where we saw it).
    pub fn knows_table(&self, table: &RelationName) -> bool {
        self.columns.iter().any(|(t, _, _)| t.may_be(table))
    }
}

/// A foreign key added in the current script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeySeen {
    /// The referencing table.
    pub table: RelationName,
    /// Its referencing columns.
    pub columns: Vec<String>,
    /// The statement that added it.
    pub span: std::ops::Range<usize>,
}

/// A column type as written: its base name (`varchar`, `int4`, `numeric`, …) and modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// The type's name without schema, as the parser normalises it.
    pub name: String,
    /// Length, precision and scale modifiers.
    pub mods: Vec<i64>,
}

impl ColumnType {
    /// A type as the catalog has it: `pg_type.typname` and the column's `atttypmod` (-1: no
    /// modifier), decoded the way PostgreSQL encodes the modifiers of the types whose changes
    /// can skip a rewrite.
    pub fn from_catalog(typname: &str, typmod: i64) -> Self {
        let mods = match typname {
            _ if typmod < 0 => Vec::new(),
            // Length plus the 4-byte header PostgreSQL counts in.
            "varchar" | "bpchar" => vec![typmod - 4],
            "numeric" => {
                let packed = typmod - 4;
                vec![(packed >> 16) & 0xffff, packed & 0xffff]
            }
            "bit" | "varbit" | "timestamp" | "timestamptz" | "time" | "timetz" => vec![typmod],
            // The fields (a range mask) above the precision.
            "interval" => vec![(typmod >> 16) & 0x7fff, typmod & 0xffff],
            _ => {
                return Self {
                    name: format!("{typname}(typmod {typmod})"),
                    mods: Vec::new(),
                };
            }
        };
        Self {
            name: typname.to_owned(),
            mods,
        }
    }

    /// Reads a parser `TypeName`.
    pub fn from_type_name(t: &super::parse::ast::TypeName) -> Self {
        use super::parse::{NodeEnum, ast};
        let name = t
            .names
            .last()
            .and_then(super::classify::string_value)
            .unwrap_or_default()
            .to_owned();
        let mods: Vec<i64> = t
            .typmods
            .iter()
            .filter_map(|m| match &m.node {
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(ast::a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let array = if t.array_bounds.is_empty() { "" } else { "[]" };
        let mods = match (name.as_str(), mods.as_slice()) {
            // As the catalog has it: `interval day` has the full precision.
            ("interval", [range]) => vec![*range, INTERVAL_FULL_PRECISION],
            _ => mods,
        };
        Self {
            name: format!("{name}{array}"),
            mods,
        }
    }
}

/// `interval`'s fields when none are given (PostgreSQL's `INTERVAL_FULL_RANGE`).
pub(crate) const INTERVAL_FULL_RANGE: i64 = 0x7fff;
/// `interval`'s precision when none is given (`INTERVAL_FULL_PRECISION`).
pub(crate) const INTERVAL_FULL_PRECISION: i64 = 0xffff;

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The parser's internal names, shown the way people write them.
        let (base, array) = match self.name.strip_suffix("[]") {
            Some(base) => (base, "[]"),
            None => (self.name.as_str(), ""),
        };
        let shown = match base {
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "bool" => "boolean",
            "bpchar" => "char",
            other => other,
        };
        f.write_str(shown)?;
        if let ("interval", [range, precision]) = (base, self.mods.as_slice()) {
            if *range != INTERVAL_FULL_RANGE {
                write!(f, " (fields {range:#x})")?;
            }
            if *precision != INTERVAL_FULL_PRECISION {
                write!(f, "({precision})")?;
            }
            return f.write_str(array);
        }
        if !self.mods.is_empty() {
            let mods: Vec<String> = self.mods.iter().map(ToString::to_string).collect();
            write!(f, "({})", mods.join(","))?;
        }
        f.write_str(array)
    }
}
