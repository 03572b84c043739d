//! Evidence of use: `serve` samples `pg_stat_statements` into its evidence tables
//! (`evidence_dsn`), and `explain --database` names the statements that used a table or column
//! within the policy's window — a prepared statement naming the column, `SELECT *`, a view and
//! a function body reading it — and says "no use" once they stop and the window has passed;
//! `check --database` refuses the drop of a used column with the statement named and passes
//! it once nothing used it.
//! A short window (4 s) and interval (1 s) stand in for the defaults (24 h, 5 min).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, TRUST, run_direct};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

const WINDOW_SECS: u64 = 4;

const SETUP: &str = "
    CREATE EXTENSION pg_stat_statements;
    CREATE TABLE orders (id int PRIMARY KEY, note text, total int);
    CREATE TABLE invoices (id int PRIMARY KEY, amount int, memo text);
    CREATE TABLE accounts (id int PRIMARY KEY, legacy text);
    CREATE TABLE payments (id int PRIMARY KEY, ref text);
    CREATE TABLE customers (id int PRIMARY KEY, name text, note text);
    INSERT INTO orders VALUES (1, 'a', 10), (2, 'b', 20);
    INSERT INTO invoices VALUES (1, 5, 'm');
    INSERT INTO accounts VALUES (1, 'x');
    INSERT INTO payments VALUES (1, 'r');
    INSERT INTO customers VALUES (1, 'c', 'n');
    CREATE VIEW account_view AS SELECT id, legacy FROM accounts;
    CREATE FUNCTION ref_of(p int) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
        RETURN (SELECT ref FROM payments WHERE id = p);
    END $$;
";

fn explain(pg: &PgServer, policy: &std::path::Path, sql: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["explain", "--database", &pg.conn_str(SUPERUSER), "--policy"])
        .arg(policy)
        .arg(sql)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "explain failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `check --database` of a file holding `sql`: its exit code and its output.
fn check(pg: &PgServer, policy: &std::path::Path, sql: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_contract.sql");
    std::fs::write(&file, sql).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args([
            "check",
            "--send",
            "statement",
            "--database",
            &pg.conn_str(SUPERUSER),
            "--policy",
        ])
        .arg(policy)
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The line of `explain`'s output that starts the evidence, and the lines after it.
fn evidence(output: &str) -> String {
    output
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("evidence:"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_statements_that_used_a_column_and_finds_none_once_they_stopped() {
    let pg = PgServer::start_with(&["shared_preload_libraries = 'pg_stat_statements'"]);
    run_direct(&pg, SETUP).await;
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = short_window_policy(policy_dir.path());
    let _proxy = TestProxy::start_with(&pg, |o| {
        o.evidence_dsn = Some(pg.conn_str(SUPERUSER));
        o.evidence_interval = Some("1s".into());
        o.policy = Some(policy.clone());
    })
    .await;
    let drop_note = "ALTER TABLE orders DROP COLUMN note";

    // Until the samples span the window, there is no evidence to go by, and explain says why.
    let started = Instant::now();
    let mut early = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        early = evidence(&explain(&pg, &policy, drop_note));
        if early.contains("samples span") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        early.contains("no evidence of use for public.orders.note: samples span"),
        "{early}"
    );
    let deadline = Instant::now() + Duration::from_secs(WINDOW_SECS + 10);
    while evidence(&explain(&pg, &policy, drop_note)).contains("samples span") {
        assert!(
            Instant::now() < deadline,
            "the samples never spanned the window"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The application's statements, on a direct connection: tokio-postgres prepares each.
    let app = pg.connect(SUPERUSER).await;
    for id in [1, 2, 1] {
        app.query("SELECT note FROM orders WHERE id = $1", &[&id])
            .await
            .unwrap();
    }
    app.query("SELECT * FROM invoices", &[]).await.unwrap();
    app.query("SELECT * FROM account_view WHERE id = $1", &[&1])
        .await
        .unwrap();
    app.query("SELECT ref_of($1)", &[&1]).await.unwrap();
    app.query("SELECT id, name FROM customers", &[])
        .await
        .unwrap();

    // Each way of using a column, and a column nothing used (customers was read, not its
    // note); invoices was read whole, so dropping the table is a use too.
    for (sql, expected) in [
        (drop_note, "public.orders.note was used in the last"),
        (
            drop_note,
            "3 calls: SELECT note FROM orders WHERE id = $1 (names the column)",
        ),
        (
            "ALTER TABLE invoices DROP COLUMN memo",
            "SELECT * FROM invoices (uses every column",
        ),
        (
            "ALTER TABLE accounts RENAME COLUMN legacy TO old",
            "(reads view public.account_view, which uses it)",
        ),
        (
            "ALTER TABLE payments ALTER COLUMN ref TYPE varchar(10)",
            "(calls public.ref_of, whose body uses it)",
        ),
        (
            "ALTER TABLE customers DROP COLUMN note",
            "no use of public.customers.note in",
        ),
        ("DROP TABLE invoices", "public.invoices was used"),
    ] {
        let found = evidence(&explain(&pg, &policy, sql));
        assert!(found.contains(expected), "{sql}: {found}");
    }

    // check --database decides with the same evidence: the used column is refused with the
    // statement named, the unused one passes with the evidence noted.
    let (code, out) = check(&pg, &policy, "ALTER TABLE orders DROP COLUMN note;\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Still used in the last")
            && out.contains("SELECT note FROM orders WHERE id = $1"),
        "{out}"
    );
    let (code, out) = check(&pg, &policy, "ALTER TABLE customers DROP COLUMN note;\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("evidence: no use of public.customers.note in"),
        "{out}"
    );
    assert!(!out.contains("drop-column"), "{out}");
    // A role that may not read ddlgate's schema: judged without evidence, with a warning.
    run_direct(&pg, "CREATE ROLE limited LOGIN PASSWORD 'limited'").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_contract.sql");
    std::fs::write(&file, "ALTER TABLE customers DROP COLUMN note;\n").unwrap();
    let limited = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["check", "--send", "statement", "--database"])
        .arg(format!(
            "host=127.0.0.1 port={} user=limited password=limited dbname=app sslmode=disable",
            pg.port
        ))
        .arg("--policy")
        .arg(&policy)
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("evidence of use not read, the contract rules are judged without it"),
        "{stderr}"
    );

    // The statements stop; once the window has passed over them, nothing used the column.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 2)).await;
    let later = explain(&pg, &policy, drop_note);
    assert!(
        evidence(&later).contains("no use of public.orders.note in")
            && later.contains("tracked statement"),
        "{later}"
    );
    // The contract step is allowed now, without an override.
    assert!(!later.contains("drop-column"), "{later}");
    let (code, out) = check(&pg, &policy, "ALTER TABLE orders DROP COLUMN note;\n");
    assert_eq!(code, 0, "{out}");
}

/// A policy file in `dir` with the tests' short evidence window.
fn short_window_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!("[evidence]\nwindow = \"{WINDOW_SECS}s\"\nmin_observation = \"{WINDOW_SECS}s\"\n"),
    )
    .unwrap();
    policy
}

