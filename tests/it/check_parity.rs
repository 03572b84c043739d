//! `check` says what the proxy will do: the same migration files, delivered the three ways
//! tools deliver them (`--send statement|file|transaction`), get the same verdict per
//! statement from `ddlgate check` as from the proxy (default policy, committed tables that
//! hold data, the proxy's verdicts read from its audit trail).

use std::process::Command;

use crate::support::pg::{PgServer, SUPERUSER, run_direct as setup};
use crate::support::proxy::TestProxy;

/// Migration files whose verdicts depend on how they are sent.
const FILES: &[&str] = &[
    "ALTER TABLE par_t ADD COLUMN c int;\nCREATE INDEX par_t_c ON par_t (c);\n",
    "CREATE INDEX CONCURRENTLY par_t_v ON par_t (v);\n",
    "/* ddlgate:allow rename-column */ ALTER TABLE par_t RENAME COLUMN v TO v2;\n",
    "/* ddlgate:allow rename-column reason=\"expand done\" */ ALTER TABLE par_t RENAME COLUMN v TO v3;\n",
    "ALTER TABLE par_t ADD CONSTRAINT par_t_fk FOREIGN KEY (r) REFERENCES par_ref (id);\n",
    "ALTER TABLE par_t ALTER COLUMN v SET NOT NULL;\nALTER TABLE par_t ADD COLUMN d int;\n",
];

const MODES: [&str; 3] = ["statement", "file", "transaction"];

async fn reset(pg: &PgServer) {
    setup(
        pg,
        "DROP TABLE IF EXISTS par_t, par_ref CASCADE; \
         CREATE TABLE par_ref (id int PRIMARY KEY); INSERT INTO par_ref SELECT generate_series(1, 10); \
         CREATE TABLE par_t (id int, v int, r int); \
         INSERT INTO par_t SELECT g, g, 1 + g % 10 FROM generate_series(1, 1000) g",
    )
    .await;
}

/// The statements of `file` with the text before each (its comments), as a client sends them
/// one by one.
fn statements(file: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = file;
    while let Some(end) = rest.find(";\n") {
        out.push(rest[..end].trim().to_owned());
        rest = &rest[end + 2..];
    }
    out
}

/// Per statement (1-based line of its start), whether `check --send mode` rejects it.
fn check_verdicts(file: &str, mode: &str) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sql");
    std::fs::write(&path, file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["check", "--send", mode, "--format", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<u64> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["level"] == "error")
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    (1..=statements(file).len() as u64)
        .map(|line| errors.contains(&line))
        .collect()
}

/// Per statement, whether the proxy refused it, delivered as `mode` says; statements after
/// the first refusal are not decided (the server skips them) and come back as `None`.
async fn proxy_verdicts(
    proxy: &TestProxy,
    log: &std::path::Path,
    file: &str,
    mode: &str,
) -> Vec<Option<bool>> {
    let client = proxy.connect(SUPERUSER).await;
    let before = crate::support::audit_records(log).len();
    let parts = statements(file);
    match mode {
        "statement" => {
            for s in &parts {
                let _ = client.batch_execute(s).await;
            }
        }
        "file" => {
            let _ = client.batch_execute(file).await;
        }
        _ => {
            client.batch_execute("BEGIN").await.unwrap();
            for s in &parts {
                if client.batch_execute(s).await.is_err() {
                    break;
                }
            }
            let _ = client.batch_execute("ROLLBACK").await;
        }
    }
    let records: Vec<serde_json::Value> = crate::support::audit_records(log)
        .into_iter()
        .skip(before)
        .filter(|r| r["event"] == "statement")
        .collect();
    let mut refused_before = false;
    parts
        .iter()
        .map(|s| {
            if refused_before {
                return None;
            }
            let sql = s.trim_end_matches(';');
            let refused = records
                .iter()
                .find(|r| {
                    r["sql"]
                        .as_str()
                        .is_some_and(|q| sql.ends_with(q) || q == sql)
                })
                .is_some_and(|r| r["action"] == "reject");
            refused_before |= refused;
            Some(refused)
        })
        .collect()
}

#[tokio::test]
async fn check_and_the_proxy_agree_in_every_delivery_model() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    let mut differs = Vec::new();
    let mut differ_between_modes = false;
    let (mut refused, mut allowed) = (0, 0);
    for file in FILES {
        let mut by_mode = Vec::new();
        for mode in MODES {
            reset(pg).await;
            let checked = check_verdicts(file, mode);
            let proxied = proxy_verdicts(&proxy, &log, file, mode).await;
            refused += proxied.iter().filter(|p| **p == Some(true)).count();
            allowed += proxied.iter().filter(|p| **p == Some(false)).count();
            for (n, (c, p)) in checked.iter().zip(&proxied).enumerate() {
                if let Some(p) = p
                    && c != p
                {
                    differs.push(format!(
                        "{mode}, statement {} of {file:?}: check rejects {c}, proxy rejects {p}",
                        n + 1
                    ));
                }
            }
            by_mode.push(checked);
        }
        differ_between_modes |= by_mode.iter().any(|v| *v != by_mode[0]);
    }
    assert!(differs.is_empty(), "{differs:#?}");
    assert!(
        refused >= 5 && allowed >= 5,
        "both verdicts occur: {refused} refused, {allowed} allowed"
    );
    assert!(
        differ_between_modes,
        "the files are chosen so that the delivery model changes some verdict"
    );
}
