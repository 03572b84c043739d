//! The audit trail through a running proxy: what is recorded for governed statements and
//! sessions, that a record is on disk before the client has its answer, that the chain
//! verifies (and a tampered copy does not), and fail-closed behaviour when the trail cannot be
//! written (`/dev/full` stands in for a full disk).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::pg::{PgServer, SUPERUSER};
use crate::support::proxy::TestProxy;

use crate::support::audit_records as records;

fn statements_about(path: &Path, needle: &str) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|r| {
            r["event"] == "statement" && r["sql"].as_str().is_some_and(|s| s.contains(needle))
        })
        .collect()
}

use crate::support::pg::run_direct as setup;

fn verify(paths: &[PathBuf]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["audit", "verify"])
        .args(paths)
        .output()
        .unwrap()
}

/// Governed statements and sessions are recorded with decision and outcome, each record is
/// written before the client gets its answer, and the chain verifies.
#[tokio::test]
async fn governed_statements_are_recorded_before_the_answer() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    setup(pg, "DROP TABLE IF EXISTS au_orders; CREATE TABLE au_orders AS SELECT g AS id, g % 5 AS c, 'n' AS note FROM generate_series(1, 500) g").await;
    let client = crate::support::pg::connect(&format!(
        "{} application_name=auditor_test",
        proxy.conn_str(SUPERUSER)
    ))
    .await;

    client
        .batch_execute("CREATE INDEX au_orders_c ON au_orders (c)")
        .await
        .unwrap();
    // No waiting: the record must already be there.
    let rewritten = statements_about(&log, "au_orders_c");
    assert_eq!(rewritten.len(), 1, "{rewritten:?}");
    let r = &rewritten[0];
    assert_eq!(r["action"], "rewrite");
    assert_eq!(
        r["rewritten_sql"][0],
        "CREATE INDEX CONCURRENTLY au_orders_c ON au_orders (c)"
    );
    assert_eq!(r["rules"][0]["rule"], "create-index-nonconcurrent");
    assert_eq!(r["outcome"]["status"], "ok");
    assert_eq!(r["outcome"]["tag"], "CREATE INDEX");
    assert_eq!(r["timeouts"]["class"], "online");
    assert_eq!(r["kind"], "CREATE INDEX");
    assert_eq!(r["user"], "postgres");
    assert_eq!(r["database"], "app");
    assert_eq!(r["application_name"], "auditor_test");
    assert_eq!(r["in_transaction"], false);
    assert_eq!(r["attempts"], 1);
    assert!(r["server_version"].as_str().is_some());
    assert!(r["client"].as_str().unwrap().starts_with("127.0.0.1:"));

    let err = client
        .batch_execute("ALTER TABLE au_orders RENAME COLUMN note TO comment")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "ZD001");
    let refused = statements_about(&log, "RENAME COLUMN");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["action"], "reject");
    assert_eq!(refused[0]["lock"], "ACCESS EXCLUSIVE");
    assert_eq!(refused[0]["relations"][0], "au_orders");
    assert_eq!(refused[0]["outcome"]["status"], "error");
    assert_eq!(refused[0]["outcome"]["sqlstate"], "ZD001");

    // Two statements in one query string: each gets its own outcome.
    let err = client
        .batch_execute("ALTER TABLE au_orders ADD COLUMN extra int; ALTER TABLE au_orders ADD COLUMN extra int")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42701");
    let pair = statements_about(&log, "ADD COLUMN extra int");
    assert_eq!(pair.len(), 2);
    assert_eq!(pair[0]["action"], "allow");
    assert_eq!(pair[0]["outcome"]["status"], "ok");
    assert_eq!(pair[1]["outcome"]["status"], "error");
    assert_eq!(pair[1]["outcome"]["sqlstate"], "42701");
    assert_eq!(pair[0]["timeouts"]["class"], "brief");
    assert_eq!(pair[0]["timeouts"]["lock_timeout"], "200ms");

    // Plain queries are not recorded.
    let before = records(&log).len();
    client.batch_execute("SELECT 1").await.unwrap();
    client.query_one("SELECT $1::int", &[&1i32]).await.unwrap();
    assert_eq!(records(&log).len(), before);

    drop(client);
    let started = Instant::now();
    while !records(&log)
        .iter()
        .any(|r| r["event"] == "session_end" && r["application_name"] == "auditor_test")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no session_end record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = records(&log);
    let start = all
        .iter()
        .find(|r| r["event"] == "session_start" && r["application_name"] == "auditor_test")
        .unwrap();
    assert_eq!(start["outcome"]["status"], "ok");
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
    }

    let out = verify(std::slice::from_ref(&log));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain intact"));

    // A tampered copy fails, naming the line.
    let copy = dir.path().join("tampered.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &copy,
        text.replacen("\"action\":\"reject\"", "\"action\":\"allow\"", 1),
    )
    .unwrap();
    let out = verify(&[copy]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("edited"), "{stdout}");
}

