//! Connections to the upstream PostgreSQL server: TCP, the `SSLRequest` exchange and TLS, and
//! the out-of-band connection that carries a `CancelRequest`.

use std::io;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{ServeConfig, Upstream};
use crate::protocol::backend::BackendKey;
use crate::protocol::startup::{encode_cancel_request, encode_ssl_request};
use crate::protocol::tls::UpstreamTlsMode;

use super::stream::Stream;
use super::tune_socket;

/// How long a cancel request may take end to end.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The upstream could not be reached or secured.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed (refused, unreachable, DNS failure).
    #[error("could not connect to upstream {upstream}: {error}")]
    Connect {
        upstream: Upstream,
        error: io::Error,
    },
    /// Nothing answered within `connect_timeout`.
    #[error("could not connect to upstream {upstream}: no answer within {}", crate::config::format_duration(*timeout))]
    Timeout {
        upstream: Upstream,
        timeout: Duration,
    },
    /// The server answered the `SSLRequest` with something other than `S`.
    #[error("upstream {upstream} does not accept TLS, but upstream_tls = \"{mode}\"")]
    TlsRefused {
        upstream: Upstream,
        mode: UpstreamTlsMode,
    },
    /// The TLS handshake failed (certificate rejected, protocol mismatch, …).
    #[error("TLS handshake with upstream {upstream} failed: {error}")]
    Tls {
        upstream: Upstream,
        error: io::Error,
    },
    /// The host cannot be used as a TLS server name.
    #[error("upstream host {0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// An open upstream connection and what its TLS handshake revealed.
#[derive(Debug)]
pub(crate) struct Connected {
    /// The stream, encrypted or not.
    pub stream: Stream,
    /// The end-entity certificate the server presented, when TLS is on.
    pub certificate: Option<CertificateDer<'static>>,
}

/// Opens a connection to the upstream, with TLS when configured, within `connect_timeout`.
pub(crate) async fn connect(config: &ServeConfig) -> Result<Connected, UpstreamError> {
    let upstream = &config.upstream;
    match timeout(config.connect_timeout, connect_inner(config)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout {
            upstream: upstream.clone(),
            timeout: config.connect_timeout,
        }),
    }
}

async fn connect_inner(config: &ServeConfig) -> Result<Connected, UpstreamError> {
    let upstream = &config.upstream;
    let connect_err = |error| UpstreamError::Connect {
        upstream: upstream.clone(),
        error,
    };
    let mut tcp = TcpStream::connect((upstream.host.as_str(), upstream.port))
        .await
        .map_err(connect_err)?;
    tune_socket(&tcp, config.tcp_keepalive);
    let Some(tls) = &config.upstream_tls else {
        return Ok(Connected {
            stream: Stream::Tcp(tcp),
            certificate: None,
        });
    };
    tcp.write_all(&encode_ssl_request())
        .await
        .map_err(connect_err)?;
    let answer = tcp.read_u8().await.map_err(connect_err)?;
    if answer != b'S' {
        return Err(UpstreamError::TlsRefused {
            upstream: upstream.clone(),
            mode: config.upstream_tls_mode,
        });
    }
    let name = ServerName::try_from(upstream.host.clone())
        .map_err(|_| UpstreamError::ServerName(upstream.host.clone()))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|error| UpstreamError::Tls {
            upstream: upstream.clone(),
            error,
        })?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned());
    Ok(Connected {
        stream: Stream::ClientTls(Box::new(stream)),
        certificate,
    })
}

/// Sends a `CancelRequest` for the upstream backend `key` and waits until the server has
/// processed it (it closes the connection), as libpq does, so a client that waits for our
/// close knows the cancel has landed.
pub(crate) async fn cancel(config: &ServeConfig, key: &BackendKey) -> Result<(), UpstreamError> {
    let result = timeout(CANCEL_TIMEOUT, async {
        let mut conn = connect(config).await?;
        let io_err = |error| UpstreamError::Connect {
            upstream: config.upstream.clone(),
            error,
        };
        conn.stream
            .write_all(&encode_cancel_request(key))
            .await
            .map_err(io_err)?;
        conn.stream.flush().await.map_err(io_err)?;
        let mut sink = [0u8; 64];
        // The server sends nothing and closes; an error here means it closed abruptly,
        // which is just as final.
        while matches!(conn.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        Ok(())
    })
    .await;
    result.unwrap_or_else(|_| {
        Err(UpstreamError::Timeout {
            upstream: config.upstream.clone(),
            timeout: CANCEL_TIMEOUT,
        })
    })
}
