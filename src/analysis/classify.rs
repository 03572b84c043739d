//! What a statement does, read from its tree alone: its kind, the relations it locks and in
//! which mode, whether it rewrites or scans a table, whether it may run inside a transaction
//! block, and what it creates.
//!
//! Lock modes follow PostgreSQL's lock-level policy (the manual's "Explicit Locking" and the
//! lock notes on each command's page); the claims are checked against a real server by the
//! lock-truth test (`tests/it/lock_truth.rs`), which reads `pg_locks` after running each rule's
//! examples. Where a statement locks something its text does not name (the table of an index
//! being dropped, the tables referencing one being truncated with CASCADE), the target says so.

use std::fmt;

use super::locks::LockMode;
use super::parse::{NodeEnum, ast};
use super::violation::IndexBuild;

/// A relation as the statement names it (not resolved against `search_path`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationName {
    /// The schema, when the statement gives one.
    pub schema: Option<String>,
    /// The relation's name.
    pub name: String,
}

impl RelationName {
    /// A name from a parser `RangeVar`.
    pub fn from_range_var(rv: &ast::RangeVar) -> Self {
        Self {
            schema: (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
            name: rv.relname.clone(),
        }
    }

    /// A name from a list of `String` nodes (`schema.name` or `name`).
    pub fn from_names(names: &[ast::Node]) -> Option<Self> {
        let parts: Vec<&str> = names.iter().filter_map(string_value).collect();
        match parts.as_slice() {
            [name] => Some(Self {
                schema: None,
                name: (*name).to_owned(),
            }),
            [.., schema, name] => Some(Self {
                schema: Some((*schema).to_owned()),
                name: (*name).to_owned(),
            }),
            [] => None,
        }
    }

    /// Whether two names can denote the same relation (an unqualified name matches any schema).
    pub fn may_be(&self, other: &Self) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for RelationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(&self.name))
    }
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does: only when needed.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && !is_reserved_keyword(name) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn is_reserved_keyword(word: &str) -> bool {
    // Reserved words that would change the meaning of generated SQL if left unquoted.
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "system_user",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    ];
    RESERVED.contains(&word)
}

/// What a lock is taken on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockTarget {
    /// A relation the statement names.
    Relation(RelationName),
    /// The table an index (named by the statement) belongs to.
    TableOfIndex(RelationName),
    /// Tables found only at run time (referencing tables for `TRUNCATE … CASCADE`, tables with
    /// a column of a domain, …), described in words.
    Unnamed(&'static str),
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relation(r) => write!(f, "{r}"),
            Self::TableOfIndex(i) => write!(f, "the table of index {i}"),
            Self::Unnamed(what) => f.write_str(what),
        }
    }
}

/// One lock a statement takes and holds until its transaction ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lock {
    /// What is locked.
    pub target: LockTarget,
    /// In which mode.
    pub mode: LockMode,
}

/// Transaction-control statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxControl {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END` (and `COMMIT PREPARED`).
    Commit,
    /// `ROLLBACK` / `ABORT` (and `ROLLBACK PREPARED`).
    Rollback,
    /// `PREPARE TRANSACTION`: ends the transaction in this session.
    Prepare,
    /// `SAVEPOINT`.
    Savepoint,
    /// `RELEASE SAVEPOINT`.
    Release,
    /// `ROLLBACK TO SAVEPOINT`.
    RollbackTo,
}

/// The facts about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about a statement, not states of one machine"
)]
pub struct Facts {
    /// The command, as PostgreSQL's command tag names it (`CREATE INDEX`, `ALTER TABLE`, …).
    pub kind: String,
    /// Whether it changes the schema (or other cluster-level definitions).
    pub ddl: bool,
    /// Locks taken, one per target, the strongest mode each.
    pub locks: Vec<Lock>,
    /// Whether it rewrites every row of a table (time and space proportional to its size).
    pub rewrites: bool,
    /// Whether it reads every row of a table while holding its lock.
    pub scans: bool,
    /// Whether PostgreSQL lets it run inside a transaction block.
    pub allowed_in_transaction: bool,
    /// Relations it creates.
    pub creates: Vec<RelationName>,
    /// The transaction-control action, for `BEGIN`, `COMMIT`, ….
    pub tx_control: Option<TxControl>,
    /// Whether its effect cannot be known from its text (`DO`, `CALL`, `EXECUTE`, …).
    pub dynamic: bool,
    /// An explicit `LOCK TABLE` in a mode that blocks writes (`SHARE` or stronger): it queues
    /// application traffic exactly like the DDL it usually precedes.
    pub blocking_lock: bool,
    /// Where it builds an index concurrently (`CREATE INDEX CONCURRENTLY`, `REINDEX …
    /// CONCURRENTLY` of a table or an index): a failed build leaves an INVALID index there,
    /// which the proxy drops before it retries the build.
    pub concurrent_build: Option<IndexBuild>,
}

impl Facts {
    fn new(kind: impl Into<String>, ddl: bool) -> Self {
        Self {
            kind: kind.into(),
            ddl,
            locks: Vec::new(),
            rewrites: false,
            scans: false,
            allowed_in_transaction: true,
            creates: Vec::new(),
            tx_control: None,
            dynamic: false,
            blocking_lock: false,
            concurrent_build: None,
        }
    }

    /// Whether the policy governs it: DDL, statements that may run DDL, and explicit locks
    /// that block writes. These get timeouts and an audit record.
    pub fn governed(&self) -> bool {
        self.ddl || self.dynamic || self.blocking_lock
    }

    /// Records a lock, keeping only the strongest mode per target.
    fn lock(&mut self, target: LockTarget, mode: LockMode) {
        match self.locks.iter_mut().find(|l| l.target == target) {
            Some(existing) => existing.mode = existing.mode.max(mode),
            None => self.locks.push(Lock { target, mode }),
        }
    }

    fn lock_relation(&mut self, rv: Option<&ast::RangeVar>, mode: LockMode) {
        if let Some(rv) = rv {
            self.lock(LockTarget::Relation(RelationName::from_range_var(rv)), mode);
        }
    }

    /// The strongest lock taken, if any.
    pub fn strongest_lock(&self) -> Option<LockMode> {
        self.locks.iter().map(|l| l.mode).max()
    }

    /// DDL that takes only locks that block neither reads nor writes on existing relations:
    /// it gets the long "online" timeouts instead of the short ones.
    pub fn is_online(&self) -> bool {
        self.ddl
            && !self.locks.is_empty()
            && self
                .locks
                .iter()
                .all(|l| !l.mode.blocks_reads() && !l.mode.blocks_writes())
    }
}