/// A failed login is recorded with the server's SQLSTATE.
#[tokio::test]
async fn failed_authentication_is_recorded() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    let wrong = proxy
        .conn_str(SUPERUSER)
        .replace(SUPERUSER.password, "not-the-password");
    let err = crate::support::pg::connect_error(&wrong).await;
    assert_eq!(
        err.code().map(|c| c.code().to_owned()).as_deref(),
        Some("28P01"),
        "{err:?}"
    );
    let started = Instant::now();
    loop {
        let failed: Vec<Value> = records(&log)
            .into_iter()
            .filter(|r| r["event"] == "session_start" && r["outcome"]["status"] == "error")
            .collect();
        if let Some(r) = failed.first() {
            assert_eq!(r["user"], "postgres");
            assert_eq!(r["outcome"]["sqlstate"], "28P01", "{r}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no record of the failed login"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With audit_fail_closed, DDL is refused while the trail cannot be written (a full disk:
/// /dev/full), and nothing is reported as done that was not recorded; plain queries go on.
/// Without it, DDL runs and the failure is only logged.
#[tokio::test]
async fn fail_closed_refuses_ddl_when_the_trail_cannot_be_written() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS au_full; CREATE TABLE au_full (id int)",
    )
    .await;
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some("/dev/full".into());
        o.audit_fail_closed = Some(true);
    })
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for column in ["a", "b"] {
        let err = client
            .batch_execute(&format!("ALTER TABLE au_full ADD COLUMN {column} int"))
            .await
            .unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "ZD002", "{db:?}");
        assert!(db.message().starts_with("ddlgate: "), "{db:?}");
    }
    let check = pg.connect(SUPERUSER).await;
    let b: i64 = check
        .query_one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'au_full'::regclass AND attname = 'b'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b, 0, "the second DDL was refused before it ran");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(
        one, 1,
        "application traffic is never blocked by the audit trail"
    );

    let open = TestProxy::start_with(pg, |o| {
        o.audit_log = Some("/dev/full".into());
        o.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let client = open.connect(SUPERUSER).await;
    client
        .batch_execute("ALTER TABLE au_full ADD COLUMN c int")
        .await
        .unwrap();
    // Logged and counted.
    let mut s = tokio::net::TcpStream::connect(open.metrics.unwrap())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text)
        .await
        .unwrap();
    let errors: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ddlgate_audit_write_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default();
    assert!(errors >= 2.0, "session start and the statement: {text}");
}

/// `--audit-log -` writes the chain to standard output, where a log shipper reads it.
#[tokio::test]
async fn the_trail_can_go_to_standard_output() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS au_stdout; CREATE TABLE au_stdout (id int)",
    )
    .await;
    let gate = crate::support::binary::Binary::serve(pg, &["--audit-log", "-"]).await;
    let port = gate.port;
    let client = crate::support::pg::connect(&crate::support::pg::conn_str(port, SUPERUSER)).await;
    client
        .batch_execute("ALTER TABLE au_stdout ADD COLUMN a int")
        .await
        .unwrap();
    drop(client);
    gate.signal("TERM");
    let (_, _, stdout) = gate.exit().await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("stdout.jsonl");
    std::fs::write(&copy, &stdout).unwrap();
    let lines = records(&copy);
    assert!(
        lines
            .iter()
            .any(|r| r["event"] == "statement"
                && r["sql"] == "ALTER TABLE au_stdout ADD COLUMN a int"),
        "{lines:?}"
    );
    let out = verify(&[copy]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Rotation by size: several files, the chain runs through them, verify checks them all
/// given the current file's path.
#[tokio::test]
async fn rotated_files_carry_the_chain() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.audit_rotate_bytes = Some(2000);
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS au_rot; CREATE TABLE au_rot (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for i in 0..8 {
        client
            .batch_execute(&format!("ALTER TABLE au_rot ADD COLUMN c{i} int"))
            .await
            .unwrap();
    }
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files >= 3, "rotated into {files} files");
    let out = verify(std::slice::from_ref(&log));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("in {files} file(s)")), "{stdout}");
}

