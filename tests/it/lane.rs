//! The fast lane (`src/proxy/session/lane.rs`): a session that has been quiet for a while is
//! served by its worker's event loop, and goes back to its task whenever something needs more
//! than forwarding. Everything a session does must be the same wherever it runs: these tests
//! put a session on the lane first (enough quiet requests, seen in `ddlgate_fast_lane_sessions`)
//! and then do what the rest of the suite does on a fresh session — migrations under the
//! default policy, large results, COPY, pipelines, shutdown, ends of either side.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, pin_mut};

use crate::metrics::{get, sample};
use crate::support::audit_records;
use crate::support::pg::{PgServer, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Enough quiet requests to reach the lane whatever the session did before: the most a
/// session waits for is 64 requests (`QUIET_REQUESTS_BEFORE_LANE_MAX`), each query here is two
/// (prepare, then bind and execute), and the session's first read of the database's routines
/// is a program of its own.
const QUIET_REQUESTS: usize = 40;

/// Waits until `ddlgate_fast_lane_sessions` reads `want`; the metrics text then.
async fn lane_sessions_become(metrics: std::net::SocketAddr, want: i64) -> String {
    let started = Instant::now();
    loop {
        let (_, text) = get(metrics, "/metrics").await;
        if sample(&text, "ddlgate_fast_lane_sessions") == want {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ddlgate_fast_lane_sessions never became {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw-protocol session of the trust user that has reached the lane (the only one there).
async fn raw_session_on_the_lane(addr: &str, metrics: std::net::SocketAddr) -> Wire {
    let (mut w, _) = Wire::startup(addr, TRUST.name, "app").await;
    for _ in 0..QUIET_REQUESTS {
        w.send(&wire::query("SELECT 1")).await;
        assert_eq!(w.until_ready().await.last().unwrap().summary(), "Z:I");
    }
    lane_sessions_become(metrics, 1).await;
    w
}

async fn quiet_requests(client: &tokio_postgres::Client) {
    for i in 0..QUIET_REQUESTS as i32 {
        let row = client.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
}

fn records_with(log: &Path, event: &str, application_name: &str) -> Vec<serde_json::Value> {
    audit_records(log)
        .into_iter()
        .filter(|r| r["event"] == event && r["application_name"] == application_name)
        .collect()
}

async fn wait_for_record(log: &Path, event: &str, application_name: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Some(r) = records_with(log, event, application_name).pop() {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {event} record for {application_name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Migrations over one connection, each in its own transaction, on tables an earlier one
/// created and filled, with the tool's own bookkeeping queries in between: each governed
/// statement brings the session back to its task, where the default policy decides it, and
/// ordinary traffic takes it to the lane again.
#[tokio::test]
async fn migrations_between_stretches_on_the_lane_are_governed_as_on_a_fresh_session() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.audit_log = Some(log.clone());
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let direct = pg.connect(SUPERUSER).await;
    direct
        .batch_execute("DROP TABLE IF EXISTS ln_orders")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("SET application_name = 'lane_migrations'")
        .await
        .unwrap();

    quiet_requests(&client).await;
    lane_sessions_become(metrics, 1).await;

    // Migration 1, from the lane: create and fill a table.
    client
        .batch_execute(
            "BEGIN; CREATE TABLE ln_orders (id int PRIMARY KEY, note text); \
             INSERT INTO ln_orders SELECT g, 'n' || g FROM generate_series(1, 1000) g; COMMIT",
        )
        .await
        .unwrap();
    let text = lane_sessions_become(metrics, 0).await;
    assert_eq!(sample(&text, "ddlgate_fast_lane_handovers_total"), 1);

    quiet_requests(&client).await;
    lane_sessions_become(metrics, 1).await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM ln_orders WHERE id > $1", &[&100i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 900);

    // Migration 2, from the lane: a plain CREATE INDEX is built CONCURRENTLY.
    client
        .batch_execute("CREATE INDEX ln_orders_note ON ln_orders (note)")
        .await
        .unwrap();
    let valid: bool = direct
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ln_orders_note'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let rewritten = records_with(&log, "statement", "lane_migrations")
        .into_iter()
        .find(|r| {
            r["sql"]
                .as_str()
                .is_some_and(|s| s.contains("ln_orders_note"))
        })
        .expect("an audit record of the index build");
    assert_eq!(rewritten["action"], "rewrite", "{rewritten}");

    // Migration 3, from the lane: a table rewrite is refused, and the session goes on.
    quiet_requests(&client).await;
    lane_sessions_become(metrics, 1).await;
    let err = client
        .batch_execute("BEGIN; ALTER TABLE ln_orders ALTER COLUMN id TYPE bigint; COMMIT")
        .await
        .unwrap_err();
    assert!(err.code().is_some(), "{err}");
    client.batch_execute("ROLLBACK").await.unwrap();
    let kind: String = direct
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'ln_orders'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "integer");

    quiet_requests(&client).await;
    let text = lane_sessions_become(metrics, 1).await;
    assert_eq!(sample(&text, "ddlgate_fast_lane_handovers_total"), 4);
    drop(client);
    lane_sessions_become(metrics, 0).await;
    let end = wait_for_record(&log, "session_end", "lane_migrations").await;
    assert_eq!(
        end["outcome"]["message"], "client terminated the session",
        "{end}"
    );
}

/// A session that is governed every few statements stops moving: the first quiet stretch
/// takes it to the lane, the governed statement brings it back, and the next move waits for a
/// quiet stretch twice as long (a move there and back costs more than the few requests it
/// would serve). Its statements are governed and answered as anywhere else.
#[tokio::test]
async fn a_session_governed_every_few_statements_stops_moving_to_the_lane() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics = proxy.metrics.unwrap();
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("CREATE TEMP TABLE ln_locked (id int)")
        .await
        .unwrap();
    for round in 0..20 {
        // Six plain requests, then a lock that blocks writes: governed like DDL. The first may
        // be held too, when it arrives before ddlgate has restored the timeouts it set for the
        // lock; the other five are still more than the first move waits for (4) and fewer
        // than the next (8).
        for i in 0..6 {
            let rows = client.simple_query(&format!("SELECT {i}")).await.unwrap();
            assert_eq!(rows.len(), 3, "round {round}");
        }
        client
            .batch_execute("BEGIN; LOCK TABLE ln_locked IN SHARE MODE; COMMIT")
            .await
            .unwrap();
    }
    let (_, text) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(&text, "ddlgate_fast_lane_handovers_total"),
        1,
        "the session moved to the lane more than once:\n{text}"
    );
    assert_eq!(sample(&text, "ddlgate_fast_lane_sessions"), 0, "{text}");
    // A long quiet stretch still takes it there.
    quiet_requests(&client).await;
    lane_sessions_become(metrics, 1).await;
}

/// On the lane, large results and COPY data pass whole (the lane stops reading a side while
/// the other is slow), pipelined queries are answered in order, and a cancel request stops a
/// query; the session stays there throughout.
#[tokio::test]
async fn large_results_copy_and_pipelines_flow_on_the_lane() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics = proxy.metrics.unwrap();
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("CREATE TEMP TABLE ln_copied (id int, label text)")
        .await
        .unwrap();
    quiet_requests(&client).await;
    lane_sessions_become(metrics, 1).await;

    // About 8 MB of answer, far above the lane's 256 KiB write queue.
    let rows = client
        .simple_query("SELECT g, repeat('x', 1000) FROM generate_series(1, 8000) g")
        .await
        .unwrap();
    let data: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(data.len(), 8000);
    assert_eq!(data[7999].get(0), Some("8000"));
    assert_eq!(data[7999].get(1).map(str::len), Some(1000));

    // About 6 MB of COPY data.
    let sink = client
        .copy_in("COPY ln_copied (id, label) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let line = "y".repeat(600);
    for chunk in 0..100 {
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&format!("{}\t{line}\n", chunk * 100 + i));
        }
        sink.send(bytes::Bytes::from(block)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    let (count, longest): (i64, i32) = {
        let row = client
            .query_one("SELECT count(*), max(length(label)) FROM ln_copied", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((count, longest), (10_000, 600));

    // Fifty queries in flight at once, answered in order.
    let statement = client.prepare("SELECT $1::int * 2").await.unwrap();
    let queries = (0..50).map(|i| {
        let client = &client;
        let statement = &statement;
        async move {
            client
                .query_one(statement, &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    let answers = futures_util::future::join_all(queries).await;
    assert_eq!(answers, (0..50).map(|i| i * 2).collect::<Vec<_>>());

    // A cancel request reaches the query of a session on the lane.
    let token = client.cancel_token();
    let cancelled = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    };
    let (slept, ()) = tokio::join!(client.batch_execute("SELECT pg_sleep(30)"), cancelled);
    assert_eq!(
        slept.unwrap_err().code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );

    let text = lane_sessions_become(metrics, 1).await;
    assert_eq!(sample(&text, "ddlgate_fast_lane_handovers_total"), 1);
}

/// The lane counts the bytes it forwards in bulk, once per wake-up: the byte counters still
/// move by exactly what went each way, and are told before the lane waits again (a scrape
/// after the answers sees them all).
#[tokio::test]
async fn bytes_forwarded_on_the_lane_are_counted_exactly() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let mut w = raw_session_on_the_lane(&proxy.addr.to_string(), metrics).await;
    // The last quiet answer may reach the client a moment before the lane counts it.
    let mut before = get(metrics, "/metrics").await.1;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = get(metrics, "/metrics").await.1;
        let settled = ["ddlgate_bytes_in_total", "ddlgate_bytes_out_total"]
            .iter()
            .all(|series| sample(&now, series) == sample(&before, series));
        before = now;
        if settled {
            break;
        }
    }
    let (mut sent, mut received) = (0, 0);
    for i in 0..50 {
        let request = wire::query(&format!("SELECT {i}, repeat('x', {i})"));
        w.send(&request).await;
        sent += request.len();
        let answer = w.until_ready().await;
        assert_eq!(answer.last().unwrap().summary(), "Z:I");
        received += answer.iter().map(|m| 5 + m.body.len()).sum::<usize>();
    }
    let moved = |text: &str, series: &str| sample(text, series) - sample(&before, series);
    let started = Instant::now();
    loop {
        let (_, text) = get(metrics, "/metrics").await;
        let counted = (
            moved(&text, "ddlgate_bytes_in_total"),
            moved(&text, "ddlgate_bytes_out_total"),
        );
        if counted == (sent as i64, received as i64) {
            assert_eq!(sample(&text, "ddlgate_fast_lane_sessions"), 1, "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "counted (in, out) {counted:?}, forwarded ({sent}, {received})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shutdown reaches sessions on the lane: an idle one is told why and closed at once.
#[tokio::test]
async fn draining_closes_an_idle_session_on_the_lane() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.shutdown_timeout = Some("10s".into());
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let mut w = raw_session_on_the_lane(&proxy.addr.to_string(), metrics).await;
    proxy.shutdown.drain.cancel();
    let bye = w
        .recv()
        .await
        .expect("a goodbye for the session on the lane");
    assert_eq!(bye.summary(), "E:57P01");
    assert!(w.recv().await.is_none());
    proxy.drain_and_wait().await;
}

/// The server ending a session on the lane (pg_terminate_backend) reaches the client as on a
/// direct connection, and the session's end is audited with its reason; a request that ends
/// the session (`Terminate`) is audited as such.
#[tokio::test]
async fn ends_of_either_side_on_the_lane_are_passed_on_and_audited() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.audit_log = Some(log.clone());
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let direct = pg.connect(SUPERUSER).await;
    let addr = proxy.addr.to_string();

    let params = [
        ("user", TRUST.name),
        ("database", "app"),
        ("application_name", "lane_terminated"),
    ];
    let (mut w, _) = Wire::startup_with(&addr, &params).await;
    for _ in 0..QUIET_REQUESTS {
        w.send(&wire::query("SELECT 1")).await;
        w.until_ready().await;
    }
    lane_sessions_become(metrics, 1).await;
    let ended: bool = direct
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'lane_terminated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended);
    let fatal = w.recv().await.expect("the server's FATAL");
    assert_eq!(fatal.summary(), "E:57P01");
    assert!(w.recv().await.is_none());
    let end = wait_for_record(&log, "session_end", "lane_terminated").await;
    assert_eq!(
        end["outcome"]["message"], "upstream closed the connection",
        "{end}"
    );

    let params = [
        ("user", TRUST.name),
        ("database", "app"),
        ("application_name", "lane_goodbye"),
    ];
    let (mut w, _) = Wire::startup_with(&addr, &params).await;
    for _ in 0..QUIET_REQUESTS {
        w.send(&wire::query("SELECT 1")).await;
        w.until_ready().await;
    }
    lane_sessions_become(metrics, 1).await;
    w.send(&wire::terminate()).await;
    assert!(w.recv().await.is_none());
    let end = wait_for_record(&log, "session_end", "lane_goodbye").await;
    assert_eq!(
        end["outcome"]["message"], "client terminated the session",
        "{end}"
    );
    lane_sessions_become(metrics, 0).await;
}

/// The scheduling policy of each of `pid`'s threads, by thread name (`/proc/PID/task/*/stat`,
/// field 41; 0 is SCHED_OTHER, 3 SCHED_BATCH).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = rest.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        out.push((comm.trim().to_owned(), policy));
    }
    out
}

/// The threads that serve sessions (each worker and its lane) run under SCHED_BATCH, so a
/// woken proxy does not preempt the client or server that is about to block for its answer
/// (src/proxy/sched.rs); the acceptor and the rest keep their policy; `--sched-batch false`
/// (or `DDLGATE_SCHED_BATCH=false`, `sched_batch = false`) keeps the default everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_threads_run_under_sched_batch_unless_turned_off() {
    const BATCH: u32 = 3;
    let pg = PgServer::shared();
    let serving =
        |name: &str| name.starts_with("ddlgate-worker") || name.starts_with("ddlgate-lane");
    for (args, want_batch) in [
        (&["--worker-threads", "2"][..], true),
        (
            &["--worker-threads", "2", "--sched-batch", "false"][..],
            false,
        ),
    ] {
        let gate = crate::support::binary::Binary::serve(pg, args).await;
        // A session served end to end, so every serving thread has been running.
        let (mut w, _) = Wire::startup(&gate.addr, TRUST.name, "app").await;
        w.send(&wire::query("SELECT 1")).await;
        w.until_ready().await;
        let threads = thread_policies(gate.pid());
        let serving_threads: Vec<_> = threads.iter().filter(|(n, _)| serving(n)).collect();
        assert_eq!(serving_threads.len(), 4, "{threads:?}");
        for (name, policy) in &threads {
            let batch = *policy == BATCH;
            if serving(name) {
                assert_eq!(
                    batch, want_batch,
                    "{name} under policy {policy}: {threads:?}"
                );
            } else {
                assert!(!batch, "{name} should keep its policy: {threads:?}");
            }
        }
        drop(w);
    }
}