/// Context that changes the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// The server's major version.
    pub server_major: u32,
}

/// Classifies one statement.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per statement type: a lookup table, not logic"
)]
pub fn classify(node: &NodeEnum, opts: ClassifyOptions) -> Facts {
    use LockMode::{
        AccessExclusive, AccessShare, Exclusive, RowExclusive, Share, ShareRowExclusive,
        ShareUpdateExclusive,
    };
    match node {
        NodeEnum::SelectStmt(s) => match &s.into_clause {
            Some(into) => {
                let mut f = Facts::new("SELECT INTO", true);
                if let Some(rel) = &into.rel {
                    f.creates.push(RelationName::from_range_var(rel));
                }
                f
            }
            None => Facts::new("SELECT", false),
        },
        NodeEnum::InsertStmt(s) => dml("INSERT", s.relation.as_ref()),
        NodeEnum::UpdateStmt(s) => dml("UPDATE", s.relation.as_ref()),
        NodeEnum::DeleteStmt(s) => dml("DELETE", s.relation.as_ref()),
        NodeEnum::MergeStmt(s) => dml("MERGE", s.relation.as_ref()),
        NodeEnum::CopyStmt(s) => {
            let mut f = Facts::new("COPY", false);
            f.lock_relation(
                s.relation.as_ref(),
                if s.is_from { RowExclusive } else { AccessShare },
            );
            // COPY … PROGRAM runs a shell command on the database server, which can do
            // anything, schema changes through a connection of its own included.
            f.dynamic = s.is_program;
            f
        }
        NodeEnum::ExplainStmt(s) => {
            // EXPLAIN ANALYZE runs the statement.
            match (&s.query, has_option(&s.options, "analyze")) {
                (Some(q), true) => q
                    .node
                    .as_ref()
                    .map_or_else(|| Facts::new("EXPLAIN", false), |n| classify(n, opts)),
                _ => Facts::new("EXPLAIN", false),
            }
        }
        NodeEnum::TransactionStmt(s) => transaction(s),
        NodeEnum::VariableSetStmt(_) => Facts::new("SET", false),
        NodeEnum::VariableShowStmt(_) => Facts::new("SHOW", false),
        NodeEnum::DiscardStmt(s) => {
            let mut f = Facts::new("DISCARD", false);
            // DISCARD ALL runs RESET ALL and DEALLOCATE ALL, which PostgreSQL refuses inside a
            // transaction block; the other forms run anywhere.
            f.allowed_in_transaction = s.target != ast::DiscardMode::DiscardAll as i32;
            f
        }
        NodeEnum::PrepareStmt(_) => Facts::new("PREPARE", false),
        NodeEnum::DeallocateStmt(_) => Facts::new("DEALLOCATE", false),
        NodeEnum::ExecuteStmt(_) => Facts::new("EXECUTE", false),
        NodeEnum::ListenStmt(_) => Facts::new("LISTEN", false),
        NodeEnum::UnlistenStmt(_) => Facts::new("UNLISTEN", false),
        NodeEnum::NotifyStmt(_) => Facts::new("NOTIFY", false),
        NodeEnum::CheckPointStmt(_) => Facts::new("CHECKPOINT", false),
        NodeEnum::LoadStmt(_) => Facts::new("LOAD", false),
        NodeEnum::DeclareCursorStmt(_) => Facts::new("DECLARE CURSOR", false),
        NodeEnum::FetchStmt(_) => Facts::new("FETCH", false),
        NodeEnum::ClosePortalStmt(_) => Facts::new("CLOSE CURSOR", false),
        NodeEnum::ConstraintsSetStmt(_) => Facts::new("SET CONSTRAINTS", false),
        NodeEnum::CallStmt(_) => {
            let mut f = Facts::new("CALL", false);
            f.dynamic = true;
            f
        }
        NodeEnum::DoStmt(_) => {
            let mut f = Facts::new("DO", false);
            f.dynamic = true;
            f
        }
        NodeEnum::LockStmt(s) => {
            let mut f = Facts::new("LOCK TABLE", false);
            let mode = lock_stmt_mode(s.mode);
            for rel in range_vars(&s.relations) {
                f.lock_relation(Some(rel), mode);
            }
            f.blocking_lock = mode.blocks_writes();
            f
        }
        NodeEnum::VacuumStmt(s) => vacuum(s),
        NodeEnum::ClusterStmt(s) => {
            let mut f = Facts::new("CLUSTER", true);
            f.lock_relation(s.relation.as_ref(), AccessExclusive);
            f.rewrites = s.relation.is_some();
            // CLUSTER without a table re-clusters every table that has been clustered.
            f.allowed_in_transaction = s.relation.is_some();
            if s.relation.is_none() {
                f.lock(
                    LockTarget::Unnamed("every previously clustered table"),
                    AccessExclusive,
                );
            }
            f
        }
        NodeEnum::ReindexStmt(s) => reindex(s),
        NodeEnum::RefreshMatViewStmt(s) => {
            let mut f = Facts::new("REFRESH MATERIALIZED VIEW", true);
            f.lock_relation(
                s.relation.as_ref(),
                if s.concurrent {
                    Exclusive
                } else {
                    AccessExclusive
                },
            );
            f.rewrites = true;
            f
        }
        NodeEnum::CreateStmt(s) => create_table(s),
        NodeEnum::CreateTableAsStmt(s) => {
            let object = ast::ObjectType::try_from(s.objtype).ok();
            let kind = match (object, s.is_select_into) {
                (Some(ast::ObjectType::ObjectMatview), _) => "CREATE MATERIALIZED VIEW",
                (_, true) => "SELECT INTO",
                _ => "CREATE TABLE AS",
            };
            let mut f = Facts::new(kind, true);
            // IF NOT EXISTS may find the relation there already, full and in use: not new.
            if let Some(rel) = s.into.as_ref().and_then(|i| i.rel.as_ref()) {
                if !s.if_not_exists {
                    f.creates.push(RelationName::from_range_var(rel));
                }
            }
            f
        }
        NodeEnum::IndexStmt(s) => create_index(s),
        NodeEnum::AlterTableStmt(s) => alter_table(s, opts),
        NodeEnum::RenameStmt(s) => rename(s),
        NodeEnum::DropStmt(s) => drop(s),
        NodeEnum::TruncateStmt(s) => {
            let mut f = Facts::new("TRUNCATE TABLE", true);
            for rel in range_vars(&s.relations) {
                f.lock_relation(Some(rel), AccessExclusive);
            }
            if s.behavior == ast::DropBehavior::DropCascade as i32 {
                f.lock(
                    LockTarget::Unnamed("every table referencing them by foreign key"),
                    AccessExclusive,
                );
            }
            f
        }
        NodeEnum::CreateTrigStmt(s) => {
            let mut f = Facts::new("CREATE TRIGGER", true);
            f.lock_relation(s.relation.as_ref(), ShareRowExclusive);
            if s.isconstraint {
                f.lock_relation(s.constrrel.as_ref(), ShareRowExclusive);
            }
            f
        }
        NodeEnum::RuleStmt(s) => {
            let mut f = Facts::new("CREATE RULE", true);
            f.lock_relation(s.relation.as_ref(), AccessExclusive);
            f
        }
        NodeEnum::CreatePolicyStmt(s) => {
            let mut f = Facts::new("CREATE POLICY", true);
            f.lock_relation(s.table.as_ref(), AccessExclusive);
            f
        }
        NodeEnum::AlterPolicyStmt(s) => {
            let mut f = Facts::new("ALTER POLICY", true);
            f.lock_relation(s.table.as_ref(), AccessExclusive);
            f
        }
        NodeEnum::CreateStatsStmt(s) => {
            let mut f = Facts::new("CREATE STATISTICS", true);
            for from in &s.relations {
                if let Some(NodeEnum::RangeVar(rv)) = &from.node {
                    f.lock_relation(Some(rv), ShareUpdateExclusive);
                }
            }
            f
        }
        NodeEnum::ViewStmt(s) => {
            let mut f = Facts::new("CREATE VIEW", true);
            if let Some(view) = &s.view {
                if s.replace {
                    f.lock_relation(Some(view), AccessExclusive);
                }
                f.creates.push(RelationName::from_range_var(view));
            }
            f
        }
        NodeEnum::CreateSeqStmt(s) => {
            let mut f = Facts::new("CREATE SEQUENCE", true);
            if let Some(seq) = s.sequence.as_ref().filter(|_| !s.if_not_exists) {
                f.creates.push(RelationName::from_range_var(seq));
            }
            f
        }
        NodeEnum::AlterSeqStmt(s) => {
            let mut f = Facts::new("ALTER SEQUENCE", true);
            f.lock_relation(s.sequence.as_ref(), ShareRowExclusive);
            f
        }
        NodeEnum::AlterEnumStmt(s) => {
            let mut f = Facts::new("ALTER TYPE", true);
            // Before PostgreSQL 12, ADD VALUE could not run inside a transaction block.
            f.allowed_in_transaction = !(s.old_val.is_empty() && opts.server_major < 12);
            f
        }
        NodeEnum::AlterDomainStmt(s) => {
            let mut f = Facts::new("ALTER DOMAIN", true);
            // ADD CONSTRAINT (C), SET NOT NULL (O) and VALIDATE CONSTRAINT (V) check every
            // column of the domain type, each table under a SHARE lock (measured on 15 and 18:
            // VALIDATE is no weaker than ADD for domains).
            let validates = match s.subtype.as_str() {
                "C" => !matches!(s.def.as_ref().and_then(|d| d.node.as_ref()),
                    Some(NodeEnum::Constraint(c)) if c.skip_validation),
                "O" | "V" => true,
                _ => false,
            };
            if validates {
                f.scans = true;
                f.lock(
                    LockTarget::Unnamed("every table with a column of this domain"),
                    Share,
                );
            }
            f
        }
        NodeEnum::DropdbStmt(_) => {
            let mut f = Facts::new("DROP DATABASE", true);
            f.allowed_in_transaction = false;
            f
        }
        NodeEnum::CreatedbStmt(_) => {
            let mut f = Facts::new("CREATE DATABASE", true);
            f.allowed_in_transaction = false;
            f
        }
        NodeEnum::AlterSystemStmt(_) => {
            let mut f = Facts::new("ALTER SYSTEM", true);
            f.allowed_in_transaction = false;
            f
        }
        NodeEnum::CreateTableSpaceStmt(_) => {
            let mut f = Facts::new("CREATE TABLESPACE", true);
            f.allowed_in_transaction = false;
            f
        }
        NodeEnum::DropTableSpaceStmt(_) => {
            let mut f = Facts::new("DROP TABLESPACE", true);
            f.allowed_in_transaction = false;
            f
        }
        NodeEnum::CreateSubscriptionStmt(_) | NodeEnum::DropSubscriptionStmt(_) => {
            Facts::new("SUBSCRIPTION", true)
        }
        NodeEnum::AlterObjectSchemaStmt(s) => {
            let mut f = Facts::new("ALTER SET SCHEMA", true);
            f.lock_relation(s.relation.as_ref(), AccessExclusive);
            f
        }
        NodeEnum::CreateFunctionStmt(s) => Facts::new(
            if s.is_procedure {
                "CREATE PROCEDURE"
            } else {
                "CREATE FUNCTION"
            },
            true,
        ),
        NodeEnum::CreateEnumStmt(_)
        | NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateRangeStmt(_) => Facts::new("CREATE TYPE", true),
        NodeEnum::CreateDomainStmt(_) => Facts::new("CREATE DOMAIN", true),
        NodeEnum::CreateSchemaStmt(_) => Facts::new("CREATE SCHEMA", true),
        NodeEnum::CreateExtensionStmt(_) => Facts::new("CREATE EXTENSION", true),
        NodeEnum::CommentStmt(_) => Facts::new("COMMENT", true),
        NodeEnum::GrantStmt(s) => Facts::new(if s.is_grant { "GRANT" } else { "REVOKE" }, true),
        NodeEnum::GrantRoleStmt(s) => Facts::new(
            if s.is_grant {
                "GRANT ROLE"
            } else {
                "REVOKE ROLE"
            },
            true,
        ),
        NodeEnum::CreateRoleStmt(_) => Facts::new("CREATE ROLE", true),
        NodeEnum::AlterRoleStmt(_) | NodeEnum::AlterRoleSetStmt(_) => {
            Facts::new("ALTER ROLE", true)
        }
        NodeEnum::DropRoleStmt(_) => Facts::new("DROP ROLE", true),
        NodeEnum::AlterOwnerStmt(_) => Facts::new("ALTER OWNER", true),
        NodeEnum::AlterDatabaseStmt(_) | NodeEnum::AlterDatabaseSetStmt(_) => {
            Facts::new("ALTER DATABASE", true)
        }
        other => {
            // Every other statement is a utility command that defines or changes something.
            let mut f = Facts::new(utility_kind(other), true);
            f.ddl = true;
            f
        }
    }
}