/// With `audit_redact_literals`, string constants never reach the trail.
#[tokio::test]
async fn literals_can_be_redacted() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "audit_redact_literals = true\n").unwrap();
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.policy = Some(policy.clone());
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS au_secret; CREATE TABLE au_secret (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("ALTER TABLE au_secret ADD COLUMN token text DEFAULT 'sk_live_secret'")
        .await
        .unwrap();
    let recorded = statements_about(&log, "ADD COLUMN token");
    assert_eq!(recorded.len(), 1);
    let sql = recorded[0]["sql"].as_str().unwrap();
    assert_eq!(
        sql,
        "ALTER TABLE au_secret ADD COLUMN token text DEFAULT '…'"
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("sk_live_secret")
    );
}

fn table_dsn(port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user={} password={} dbname=app connect_timeout=2",
        SUPERUSER.name, SUPERUSER.password
    )
}

/// Lines of the table sink for one instance, in seq order.
async fn table_lines(pg: &PgServer, table: &str, instance: &str) -> Vec<String> {
    let c = pg.connect(SUPERUSER).await;
    match c
        .query(
            &format!("SELECT line FROM {table} WHERE instance = $1 ORDER BY seq"),
            &[&instance],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

/// The table sink gets exactly the lines of the file, in order, and they verify.
#[tokio::test]
async fn the_table_sink_holds_the_same_chain() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    setup(pg, "DROP TABLE IF EXISTS audit_same; DROP TABLE IF EXISTS au_tab; CREATE TABLE au_tab (id int)").await;
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.audit_table_dsn = Some(table_dsn(pg.port));
        o.audit_table = Some("audit_same".into());
        o.audit_instance = Some("test-a".into());
    })
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for i in 0..3 {
        client
            .batch_execute(&format!("ALTER TABLE au_tab ADD COLUMN c{i} int"))
            .await
            .unwrap();
    }
    let file: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let started = Instant::now();
    loop {
        let table = table_lines(pg, "audit_same", "test-a").await;
        if table.len() >= file.len() {
            assert_eq!(table[..file.len()], file[..]);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "table has {table:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exported = dir.path().join("from-table.jsonl");
    let table = table_lines(pg, "audit_same", "test-a").await;
    std::fs::write(&exported, table.join("\n") + "\n").unwrap();
    let out = verify(&[exported]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A TCP relay to the cluster that can be cut and restored, standing in for an audit
/// database that goes away and comes back.
struct Relay {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, up }
    }
}

/// While the audit database is away, records queue; when it is back they are all inserted in
/// order with no gap in seq. When the queue is full, fail-closed refuses DDL.
#[tokio::test]
async fn the_table_sink_catches_up_and_a_full_queue_fails_closed() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    setup(pg, "DROP TABLE IF EXISTS audit_away; DROP TABLE IF EXISTS au_away; CREATE TABLE au_away (id int)").await;
    let relay = Relay::start(pg.port).await;
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.audit_table_dsn = Some(table_dsn(relay.port));
        o.audit_table = Some("audit_away".into());
        o.audit_instance = Some("test-b".into());
        o.audit_table_queue = Some(4);
        o.audit_fail_closed = Some(true);
    })
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let mut refused = None;
    for i in 0..10 {
        match client
            .batch_execute(&format!("ALTER TABLE au_away ADD COLUMN c{i} int"))
            .await
        {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.code().unwrap().code(), "ZD002", "{e:?}");
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("the full queue made DDL fail");
    assert!(
        refused >= 2,
        "some DDL went through while the queue had room"
    );
    // Back up: everything queued arrives, in order, without gaps.
    relay.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    loop {
        let table = table_lines(pg, "audit_away", "test-b").await;
        let seqs: Vec<u64> = table
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if seqs.len() >= 5 {
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "table has {seqs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An honoured inline override is recorded with its reason, and a DO block that may run DDL
/// is recorded with the dynamic-ddl warning.
#[tokio::test]
async fn overrides_and_dynamic_ddl_are_recorded() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS au_ovr; CREATE TABLE au_ovr (id int, name text)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("-- ddlgate:allow rename-column reason=\"expand done in #812\"\nALTER TABLE au_ovr RENAME COLUMN name TO full_name")
        .await
        .unwrap();
    let renamed = statements_about(&log, "RENAME COLUMN name");
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0]["action"], "allow");
    assert_eq!(renamed[0]["override"][0]["rule"], "rename-column");
    assert_eq!(renamed[0]["override"][0]["reason"], "expand done in #812");
    assert_eq!(renamed[0]["outcome"]["status"], "ok");

    client
        .batch_execute("DO $$ BEGIN EXECUTE format('ALTER TABLE au_ovr ADD COLUMN %I int', lower('DYN')); END $$")
        .await
        .unwrap();
    let dynamic = statements_about(&log, "ADD COLUMN %I int");
    assert_eq!(dynamic.len(), 1);
    assert_eq!(dynamic[0]["kind"], "DO");
    assert_eq!(dynamic[0]["action"], "warn");
    assert_eq!(dynamic[0]["rules"][0]["rule"], "dynamic-ddl");
}

