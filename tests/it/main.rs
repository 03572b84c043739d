//! The integration test binary: ddlgate in front of a real PostgreSQL cluster that the harness
//! starts itself (see `support::pg`), driven by real clients (tokio-postgres, psql) and by a raw
//! protocol client where exact message sequences matter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::doc_markdown,
    clippy::too_many_lines,
    clippy::items_after_statements,
    clippy::format_push_string,
    clippy::format_collect,
    clippy::naive_bytecount,
    clippy::map_unwrap_or,
    clippy::redundant_closure_for_method_calls,
    unreachable_pub
)]

mod support;

mod audit;
mod auth;
mod bypass;
mod catalog;
mod check_cli;
mod check_database;
mod check_parity;
mod ci_hooks;
mod cli;
mod copy;
mod enforce;
mod evidence;
mod extended;
mod faults;
mod lane;
mod limits;
mod lock_truth;
mod lock_wait;
mod metrics;
mod never_hang;
mod notify_cancel;
mod passthrough;
mod protocol_errors;
mod psql;
mod routines;
mod session_truth;
mod shutdown;
mod tls;
