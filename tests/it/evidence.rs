//! Evidence of use: `serve` samples `pg_stat_statements` into its evidence tables
//! (`evidence_dsn`), and `explain --database` names the statements that used a table or column
//! within the policy's window — a prepared statement naming the column, `SELECT *`, a view and
//! a function body reading it — and says "no use" once they stop and the window has passed.
//! A short window (4 s) and interval (1 s) stand in for the defaults (24 h, 5 min).

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, run_direct};
use crate::support::proxy::TestProxy;

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
    let mut policy = tempfile::NamedTempFile::new().unwrap();
    write!(
        policy,
        "[evidence]\nwindow = \"{WINDOW_SECS}s\"\nmin_observation = \"{WINDOW_SECS}s\"\n"
    )
    .unwrap();
    let policy = policy.path().to_owned();
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

    let note = evidence(&explain(&pg, &policy, drop_note));
    assert!(
        note.contains("public.orders.note was used in the last"),
        "{note}"
    );
    assert!(
        note.contains("3 calls: SELECT note FROM orders WHERE id = $1 (names the column)"),
        "{note}"
    );
    let memo = evidence(&explain(
        &pg,
        &policy,
        "ALTER TABLE invoices DROP COLUMN memo",
    ));
    assert!(
        memo.contains("SELECT * FROM invoices (uses every column"),
        "{memo}"
    );
    let legacy = evidence(&explain(
        &pg,
        &policy,
        "ALTER TABLE accounts RENAME COLUMN legacy TO old",
    ));
    assert!(
        legacy.contains("(reads view public.account_view, which uses it)"),
        "{legacy}"
    );
    let reference = evidence(&explain(
        &pg,
        &policy,
        "ALTER TABLE payments ALTER COLUMN ref TYPE varchar(10)",
    ));
    assert!(
        reference.contains("(calls public.ref_of, whose body uses it)"),
        "{reference}"
    );
    // customers was read, but not its note; invoices was read whole, so dropping the table is
    // a use too.
    let unused = evidence(&explain(
        &pg,
        &policy,
        "ALTER TABLE customers DROP COLUMN note",
    ));
    assert!(
        unused.contains("no use of public.customers.note in"),
        "{unused}"
    );
    let table = evidence(&explain(&pg, &policy, "DROP TABLE invoices"));
    assert!(table.contains("public.invoices was used"), "{table}");

    // The statements stop; once the window has passed over them, nothing used the column.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 2)).await;
    let later = evidence(&explain(&pg, &policy, drop_note));
    assert!(
        later.contains("no use of public.orders.note in") && later.contains("tracked statement"),
        "{later}"
    );
}
