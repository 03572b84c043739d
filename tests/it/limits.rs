//! The connection limit and many concurrent sessions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio_postgres::error::SqlState;

use crate::support::pg::{PgServer, SCRAM, TRUST, connect_error};
use crate::support::proxy::TestProxy;

/// Over `max_connections`, a client is refused with 53300 and a clear message; a slot freed by
/// a closing session is reused.
#[tokio::test]
async fn connection_limit_refuses_with_53300_and_frees_slots() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.max_connections = Some(2)).await;
    let first = proxy.connect(SCRAM).await;
    let _second = proxy.connect(SCRAM).await;
    let err = connect_error(&proxy.conn_str(SCRAM)).await;
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "ddlgate: sorry, too many clients already (ddlgate's limit is 2)"
    );
    drop(first);
    let mut attempts = 0;
    loop {
        match tokio_postgres::connect(&proxy.conn_str(SCRAM), tokio_postgres::NoTls).await {
            Ok(_) => break,
            Err(e) if attempts < 50 && e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("slot was not freed: {e:?}"),
        }
    }
}

/// Two hundred sessions at once, each on its own upstream backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    const SESSIONS: usize = 200;
    let pg = PgServer::shared();
    let proxy = Arc::new(TestProxy::start(pg).await);
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let proxy = Arc::clone(&proxy);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let client = proxy.connect(TRUST).await;
                // Hold every session open until all are connected.
                barrier.wait().await;
                let row = client
                    .query_one("SELECT pg_backend_pid(), $1::int", &[&(i as i32)])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(1), i as i32);
                let pid: i32 = row.get(0);
                barrier.wait().await;
                pid
            })
        })
        .collect();
    let mut pids = HashSet::new();
    for t in tasks {
        pids.insert(t.await.unwrap());
    }
    assert_eq!(pids.len(), SESSIONS);
}

/// A governed request's answer streams: `ALTER TABLE … ADD COLUMN …` followed in the same query
/// string by a SELECT of 200 rows of 1 MB and one row of 150 MB. The client receives every
/// byte, and ddlgate's peak resident memory (its own process, `VmHWM`) stays within a few MB
/// of its bounds (1 MiB held back for a retry, 256 KiB per direction) — not the size of a row.
#[tokio::test]
async fn a_governed_request_with_huge_rows_keeps_memory_bounded() {
    let pg = crate::support::pg::PgServer::shared();
    crate::support::pg::run_direct(
        pg,
        "DROP TABLE IF EXISTS lim_rows; CREATE TABLE lim_rows (a int); ALTER TABLE lim_rows OWNER TO ddlgate_trust",
    )
    .await;
    let gate = crate::support::binary::Binary::serve(
        pg,
        &[
            "--policy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/policies/default.toml"),
        ],
    )
    .await;
    let pid = gate.pid();
    let addr = gate.addr.clone();
    let (mut w, _) =
        crate::support::wire::Wire::startup(&addr, crate::support::pg::TRUST.name, "app").await;
    let baseline = peak_rss_kib(pid);
    w.send(&crate::support::wire::query(
        "ALTER TABLE lim_rows ADD COLUMN b int; \
         SELECT repeat('x', 1048576) FROM generate_series(1, 200); \
         SELECT repeat('y', 150000000)",
    ))
    .await;
    let mut row_bytes = 0usize;
    let mut rows = 0usize;
    let mut summary = Vec::new();
    while let Some(m) = w.recv().await {
        if m.tag == b'D' {
            rows += 1;
            // Column count (2), length (4), then the value.
            row_bytes += m.body.len() - 6;
        } else if m.tag != b'N' {
            summary.push(m.summary());
        }
        if m.tag == b'Z' {
            break;
        }
    }
    assert_eq!(
        summary,
        [
            "C:ALTER TABLE",
            "T",
            "C:SELECT 200",
            "T",
            "C:SELECT 1",
            "Z:I"
        ]
    );
    assert_eq!(rows, 201);
    assert_eq!(row_bytes, 200 * 1_048_576 + 150_000_000);
    let peak = peak_rss_kib(pid);
    assert!(
        peak < baseline + 24 * 1024,
        "ddlgate's peak memory grew from {baseline} KiB to {peak} KiB"
    );
    drop(gate);
}

/// A process's peak resident memory in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}
