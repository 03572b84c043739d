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
