//! Looking before queueing: DDL whose lock blocks the application waits — without a place in
//! the lock queue — while an older transaction holds a conflicting lock, and is then sent under
//! the short brief `lock_timeout`. Measured against application traffic running directly on
//! the server all along: its slowest statement shows whether the migration made it wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, TRUST, run_direct as setup};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Application traffic on `table`, directly on the server: one short update by primary key
/// after another until stopped. Gives the slowest one's duration.
struct AppLoad {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Duration>,
}

impl AppLoad {
    async fn start(pg: &PgServer, table: &str) -> Self {
        let client = pg.connect(SUPERUSER).await;
        let sql = format!("UPDATE {table} SET v = v + 1 WHERE id = 2");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                client.execute(sql.as_str(), &[]).await.unwrap();
                worst = worst.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            worst
        });
        Self { stop, task }
    }

    async fn worst(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A direct session as superuser with this `application_name`.
async fn app_session(pg: &PgServer, application_name: &str) -> tokio_postgres::Client {
    crate::support::pg::connect(&format!(
        "{} application_name={application_name}",
        pg.conn_str(SUPERUSER)
    ))
    .await
}

fn table_setup(table: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, v int); \
         INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 1000) g; \
         ALTER TABLE {table} OWNER TO {}",
        TRUST.name
    )
}

async fn proxy_with(
    pg: &PgServer,
    policy: &str,
) -> (TestProxy, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.policy = Some(file.clone());
    })
    .await;
    (proxy, dir, log)
}

fn record_of(log: &std::path::Path, sql: &str) -> serde_json::Value {
    crate::support::audit_records(log)
        .into_iter()
        .find(|r| r["event"] == "statement" && r["sql"] == sql)
        .unwrap_or_else(|| panic!("no record of {sql}"))
}

/// A transaction idle for a while holds a lock the `ALTER` conflicts with: the `ALTER` waits
/// for it without queueing (the client is told whom it waits for), and the application's
/// updates on the table keep running; when the blocker commits, the `ALTER` applies at once.
/// The record says how long it waited and for whom. The migration role (not a superuser, no
/// `pg_read_all_stats`) cannot see the blocker's transaction age: ddlgate times it itself.
#[tokio::test]
async fn a_blocker_that_ends_in_time_costs_the_application_nothing() {
    let pg = PgServer::shared();
    setup(pg, &table_setup("lw_ends")).await;
    let (proxy, _dir, log) = proxy_with(pg, "").await;
    let blocker = app_session(pg, "lw_reporter").await;
    blocker
        .batch_execute("BEGIN; UPDATE lw_ends SET v = v WHERE id = 1")
        .await
        .unwrap();
    let app = AppLoad::start(pg, "lw_ends").await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        blocker.batch_execute("COMMIT").await.unwrap();
    });
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let sql = "ALTER TABLE lw_ends ADD COLUMN note text";
    let started = Instant::now();
    w.send(&wire::query(sql)).await;
    let answer = w.until_ready().await;
    let elapsed = started.elapsed();
    release.await.unwrap();
    let worst = app.worst().await;
    let summary: Vec<String> = answer.iter().map(wire::Msg::summary).collect();
    assert!(summary.contains(&"C:ALTER TABLE".to_owned()), "{summary:?}");
    let notice = answer
        .iter()
        .find(|m| m.tag == b'N')
        .unwrap_or_else(|| panic!("no notice: {summary:?}"));
    let message = notice.field(b'M').unwrap_or_default();
    assert!(
        message.contains("waiting without queueing for the ACCESS EXCLUSIVE lock on lw_ends"),
        "{message}"
    );
    assert!(
        notice
            .field(b'D')
            .unwrap_or_default()
            .contains("lw_reporter"),
        "{:?}",
        notice.field(b'D')
    );
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    assert!(
        worst < Duration::from_millis(300),
        "the application waited {worst:?} (the brief lock_timeout is 200 ms)"
    );
    let record = record_of(&log, sql);
    let waited = record["lock_wait"]["waited_ms"].as_u64().unwrap();
    assert!(waited >= 1000, "{record:#}");
    let blockers = record["lock_wait"]["blockers"].to_string();
    // The migration role cannot see another role's transaction age: ddlgate timed it.
    assert!(
        blockers.contains("lw_reporter")
            && blockers.contains("state not visible to this role")
            && blockers.contains("RowExclusiveLock"),
        "{blockers}"
    );
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["timeouts"]["lock_timeout"], "200ms");
}

