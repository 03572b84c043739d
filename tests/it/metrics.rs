//! Metrics and health endpoints: a scripted session moves each counter by exactly the
//! expected amount; /healthz and /readyz answer as documented.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::pg::{PgServer, SUPERUSER};
use crate::support::proxy::TestProxy;

/// Status code and body of `GET path`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// The value of one sample line (`name{labels} value`), 0 when absent; the samples checked
/// here are whole numbers.
pub(crate) fn sample(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0, |v| v.round() as i64)
}

#[tokio::test]
async fn a_scripted_session_moves_each_counter_exactly() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[timeouts.brief]\nlock_timeout = \"200ms\"\nstatement_timeout = \"5s\"\n[retry]\nattempts = 2\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\n",
    )
    .unwrap();
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.policy = Some(policy.clone());
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let direct = pg.connect(SUPERUSER).await;
    direct
        .batch_execute("DROP TABLE IF EXISTS mx_orders; CREATE TABLE mx_orders AS SELECT g AS id, 'n' AS note FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let (_, before) = get(metrics, "/metrics").await;
    assert_eq!(sample(&before, "ddlgate_connections_total"), 0);

    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("CREATE INDEX mx_orders_id ON mx_orders (id)")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE mx_orders RENAME COLUMN note TO comment")
        .await
        .unwrap_err();
    client
        .batch_execute("ALTER TABLE mx_orders ADD COLUMN a int")
        .await
        .unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
    direct
        .batch_execute("BEGIN; LOCK TABLE mx_orders IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let err = client
        .batch_execute("ALTER TABLE mx_orders ADD COLUMN b int")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55P03");
    direct.batch_execute("ROLLBACK").await.unwrap();

    let (_, during) = get(metrics, "/metrics").await;
    assert_eq!(sample(&during, "ddlgate_connections_active"), 1);
    drop(client);
    let started = Instant::now();
    let text = loop {
        let (status, text) = get(metrics, "/metrics").await;
        assert_eq!(status, 200);
        if sample(&text, "ddlgate_connections_active") == 0 {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "session not closed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&text, "ddlgate_connections_total"), 1, "{text}");
    assert_eq!(sample(&text, "ddlgate_connections_rejected_total"), 0);
    assert_eq!(
        sample(
            &text,
            "ddlgate_statements_total{kind=\"CREATE INDEX\",action=\"rewrite\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ddlgate_rewrites_total{rule=\"create-index-nonconcurrent\"}"
        ),
        1
    );
    assert_eq!(
        sample(&text, "ddlgate_rejections_total{rule=\"rename-column\"}"),
        1
    );
    assert_eq!(
        sample(
            &text,
            "ddlgate_statements_total{kind=\"ALTER TABLE\",action=\"allow\"}"
        ),
        2,
        "ADD COLUMN a and the timed-out ADD COLUMN b:\n{text}"
    );
    assert_eq!(sample(&text, "ddlgate_lock_timeout_retries_total"), 2);
    assert_eq!(
        sample(&text, "ddlgate_ddl_duration_seconds_count"),
        4,
        "{text}"
    );
    assert!(sample(&text, "ddlgate_bytes_in_total") > 0);
    assert!(sample(&text, "ddlgate_bytes_out_total") > 0);

    assert_eq!(get(metrics, "/healthz").await.0, 200);
    assert_eq!(get(metrics, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(metrics, "/nothing").await.0, 404);
}

#[tokio::test]
async fn readiness_follows_the_upstream_and_the_limit_is_counted() {
    let pg = PgServer::shared();
    let dead = crate::support::pg::free_port();
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.upstream = Some(format!("127.0.0.1:{dead}"));
    })
    .await;
    let metrics = proxy.metrics.unwrap();
    let (status, body) = get(metrics, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("unreachable"), "{body}");
    assert_eq!(get(metrics, "/healthz").await.0, 200);
    let _ = crate::support::pg::connect_error(&proxy.conn_str(SUPERUSER)).await;
    let (_, text) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(&text, "ddlgate_upstream_connect_errors_total"),
        1,
        "{text}"
    );

    let limited = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
        o.max_connections = Some(1);
    })
    .await;
    let first = limited.connect(SUPERUSER).await;
    let _ = crate::support::pg::connect_error(&limited.conn_str(SUPERUSER)).await;
    let (_, text) = get(limited.metrics.unwrap(), "/metrics").await;
    assert_eq!(
        sample(&text, "ddlgate_connections_rejected_total"),
        1,
        "{text}"
    );
    drop(first);
}
