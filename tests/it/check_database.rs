//! `ddlgate check --database URL`: the linter judges with the facts the proxy reads, so its
//! verdicts equal the proxy's on the same database — checked statement by statement against a
//! proxy on the same server, over TLS with the server's certificate verified, and with what a
//! file's earlier statements change forgotten.

use std::process::{Command, Output};

use crate::support::pg::{PgServer, SUPERUSER, run_direct as setup};
use crate::support::proxy::TestProxy;

fn check(args: &[&str], sql: &str) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_migration.sql");
    std::fs::write(&file, sql).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .arg("check")
        // The proxy gets each statement of these tests alone, in autocommit.
        .args(["--send", "statement"])
        .args(args)
        .args(["--format", "json"])
        .arg(&file)
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output, report)
}

/// Whether `check` rejects the file (its exit code, cross-checked with the report).
fn check_rejects(args: &[&str], sql: &str) -> bool {
    let (output, report) = check(args, sql);
    let code = output.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{sql}: {code:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        report["summary"]["errors"].as_u64().unwrap() > 0,
        code == Some(1),
        "{report:#}"
    );
    code == Some(1)
}

fn url(pg: &PgServer) -> String {
    format!(
        "postgres://{}:{}@localhost:{}/app?sslmode=verify-full&sslrootcert={}",
        SUPERUSER.name,
        SUPERUSER.password,
        pg.port,
        pg.certs.ca.display()
    )
}

/// The rules `check` reports for the file and their actions, without the timeout rules
/// (the proxy applies the timeouts itself, so they never fire there).
fn check_rules(args: &[&str], sql: &str) -> Vec<(String, String)> {
    let (output, report) = check(args, sql);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rules: Vec<(String, String)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| {
            Some((
                d["rule"].as_str()?.to_owned(),
                d["action"].as_str()?.to_owned(),
            ))
        })
        .filter(|(r, _)| !r.ends_with("-timeout-missing"))
        .collect();
    rules.sort();
    rules
}

/// Each statement gets the same rules and actions from `check --database` as from the proxy
/// (default policy, against committed tables that hold data; the proxy's taken from its audit
/// trail), where `check` alone, seeing no catalog, judges each of them differently.
#[tokio::test]
async fn check_with_the_database_agrees_with_the_proxy() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS chk_victim, chk_victim_old, chk_nn, chk_parted, chk_types CASCADE; \
         CREATE TABLE chk_victim (a int); INSERT INTO chk_victim SELECT generate_series(1, 100); \
         CREATE TABLE chk_nn (c int NOT NULL, d int); INSERT INTO chk_nn SELECT g, g FROM generate_series(1, 100) g; \
         ALTER TABLE chk_nn ADD CONSTRAINT chk_nn_d CHECK (d IS NOT NULL); \
         CREATE TABLE chk_parted (a int) PARTITION BY RANGE (a); \
         CREATE TABLE chk_parted_1 PARTITION OF chk_parted FOR VALUES FROM (0) TO (1000); \
         INSERT INTO chk_parted SELECT generate_series(1, 100); \
         CREATE TABLE chk_types (v varchar(10), n bigint); INSERT INTO chk_types SELECT 'x', 1; \
         CREATE OR REPLACE FUNCTION chk_ddl() RETURNS void LANGUAGE sql \
           AS $$ ALTER TABLE chk_victim RENAME COLUMN a TO a2 $$",
    )
    .await;
    let database = url(pg);
    let with_db = ["--database", database.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    let client = proxy.connect(SUPERUSER).await;
    // The proxy runs what it allows: statements that change the tables come last.
    for sql in [
        "ALTER INDEX chk_victim RENAME TO chk_victim_old",
        "DROP TABLE IF EXISTS chk_absent_1, chk_absent_2",
        "CREATE INDEX chk_parted_a ON chk_parted (a)",
        "SELECT chk_ddl()",
        "ALTER TABLE chk_nn ALTER COLUMN c SET NOT NULL",
        "ALTER TABLE chk_types ALTER COLUMN v TYPE varchar(20)",
        "ALTER TABLE chk_nn ALTER COLUMN d SET NOT NULL",
    ] {
        let checked = check_rules(&with_db, sql);
        assert_ne!(
            checked,
            check_rules(&[], sql),
            "the catalog changed nothing: {sql}"
        );
        let rejected_by_check = checked.iter().any(|(_, action)| action == "reject");
        let rejected_by_proxy = match client.batch_execute(sql).await {
            Ok(()) => false,
            Err(e) if e.code().map(|c| c.code()) == Some("ZD001") => true,
            Err(e) => panic!("{sql}: {e:?}"),
        };
        assert_eq!(rejected_by_check, rejected_by_proxy, "{sql}: {checked:?}");
        let records = crate::support::audit_records(&log);
        let record = records
            .iter()
            .rev()
            .find(|r| r["sql"] == sql)
            .unwrap_or_else(|| panic!("no record of {sql}"));
        let mut audited: Vec<(String, String)> = record["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["rule"].as_str().unwrap().to_owned(),
                    r["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        audited.sort();
        assert_eq!(checked, audited, "{sql}");
    }
}

/// The database's state before the files is what the facts describe: a statement after one
/// that changed the same table is judged without them (the column dropped first makes the
/// `ADD COLUMN IF NOT EXISTS` real work), and the file alone is proven a no-op.
#[tokio::test]
async fn what_a_file_changes_is_not_taken_from_the_database() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS chk_forget; CREATE TABLE chk_forget (id int, x bigint); \
         INSERT INTO chk_forget SELECT g, g FROM generate_series(1, 100) g",
    )
    .await;
    let database = url(pg);
    let with_db = ["--database", database.as_str()];
    let add = "ALTER TABLE chk_forget ADD COLUMN IF NOT EXISTS x bigserial;\n";
    let (_, report) = check(&with_db, add);
    assert_eq!(report["summary"]["errors"], 0, "{report:#}");
    assert!(
        report["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changes nothing"),
        "{report:#}"
    );
    let drop_then_add = format!(
        "/* ddlgate:allow drop-column reason=\"test\" */ ALTER TABLE chk_forget DROP COLUMN x;\n{add}"
    );
    assert!(check_rejects(&with_db, &drop_then_add));
}

/// A server that cannot be reached, a login that fails, and TLS settings that cannot work are
/// each one sentence and exit code 2 — with no password in it.
#[tokio::test]
async fn an_unusable_database_is_a_clear_error() {
    let pg = PgServer::shared();
    let refused = format!(
        "postgres://u:hunter2@127.0.0.1:{}/app?sslmode=disable",
        crate::support::pg::free_port()
    );
    let wrong_password = format!(
        "host=127.0.0.1 port={} user=postgres password=hunter2 dbname=app sslmode=disable",
        pg.port
    );
    let no_ca = format!(
        "postgres://postgres@localhost:{}/app?sslmode=verify-full",
        pg.port
    );
    for (dsn, expected) in [
        (refused.as_str(), "cannot connect"),
        (wrong_password.as_str(), "password authentication failed"),
        (no_ca.as_str(), "needs sslrootcert"),
    ] {
        let (output, _) = check(&["--database", dsn], "SELECT 1;\n");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{dsn}: {stderr}");
        assert!(stderr.contains(expected), "{dsn}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
