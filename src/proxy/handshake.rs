//! The startup phase of a session: TLS negotiation with the client (`SSLRequest`, direct TLS,
//! `GSSENCRequest` declined), the startup packet, and the authentication exchange relayed
//! between client and server without ddlgate ever seeing a password.
//!
//! Authentication passes through untouched for trust, password, md5, SCRAM-SHA-256 and GSS,
//! with two interventions:
//! - `BackendKeyData` is replaced by a key of ddlgate's own (see [`super::cancel`]);
//! - `SCRAM-SHA-256-PLUS` is offered only where channel binding can work. The binding is a
//!   hash of the server certificate the client sees, which is ddlgate's, so it can only match
//!   when ddlgate presents the upstream's very certificate. Where it cannot, a libpq client on
//!   TLS would announce "I support binding" (`y`), which a TLS-using server rejects as a
//!   downgrade; ddlgate answers that case with an explicit error instead of the server's
//!   puzzling one.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ServeConfig;
use crate::protocol::backend::{
    self, BackendKey, SCRAM_SHA_256_PLUS, TxStatus, auth, encode_authentication_sasl,
};
use crate::protocol::frame::{HEADER_LEN, read_header, split_cstr};
use crate::protocol::frontend::tag as fe;
use crate::protocol::reply;
use crate::protocol::startup::{self, StartupMessage, StartupPacket, TLS_HANDSHAKE_RECORD};
use crate::protocol::tls::ALPN_POSTGRESQL;
use crate::protocol::{ProtocolError, error::Tag};

use super::cancel::client_key_for;
use super::error::SessionError;
use super::stream::Stream;

/// The largest single message accepted during authentication (GSS tokens are the largest).
const MAX_AUTH_MESSAGE: usize = 1 << 20;

/// What a new client connection turned out to be.
#[derive(Debug)]
pub(crate) enum Opening {
    /// A session: the negotiated stream and its startup message.
    Session {
        /// The client stream, TLS or not.
        client: Stream,
        /// The client's startup message.
        startup: StartupMessage,
    },
    /// A cancel request for another session.
    Cancel(BackendKey),
    /// The client closed before sending anything.
    Closed,
}

/// A failed negotiation, with the client stream when it can still be told why.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Where to send the error, if anywhere.
    pub client: Option<Stream>,
    /// What went wrong.
    pub error: SessionError,
}

impl Failure {
    fn new(client: Option<Stream>, error: SessionError) -> Self {
        Self { client, error }
    }
}