fn dml(kind: &str, relation: Option<&ast::RangeVar>) -> Facts {
    let mut f = Facts::new(kind, false);
    f.lock_relation(relation, LockMode::RowExclusive);
    f
}

fn transaction(s: &ast::TransactionStmt) -> Facts {
    use ast::TransactionStmtKind as K;
    let (kind, control) = match K::try_from(s.kind).unwrap_or(K::Undefined) {
        K::TransStmtBegin | K::TransStmtStart => ("BEGIN", Some(TxControl::Begin)),
        K::TransStmtCommit => ("COMMIT", Some(TxControl::Commit)),
        K::TransStmtRollback => ("ROLLBACK", Some(TxControl::Rollback)),
        K::TransStmtSavepoint => ("SAVEPOINT", Some(TxControl::Savepoint)),
        K::TransStmtRelease => ("RELEASE", Some(TxControl::Release)),
        K::TransStmtRollbackTo => ("ROLLBACK", Some(TxControl::RollbackTo)),
        K::TransStmtPrepare => ("PREPARE TRANSACTION", Some(TxControl::Prepare)),
        K::TransStmtCommitPrepared => ("COMMIT PREPARED", None),
        K::TransStmtRollbackPrepared => ("ROLLBACK PREPARED", None),
        K::Undefined => ("TRANSACTION", None),
    };
    let mut f = Facts::new(kind, false);
    f.tx_control = control;
    f.allowed_in_transaction = !matches!(
        K::try_from(s.kind),
        Ok(K::TransStmtCommitPrepared | K::TransStmtRollbackPrepared)
    );
    f
}

