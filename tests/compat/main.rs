//! The compatibility suite: real clients and tools through ddlgate, compared with a direct
//! connection to the same cluster.
//!
//! Every client runs the same scenario (`harness::scenario`: ordinary traffic, a safe
//! migration, an unsafe one) three times, each in a fresh database: directly, through ddlgate
//! with `policies/observe.toml`, and through ddlgate with `policies/default.toml`. Observe mode
//! must give every statement exactly the result a direct connection gives and leave the same
//! schema; the default policy must give ordinary traffic and the safe migration the direct
//! results, refuse the unsafe statements with ddlgate's error, rewrite the rewritable ones, and
//! leave the schema the policy promises.
//!
//! Drivers for other languages live in `drivers/`; they read the scenario as JSON and print
//! their results as JSON. `scripts/test.sh` installs what they need outside the source tree:
//! psycopg 3 in a venv (`DDLGATE_PYTHON`), node-postgres (`DDLGATE_NODE_PATH`), pgjdbc
//! (`DDLGATE_JDBC_JAR`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::doc_markdown,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::format_push_string,
    clippy::format_collect,
    clippy::naive_bytecount,
    clippy::map_unwrap_or,
    clippy::redundant_closure_for_method_calls,
    clippy::items_after_statements,
    dead_code,
    unreachable_pub
)]

#[path = "../it/support/mod.rs"]
mod support;

mod drivers;
mod harness;
mod migration_tools;
mod shapes;
mod tools;