/// Waits until ddlgate's samples in `pg` span more than the window.
async fn wait_for_a_window_of_samples(pg: &PgServer) {
    let client = pg.connect(SUPERUSER).await;
    let deadline = Instant::now() + Duration::from_secs(WINDOW_SECS + 15);
    loop {
        let exists: bool = client
            .query_one("SELECT to_regclass('ddlgate.samples') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        let span: Option<f64> = if exists {
            client
                .query_one(
                    "SELECT extract(epoch FROM max(taken_at) - min(taken_at))::float8 FROM ddlgate.samples",
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        } else {
            None
        };
        if span.is_some_and(|s| s > f64::from(u32::try_from(WINDOW_SECS).unwrap()) + 0.5) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the samples never spanned the window"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The audit records of statements, in order.
fn statement_records(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "statement")
        .collect()
}

/// Through the proxy, under a policy with the default rules: the contract step on a column a
/// running statement reads is refused with that statement named; on a column nothing read it
/// runs, audited with the evidence; and the first column's drop runs too once the window has
/// passed over its last use — several migrations over one connection, each in its own
/// transaction.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_refuses_a_used_column_naming_its_statements_and_allows_it_once_unused() {
    let pg = PgServer::start_with(&["shared_preload_libraries = 'pg_stat_statements'"]);
    run_direct(&pg, SETUP).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = short_window_policy(dir.path());
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(&pg, |o| {
        o.evidence_dsn = Some(pg.conn_str(SUPERUSER));
        o.evidence_interval = Some("1s".into());
        o.policy = Some(policy.clone());
        o.audit_log = Some(log.clone());
    })
    .await;
    wait_for_a_window_of_samples(&pg).await;

    let app = pg.connect(SUPERUSER).await;
    for id in [1, 2, 1] {
        app.query("SELECT note FROM orders WHERE id = $1", &[&id])
            .await
            .unwrap();
    }

    let migrator = proxy.connect(SUPERUSER).await;
    let err = migrator
        .batch_execute("BEGIN; ALTER TABLE orders DROP COLUMN note; COMMIT;")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "ZD001", "{db:?}");
    assert!(db.message().starts_with("ddlgate: drop-column: "), "{db:?}");
    let detail = db.detail().unwrap_or_default();
    assert!(
        detail.contains("Still used in the last")
            && detail.contains("3 calls: SELECT note FROM orders WHERE id = $1 (names the column)"),
        "{detail}"
    );
    migrator.batch_execute("ROLLBACK").await.unwrap();

    // Nothing read customers.note: its drop runs, audited with the evidence.
    migrator
        .batch_execute("BEGIN; ALTER TABLE customers DROP COLUMN note; COMMIT;")
        .await
        .unwrap();
    let records = statement_records(&log);
    let dropped = records
        .iter()
        .find(|r| r["sql"] == "ALTER TABLE customers DROP COLUMN note")
        .unwrap_or_else(|| panic!("no audit record of the drop: {records:#?}"));
    assert!(
        dropped["evidence"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("no use of public.customers.note in")),
        "{dropped}"
    );
    assert_eq!(dropped["outcome"]["status"], "ok", "{dropped}");

    // Once the window has passed over the last use of orders.note, its drop runs too.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 2)).await;
    migrator
        .batch_execute("BEGIN; ALTER TABLE orders DROP COLUMN note; COMMIT;")
        .await
        .unwrap();
    let gone: i64 = app
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
}