fn vacuum(s: &ast::VacuumStmt) -> Facts {
    let full = has_option(&s.options, "full");
    let kind = if !s.is_vacuumcmd {
        "ANALYZE"
    } else if full {
        "VACUUM FULL"
    } else {
        "VACUUM"
    };
    let mut f = Facts::new(kind, s.is_vacuumcmd && full);
    let mode = if full {
        LockMode::AccessExclusive
    } else {
        LockMode::ShareUpdateExclusive
    };
    let rels: Vec<&ast::RangeVar> = s
        .rels
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::VacuumRelation(vr)) => vr.relation.as_ref(),
            _ => None,
        })
        .collect();
    for rel in &rels {
        f.lock_relation(Some(rel), mode);
    }
    if rels.is_empty() {
        f.lock(LockTarget::Unnamed("every table of the database"), mode);
    }
    f.rewrites = full;
    f.scans = true;
    // ANALYZE may run in a transaction block; VACUUM never.
    f.allowed_in_transaction = !s.is_vacuumcmd;
    f
}

fn reindex(s: &ast::ReindexStmt) -> Facts {
    use ast::ReindexObjectType as K;
    let concurrent = has_option(&s.params, "concurrently");
    let mut f = Facts::new("REINDEX", true);
    let object = K::try_from(s.kind).unwrap_or(K::Undefined);
    f.allowed_in_transaction =
        !concurrent && matches!(object, K::ReindexObjectIndex | K::ReindexObjectTable);
    f.scans = true;
    if concurrent {
        let name = s.relation.as_ref().map(RelationName::from_range_var);
        f.concurrent_build = match (object, name) {
            (K::ReindexObjectTable, Some(table)) => Some(IndexBuild::OnTable(table)),
            (K::ReindexObjectIndex, Some(index)) => Some(IndexBuild::BesideIndex(index)),
            _ => None,
        };
    }
    let table_mode = if concurrent {
        LockMode::ShareUpdateExclusive
    } else {
        LockMode::Share
    };
    match object {
        K::ReindexObjectIndex => {
            if let Some(rv) = &s.relation {
                let index = RelationName::from_range_var(rv);
                f.lock(LockTarget::TableOfIndex(index.clone()), table_mode);
                f.lock(
                    LockTarget::Relation(index),
                    if concurrent {
                        LockMode::ShareUpdateExclusive
                    } else {
                        LockMode::AccessExclusive
                    },
                );
            }
        }
        K::ReindexObjectTable => f.lock_relation(s.relation.as_ref(), table_mode),
        K::ReindexObjectSchema
        | K::ReindexObjectSystem
        | K::ReindexObjectDatabase
        | K::Undefined => {
            f.lock(
                LockTarget::Unnamed("every table in scope, one at a time"),
                table_mode,
            );
        }
    }
    f
}

fn create_table(s: &ast::CreateStmt) -> Facts {
    let mut f = Facts::new("CREATE TABLE", true);
    // IF NOT EXISTS may find the table there already, full and in use: not new.
    if let Some(rel) = s.relation.as_ref().filter(|_| !s.if_not_exists) {
        f.creates.push(RelationName::from_range_var(rel));
    }
    if s.partbound.is_some() {
        // CREATE TABLE … PARTITION OF locks the parent in ACCESS EXCLUSIVE mode.
        for parent in range_vars(&s.inh_relations) {
            f.lock_relation(Some(parent), LockMode::AccessExclusive);
        }
    } else {
        for parent in range_vars(&s.inh_relations) {
            f.lock_relation(Some(parent), LockMode::ShareUpdateExclusive);
        }
    }
    // Foreign keys lock the referenced table against writes while the trigger is added.
    let constraints =
        s.constraints
            .iter()
            .chain(s.table_elts.iter().flat_map(|elt| match &elt.node {
                Some(NodeEnum::ColumnDef(col)) => col.constraints.as_slice(),
                _ => &[],
            }));
    let table_constraints = s
        .table_elts
        .iter()
        .filter(|n| matches!(n.node, Some(NodeEnum::Constraint(_))));
    for c in constraints.chain(table_constraints) {
        if let Some(NodeEnum::Constraint(c)) = &c.node
            && c.contype == ast::ConstrType::ConstrForeign as i32
        {
            let referencing_self = match (&c.pktable, &s.relation) {
                (Some(pk), Some(me)) => {
                    RelationName::from_range_var(pk).may_be(&RelationName::from_range_var(me))
                }
                _ => false,
            };
            if !referencing_self {
                f.lock_relation(c.pktable.as_ref(), LockMode::ShareRowExclusive);
            }
        }
    }
    f
}