/// Negotiates encryption with a new client and reads its startup packet.
pub(crate) async fn negotiate(
    mut tcp: TcpStream,
    config: &ServeConfig,
) -> Result<Opening, Failure> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Ok(Opening::Closed),
        Ok(_) => {}
        Err(e) => return Err(Failure::new(None, SessionError::ClientIo(e))),
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        let Some(tls) = &config.client_tls else {
            // Nothing sensible can be said to a TLS handshake without TLS.
            return Err(Failure::new(
                None,
                SessionError::ClientProtocol(ProtocolError::Unexpected {
                    tag: Tag(TLS_HANDSHAKE_RECORD),
                    context: "(direct TLS) but no tls_cert is configured",
                }),
            ));
        };
        let stream = tokio_rustls::TlsAcceptor::from(tls.config.clone())
            .accept(tcp)
            .await
            .map_err(|e| Failure::new(None, SessionError::ClientTls(e)))?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
            return Err(Failure::new(None, SessionError::MissingAlpn));
        }
        return after_tls(Stream::ServerTls(Box::new(stream))).await;
    }
    // PostgreSQL lets a client try GSSAPI encryption, then TLS, then plaintext, in that order.
    let mut gssenc_declined = false;
    loop {
        let packet = match read_startup_packet(&mut tcp).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Opening::Closed),
            Err(e) => return Err(Failure::new(Some(Stream::Tcp(tcp)), e)),
        };
        match packet {
            StartupPacket::GssEncRequest if !gssenc_declined => {
                gssenc_declined = true;
                tcp.write_all(b"N")
                    .await
                    .map_err(|e| Failure::new(None, SessionError::ClientIo(e)))?;
            }
            StartupPacket::SslRequest => {
                let Some(tls) = &config.client_tls else {
                    tcp.write_all(b"N")
                        .await
                        .map_err(|e| Failure::new(None, SessionError::ClientIo(e)))?;
                    continue;
                };
                tcp.write_all(b"S")
                    .await
                    .map_err(|e| Failure::new(None, SessionError::ClientIo(e)))?;
                let stream = tokio_rustls::TlsAcceptor::from(tls.config.clone())
                    .accept(tcp)
                    .await
                    .map_err(|e| Failure::new(None, SessionError::ClientTls(e)))?;
                return after_tls(Stream::ServerTls(Box::new(stream))).await;
            }
            StartupPacket::GssEncRequest => {
                return Err(Failure::new(
                    Some(Stream::Tcp(tcp)),
                    SessionError::ClientProtocol(ProtocolError::Unexpected {
                        tag: Tag(b'G'),
                        context: "(a second GSSENCRequest)",
                    }),
                ));
            }
            StartupPacket::Cancel(key) => return Ok(Opening::Cancel(key)),
            StartupPacket::Startup(startup) => {
                return Ok(Opening::Session {
                    client: Stream::Tcp(tcp),
                    startup,
                });
            }
        }
    }
}

/// After TLS is up, the next packet must open a session or cancel one.
async fn after_tls(mut client: Stream) -> Result<Opening, Failure> {
    match read_startup_packet(&mut client).await {
        Ok(Some(StartupPacket::Startup(startup))) => Ok(Opening::Session { client, startup }),
        Ok(Some(StartupPacket::Cancel(key))) => Ok(Opening::Cancel(key)),
        Ok(Some(_)) => Err(Failure::new(
            Some(client),
            SessionError::ClientProtocol(ProtocolError::Unexpected {
                tag: Tag(b'S'),
                context: "(an encryption request inside TLS)",
            }),
        )),
        Ok(None) => Ok(Opening::Closed),
        Err(e) => Err(Failure::new(Some(client), e)),
    }
}

/// Reads one startup-phase packet; `None` if the client closed before its first byte.
async fn read_startup_packet<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<StartupPacket>, SessionError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let slot = prefix.get_mut(got..).unwrap_or_default();
        match s.read(slot).await.map_err(SessionError::ClientIo)? {
            0 if got == 0 => return Ok(None),
            0 => return Err(SessionError::ClientGone),
            n => got += n,
        }
    }
    let len = startup::packet_len(prefix).map_err(SessionError::ClientProtocol)?;
    let mut packet = vec![0u8; len];
    packet
        .get_mut(..4)
        .unwrap_or_default()
        .copy_from_slice(&prefix);
    s.read_exact(packet.get_mut(4..).unwrap_or_default())
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SessionError::ClientGone,
            _ => SessionError::ClientIo(e),
        })?;
    startup::decode(Bytes::from(packet))
        .map(Some)
        .map_err(SessionError::ClientProtocol)
}

/// Reads one whole message into `buf` and splits it off; `None` on a clean end of stream.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<(u8, Bytes)>, ReadError> {
    loop {
        if let Some(header) = read_header(buf, limit).map_err(ReadError::Protocol)? {
            if buf.len() >= header.frame_len {
                return Ok(Some((header.tag, buf.split_to(header.frame_len).freeze())));
            }
            buf.reserve(header.frame_len - buf.len());
        } else {
            buf.reserve(4096);
        }
        if s.read_buf(buf).await.map_err(ReadError::Io)? == 0 {
            return Ok(None);
        }
    }
}

/// Why [`read_message`] failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The transport failed.
    Io(std::io::Error),
    /// The bytes were not a valid message.
    Protocol(ProtocolError),
}

