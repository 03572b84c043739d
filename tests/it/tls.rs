//! TLS on both legs: termination towards clients (SSLRequest and direct TLS), `require_tls`,
//! the upstream sslmodes, and SCRAM channel binding offered only where it can work.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::support::pg::{PgServer, SCRAM, TRUST, connect_error};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

fn tls_client(ca: &Path) -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    MakeRustlsConnect::new(config)
}

async fn connect_tls(
    conn: &str,
    ca: &Path,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, tls_client(ca)).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether the upstream backend of this session uses TLS, as the server sees it.
async fn upstream_leg_is_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn with_client_tls(
    pg: &PgServer,
) -> impl FnOnce(&mut ddlgate::internals::config::ServeOptions) + '_ {
    |o| {
        o.tls_cert = Some(pg.certs.proxy_cert.clone());
        o.tls_key = Some(pg.certs.proxy_key.clone());
    }
}

/// A client asking for TLS (sslmode=require, certificate verified) gets it from ddlgate, while
/// the upstream leg stays plaintext; SCRAM still works (channel binding is not offered).
#[tokio::test]
async fn client_tls_termination_with_plaintext_upstream() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, with_client_tls(pg)).await;
    let conn = proxy
        .conn_str(SCRAM)
        .replace("sslmode=disable", "sslmode=require");
    let client = connect_tls(&conn, &pg.certs.ca).await.unwrap();
    assert!(!upstream_leg_is_tls(&client).await);
}

/// Direct TLS (PostgreSQL 17's `sslnegotiation=direct`, ALPN `postgresql`) is accepted.
#[tokio::test]
async fn direct_tls_negotiation() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, with_client_tls(pg)).await;
    let conn = proxy
        .conn_str(SCRAM)
        .replace("sslmode=disable", "sslmode=require sslnegotiation=direct");
    let client = connect_tls(&conn, &pg.certs.ca).await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
}

/// With `require_tls`, plaintext sessions are refused with 28000 and a hint; TLS ones work.
#[tokio::test]
async fn require_tls_refuses_plaintext_sessions() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        with_client_tls(pg)(o);
        o.require_tls = Some(true);
    })
    .await;
    let err = connect_error(&proxy.conn_str(SCRAM)).await;
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
    let db = err.as_db_error().unwrap();
    assert_eq!(
        db.message(),
        "ddlgate: this server accepts only TLS connections"
    );
    assert!(db.hint().unwrap().contains("sslmode=require"));
    let conn = proxy
        .conn_str(SCRAM)
        .replace("sslmode=disable", "sslmode=require");
    connect_tls(&conn, &pg.certs.ca).await.unwrap();
}

/// `upstream_tls = require` encrypts the upstream leg.
#[tokio::test]
async fn upstream_tls_require_encrypts_the_upstream_leg() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.upstream_tls = Some(ddlgate::internals::config::UpstreamTlsMode::Require);
    })
    .await;
    let client = proxy.connect(SCRAM).await;
    assert!(upstream_leg_is_tls(&client).await);
}

/// `upstream_tls = verify-full` with the right CA works; with a CA that did not sign the
/// server's certificate the client gets 08006 naming the upstream and the TLS failure.
#[tokio::test]
async fn upstream_tls_verify_full_checks_the_chain() {
    use ddlgate::internals::config::UpstreamTlsMode;
    let pg = PgServer::shared();
    let good = TestProxy::start_with(pg, |o| {
        o.upstream_tls = Some(UpstreamTlsMode::VerifyFull);
        o.upstream_tls_ca = Some(pg.certs.ca.clone());
    })
    .await;
    assert!(upstream_leg_is_tls(&good.connect(SCRAM).await).await);

    let bad = TestProxy::start_with(pg, |o| {
        o.upstream_tls = Some(UpstreamTlsMode::VerifyFull);
        o.upstream_tls_ca = Some(pg.certs.proxy_cert.clone());
    })
    .await;
    let err = connect_error(&bad.conn_str(SCRAM)).await;
    assert_eq!(err.code(), Some(&SqlState::CONNECTION_FAILURE));
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.starts_with(&format!(
            "ddlgate: TLS handshake with upstream {} failed",
            pg.addr()
        )),
        "{message}"
    );
}