fn create_index(s: &ast::IndexStmt) -> Facts {
    let mut f = Facts::new("CREATE INDEX", true);
    f.lock_relation(
        s.relation.as_ref(),
        if s.concurrent {
            LockMode::ShareUpdateExclusive
        } else {
            LockMode::Share
        },
    );
    f.scans = true;
    f.allowed_in_transaction = !s.concurrent;
    if s.concurrent {
        f.concurrent_build = s
            .relation
            .as_ref()
            .map(|r| IndexBuild::OnTable(RelationName::from_range_var(r)));
    }
    if !s.idxname.is_empty() && !s.if_not_exists {
        f.creates.push(RelationName {
            schema: s
                .relation
                .as_ref()
                .and_then(|r| (!r.schemaname.is_empty()).then(|| r.schemaname.clone())),
            name: s.idxname.clone(),
        });
    }
    f
}

/// The lock level, rewrite and scan of each `ALTER TABLE` subcommand.
struct SubcommandFacts {
    mode: LockMode,
    rewrites: bool,
    scans: bool,
}

fn alter_table(s: &ast::AlterTableStmt, opts: ClassifyOptions) -> Facts {
    let object = ast::ObjectType::try_from(s.objtype).unwrap_or(ast::ObjectType::Undefined);
    let kind = match object {
        ast::ObjectType::ObjectIndex => "ALTER INDEX",
        ast::ObjectType::ObjectSequence => "ALTER SEQUENCE",
        ast::ObjectType::ObjectView => "ALTER VIEW",
        ast::ObjectType::ObjectMatview => "ALTER MATERIALIZED VIEW",
        ast::ObjectType::ObjectForeignTable => "ALTER FOREIGN TABLE",
        ast::ObjectType::ObjectType => "ALTER TYPE",
        _ => "ALTER TABLE",
    };
    let mut f = Facts::new(kind, true);
    let mut table_mode = LockMode::ShareUpdateExclusive;
    for cmd in alter_cmds(s) {
        let sub = alter_subcommand(cmd, opts);
        table_mode = table_mode.max(sub.mode);
        f.rewrites |= sub.rewrites;
        f.scans |= sub.scans;
        extra_locks(cmd, opts, &mut f);
        if is_concurrent_detach(cmd) {
            f.allowed_in_transaction = false;
        }
    }
    f.lock_relation(s.relation.as_ref(), table_mode);
    f
}

/// The subcommands of an `ALTER TABLE`.
pub(crate) fn alter_cmds(s: &ast::AlterTableStmt) -> impl Iterator<Item = &ast::AlterTableCmd> {
    s.cmds.iter().filter_map(|n| match &n.node {
        Some(NodeEnum::AlterTableCmd(c)) => Some(c.as_ref()),
        _ => None,
    })
}

/// The `ALTER TABLE` subcommand type.
pub(crate) fn subtype(cmd: &ast::AlterTableCmd) -> ast::AlterTableType {
    ast::AlterTableType::try_from(cmd.subtype).unwrap_or(ast::AlterTableType::Undefined)
}

fn is_concurrent_detach(cmd: &ast::AlterTableCmd) -> bool {
    subtype(cmd) == ast::AlterTableType::AtDetachPartition
        && matches!(cmd.def.as_ref().and_then(|d| d.node.as_ref()),
            Some(NodeEnum::PartitionCmd(p)) if p.concurrent)
}

fn alter_subcommand(cmd: &ast::AlterTableCmd, opts: ClassifyOptions) -> SubcommandFacts {
    use LockMode::{AccessExclusive, ShareRowExclusive, ShareUpdateExclusive};
    use ast::AlterTableType as T;
    let plain = |mode| SubcommandFacts {
        mode,
        rewrites: false,
        scans: false,
    };
    match subtype(cmd) {
        T::AtAddColumn | T::AtAddColumnToView => {
            let col = match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::ColumnDef(c)) => Some(c.as_ref()),
                _ => None,
            };
            SubcommandFacts {
                mode: AccessExclusive,
                rewrites: col.is_some_and(|c| add_column_rewrites(c, opts.server_major)),
                scans: false,
            }
        }
        T::AtSetNotNull => SubcommandFacts {
            mode: AccessExclusive,
            rewrites: false,
            scans: true,
        },
        T::AtAlterColumnType
        | T::AtSetLogged
        | T::AtSetUnLogged
        | T::AtSetAccessMethod
        | T::AtSetTableSpace
        | T::AtSetExpression => SubcommandFacts {
            mode: AccessExclusive,
            rewrites: true,
            scans: true,
        },
        T::AtAddConstraint => match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::Constraint(c)) => {
                let contype =
                    ast::ConstrType::try_from(c.contype).unwrap_or(ast::ConstrType::Undefined);
                let validates = !c.skip_validation;
                match contype {
                    ast::ConstrType::ConstrForeign => SubcommandFacts {
                        mode: ShareRowExclusive,
                        rewrites: false,
                        scans: validates,
                    },
                    ast::ConstrType::ConstrCheck | ast::ConstrType::ConstrNotnull => {
                        SubcommandFacts {
                            mode: AccessExclusive,
                            rewrites: false,
                            scans: validates,
                        }
                    }
                    ast::ConstrType::ConstrPrimary
                    | ast::ConstrType::ConstrUnique
                    | ast::ConstrType::ConstrExclusion => SubcommandFacts {
                        mode: AccessExclusive,
                        rewrites: false,
                        // USING INDEX adopts a built index: no scan.
                        scans: c.indexname.is_empty(),
                    },
                    _ => plain(AccessExclusive),
                }
            }
            _ => plain(AccessExclusive),
        },
        T::AtValidateConstraint => SubcommandFacts {
            mode: ShareUpdateExclusive,
            rewrites: false,
            scans: true,
        },
        T::AtDetachPartition => plain(if is_concurrent_detach(cmd) {
            ShareUpdateExclusive
        } else {
            AccessExclusive
        }),
        T::AtAttachPartition
        | T::AtDetachPartitionFinalize
        | T::AtSetStatistics
        | T::AtSetOptions
        | T::AtResetOptions
        | T::AtClusterOn
        | T::AtDropCluster
        | T::AtSetRelOptions
        | T::AtResetRelOptions => plain(ShareUpdateExclusive),
        T::AtEnableTrig
        | T::AtEnableAlwaysTrig
        | T::AtEnableReplicaTrig
        | T::AtDisableTrig
        | T::AtEnableTrigAll
        | T::AtDisableTrigAll
        | T::AtEnableTrigUser
        | T::AtDisableTrigUser => plain(ShareRowExclusive),
        _ => plain(AccessExclusive),
    }
}

