//! The integration test binary: ddlgate in front of a real PostgreSQL cluster that the harness
//! starts itself (see `support::pg`), driven by real clients (tokio-postgres, psql) and by a raw
//! protocol client where exact message sequences matter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    unreachable_pub
)]

mod support;

mod auth;
mod copy;
mod extended;
mod limits;
mod notify_cancel;
mod passthrough;
mod protocol_errors;
mod psql;
mod shutdown;
mod tls;