/// verify-ca accepts a certificate for another host name; verify-full refuses it.
#[tokio::test]
async fn upstream_verify_ca_ignores_the_name_and_verify_full_does_not() {
    use ddlgate::internals::config::UpstreamTlsMode;
    let pg = PgServer::start_with(&[
        "ssl_cert_file = '{dir}/wrong-name.crt'",
        "ssl_key_file = '{dir}/wrong-name.key'",
    ]);
    let verify_ca = TestProxy::start_with(&pg, |o| {
        o.upstream_tls = Some(UpstreamTlsMode::VerifyCa);
        o.upstream_tls_ca = Some(pg.certs.ca.clone());
    })
    .await;
    assert!(upstream_leg_is_tls(&verify_ca.connect(SCRAM).await).await);
    let verify_full = TestProxy::start_with(&pg, |o| {
        o.upstream_tls = Some(UpstreamTlsMode::VerifyFull);
        o.upstream_tls_ca = Some(pg.certs.ca.clone());
    })
    .await;
    let err = connect_error(&verify_full.conn_str(SCRAM)).await;
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("certificate not valid for name \"127.0.0.1\""),
        "{message}"
    );
}

/// Both legs on TLS with ddlgate's own certificate: channel binding cannot work, and a client
/// that supports it is told so clearly instead of getting the server's downgrade error; with
/// `channel_binding=disable` the same client logs in.
#[tokio::test]
async fn channel_binding_with_a_different_certificate_is_explained() {
    use ddlgate::internals::config::UpstreamTlsMode;
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        with_client_tls(pg)(o);
        o.upstream_tls = Some(UpstreamTlsMode::Require);
    })
    .await;
    let conn = proxy
        .conn_str(SCRAM)
        .replace("sslmode=disable", "sslmode=require");
    let err = connect_tls(&conn, &pg.certs.ca).await.err().unwrap();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    assert!(db.message().contains("channel binding"), "{}", db.message());
    assert!(db.hint().unwrap().contains("channel_binding=disable"));

    let client = connect_tls(&format!("{conn} channel_binding=disable"), &pg.certs.ca)
        .await
        .unwrap();
    assert!(upstream_leg_is_tls(&client).await);
}

/// When ddlgate presents the upstream's own certificate, SCRAM-SHA-256-PLUS is offered and a
/// client that requires channel binding logs in through it.
#[tokio::test]
async fn channel_binding_passes_through_with_the_upstream_certificate() {
    use ddlgate::internals::config::UpstreamTlsMode;
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.tls_cert = Some(pg.certs.server_cert.clone());
        o.tls_key = Some(pg.certs.server_key.clone());
        o.upstream_tls = Some(UpstreamTlsMode::Require);
    })
    .await;
    let conn = proxy
        .conn_str(SCRAM)
        .replace("sslmode=disable", "sslmode=require channel_binding=require");
    let client = connect_tls(&conn, &pg.certs.ca).await.unwrap();
    assert!(upstream_leg_is_tls(&client).await);
}

/// Without a certificate, SSLRequest is answered `N` and the client continues in plaintext;
/// GSSENCRequest is always answered `N`.
#[tokio::test]
async fn encryption_requests_are_declined_when_not_available() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut w = Wire::connect(&proxy.addr.to_string()).await;
    for code in [80_877_104u32, 80_877_103] {
        let mut request = 8u32.to_be_bytes().to_vec();
        request.extend_from_slice(&code.to_be_bytes());
        w.send(&request).await;
        let mut answer = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut w.stream, &mut answer)
            .await
            .unwrap();
        assert_eq!(answer, *b"N");
    }
    w.send(&wire::startup(&[("user", TRUST.name), ("database", "app")]))
        .await;
    assert_eq!(w.until_ready().await.last().unwrap().summary(), "Z:I");
}