/// Locks an `ALTER TABLE` subcommand takes on relations other than the altered table.
fn extra_locks(cmd: &ast::AlterTableCmd, opts: ClassifyOptions, f: &mut Facts) {
    use ast::AlterTableType as T;
    match (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
        (T::AtAddConstraint, Some(NodeEnum::Constraint(c)))
            if c.contype == ast::ConstrType::ConstrForeign as i32 =>
        {
            f.lock_relation(c.pktable.as_ref(), LockMode::ShareRowExclusive);
        }
        (T::AtAttachPartition, Some(NodeEnum::PartitionCmd(p))) => {
            f.lock_relation(p.name.as_ref(), LockMode::AccessExclusive);
            f.scans = true;
        }
        (T::AtDetachPartition, Some(NodeEnum::PartitionCmd(p))) => {
            // Before PostgreSQL 14 (which added CONCURRENTLY) the partition itself was only
            // locked SHARE UPDATE EXCLUSIVE; the parent's ACCESS EXCLUSIVE is what blocks.
            f.lock_relation(
                p.name.as_ref(),
                if p.concurrent || opts.server_major < 14 {
                    LockMode::ShareUpdateExclusive
                } else {
                    LockMode::AccessExclusive
                },
            );
        }
        _ => {}
    }
}

/// Whether `ADD COLUMN` rewrites the table: a volatile default (any default before
/// PostgreSQL 11), a stored generated column, an identity or serial column.
pub(crate) fn add_column_rewrites(col: &ast::ColumnDef, server_major: u32) -> bool {
    if col_is_serial(col) || !col.identity.is_empty() {
        return true;
    }
    col.constraints.iter().any(|c| match &c.node {
        Some(NodeEnum::Constraint(c)) => {
            let contype =
                ast::ConstrType::try_from(c.contype).unwrap_or(ast::ConstrType::Undefined);
            match contype {
                ast::ConstrType::ConstrDefault => c
                    .raw_expr
                    .as_ref()
                    .is_some_and(|e| server_major < 11 || !is_non_volatile(e)),
                ast::ConstrType::ConstrIdentity => true,
                // PostgreSQL 18's VIRTUAL generated columns are computed on read.
                ast::ConstrType::ConstrGenerated => c.generated_kind != "v",
                _ => false,
            }
        }
        _ => false,
    })
}

/// Whether the column's type is `serial`, `bigserial` or `smallserial`.
pub(crate) fn col_is_serial(col: &ast::ColumnDef) -> bool {
    col.type_name.as_ref().is_some_and(|t| {
        t.names.last().and_then(string_value).is_some_and(|n| {
            matches!(
                n,
                "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
            )
        })
    })
}

/// Whether an expression is certainly not volatile: constants, casts, operators, and calls of
/// a few stable or immutable built-in functions. Anything else (a user function, `random()`,
/// `gen_random_uuid()`, `clock_timestamp()`, `nextval()`) counts as volatile.
pub(crate) fn is_non_volatile(expr: &ast::Node) -> bool {
    const STABLE_OR_IMMUTABLE: &[&str] = &[
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "current_setting",
        "lower",
        "upper",
        "length",
        "coalesce",
        "to_timestamp",
        "to_date",
        "make_date",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "jsonb_build_object",
        "json_build_object",
        "jsonb_build_array",
        "json_build_array",
        "array_fill",
    ];
    match &expr.node {
        Some(NodeEnum::AConst(_) | NodeEnum::SqlvalueFunction(_)) => true,
        Some(NodeEnum::TypeCast(c)) => c.arg.as_deref().is_none_or(is_non_volatile),
        Some(NodeEnum::AExpr(e)) => {
            e.lexpr.as_deref().is_none_or(is_non_volatile)
                && e.rexpr.as_deref().is_none_or(is_non_volatile)
        }
        Some(NodeEnum::BoolExpr(b)) => b.args.iter().all(is_non_volatile),
        Some(NodeEnum::AArrayExpr(a)) => a.elements.iter().all(is_non_volatile),
        Some(NodeEnum::List(l)) => l.items.iter().all(is_non_volatile),
        Some(NodeEnum::CoalesceExpr(c)) => c.args.iter().all(is_non_volatile),
        Some(NodeEnum::FuncCall(call)) => {
            let name = call
                .funcname
                .last()
                .and_then(string_value)
                .unwrap_or_default();
            let schema_ok = call.funcname.len() == 1
                || call.funcname.first().and_then(string_value) == Some("pg_catalog");
            schema_ok
                && STABLE_OR_IMMUTABLE.contains(&name)
                && call.args.iter().all(is_non_volatile)
        }
        _ => false,
    }
}

fn rename(s: &ast::RenameStmt) -> Facts {
    use ast::ObjectType as O;
    let object = O::try_from(s.rename_type).unwrap_or(O::Undefined);
    let kind = match object {
        O::ObjectColumn => "ALTER TABLE RENAME COLUMN",
        O::ObjectTabconstraint => "ALTER TABLE RENAME CONSTRAINT",
        O::ObjectIndex => "ALTER INDEX RENAME",
        O::ObjectTable => "ALTER TABLE RENAME",
        O::ObjectView => "ALTER VIEW RENAME",
        O::ObjectMatview => "ALTER MATERIALIZED VIEW RENAME",
        O::ObjectSequence => "ALTER SEQUENCE RENAME",
        O::ObjectSchema => "ALTER SCHEMA RENAME",
        O::ObjectType => "ALTER TYPE RENAME",
        O::ObjectAttribute => "ALTER TYPE RENAME ATTRIBUTE",
        O::ObjectTrigger => "ALTER TRIGGER RENAME",
        O::ObjectPolicy => "ALTER POLICY RENAME",
        O::ObjectRule => "ALTER RULE RENAME",
        O::ObjectDomconstraint => "ALTER DOMAIN RENAME CONSTRAINT",
        _ => "RENAME",
    };
    let mut f = Facts::new(kind, true);
    let mode = match object {
        // Renaming an index takes SHARE UPDATE EXCLUSIVE since PostgreSQL 12.
        O::ObjectIndex => LockMode::ShareUpdateExclusive,
        _ => LockMode::AccessExclusive,
    };
    f.lock_relation(s.relation.as_ref(), mode);
    f
}

