//! The analysis engine: a pure library (no I/O, no sockets, no clock, no logging) shared by
//! `serve`, `check` and `explain`.
//!
//! A query string is parsed with PostgreSQL's own grammar ([`parse`]), each statement is
//! classified ([`classify`]: kind, locks, rewrite or scan, transaction-block rules), and the
//! rules are evaluated against a [`context::Context`] that knows the server version and what
//! the session's transaction has done so far. Rules return data (violations with optional fixes),
//! never errors.

pub mod classify;
pub mod context;
pub mod engine;
pub mod locks;
pub mod parse;
pub mod prefilter;
pub mod registry;
pub mod rules;
pub mod session_changes;
pub mod violation;

/// The stack a thread needs to analyse any statement `libpg_query` accepts.
///
/// `libpg_query` refuses trees deeper than 10,000 protobuf levels; decoding one that deep (the
/// decoder recurses once per level) and walking it needed 16 MiB in a release build
/// (`CREATE VIEW v AS SELECT 'x' || … ` with 4,990 terms). Threads that call [`Engine::analyze`]
/// are started with four times that; untouched stack pages cost no memory.
pub const STACK_SIZE: usize = 64 * 1024 * 1024;

pub use context::Context;
pub use engine::{Engine, Finding, Override, Report};
pub use registry::RuleId;
pub use violation::{Applicability, Fix, Violation};