/// A multi-step rewrite is one audit record for the one statement the client sent, with a
/// `steps` array (each step's SQL, attempts, outcome and duration), not one record per step;
/// the chain still verifies with the new field.
#[tokio::test]
async fn a_multi_step_rewrite_is_one_record_with_its_steps() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS au_steps; CREATE TABLE au_steps AS SELECT g AS id, g AS n FROM generate_series(1, 500) g",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("ALTER TABLE au_steps ALTER COLUMN n SET NOT NULL")
        .await
        .unwrap();
    let records = statements_about(&log, "au_steps");
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["action"], "rewrite");
    let rewritten = r["rewritten_sql"].as_array().unwrap();
    let steps = r["steps"].as_array().unwrap();
    assert!(rewritten.len() >= 2, "{r:#}");
    assert_eq!(steps.len(), rewritten.len(), "{r:#}");
    for (step, sql) in steps.iter().zip(rewritten) {
        assert_eq!(&step["sql"], sql);
        assert_eq!(step["outcome"]["status"], "ok", "{step:#}");
        assert_eq!(step["attempts"], 1);
        assert!(step["duration_ms"].as_u64().is_some(), "{step:#}");
    }
    assert_eq!(r["outcome"]["tag"], "ALTER TABLE");
    // A rewrite of one step carries no `steps`.
    client
        .batch_execute("CREATE INDEX au_steps_n ON au_steps (n)")
        .await
        .unwrap();
    let index = statements_about(&log, "au_steps_n");
    assert_eq!(index.len(), 1);
    assert!(index[0].get("steps").is_none(), "{:#}", index[0]);
    let out = verify(std::slice::from_ref(&log));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The anchor file (`--audit-anchor`) records the chain's head after each sync: `audit verify
/// --anchor` accepts the whole trail and reports one cut at its end, which the chain alone
/// cannot show; a trail cut at its head is reported without options, and accepted with the
/// `--from-seq`/`--after` the report names. Every record names its run.
#[tokio::test]
async fn anchors_and_expected_starts_find_a_trail_cut_at_either_end() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let anchor = dir.path().join("anchor.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.audit_anchor = Some(anchor.clone());
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS au_anchor; CREATE TABLE au_anchor (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for c in ["a", "b", "c"] {
        client
            .batch_execute(&format!("ALTER TABLE au_anchor ADD COLUMN {c} int"))
            .await
            .unwrap();
    }
    drop(client);
    proxy.drain_and_wait().await;
    let records = crate::support::audit_records(&log);
    let run = records[0]["run"].as_str().unwrap().to_owned();
    assert_eq!(run.len(), 16, "{run}");
    assert!(records.iter().all(|r| r["run"] == run.as_str()));

    let verify_with = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
            .args(["audit", "verify"])
            .args(extra)
            .arg(&log)
            .output()
            .unwrap()
    };
    let anchor_arg = anchor.to_str().unwrap().to_owned();
    let o = verify_with(&["--anchor", &anchor_arg]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("the anchor's head reached"), "{out}");

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The tail cut: the chain alone still verifies, the anchor does not.
    std::fs::write(&log, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    assert_eq!(verify_with(&[]).status.code(), Some(0));
    let o = verify_with(&["--anchor", &anchor_arg]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("truncated") && out.contains("does not reach"),
        "{out}"
    );

    // The head cut.
    std::fs::write(&log, lines[2..].join("\n") + "\n").unwrap();
    let o = verify_with(&[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("starts at seq 3"), "{out}");
    let hint = out
        .split("verify with ")
        .nth(1)
        .unwrap()
        .trim_end_matches(")\n");
    let args: Vec<&str> = hint.split_whitespace().collect();
    let o = verify_with(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
