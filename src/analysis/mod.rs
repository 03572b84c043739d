//! The analysis engine: a pure library (no I/O, no sockets, no clock, no logging) shared by
//! `serve`, `check` and `explain`.
//!
//! A query string is parsed with PostgreSQL's own grammar ([`parse`]), each statement is
//! classified ([`classify`]: kind, locks, rewrite or scan, transaction-block rules), and the
//! rules are evaluated against a [`context::Context`] that knows the server version and what
//! the session's transaction has done so far. Rules return data (violations with optional fixes),
//! never errors.

pub(crate) mod catalog;
pub(crate) mod classify;
pub(crate) mod context;
pub(crate) mod engine;
pub(crate) mod locks;
pub(crate) mod parse;
pub(crate) mod plpgsql;
pub(crate) mod prefilter;
pub(crate) mod registry;
pub(crate) mod routines;
pub(crate) mod rules;
pub(crate) mod scan;
pub(crate) mod session_changes;
pub(crate) mod usage;
pub(crate) mod violation;

/// The stack a thread needs to analyse any statement `libpg_query` accepts.
///
/// `libpg_query` refuses trees deeper than 10,000 protobuf levels; decoding one that deep (the
/// decoder recurses once per level) and walking it needed 16 MiB in a release build
/// (`CREATE VIEW v AS SELECT 'x' || … ` with 4,990 terms). Threads that call [`Engine::analyze`]
/// are started with four times that; untouched stack pages cost no memory.
pub const STACK_SIZE: usize = 64 * 1024 * 1024;

pub(crate) use context::Context;
pub(crate) use engine::{Engine, Override, Report};
pub(crate) use registry::RuleId;
pub(crate) use violation::{Applicability, Violation};
