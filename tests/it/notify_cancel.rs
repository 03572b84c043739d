//! LISTEN/NOTIFY and query cancellation through ddlgate.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::pg::{PgServer, SCRAM, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// A notification sent by another session reaches a listener connected through ddlgate.
#[tokio::test]
async fn notify_is_delivered_to_a_listener() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (listener, mut connection) = tokio_postgres::connect(&proxy.conn_str(SCRAM), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute("LISTEN ddlgate_events")
        .await
        .unwrap();
    let notifier = pg.connect(SCRAM).await;
    notifier
        .batch_execute("NOTIFY ddlgate_events, 'schema changed'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notification within 5s")
        .unwrap();
    assert_eq!(
        got,
        ("ddlgate_events".to_owned(), "schema changed".to_owned())
    );
}

/// Cancelling `pg_sleep(30)` through ddlgate ends it with 57014 within a second.
#[tokio::test]
async fn cancel_of_a_long_query_answers_57014_within_a_second() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SCRAM).await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let err = client
            .batch_execute("SELECT pg_sleep(30)")
            .await
            .unwrap_err();
        (err.code().cloned(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled_at = Instant::now();
    token.cancel_query(NoTls).await.unwrap();
    let (code, _) = sleeper.await.unwrap();
    assert_eq!(code, Some(tokio_postgres::error::SqlState::QUERY_CANCELED));
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
}

/// The client gets ddlgate's own secret: sent straight to PostgreSQL it cancels nothing, and
/// sent to ddlgate it cancels the right backend.
#[tokio::test]
async fn client_cancel_key_is_ddlgates_own() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, startup) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let key = startup.iter().find(|m| m.tag == b'K').unwrap().body.clone();
    let mut cancel = 16u32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&80_877_102u32.to_be_bytes());
    cancel.extend_from_slice(&key);
    w.send(&wire::query("SELECT pg_backend_pid(), pg_sleep(3)"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut direct = Wire::connect(&pg.addr()).await;
    direct.send(&cancel).await;
    assert!(direct.read_to_end().await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = pg.connect(SUPERUSER).await;
    let pid = i32::from_be_bytes(key[..4].try_into().unwrap());
    let state: Option<String> = admin
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        state.as_deref(),
        Some("active"),
        "the key's pid is the upstream backend and it still runs"
    );

    let mut via_proxy = Wire::connect(&proxy.addr.to_string()).await;
    via_proxy.send(&cancel).await;
    assert!(via_proxy.read_to_end().await.is_empty());
    let reply = w.until_ready().await;
    assert!(reply.iter().any(|m| m.summary() == "E:57014"), "{reply:?}");
}

/// A cancel request with a key no session owns is ignored, like PostgreSQL does.
#[tokio::test]
async fn cancel_with_unknown_key_is_ignored() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut cancel = 16u32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&80_877_102u32.to_be_bytes());
    cancel.extend_from_slice(&[0, 0, 0, 1, 9, 9, 9, 9]);
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&cancel).await;
    assert!(w.read_to_end().await.is_empty());
    // The proxy is still serving.
    let client = proxy.connect(SCRAM).await;
    client.batch_execute("SELECT 1").await.unwrap();
}

/// A client that vanishes while its query runs gets that query cancelled upstream, so nothing
/// keeps running (or holding locks) on its behalf.
#[tokio::test]
async fn vanished_client_query_is_cancelled_upstream() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query("SET application_name = 'vanisher'"))
        .await;
    w.until_ready().await;
    w.send(&wire::query("SELECT pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pg.backends("vanisher", Some("active")).await,
        1,
        "the query runs before the client vanishes"
    );
    drop(w);
    pg.wait_until_no_backends("vanisher").await;
}

/// Cancel requests work even when the connection limit is reached.
#[tokio::test]
async fn cancel_works_at_the_connection_limit() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.max_connections = Some(1)).await;
    let client = proxy.connect(SCRAM).await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(NoTls).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(2), sleeper)
        .await
        .expect("cancelled within 2s")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
}
