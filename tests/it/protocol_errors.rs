//! Bad input ends only the offending session, with a protocol error the client can read; an
//! unreachable upstream is reported with its address.

use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SCRAM, TRUST, connect_error, free_port};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Reads what the proxy says before closing: one FATAL ErrorResponse, then end of stream.
async fn fatal_then_close(w: &mut Wire) -> (String, String) {
    let m = w.recv().await.expect("an ErrorResponse");
    assert_eq!(m.tag, b'E', "{m:?}");
    assert_eq!(m.field(b'S').as_deref(), Some("FATAL"));
    assert!(
        w.recv().await.is_none(),
        "connection closed after the error"
    );
    (m.code().unwrap(), m.field(b'M').unwrap())
}

/// A message whose length is below 4 ends that session with 08P01; another session carries on.
#[tokio::test]
async fn malformed_message_ends_only_its_session() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let bystander = proxy.connect(SCRAM).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(b"Q\0\0\0\x02").await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "08P01");
    assert_eq!(
        message,
        "ddlgate: invalid message: message 'Q' declares a length of 2, less than the minimum of 4"
    );
    let n: i32 = bystander.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 7);
}

/// A message declaring more than `max_message_bytes` is refused from its header alone.
#[tokio::test]
async fn oversized_message_is_refused_before_its_body() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.max_message_bytes = Some(4096)).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(100_000u32).to_be_bytes());
    w.send(&header).await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "08P01");
    assert!(
        message.contains("over the limit of 4096 bytes"),
        "{message}"
    );
}

/// A query just under the limit still works.
#[tokio::test]
async fn message_under_the_limit_passes() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.max_message_bytes = Some(4096)).await;
    let client = proxy.connect(SCRAM).await;
    let text = "y".repeat(3000);
    let sql = format!("SELECT length('{text}')");
    let n: i32 = client.query_one(sql.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(n, 3000);
}

/// Startup packets with an impossible length or an old protocol version are refused.
#[tokio::test]
async fn bad_startup_packets_are_refused() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&20_000u32.to_be_bytes()).await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "08P01");
    assert!(
        message.contains("startup packet declares a length of 20000"),
        "{message}"
    );

    let mut v2 = wire::startup(&[("user", "x")]);
    v2[4..8].copy_from_slice(&(2u32 << 16).to_be_bytes());
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&v2).await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "0A000");
    assert!(
        message.contains("unsupported frontend protocol 2.0"),
        "{message}"
    );
}

/// Something other than a password during authentication is a protocol violation.
#[tokio::test]
async fn unexpected_message_during_authentication() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&wire::startup(&[("user", SCRAM.name), ("database", "app")]))
        .await;
    let sasl = w.recv().await.unwrap();
    assert_eq!(sasl.tag, b'R');
    w.send(&wire::query("SELECT 1")).await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "08P01");
    assert!(message.contains("during authentication"), "{message}");
}

/// An unreachable upstream gives 08006 naming the upstream address.
#[tokio::test]
async fn unreachable_upstream_names_the_address() {
    let pg = PgServer::shared();
    let closed_port = free_port();
    let proxy = TestProxy::start_with(pg, |o| {
        o.upstream = Some(format!("127.0.0.1:{closed_port}"));
    })
    .await;
    let err = connect_error(&proxy.conn_str(SCRAM)).await;
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CONNECTION_FAILURE)
    );
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.starts_with(&format!(
            "ddlgate: could not connect to upstream 127.0.0.1:{closed_port}: "
        )),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
}