/// A blocker that outlasts `lock_wait.max_wait`: ddlgate attempts anyway under the short
/// `lock_timeout`, retries once (looking again), and refuses with 55P03 naming the blocker;
/// the application never waits longer than one attempt.
#[tokio::test]
async fn a_blocker_that_stays_is_named_and_the_application_barely_notices() {
    let pg = PgServer::shared();
    setup(pg, &table_setup("lw_stays")).await;
    let (proxy, _dir, log) = proxy_with(
        pg,
        "[lock_wait]\nmax_wait = \"1s\"\n[retry]\nattempts = 1\ninitial_backoff = \"100ms\"\nmax_backoff = \"100ms\"\n",
    )
    .await;
    let blocker = app_session(pg, "lw_forgotten").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM lw_stays")
        .await
        .unwrap();
    let app = AppLoad::start(pg, "lw_stays").await;
    let client = proxy.connect(SUPERUSER).await;
    let sql = "ALTER TABLE lw_stays ADD COLUMN note text";
    let started = Instant::now();
    let err = client.batch_execute(sql).await.unwrap_err();
    let elapsed = started.elapsed();
    let worst = app.worst().await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55P03", "{err:?}");
    let detail = db.detail().unwrap_or_default();
    assert!(detail.contains("lw_forgotten"), "{detail}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(
        worst < Duration::from_millis(350),
        "the application waited {worst:?} (each attempt's lock_timeout is 200 ms)"
    );
    let record = record_of(&log, sql);
    assert_eq!(record["attempts"], 2, "{record:#}");
    assert_eq!(record["outcome"]["sqlstate"], "55P03");
    assert!(record["lock_wait"]["waited_ms"].as_u64().unwrap() >= 1000);
}