fn drop(s: &ast::DropStmt) -> Facts {
    use ast::ObjectType as O;
    let object = O::try_from(s.remove_type).unwrap_or(O::Undefined);
    let (kind, is_relation) = match object {
        O::ObjectTable => ("DROP TABLE", true),
        O::ObjectIndex => ("DROP INDEX", true),
        O::ObjectView => ("DROP VIEW", true),
        O::ObjectMatview => ("DROP MATERIALIZED VIEW", true),
        O::ObjectSequence => ("DROP SEQUENCE", true),
        O::ObjectForeignTable => ("DROP FOREIGN TABLE", true),
        O::ObjectSchema => ("DROP SCHEMA", false),
        O::ObjectType => ("DROP TYPE", false),
        O::ObjectDomain => ("DROP DOMAIN", false),
        O::ObjectFunction => ("DROP FUNCTION", false),
        O::ObjectProcedure => ("DROP PROCEDURE", false),
        O::ObjectTrigger => ("DROP TRIGGER", false),
        O::ObjectExtension => ("DROP EXTENSION", false),
        O::ObjectPolicy => ("DROP POLICY", false),
        O::ObjectRule => ("DROP RULE", false),
        _ => ("DROP", false),
    };
    let mut f = Facts::new(kind, true);
    if s.concurrent {
        f.allowed_in_transaction = false;
    }
    let mode = if s.concurrent {
        LockMode::ShareUpdateExclusive
    } else {
        LockMode::AccessExclusive
    };
    for name in drop_object_names(s) {
        if is_relation {
            if object == O::ObjectIndex {
                f.lock(LockTarget::TableOfIndex(name.clone()), mode);
            }
            f.lock(LockTarget::Relation(name), mode);
        } else if matches!(object, O::ObjectTrigger | O::ObjectPolicy | O::ObjectRule) {
            // `DROP TRIGGER t ON tbl`: the name list ends with the trigger's own name.
            f.lock(LockTarget::Relation(name), LockMode::AccessExclusive);
        }
    }
    if s.behavior == ast::DropBehavior::DropCascade as i32 && is_relation {
        f.lock(
            LockTarget::Unnamed("every object depending on them"),
            LockMode::AccessExclusive,
        );
    }
    f
}