/// A client that opens a connection and sends nothing is closed at the startup timeout.
#[tokio::test]
async fn silent_client_is_closed_at_the_startup_timeout() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| o.startup_timeout = Some("300ms".into())).await;
    let started = Instant::now();
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    // Half a startup packet, then silence.
    w.send(&[0, 0, 0]).await;
    assert!(w.read_to_end().await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

/// A startup packet carrying thousands of parameters is handled like any other: the server
/// refuses the unknown settings, the client gets one FATAL error, and nobody else notices.
#[tokio::test]
async fn startup_with_thousands_of_parameters_ends_only_that_session() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let bystander = proxy.connect(SCRAM).await;
    let names: Vec<String> = (0..1_500).map(|n| format!("p{n}")).collect();
    let mut params: Vec<(&str, &str)> = vec![("user", TRUST.name), ("database", "app")];
    params.extend(names.iter().map(|n| (n.as_str(), "v")));
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&wire::startup(&params)).await;
    let m = w.recv().await.expect("an answer");
    assert_eq!(m.tag, b'E', "{m:?}");
    assert_eq!(m.field(b'S').as_deref(), Some("FATAL"));
    assert!(w.recv().await.is_none(), "closed after the error");
    let n: i32 = bystander.query_one("SELECT 8", &[]).await.unwrap().get(0);
    assert_eq!(n, 8);
}

/// Something that is not the Postgres protocol (an HTTP request, where an SSLRequest or a
/// startup packet belongs) is refused from its first bytes.
#[tokio::test]
async fn garbage_instead_of_a_startup_packet_is_refused() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(b"GET / HTTP/1.1\r\nHost: ddlgate\r\n\r\n").await;
    let (code, message) = fatal_then_close(&mut w).await;
    assert_eq!(code, "08P01");
    assert!(
        message.contains("startup packet declares a length of"),
        "{message}"
    );

    // An SSLRequest followed by garbage instead of a TLS handshake or a startup packet.
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    w.send(&[0, 0, 0, 8, 4, 210, 22, 47]).await;
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut w.stream, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"N", "no TLS configured: plain text goes on");
    w.send(&[0xff; 64]).await;
    let rest = w.read_to_end().await;
    assert!(
        rest.first() == Some(&b'E') || rest.is_empty(),
        "an error or a close, nothing else: {rest:?}"
    );
    // The proxy still serves.
    let client = proxy.connect(SCRAM).await;
    client.batch_execute("SELECT 1").await.unwrap();
}

/// Messages whose contents contradict their length (a Query or Parse without its terminators, a
/// Bind cut short, an Execute without its row limit, a Close of neither kind) are refused by
/// ddlgate's validating decoders — FATAL 08P01 naming the message, never reviewed as empty text
/// and forwarded — and a message cut off by a closed socket ends only its own session.
#[tokio::test]
async fn malformed_message_bodies_and_truncation_end_only_their_session() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let bystander = proxy.connect(SCRAM).await;
    for (bad, what) in [
        (wire::raw_frame(b'Q', b"DROP TABLE t"), "Query"),
        (wire::raw_frame(b'P', b"no terminators at all"), "Parse"),
        (wire::raw_frame(b'P', b"\0SELECT 1"), "Parse"),
        // A Bind cut short, after a valid Parse.
        (
            [
                wire::parse("", "SELECT 1"),
                wire::raw_frame(b'B', b"\0\0\0"),
            ]
            .concat(),
            "Bind",
        ),
        (wire::raw_frame(b'E', b"\0"), "Execute"),
        (wire::raw_frame(b'C', b"Xname\0"), "Close"),
    ] {
        let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
        w.send(&[bad.clone(), wire::sync()].concat()).await;
        let (code, message) = fatal_then_close(&mut w).await;
        assert_eq!(code, "08P01", "{bad:?}: {message}");
        assert!(
            message.starts_with(&format!("ddlgate: invalid message: malformed {what}")),
            "{bad:?}: {message}"
        );
    }
    // Half a Query, then the client goes away.
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let query = wire::query("SELECT 'cut short'");
    w.send(&query[..query.len() / 2]).await;
    drop(w);
    let n: i32 = bystander.query_one("SELECT 9", &[]).await.unwrap().get(0);
    assert_eq!(n, 9);
    let fresh = proxy.connect(SCRAM).await;
    fresh.batch_execute("SELECT 1").await.unwrap();
}