/// A transaction that is young when ddlgate looks (so not waited for) and is still running
/// when the statement is sent: the attempt waits in the queue for at most its `lock_timeout`
/// (1 s in this policy), times out, and the retry looks again — now the transaction is old,
/// so ddlgate waits for it without queueing and applies the statement once it has ended.
#[tokio::test]
async fn a_transaction_that_starts_between_the_look_and_the_attempt_costs_one_lock_timeout() {
    let pg = PgServer::shared();
    setup(pg, &table_setup("lw_between")).await;
    let (proxy, _dir, log) = proxy_with(
        pg,
        "[timeouts.brief]\nlock_timeout = \"1s\"\nstatement_timeout = \"5s\"\n\
         [retry]\nattempts = 3\ninitial_backoff = \"200ms\"\nmax_backoff = \"200ms\"\n",
    )
    .await;
    let app = AppLoad::start(pg, "lw_between").await;
    let running = app_session(pg, "lw_batch").await;
    let batch = tokio::spawn(async move {
        running
            .batch_execute(
                "BEGIN; UPDATE lw_between SET v = v WHERE id = 1; SELECT pg_sleep(2.5); COMMIT",
            )
            .await
            .unwrap();
    });
    let admin = pg.connect(SUPERUSER).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.backends("lw_batch", Some("active")).await == 0 {
        assert!(Instant::now() < deadline, "the batch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(admin);
    let client = proxy.connect(SUPERUSER).await;
    let sql = "ALTER TABLE lw_between ADD COLUMN note text";
    client.batch_execute(sql).await.unwrap();
    batch.await.unwrap();
    let worst = app.worst().await;
    let record = record_of(&log, sql);
    assert_eq!(record["attempts"], 2, "one attempt timed out: {record:#}");
    assert!(
        record["lock_wait"]["waited_ms"].as_u64().unwrap() > 0,
        "the retry waited without queueing: {record:#}"
    );
    assert!(
        worst < Duration::from_millis(1300),
        "the application waited {worst:?}: at most the attempt's lock_timeout (1 s)"
    );
}

/// Blockers the policy names expendable are ended (`pg_terminate_backend`), audited with who
/// and why: one idle in its transaction for longer than `end_idle_in_transaction_after`, and
/// one whose `application_name` matches `end_application_names` (running a long query). The
/// `ALTER`s then apply; the ended sessions are gone. Off by default (the other tests).
#[tokio::test]
async fn blockers_the_policy_names_expendable_are_ended_and_audited() {
    let pg = PgServer::shared();
    setup(pg, &table_setup("lw_expendable")).await;
    let (proxy, _dir, log) = proxy_with(
        pg,
        "[lock_wait]\nend_idle_in_transaction_after = \"1s\"\nend_application_names = [\"lw_report*\"]\n",
    )
    .await;
    let idle = app_session(pg, "lw_forgetful").await;
    idle.batch_execute("BEGIN; SELECT count(*) FROM lw_expendable")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    let first = "ALTER TABLE lw_expendable ADD COLUMN a int";
    let started = Instant::now();
    client.batch_execute(first).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended only after 1 s idle"
    );
    assert!(
        idle.batch_execute("SELECT 1").await.is_err(),
        "the idle session was ended"
    );
    let record = record_of(&log, first);
    let ended = record["lock_wait"]["ended"].to_string();
    assert!(
        ended.contains("lw_forgetful") && ended.contains("idle in transaction for more than 1s"),
        "{record:#}"
    );

    let report = app_session(pg, "lw_report_nightly").await;
    let running = tokio::spawn(async move {
        report
            .batch_execute("BEGIN; SELECT count(*) FROM lw_expendable; SELECT pg_sleep(20); COMMIT")
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.backends("lw_report_nightly", Some("active")).await == 0 {
        assert!(Instant::now() < deadline, "the report never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Old enough to be waited for (the brief lock_timeout is 200 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = "ALTER TABLE lw_expendable ADD COLUMN b int";
    let started = Instant::now();
    client.batch_execute(second).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(running.await.unwrap().is_err(), "the report was ended");
    let record = record_of(&log, second);
    let ended = record["lock_wait"]["ended"].to_string();
    assert!(
        ended.contains("lw_report_nightly") && ended.contains("end_application_names"),
        "{record:#}"
    );
}

/// A client that cancels while ddlgate waits for a blocker (its backend idle, nothing to
/// cancel there) stops the wait: the statement is never sent, the client gets 57014 as from a
/// cancelled statement, and inside a transaction block the transaction is aborted as it would
/// be. The session goes on.
#[tokio::test]
async fn a_cancel_stops_the_wait_and_the_statement_is_not_sent() {
    let pg = PgServer::shared();
    setup(pg, &table_setup("lw_cancel")).await;
    let (proxy, _dir, log) = proxy_with(pg, "").await;
    let blocker = app_session(pg, "lw_cancel_blocker").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM lw_cancel")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    for in_block in [false, true] {
        if in_block {
            client.batch_execute("BEGIN").await.unwrap();
        }
        let token = client.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        });
        let started = Instant::now();
        let err = client
            .batch_execute("ALTER TABLE lw_cancel ADD COLUMN note text")
            .await
            .unwrap_err();
        canceller.await.unwrap();
        assert_eq!(
            err.code().map(|c| c.code()),
            Some("57014"),
            "in block {in_block}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "stopped soon after the cancel: {:?}",
            started.elapsed()
        );
        if in_block {
            let aborted = client.batch_execute("SELECT 1").await.unwrap_err();
            assert_eq!(aborted.code().map(|c| c.code()), Some("25P02"));
            client.batch_execute("ROLLBACK").await.unwrap();
        }
    }
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        crate::support::pg::columns(pg, "lw_cancel").await,
        ["id", "v"],
        "never sent"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM lw_cancel", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    let record = record_of(&log, "ALTER TABLE lw_cancel ADD COLUMN note text");
    assert_eq!(record["outcome"]["sqlstate"], "57014", "{record:#}");
}
