//! Faults around a session: the client vanishing while its DDL waits for a lock, the upstream
//! backend killed in the middle of a query and of a DDL. Each must leave nothing behind on the
//! server and must not disturb other sessions.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// The default policy with a long lock_timeout, so a lock wait outlives the test's patience
/// unless ddlgate ends it, and no waiting before the attempt: these tests are about a
/// statement in the lock queue.
const LONG_WAITS: &str = r#"
[lock_wait]
max_wait = "0"

[timeouts.brief]
lock_timeout = "60s"
statement_timeout = "0"
"#;

/// The proxy, the policy file and the directory of its audit log (`audit.jsonl`).
async fn proxy(pg: &PgServer) -> (TestProxy, (tempfile::NamedTempFile, tempfile::TempDir)) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(LONG_WAITS.as_bytes()).unwrap();
    let path = file.path().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.policy = Some(path);
        o.audit_log = Some(log);
    })
    .await;
    (proxy, (file, dir))
}

/// The audit record of the statement `sql`, waiting up to 3 s for it to be written.
async fn audit_record_of(
    files: &(tempfile::NamedTempFile, tempfile::TempDir),
    sql: &str,
) -> serde_json::Value {
    let log = files.1.path().join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(r) = crate::support::audit_records(&log)
            .into_iter()
            .find(|r| r["event"] == "statement" && r["sql"] == sql)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no audit record of {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lock requests on `table` that are still waiting.
async fn waiting_locks(admin: &tokio_postgres::Client, table: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE relation = $1::text::regclass AND NOT granted",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

/// A client that vanishes while its DDL waits in the lock queue does not leave the request
/// there: it would make every later query on the table wait behind it.
#[tokio::test]
async fn vanished_client_leaves_no_lock_request_behind() {
    let pg = PgServer::shared();
    let (proxy, files) = proxy(pg).await;
    let admin = pg.connect(SUPERUSER).await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS ft_queue; CREATE TABLE ft_queue (id int); \
             GRANT ALL ON ft_queue TO PUBLIC; ALTER TABLE ft_queue OWNER TO ddlgate_trust",
        )
        .await
        .unwrap();
    let blocker = pg.connect(SUPERUSER).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE ft_queue IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query("SET application_name = 'ft_vanisher'"))
        .await;
    w.until_ready().await;
    w.send(&wire::query("ALTER TABLE ft_queue ADD COLUMN note text"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting_locks(&admin, "ft_queue").await == 0 {
        assert!(Instant::now() < deadline, "the ALTER never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(w);
    let vanished = Instant::now();
    while waiting_locks(&admin, "ft_queue").await > 0 {
        assert!(
            vanished.elapsed() < Duration::from_secs(3),
            "the lock request is still queued 3s after its client vanished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pg.wait_until_no_backends("ft_vanisher").await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    // Nothing ran: the column is not there.
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ft_queue'::regclass AND attname = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // The attempt is in the audit trail, with how it ended.
    let record = audit_record_of(&files, "ALTER TABLE ft_queue ADD COLUMN note text").await;
    assert_eq!(record["outcome"]["status"], "error", "{record}");
    assert_eq!(record["outcome"]["sqlstate"], "08006", "{record}");
}

/// The upstream backend killed in the middle of a query and in the middle of a DDL's lock
/// wait: the client gets the server's error (not a hang, not a proxy crash), and ddlgate goes
/// on serving new sessions.
#[tokio::test]
async fn upstream_killed_mid_query_and_mid_ddl_gives_a_clean_error() {
    let pg = PgServer::shared();
    let (proxy, files) = proxy(pg).await;
    let admin = pg.connect(SUPERUSER).await;
    admin
        .batch_execute("DROP TABLE IF EXISTS ft_killed; CREATE TABLE ft_killed (id int)")
        .await
        .unwrap();
    // The backend is killed while it runs the client's statement, not one of ddlgate's own
    // (the catalog read at the session's start is active under the same application_name).
    let kill = |name: &'static str, sql: &'static str| {
        let admin = pg.connect(SUPERUSER);
        async move {
            let admin = admin.await;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let killed: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND state = 'active' \
                         AND strpos(query, $2) > 0) t",
                        &[&name, &sql],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if killed > 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "{name} never became active");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    for (name, sql) in [
        ("ft_query", "SELECT pg_sleep(30)"),
        ("ft_ddl", "ALTER TABLE ft_killed ADD COLUMN note text"),
    ] {
        let blocker = pg.connect(SUPERUSER).await;
        blocker
            .batch_execute("BEGIN; LOCK TABLE ft_killed IN ACCESS SHARE MODE")
            .await
            .unwrap();
        let client = crate::support::pg::connect(&format!(
            "{} application_name={name}",
            proxy.conn_str(SUPERUSER)
        ))
        .await;
        let started = Instant::now();
        let (result, ()) = tokio::join!(client.batch_execute(sql), kill(name, sql));
        let err = result.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: answered promptly"
        );
        let code = err.code().map(|c| c.code().to_owned());
        // The server's own FATAL, also for governed DDL whose answer ddlgate holds back.
        assert_eq!(code.as_deref(), Some("57P01"), "{name}: {err:?}");
        assert!(client.is_closed() || client.batch_execute("SELECT 1").await.is_err());
        blocker.batch_execute("ROLLBACK").await.unwrap();
    }
    let record = audit_record_of(&files, "ALTER TABLE ft_killed ADD COLUMN note text").await;
    assert_eq!(record["outcome"]["status"], "error", "{record}");
    // New sessions are served.
    let fresh = proxy.connect(SUPERUSER).await;
    let n: i32 = fresh.query_one("SELECT 10", &[]).await.unwrap().get(0);
    assert_eq!(n, 10);
}

/// A client that vanishes in the middle of COPY FROM STDIN: the server's COPY ends (its
/// backend goes away and the rows are not committed), and ddlgate goes on serving.
#[tokio::test]
async fn vanished_client_mid_copy_leaves_nothing_behind() {
    let pg = PgServer::shared();
    let (proxy, _files) = proxy(pg).await;
    let admin = pg.connect(SUPERUSER).await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS ft_copy; CREATE TABLE ft_copy (id int, label text); \
             GRANT ALL ON ft_copy TO PUBLIC",
        )
        .await
        .unwrap();
    let (mut w, _) = Wire::startup_with(
        &proxy.addr.to_string(),
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("application_name", "ft_copier"),
        ],
    )
    .await;
    w.send(&wire::query("COPY ft_copy FROM STDIN")).await;
    let m = w.recv().await.unwrap();
    assert_eq!(m.tag, b'G', "CopyInResponse: {m:?}");
    let mut data = Vec::new();
    for n in 0..1_000 {
        data.extend(wire::raw_frame(b'd', format!("{n}\trow {n}\n").as_bytes()));
    }
    w.send(&data).await;
    // Half a CopyData message, then gone.
    w.send(&wire::raw_frame(b'd', b"1001\tcut")[..6]).await;
    drop(w);
    pg.wait_until_no_backends("ft_copier").await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM ft_copy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the COPY did not commit");
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("SELECT 1").await.unwrap();
}

/// This process's resident memory in KiB (ddlgate runs in it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A client that asks for a huge result and does not read it: ddlgate stops reading from the
/// server instead of buffering (the server's backend waits on `ClientWrite`), so memory stays
/// bounded; when the client goes, so does the backend.
#[tokio::test]
async fn slow_reader_gets_backpressure_not_buffering() {
    let pg = PgServer::shared();
    let (proxy, _files) = proxy(pg).await;
    let admin = pg.connect(SUPERUSER).await;
    let (mut w, _) = Wire::startup_with(
        &proxy.addr.to_string(),
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("application_name", "ft_slow_reader"),
        ],
    )
    .await;
    let before = rss_kib();
    // About 1.6 GB of rows, never read.
    w.send(&wire::query(
        "SELECT repeat('x', 8000) FROM generate_series(1, 200000)",
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ft_slow_reader' \
                 AND wait_event = 'ClientWrite'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never had to wait for ddlgate to read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stays waiting: ddlgate is not draining it into memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 256 * 1024,
        "memory grew by {grown} KiB while the client did not read"
    );
    drop(w);
    pg.wait_until_no_backends("ft_slow_reader").await;
}

/// The whole upstream server going down (fast shutdown) in the middle of a query and of a
/// DDL's lock wait: both clients get the server's FATAL, ddlgate stays up, and a new session
/// gets a clear connection error (08006) instead of a hang.
#[tokio::test]
async fn upstream_server_going_down_gives_clean_errors() {
    let pg = PgServer::start_with(&[]);
    let (proxy, files) = proxy(&pg).await;
    let admin = pg.connect(SUPERUSER).await;
    // Two calls: a BEGIN later in the same Query would take the CREATE into its transaction.
    admin
        .batch_execute("CREATE TABLE ft_down (id int)")
        .await
        .unwrap();
    admin
        .batch_execute("BEGIN; LOCK TABLE ft_down IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let sleeper = proxy.connect(SUPERUSER).await;
    let migrator = proxy.connect(SUPERUSER).await;
    let query = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(30)").await });
    let ddl = tokio::spawn(async move {
        migrator
            .batch_execute("ALTER TABLE ft_down ADD COLUMN note text")
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting_locks(&admin, "ft_down").await == 0 {
        assert!(Instant::now() < deadline, "the ALTER never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = pg.addr();
    // The lock holder stays connected: the shutdown, not its rollback, must end the wait.
    // Stopping the cluster blocks until it is down; the proxy must keep running meanwhile.
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    for (what, task) in [("query", query), ("ddl", ddl)] {
        let err = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer after the server went down"))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.code().map(|c| c.code()),
            Some("57P01"),
            "{what}: the server's shutdown error: {err:?}"
        );
    }
    let record = audit_record_of(&files, "ALTER TABLE ft_down ADD COLUMN note text").await;
    assert_eq!(record["outcome"]["status"], "error", "{record}");
    assert_eq!(record["outcome"]["sqlstate"], "57P01", "{record}");
    let err = crate::support::pg::connect_error(&proxy.conn_str(SUPERUSER)).await;
    let db = err.as_db_error().expect("ddlgate's error");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message()
            .starts_with(&format!("ddlgate: could not connect to upstream {addr}")),
        "{}",
        db.message()
    );
}