/// Whether SCRAM channel binding can be offered to this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelBinding {
    /// Both legs use TLS and ddlgate presents the upstream's own certificate: the binding data
    /// the client computes is what the server expects.
    PassThrough,
    /// Binding cannot work; `upstream_tls` tells whether the server would insist on it.
    Unavailable {
        /// Whether the upstream leg is TLS.
        upstream_tls: bool,
    },
}

/// The outcome of a successful authentication relay.
#[derive(Debug)]
pub(crate) struct Established {
    /// The server's cancel key, if it sent one.
    pub upstream_key: Option<BackendKey>,
    /// The key ddlgate gave the client instead.
    pub client_key: Option<BackendKey>,
    /// Every `ParameterStatus` the server sent during startup.
    pub parameters: Vec<(String, String)>,
    /// Transaction status of the first `ReadyForQuery`.
    pub tx_status: TxStatus,
    /// Client bytes read past the last authentication message.
    pub client_leftover: BytesMut,
    /// Server bytes read past the first `ReadyForQuery`.
    pub upstream_leftover: BytesMut,
}

/// Sends the startup message upstream and relays authentication until the server's first
/// `ReadyForQuery`, which the client receives too.
pub(crate) async fn authenticate(
    client: &mut Stream,
    upstream: &mut Stream,
    startup: &StartupMessage,
    binding: ChannelBinding,
) -> Result<Established, SessionError> {
    upstream
        .write_all(&startup.raw)
        .await
        .map_err(SessionError::UpstreamIo)?;
    let mut from_upstream = BytesMut::with_capacity(4096);
    let mut from_client = BytesMut::new();
    let mut to_client = BytesMut::with_capacity(1024);
    let mut established = Established {
        upstream_key: None,
        client_key: None,
        parameters: Vec::new(),
        tx_status: TxStatus::Idle,
        client_leftover: BytesMut::new(),
        upstream_leftover: BytesMut::new(),
    };
    let mut offered_plus = false;
    loop {
        let (tag, frame) = match read_message(upstream, &mut from_upstream, MAX_AUTH_MESSAGE).await
        {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(SessionError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Err(ReadError::Io(e)) => return Err(SessionError::UpstreamIo(e)),
            Err(ReadError::Protocol(e)) => return Err(SessionError::UpstreamProtocol(e)),
        };
        let body = frame.get(HEADER_LEN..).unwrap_or_default();
        match tag {
            backend::tag::AUTHENTICATION => {
                let code =
                    backend::authentication_code(body).map_err(SessionError::UpstreamProtocol)?;
                if code == auth::SASL {
                    let mechanisms =
                        backend::sasl_mechanisms(body).map_err(SessionError::UpstreamProtocol)?;
                    let offered: Vec<&[u8]> = mechanisms
                        .iter()
                        .copied()
                        .filter(|m| {
                            binding == ChannelBinding::PassThrough || *m != SCRAM_SHA_256_PLUS
                        })
                        .collect();
                    offered_plus = offered.contains(&SCRAM_SHA_256_PLUS);
                    encode_authentication_sasl(&offered, &mut to_client);
                } else {
                    to_client.extend_from_slice(&frame);
                }
                if auth::expects_client_reply(code) {
                    write_out(client, &mut to_client).await?;
                    let reply = read_client_auth_reply(client, &mut from_client).await?;
                    if code == auth::SASL && !offered_plus {
                        check_gs2_header(&reply, binding)?;
                    }
                    upstream
                        .write_all(&reply)
                        .await
                        .map_err(SessionError::UpstreamIo)?;
                }
            }
            backend::tag::BACKEND_KEY_DATA => {
                let upstream_key = BackendKey::from_backend_key_data(body)
                    .map_err(SessionError::UpstreamProtocol)?;
                let client_key = client_key_for(&upstream_key).map_err(SessionError::Random)?;
                client_key.encode_backend_key_data(&mut to_client);
                established.upstream_key = Some(upstream_key);
                established.client_key = Some(client_key);
            }
            backend::tag::PARAMETER_STATUS => {
                let (name, value) =
                    backend::parameter_status(body).map_err(SessionError::UpstreamProtocol)?;
                established.parameters.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
                to_client.extend_from_slice(&frame);
            }
            backend::tag::ERROR_RESPONSE => {
                to_client.extend_from_slice(&frame);
                write_out(client, &mut to_client).await?;
                let fields = reply::Fields::decode(body).map_err(SessionError::UpstreamProtocol)?;
                return Err(SessionError::Refused {
                    code: fields.code(),
                    message: fields.message(),
                });
            }
            backend::tag::READY_FOR_QUERY => {
                established.tx_status =
                    TxStatus::from_ready_for_query(body).map_err(SessionError::UpstreamProtocol)?;
                to_client.extend_from_slice(&frame);
                write_out(client, &mut to_client).await?;
                established.client_leftover = from_client;
                established.upstream_leftover = from_upstream;
                return Ok(established);
            }
            // NegotiateProtocolVersion, NoticeResponse and anything newer pass through.
            _ => to_client.extend_from_slice(&frame),
        }
    }
}

async fn write_out(client: &mut Stream, out: &mut BytesMut) -> Result<(), SessionError> {
    client
        .write_all(out)
        .await
        .map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)?;
    out.clear();
    Ok(())
}

