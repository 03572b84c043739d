//! Faults around a session: the client vanishing while its DDL waits for a lock, the upstream
//! backend killed in the middle of a query and of a DDL. Each must leave nothing behind on the
//! server and must not disturb other sessions.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// The default policy with a long lock_timeout, so a lock wait outlives the test's patience
/// unless ddlgate ends it.
const LONG_WAITS: &str = r#"
[timeouts.brief]
lock_timeout = "60s"
statement_timeout = "0"
"#;

async fn proxy(pg: &PgServer) -> (TestProxy, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(LONG_WAITS.as_bytes()).unwrap();
    let path = file.path().to_owned();
    let proxy = TestProxy::start_with(pg, |o| o.policy = Some(path)).await;
    (proxy, file)
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
    let (proxy, _policy) = proxy(pg).await;
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
}

/// The upstream backend killed in the middle of a query and in the middle of a DDL's lock
/// wait: the client gets the server's error (not a hang, not a proxy crash), and ddlgate goes
/// on serving new sessions.
#[tokio::test]
async fn upstream_killed_mid_query_and_mid_ddl_gives_a_clean_error() {
    let pg = PgServer::shared();
    let (proxy, _policy) = proxy(pg).await;
    let admin = pg.connect(SUPERUSER).await;
    admin
        .batch_execute("DROP TABLE IF EXISTS ft_killed; CREATE TABLE ft_killed (id int)")
        .await
        .unwrap();
    let kill = |name: &'static str| {
        let admin = pg.connect(SUPERUSER);
        async move {
            let admin = admin.await;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let killed: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND state = 'active') t",
                        &[&name],
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
        let (result, ()) = tokio::join!(client.batch_execute(sql), kill(name));
        let err = result.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: answered promptly"
        );
        let code = err.code().map(|c| c.code().to_owned());
        // The plain query gets the server's own FATAL; for governed DDL, whose answer
        // ddlgate holds until it is complete, ddlgate reports the lost upstream (08006).
        let expected = if name == "ft_query" { "57P01" } else { "08006" };
        assert_eq!(code.as_deref(), Some(expected), "{name}: {err:?}");
        assert!(client.is_closed() || client.batch_execute("SELECT 1").await.is_err());
        blocker.batch_execute("ROLLBACK").await.unwrap();
    }
    // New sessions are served.
    let fresh = proxy.connect(SUPERUSER).await;
    let n: i32 = fresh.query_one("SELECT 10", &[]).await.unwrap().get(0);
    assert_eq!(n, 10);
}
