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
pub mod violation;

pub use context::Context;
pub use engine::{Engine, Finding, Override, Report};
pub use registry::RuleId;
pub use violation::{Applicability, Fix, Violation};
