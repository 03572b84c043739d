//! Ordinary traffic through ddlgate gives the same results, errors and notices as a direct
//! connection, and session state (ParameterStatus, transaction status) passes through.

use crate::support::pg::{PgServer, SCRAM, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Simple-protocol results through the proxy equal those of a direct connection.
#[tokio::test]
async fn simple_query_results_match_a_direct_connection() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let sql = "SELECT 1 AS one, 'x'::text AS t, NULL::int AS n; \
               SELECT g, md5(g::text) FROM generate_series(1, 50) g; \
               SHOW server_version";
    let direct = pg.connect(SCRAM).await.simple_query(sql).await.unwrap();
    let proxied = proxy.connect(SCRAM).await.simple_query(sql).await.unwrap();
    let render = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| {
        msgs.into_iter()
            .map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
                _ => "other".into(),
            })
            .collect::<Vec<_>>()
    };
    let direct = render(direct);
    assert_eq!(
        direct.iter().filter(|l| l.starts_with("complete")).count(),
        3
    );
    assert!(direct.contains(&"1|x|NULL".to_owned()));
    assert!(direct.contains(&"50|c0c7c76d30bd3dcaefc96f40275bdc0a".to_owned()));
    assert_eq!(render(proxied), direct);
}

/// A server error and a notice reach the client with the same SQLSTATE and text, and the
/// session remains usable.
#[tokio::test]
async fn errors_and_notices_pass_through_unchanged() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let steps = [
        wire::query("SELECT 1/0"),
        wire::query("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$"),
        wire::query("SELECT * FROM no_such_table_xyz"),
        wire::query("SELECT 2"),
    ];
    let mut transcripts = Vec::new();
    for addr in [pg.addr(), proxy.addr.to_string()] {
        let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
        let mut out = Vec::new();
        for q in &steps {
            w.send(q).await;
            for m in w.until_ready().await {
                out.push((m.summary(), m.field(b'M')));
            }
        }
        transcripts.push(out);
    }
    assert_eq!(transcripts[1], transcripts[0]);
    assert!(transcripts[0].contains(&("E:22012".into(), Some("division by zero".into()))));
    assert!(transcripts[0].contains(&("N:00000".into(), Some("hello 42".into()))));
}

/// ParameterStatus messages from startup and from a later SET reach the client, and the
/// transaction status in ReadyForQuery follows BEGIN, an error, and ROLLBACK.
#[tokio::test]
async fn parameter_status_and_transaction_status_pass_through() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, startup) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let params: Vec<String> = startup
        .iter()
        .filter(|m| m.tag == b'S')
        .map(|m| {
            String::from_utf8_lossy(&m.body)
                .split('\0')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for p in [
        "server_version",
        "client_encoding",
        "standard_conforming_strings",
        "TimeZone",
    ] {
        assert!(params.iter().any(|x| x == p), "{p} missing from {params:?}");
    }
    assert_eq!(startup.iter().filter(|m| m.tag == b'K').count(), 1);

    w.send(&wire::query("SET application_name = 'migrator-7'"))
        .await;
    let reply = w.until_ready().await;
    assert!(
        reply
            .iter()
            .any(|m| m.tag == b'S' && m.body.starts_with(b"application_name\0migrator-7\0")),
        "{reply:?}"
    );
    let mut statuses = Vec::new();
    for q in ["BEGIN", "SELECT 1/0", "SELECT 1", "ROLLBACK"] {
        w.send(&wire::query(q)).await;
        statuses.push(w.until_ready().await.last().unwrap().summary());
    }
    assert_eq!(statuses, ["Z:T", "Z:E", "Z:E", "Z:I"]);
}

/// A client that closes its socket without Terminate leaves no backend behind.
#[tokio::test]
async fn client_closing_without_terminate_ends_the_upstream_backend() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query("SET application_name = 'vanishing-client'"))
        .await;
    w.until_ready().await;
    assert_eq!(
        pg.backends("vanishing-client", None).await,
        1,
        "the backend exists before"
    );
    drop(w);
    pg.wait_until_no_backends("vanishing-client").await;
}

/// Terminate is forwarded and the connection closes cleanly.
#[tokio::test]
async fn terminate_closes_the_session() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::terminate()).await;
    assert!(w.read_to_end().await.is_empty());
}

/// When the server ends a session itself (pg_terminate_backend), the client gets the server's
/// own FATAL, and no second one from ddlgate; new sessions still work.
#[tokio::test]
async fn server_terminated_session_gets_the_servers_error_only() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, startup) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let key = startup.iter().find(|m| m.tag == b'K').unwrap();
    let pid = i32::from_be_bytes(key.body[..4].try_into().unwrap());
    let admin = pg.connect(SUPERUSER).await;
    admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let bye = w.recv().await.expect("the server's goodbye");
    assert_eq!(bye.summary(), "E:57P01");
    assert_eq!(
        bye.field(b'M').as_deref(),
        Some("terminating connection due to administrator command")
    );
    assert!(w.recv().await.is_none(), "nothing after the server's FATAL");
    proxy
        .connect(SCRAM)
        .await
        .batch_execute("SELECT 1")
        .await
        .unwrap();
}
