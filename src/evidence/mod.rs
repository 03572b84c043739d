//! Evidence of use: which statements the database ran recently, and whether they read or
//! write a table or column that a migration is about to drop, rename or retype.
//!
//! The source is `pg_stat_statements`, which counts each normalised statement's `calls` since
//! it first ran, without a time of use. ddlgate samples those counters on a connection of its
//! own (`serve`'s `evidence_dsn`, a role with `pg_read_all_stats`) every `evidence_interval`
//! and keeps the samples in tables of the database that connection names
//! ([`store`]; schema `evidence_schema`, default `ddlgate`). From two samples a window
//! apart it can say "this statement ran N times in the last W hours" ([`window`]).
//!
//! Decisions, and why:
//! - **Samples live in the database, not in a file beside the proxy.** ddlgate often runs as
//!   a sidecar whose disk goes with each deploy — exactly when migrations run —, several
//!   instances may serve one database, and `check --database`/`explain --database` in CI must
//!   see the same history. A table in the database is shared, survives restarts and is
//!   readable wherever the database is.
//! - **Only changes are written.** A sample writes a row for a statement only when its count
//!   changed since the previous sample (or it appeared or disappeared), plus one row per
//!   sample; a database whose application runs 500 distinct statements writes about 500 rows
//!   per interval, not `pg_stat_statements.max`. Query texts are written once per statement.
//!   Rows older than `evidence_retention` are deleted, except each statement's latest (it
//!   is the starting value of the next change).
//! - **Times are the server's** (`now()` when the sample was taken and when it is judged), so
//!   clock differences between proxy instances do not move the window.
//! - **Nothing of this touches the query path.** Samples are taken by a task of their own;
//!   what statements use a target is worked out only when a migration asks ([`judge`]).

pub(crate) mod collect;
pub(crate) mod judge;
pub(crate) mod observe;
pub(crate) mod service;
pub(crate) mod store;
pub(crate) mod window;

/// What every statement of ddlgate's own evidence work starts with, so that
/// `pg_stat_statements` shows them as ddlgate's and the "tracked statements" of a judgement
/// leave them out.
pub(crate) const OWN_MARK: &str = own_mark!();

/// The literal of [`OWN_MARK`], for [`own_sql`].
macro_rules! own_mark {
    () => {
        "/* ddlgate evidence */"
    };
}
use own_mark;

/// A statement literal of ddlgate's evidence work, [`OWN_MARK`] in front (statements built with
/// `format!` start with `{OWN_MARK}` instead).
macro_rules! own_sql {
    ($sql:literal) => {
        concat!($crate::evidence::own_mark!(), " ", $sql)
    };
}
pub(crate) use own_sql;

/// Why evidence could not be gathered or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvidenceError {
    /// The connection could not be made or a query failed.
    #[error(transparent)]
    Database(#[from] crate::pgclient::DatabaseError),
    /// `pg_stat_statements` is not installed in the database (or not loaded by the server).
    #[error("{0}")]
    NoExtension(String),
    /// A setting cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl EvidenceError {
    /// From a failed query.
    pub(crate) fn read(e: &tokio_postgres::Error) -> Self {
        Self::Database(crate::pgclient::DatabaseError::Read(
            crate::pgclient::describe(e),
        ))
    }
}

/// One statement of `pg_stat_statements`: its entries are per user, database, query id and
/// (since PostgreSQL 14) whether it ran at top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    /// `userid`.
    pub user: u32,
    /// `dbid`.
    pub database: u32,
    /// `queryid`.
    pub query: i64,
    /// `toplevel` (always true before PostgreSQL 14).
    pub toplevel: bool,
}