async fn read_client_auth_reply(
    client: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Bytes, SessionError> {
    match read_message(client, buf, MAX_AUTH_MESSAGE).await {
        Ok(Some((fe::PASSWORD, frame))) => Ok(frame),
        // libpq closes (or says Terminate) when it has no password to give.
        Ok(Some((fe::TERMINATE, _)) | None) => Err(SessionError::ClientGone),
        Ok(Some((tag, _))) => Err(SessionError::ClientProtocol(ProtocolError::Unexpected {
            tag: Tag(tag),
            context: "during authentication (expected a password or SASL response)",
        })),
        Err(ReadError::Io(e)) => Err(SessionError::ClientIo(e)),
        Err(ReadError::Protocol(e)) => Err(SessionError::ClientProtocol(e)),
    }
}

/// Refuses a `SASLInitialResponse` that the server is bound to reject as a channel-binding
/// downgrade (gs2 flag `y` over a TLS upstream), with an explanation instead.
fn check_gs2_header(frame: &[u8], binding: ChannelBinding) -> Result<(), SessionError> {
    let ChannelBinding::Unavailable { upstream_tls: true } = binding else {
        return Ok(());
    };
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    let Some((_mechanism, rest)) = split_cstr(body) else {
        return Ok(());
    };
    // Int32 length of the client-first-message, then the message, which opens with the flag.
    if rest.get(4) == Some(&b'y') {
        return Err(SessionError::ChannelBinding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_initial(flag: &str) -> Vec<u8> {
        let first = format!("{flag},,n=,r=abc");
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&u32::try_from(first.len()).unwrap().to_be_bytes());
        body.extend_from_slice(first.as_bytes());
        let mut frame = vec![b'p'];
        frame.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        frame.extend(body);
        frame
    }

    #[test]
    fn binding_downgrade_flag_is_refused_only_towards_a_tls_upstream() {
        let tls_upstream = ChannelBinding::Unavailable { upstream_tls: true };
        let plain_upstream = ChannelBinding::Unavailable {
            upstream_tls: false,
        };
        assert!(matches!(
            check_gs2_header(&sasl_initial("y"), tls_upstream),
            Err(SessionError::ChannelBinding)
        ));
        assert!(check_gs2_header(&sasl_initial("n"), tls_upstream).is_ok());
        assert!(check_gs2_header(&sasl_initial("y"), plain_upstream).is_ok());
    }
}
