//! ddlgate: a PostgreSQL wire-protocol proxy that makes schema changes safe in production.
pub mod analysis;
pub mod audit;
pub mod cli;
pub mod config;
pub mod enforce;
pub mod metrics;
pub mod protocol;
pub mod proxy;

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
