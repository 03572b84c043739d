//! Graceful shutdown: stop accepting, close sessions as they become idle, and close the rest at
//! the drain deadline with 57P01.

use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Draining closes an idle session at once with 57P01, lets a session in a transaction finish
/// it, then closes that one too; new connections are refused.
#[tokio::test]
async fn drain_closes_idle_sessions_and_waits_for_open_transactions() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.shutdown_timeout = Some("10s".into())).await;
    let addr = proxy.addr.to_string();
    let (mut idle, _) = Wire::startup(&addr, TRUST.name, "app").await;
    let (mut busy, _) = Wire::startup(&addr, TRUST.name, "app").await;
    busy.send(&wire::query("BEGIN; CREATE TEMP TABLE d (x int)"))
        .await;
    assert_eq!(busy.until_ready().await.last().unwrap().summary(), "Z:T");

    proxy.shutdown.drain.cancel();
    let bye = idle.recv().await.expect("a goodbye for the idle session");
    assert_eq!(bye.summary(), "E:57P01");
    assert_eq!(
        bye.field(b'M').unwrap(),
        "ddlgate: terminating connection because ddlgate is shutting down"
    );
    assert!(idle.recv().await.is_none());

    // The transaction can still be finished.
    busy.send(&wire::query("INSERT INTO d VALUES (1)")).await;
    assert_eq!(busy.until_ready().await.last().unwrap().summary(), "Z:T");
    busy.send(&wire::query("COMMIT")).await;
    let reply: Vec<String> = busy
        .until_ready()
        .await
        .iter()
        .map(|m| m.summary())
        .collect();
    assert_eq!(reply, ["C:COMMIT", "Z:I"]);
    assert_eq!(busy.recv().await.unwrap().summary(), "E:57P01");
    assert!(busy.recv().await.is_none());

    // The listener is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    proxy.drain_and_wait().await;
}

/// At the drain deadline a session still running a query is closed with 57P01 and its query
/// is cancelled upstream.
#[tokio::test]
async fn drain_deadline_closes_busy_sessions_and_cancels_their_queries() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.shutdown_timeout = Some("500ms".into())).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query("SET application_name = 'drain-deadline'"))
        .await;
    w.until_ready().await;
    w.send(&wire::query("SELECT pg_sleep(20)")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    proxy.shutdown.drain.cancel();
    let bye = w.recv().await.expect("a goodbye at the deadline");
    let waited = started.elapsed();
    assert_eq!(bye.summary(), "E:57P01");
    assert_eq!(
        bye.field(b'D').as_deref(),
        Some("The drain deadline passed before the session became idle.")
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    pg.wait_until_no_backends("drain-deadline").await;
}

/// The binary drains on SIGTERM and exits 0: an idle client is told why.
#[tokio::test]
async fn binary_exits_cleanly_on_sigterm() {
    let pg = PgServer::shared();
    let gate = crate::support::binary::Binary::serve(pg, &[]).await;
    let mut w = Wire::startup(&gate.addr, TRUST.name, "app").await.0;
    gate.signal("TERM");
    assert_eq!(w.recv().await.unwrap().summary(), "E:57P01");
    let (status, log, _) = gate.exit().await;
    assert!(status.success(), "{status:?}: {log}");
}