/// A server without `pg_stat_statements`: the contract rules refuse as without evidence, and
/// say why there is none.
#[tokio::test(flavor = "multi_thread")]
async fn without_pg_stat_statements_the_rules_refuse_as_before_and_say_why() {
    let pg = PgServer::start_with(&[]);
    run_direct(&pg, "CREATE TABLE orders (id int PRIMARY KEY, note text)").await;
    let proxy = TestProxy::start_with(&pg, |o| {
        o.evidence_dsn = Some(pg.conn_str(SUPERUSER));
        o.evidence_interval = Some("1s".into());
    })
    .await;
    // On the wire: the NOTICE saying why there is no evidence, then the plain refusal.
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query("ALTER TABLE orders DROP COLUMN note"))
        .await;
    let answer = w.until_ready().await;
    let summary: Vec<String> = answer.iter().map(wire::Msg::summary).collect();
    let notice = answer
        .iter()
        .find(|m| m.tag == b'N')
        .unwrap_or_else(|| panic!("no notice: {summary:?}"));
    let said = notice.field(b'M').unwrap_or_default();
    assert!(
        said.starts_with(
            "ddlgate: evidence: no evidence of use for public.orders.note: pg_stat_statements is not installed"
        ),
        "{said}"
    );
    let error = answer
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("no error: {summary:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("ZD001"), "{summary:?}");
    let detail = error.field(b'D').unwrap_or_default();
    assert!(
        detail.contains("No evidence of use to go by: pg_stat_statements is not installed"),
        "{detail}"
    );
}

/// `evidence_observe`: the statements clients run through ddlgate are evidence too. With
/// `pg_stat_statements.track = none` the server records nothing, so only ddlgate's own count
/// can name the application's prepared statement (parsed once, bound again and again); once
/// the window has passed over its last run, the drop goes through.
#[tokio::test(flavor = "multi_thread")]
async fn statements_observed_through_ddlgate_are_evidence_too() {
    let pg = PgServer::start_with(&[
        "shared_preload_libraries = 'pg_stat_statements'",
        "pg_stat_statements.track = 'none'",
    ]);
    run_direct(
        &pg,
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE accounts (id int PRIMARY KEY, email text, legacy text);
         INSERT INTO accounts VALUES (1, 'a', 'x'), (2, 'b', 'y');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = short_window_policy(dir.path());
    let proxy = TestProxy::start_with(&pg, |o| {
        o.evidence_dsn = Some(pg.conn_str(SUPERUSER));
        o.evidence_interval = Some("1s".into());
        o.evidence_observe = Some(true);
        o.policy = Some(policy.clone());
    })
    .await;
    wait_for_a_window_of_samples(&pg).await;

    // The application, through ddlgate: a statement prepared once and run three times.
    let app = proxy.connect(SUPERUSER).await;
    let statement = app
        .prepare("SELECT legacy FROM accounts WHERE id = $1")
        .await
        .unwrap();
    for id in [1, 2, 1] {
        app.query(&statement, &[&id]).await.unwrap();
    }
    // Written by the next sample.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let migrator = proxy.connect(SUPERUSER).await;
    let err = migrator
        .batch_execute("ALTER TABLE accounts DROP COLUMN legacy")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "ZD001", "{db:?}");
    let detail = db.detail().unwrap_or_default();
    assert!(
        detail.contains("seen through ddlgate, 4 calls: SELECT legacy FROM accounts WHERE id = $1 (names the column)"),
        "{detail}"
    );

    tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 2)).await;
    migrator
        .batch_execute("ALTER TABLE accounts DROP COLUMN legacy")
        .await
        .unwrap();
}