/// The relations a `DROP` names (for triggers, policies and rules: the table they are on).
pub(crate) fn drop_object_names(s: &ast::DropStmt) -> Vec<RelationName> {
    use ast::ObjectType as O;
    let on_table = matches!(
        O::try_from(s.remove_type),
        Ok(O::ObjectTrigger | O::ObjectPolicy | O::ObjectRule)
    );
    s.objects
        .iter()
        .filter_map(|o| match &o.node {
            Some(NodeEnum::List(list)) => {
                let items = if on_table {
                    list.items.split_last().map_or(&[][..], |(_, rest)| rest)
                } else {
                    list.items.as_slice()
                };
                RelationName::from_names(items)
            }
            Some(NodeEnum::String(s)) => Some(RelationName {
                schema: None,
                name: s.sval.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn utility_kind(node: &NodeEnum) -> String {
    // "CreateEventTrigStmt" → "CREATE EVENT TRIGGER": the node's name, split into words, with
    // the parser's abbreviations spelled out as the command tag spells them.
    let debug = format!("{node:?}");
    let name = debug.split('(').next().unwrap_or("UTILITY");
    let name = name.strip_suffix("Stmt").unwrap_or(name);
    let mut words: Vec<String> = Vec::new();
    for c in name.chars() {
        match words.last_mut() {
            Some(word) if !c.is_ascii_uppercase() => word.push(c.to_ascii_uppercase()),
            _ => words.push(c.to_ascii_uppercase().to_string()),
        }
    }
    let spelled: Vec<&str> = words
        .iter()
        .map(|word| match word.as_str() {
            "TRIG" => "TRIGGER",
            "FDW" => "FOREIGN DATA WRAPPER",
            "PLANG" => "LANGUAGE",
            "OP" => "OPERATOR",
            "AM" => "ACCESS METHOD",
            "STATS" => "STATISTICS",
            "SEC" => "SECURITY",
            "TSDICTIONARY" => "TEXT SEARCH DICTIONARY",
            "TSCONFIGURATION" => "TEXT SEARCH CONFIGURATION",
            other => other,
        })
        .collect();
    spelled.join(" ").replace("TABLE SPACE", "TABLESPACE")
}

fn lock_stmt_mode(mode: i32) -> LockMode {
    // The parser stores PostgreSQL's LOCKMODE numbers (1 = AccessShareLock … 8).
    usize::try_from(mode)
        .ok()
        .and_then(|m| m.checked_sub(1))
        .and_then(|i| LockMode::ALL.get(i).copied())
        .unwrap_or(LockMode::AccessExclusive)
}

/// The text of a `String` node.
pub(crate) fn string_value(node: &ast::Node) -> Option<&str> {
    match &node.node {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        _ => None,
    }
}

fn range_vars(nodes: &[ast::Node]) -> impl Iterator<Item = &ast::RangeVar> {
    nodes.iter().filter_map(|n| match &n.node {
        Some(NodeEnum::RangeVar(rv)) => Some(rv),
        _ => None,
    })
}

/// Whether a list of `DefElem` options has one named `name` that is not explicitly false.
pub(crate) fn has_option(options: &[ast::Node], name: &str) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case(name) => {
            !matches!(d.arg.as_ref().and_then(|a| a.node.as_ref()),
                Some(NodeEnum::Boolean(b)) if !b.boolval)
                && !matches!(d.arg.as_ref().and_then(|a| a.node.as_ref()),
                    Some(NodeEnum::String(s)) if matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0"))
        }
        _ => false,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::parse::{Options, parse_script};

    fn facts(sql: &str) -> Facts {
        facts_on(sql, 15)
    }

    fn facts_on(sql: &str, server_major: u32) -> Facts {
        let parsed = parse_script(sql, Options::default());
        classify(
            parsed[0].tree.as_ref().unwrap(),
            ClassifyOptions { server_major },
        )
    }

    fn locks(sql: &str) -> Vec<String> {
        facts(sql)
            .locks
            .iter()
            .map(|l| format!("{} {}", l.target, l.mode))
            .collect()
    }

    #[test]
    fn utility_kinds_are_spelled_as_command_tags() {
        for (sql, kind) in [
            (
                "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
                "CREATE EVENT TRIGGER",
            ),
            (
                "CREATE FOREIGN DATA WRAPPER w",
                "CREATE FOREIGN DATA WRAPPER",
            ),
            (
                "CREATE ACCESS METHOD m TYPE TABLE HANDLER h",
                "CREATE ACCESS METHOD",
            ),
            ("CREATE STATISTICS s ON a, b FROM t", "CREATE STATISTICS"),
            (
                "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <",
                "CREATE OPERATOR CLASS",
            ),
            (
                "ALTER TABLESPACE ts SET (seq_page_cost = 1)",
                "ALTER TABLESPACE OPTIONS",
            ),
            ("SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL"),
        ] {
            assert_eq!(facts(sql).kind, kind, "{sql}");
        }
    }

    #[test]
    fn discard_all_cannot_run_in_a_transaction_block() {
        assert!(!facts("DISCARD ALL").allowed_in_transaction);
        assert!(facts("DISCARD TEMP").allowed_in_transaction);
    }

    #[test]
    fn index_builds() {
        assert_eq!(locks("CREATE INDEX i ON s.t (a)"), ["s.t SHARE"]);
        let cic = facts("CREATE INDEX CONCURRENTLY i ON t (a)");
        assert_eq!(cic.locks[0].mode, LockMode::ShareUpdateExclusive);
        assert!(!cic.allowed_in_transaction && cic.is_online());
        assert_eq!(cic.creates[0].name, "i");
    }

    #[test]
    fn alter_table_takes_the_strongest_subcommand_lock() {
        assert_eq!(
            locks("ALTER TABLE t SET (autovacuum_enabled = false)"),
            ["t SHARE UPDATE EXCLUSIVE"]
        );
        assert_eq!(
            locks("ALTER TABLE t ALTER COLUMN a SET STATISTICS 100, ADD COLUMN c int"),
            ["t ACCESS EXCLUSIVE"]
        );
        assert_eq!(
            locks("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES p (id)"),
            ["p SHARE ROW EXCLUSIVE", "o SHARE ROW EXCLUSIVE"]
        );
        let validate = facts("ALTER TABLE o VALIDATE CONSTRAINT fk");
        assert!(validate.is_online() && validate.scans);
    }

    #[test]
    fn add_column_rewrites_only_with_a_volatile_default() {
        assert!(!facts("ALTER TABLE t ADD COLUMN c int DEFAULT 0").rewrites);
        assert!(!facts("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()").rewrites);
        assert!(!facts("ALTER TABLE t ADD COLUMN c text DEFAULT 'x'::text || 'y'").rewrites);
        assert!(facts("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()").rewrites);
        assert!(facts("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()").rewrites);
        assert!(facts("ALTER TABLE t ADD COLUMN c bigserial").rewrites);
        assert!(facts("ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY").rewrites);
        assert!(
            facts("ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED").rewrites
        );
        assert!(facts_on("ALTER TABLE t ADD COLUMN c int DEFAULT 0", 10).rewrites);
    }

    #[test]
    fn drops_and_detaches() {
        assert_eq!(
            locks("DROP INDEX CONCURRENTLY s.i"),
            [
                "the table of index s.i SHARE UPDATE EXCLUSIVE",
                "s.i SHARE UPDATE EXCLUSIVE"
            ]
        );
        assert_eq!(
            locks("DROP TABLE a, b"),
            ["a ACCESS EXCLUSIVE", "b ACCESS EXCLUSIVE"]
        );
        let detach = facts("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY");
        assert!(!detach.allowed_in_transaction);
        assert_eq!(
            detach.strongest_lock(),
            Some(LockMode::ShareUpdateExclusive)
        );
        // Measured: PostgreSQL 13 locks the detached partition SHARE UPDATE EXCLUSIVE, 14+
        // ACCESS EXCLUSIVE; the parent is ACCESS EXCLUSIVE on both.
        let partition_lock = |major| {
            facts_on("ALTER TABLE p DETACH PARTITION p1", major)
                .locks
                .iter()
                .find(|l| l.target.to_string() == "p1")
                .map(|l| l.mode)
        };
        assert_eq!(partition_lock(13), Some(LockMode::ShareUpdateExclusive));
        assert_eq!(partition_lock(14), Some(LockMode::AccessExclusive));
    }

    #[test]
    fn maintenance() {
        let vf = facts("VACUUM (FULL) t");
        assert_eq!(
            (vf.kind.as_str(), vf.rewrites, vf.allowed_in_transaction),
            ("VACUUM FULL", true, false)
        );
        assert_eq!(locks("VACUUM t"), ["t SHARE UPDATE EXCLUSIVE"]);
        assert!(facts("ANALYZE t").allowed_in_transaction);
        let reindex = facts("REINDEX (CONCURRENTLY) TABLE t");
        assert!(!reindex.allowed_in_transaction && reindex.is_online());
        assert_eq!(
            locks("REFRESH MATERIALIZED VIEW CONCURRENTLY m"),
            ["m EXCLUSIVE"]
        );
    }

    #[test]
    fn dml_and_transactions() {
        assert!(!facts("SELECT 1").ddl);
        let into = facts("SELECT * INTO t2 FROM t");
        assert!(into.ddl && into.creates[0].name == "t2");
        assert_eq!(facts("BEGIN").tx_control, Some(TxControl::Begin));
        assert_eq!(facts("END").tx_control, Some(TxControl::Commit));
        assert_eq!(
            facts("ROLLBACK TO SAVEPOINT s").tx_control,
            Some(TxControl::RollbackTo)
        );
        assert!(facts("DO $$ BEGIN END $$").dynamic);
        assert_eq!(locks("LOCK TABLE t IN SHARE MODE"), ["t SHARE"]);
        assert_eq!(locks("LOCK t"), ["t ACCESS EXCLUSIVE"]);
        let explain = facts("EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1");
        assert!(explain.ddl);
    }

    #[test]
    fn partitions() {
        assert_eq!(
            locks("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)"),
            ["p ACCESS EXCLUSIVE"]
        );
        assert_eq!(
            locks("ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1)"),
            ["p1 ACCESS EXCLUSIVE", "p SHARE UPDATE EXCLUSIVE"]
        );
    }

    #[test]
    fn names_are_quoted_only_when_needed() {
        assert_eq!(quote_ident("orders"), "orders");
        assert_eq!(quote_ident("Orders"), "\"Orders\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
