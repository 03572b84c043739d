//! ddlgate: a PostgreSQL wire-protocol proxy that makes schema changes safe in production.
//!
//! | module | what it is |
//! |---|---|
//! | `analysis` | the engine: parse, classify, rules; pure (no I/O, no wire, no clock) |
//! | `enforce` | what the policy makes of the engine's findings for one request; pure |
//! | `config` | `serve`'s settings and the policy files |
//! | `protocol` | the only code that reads or writes wire bytes; knows no SQL or policy |
//! | `proxy` | sockets and sessions: review → plan → program → conductor |
//! | `evidence` | which tables and columns running queries use (`pg_stat_statements`), for the contract guard |
//! | `pgclient` | ddlgate's own connections (`--database`, the evidence collector) |
//! | `audit`, `metrics` | the sinks |
//! | `cli` | the command line ([`main`]) |
//!
//! Everything is crate-private except [`main`] and [`internals`], so that the compiler
//! reports code nothing uses.

pub(crate) mod analysis;
pub(crate) mod audit;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod enforce;
pub(crate) mod evidence;
pub(crate) mod metrics;
pub(crate) mod pgclient;
pub(crate) mod protocol;
pub(crate) mod proxy;

pub use cli::main;

/// What the integration tests, the benchmarks and the fuzz targets drive directly: the
/// analysis engine, the wire decoders, the planner and the conductor (which run without
/// sockets), and the proxy with its settings. Not a stable API.
#[doc(hidden)]
pub mod internals {
    /// The analysis engine.
    pub mod analysis {
        pub use crate::analysis::STACK_SIZE;
        pub use crate::analysis::classify::{
            ClassifyOptions, Facts, LockTarget, classify, quote_ident,
        };
        pub use crate::analysis::context::Context;
        pub use crate::analysis::engine::Engine;
        pub use crate::analysis::locks::LockMode;
        pub use crate::analysis::parse::{
            Options, parse_plpgsql, parse_script, redact_literals, tokens,
        };
        pub use crate::analysis::prefilter::prefilter;
        pub use crate::analysis::registry::RuleId;
    }

    /// Settings: `serve`'s and the policy files.
    pub mod config {
        pub use crate::audit::Fsync;
        pub use crate::config::policy::Policy;
        pub use crate::config::{ServeConfig, ServeOptions};
        pub use crate::protocol::tls::UpstreamTlsMode;
    }

    /// The policy's decisions.
    pub mod enforce {
        pub use crate::enforce::{Plan, Situation, decide};
    }

    /// The wire decoders.
    pub mod protocol {
        pub use crate::protocol::backend::{
            BackendKey, BackendScanner, TxStatus, authentication_code, parameter_status,
            sasl_mechanisms,
        };
        pub use crate::protocol::extended::{Bind, Parse, close_target, execute_portal};
        pub use crate::protocol::frame::frames;
        pub use crate::protocol::frontend::{FrontendItem, FrontendScanner};
        pub use crate::protocol::query::query_text;
        pub use crate::protocol::reply::Fields;
        pub use crate::protocol::rows::{command_tag, data_row};
        pub use crate::protocol::startup::{
            StartupPacket, decode as decode_startup, encode_startup, packet_len,
        };
    }

    /// The proxy, and the parts of a session that run without sockets.
    pub mod proxy {
        pub use crate::proxy::conductor::Conductor;
        pub use crate::proxy::outbox::Outbox;
        pub use crate::proxy::plan::{Held, Review, Verdict, plan};
        pub use crate::proxy::request::{MessageSpan, Request, RequestEnd};
        pub use crate::proxy::state::SessionState;
        pub use crate::proxy::tx::Since;
        pub use crate::proxy::{Server, Shutdown};
    }
}

#[cfg(test)]
mod layering {
    //! The dependency rule, checked on the source: `analysis` is pure (no I/O, no wire), the
    //! wire layer knows no SQL or policy, and the proxy's planner and executor meet only in
    //! `proxy::program`.

    use std::path::Path;

    /// Every `.rs` file under `src/<dir>`, with its text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        fn walk(path: &Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(path).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Test-only files may use what production code may not.
                    if !text.contains("#![cfg(test)]") {
                        out.push((path.display().to_string(), text));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
            &mut out,
        );
        assert!(!out.is_empty(), "no sources under src/{dir}");
        out
    }

    fn refuse(dir: &str, forbidden: &[&str]) {
        for (path, text) in sources(dir) {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for f in forbidden {
                    assert!(!code.contains(f), "{path}:{}: uses {f}: {line}", n + 1);
                }
            }
        }
    }

    #[test]
    fn analysis_is_pure() {
        refuse(
            "analysis",
            &[
                "crate::protocol",
                "crate::proxy",
                "crate::audit",
                "crate::metrics",
                "tokio",
                "std::net",
                "std::fs",
                "tracing::",
            ],
        );
    }

    #[test]
    fn the_wire_layer_knows_no_sql_or_policy() {
        refuse(
            "protocol",
            &[
                "crate::analysis",
                "crate::enforce",
                "crate::config",
                "crate::proxy",
                "crate::audit",
            ],
        );
    }

    #[test]
    fn planner_and_executor_meet_only_in_the_program() {
        refuse("proxy/plan", &["conductor::", "session::"]);
        refuse("proxy/conductor", &["plan::", "session::"]);
    }
}
