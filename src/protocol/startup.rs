//! Startup-phase packets (F): `SSLRequest`, `GSSENCRequest`, `CancelRequest` and
//! `StartupMessage`. They have no tag byte: a length, then a 32-bit code or protocol version.

use bytes::{BufMut, Bytes, BytesMut};

use super::backend::{BackendKey, MAX_CANCEL_SECRET};
use super::error::ProtocolError;
use super::frame::split_cstr;

/// The code of `SSLRequest`: 1234 in the high half, 5679 in the low half.
pub(crate) const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The code of `GSSENCRequest`.
pub(crate) const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The code of `CancelRequest`.
pub(crate) const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// The largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub(crate) const MAX_STARTUP_PACKET: usize = 10_000;
/// The smallest: a length and a code.
pub(crate) const MIN_STARTUP_PACKET: usize = 8;
/// The first byte of a TLS handshake record, sent first by clients using direct TLS
/// (`sslnegotiation=direct`, PostgreSQL 17+).
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks to switch to TLS.
    SslRequest,
    /// The client asks to switch to GSSAPI encryption.
    GssEncRequest,
    /// The client asks to cancel the query running in the session with this key.
    Cancel(BackendKey),
    /// The client opens a session.
    Startup(StartupMessage),
}

/// A `StartupMessage`: the protocol version and the connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Protocol major version (always 3).
    pub major: u16,
    /// Protocol minor version (0, or 2 since PostgreSQL 18).
    pub minor: u16,
    /// Parameters in the order the client sent them (`user`, `database`, `options`, …).
    pub params: Vec<(String, String)>,
    /// The packet exactly as received, length included: forwarded upstream unchanged.
    pub raw: Bytes,
}

impl StartupMessage {
    /// The value of one parameter, if the client sent it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the length prefix of a startup packet and checks it is in PostgreSQL's range.
pub fn packet_len(prefix: [u8; 4]) -> Result<usize, ProtocolError> {
    let declared = u32::from_be_bytes(prefix);
    let len = usize::try_from(declared).unwrap_or(usize::MAX);
    if (MIN_STARTUP_PACKET..=MAX_STARTUP_PACKET).contains(&len) {
        Ok(len)
    } else {
        Err(ProtocolError::StartupLength(declared))
    }
}

/// Decodes a whole startup packet (`packet` includes its four length bytes).
pub fn decode(packet: Bytes) -> Result<StartupPacket, ProtocolError> {
    let Some(&[_, _, _, _, a, b, c, d]) = packet.first_chunk::<8>() else {
        return Err(ProtocolError::malformed("startup", "shorter than 8 bytes"));
    };
    let code = u32::from_be_bytes([a, b, c, d]);
    let body = packet.get(8..).unwrap_or_default();
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if !body.is_empty() => Err(
            ProtocolError::malformed("SSLRequest/GSSENCRequest", "unexpected trailing bytes"),
        ),
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => decode_cancel(body).map(StartupPacket::Cancel),
        version => {
            let major = u16::try_from(version >> 16).unwrap_or(u16::MAX);
            let minor = u16::try_from(version & 0xffff).unwrap_or(u16::MAX);
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let params = decode_params(body)?;
            Ok(StartupPacket::Startup(StartupMessage {
                major,
                minor,
                params,
                raw: packet,
            }))
        }
    }
}

fn decode_cancel(body: &[u8]) -> Result<BackendKey, ProtocolError> {
    let Some((pid, secret)) = body.split_first_chunk::<4>() else {
        return Err(ProtocolError::malformed(
            "CancelRequest",
            "missing process id",
        ));
    };
    if secret.len() < 4 || secret.len() > MAX_CANCEL_SECRET {
        return Err(ProtocolError::malformed(
            "CancelRequest",
            "the secret key must be 4 to 256 bytes",
        ));
    }
    Ok(BackendKey {
        pid: u32::from_be_bytes(*pid),
        secret: Bytes::copy_from_slice(secret),
    })
}

fn decode_params(mut body: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let malformed = |problem| ProtocolError::malformed("StartupMessage", problem);
    let mut params = Vec::new();
    loop {
        let (name, rest) = split_cstr(body).ok_or_else(|| malformed("unterminated name"))?;
        if name.is_empty() {
            if !rest.is_empty() {
                return Err(malformed("bytes after the parameter list"));
            }
            return Ok(params);
        }
        let (value, rest) = split_cstr(rest).ok_or_else(|| malformed("unterminated value"))?;
        params.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        body = rest;
    }
}

/// Encodes an `SSLRequest`.
pub(crate) fn encode_ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    let (len, code) = out.split_at_mut(4);
    len.copy_from_slice(&8u32.to_be_bytes());
    code.copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    out
}

/// Encodes a `CancelRequest` for `key`.
pub(crate) fn encode_cancel_request(key: &BackendKey) -> Bytes {
    let len = 12usize.saturating_add(key.secret.len());
    let mut out = BytesMut::with_capacity(len);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    out.put_u32(CANCEL_REQUEST_CODE);
    out.put_u32(key.pid);
    out.put_slice(&key.secret);
    out.freeze()
}

/// Encodes a `StartupMessage` for protocol 3.0 with these parameters (used by tests and tools).
pub fn encode_startup(params: &[(&str, &str)]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u32(3 << 16);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len().saturating_add(4));
    out.put_u32(u32::try_from(body.len().saturating_add(4)).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn ssl_request_roundtrip() {
        let raw = encode_ssl_request();
        assert_eq!(packet_len(raw[..4].try_into().unwrap()).unwrap(), 8);
        assert_eq!(
            decode(Bytes::copy_from_slice(&raw)).unwrap(),
            StartupPacket::SslRequest
        );
    }

    #[test]
    fn gssenc_request_is_recognised() {
        let mut raw = encode_ssl_request();
        raw[4..].copy_from_slice(&GSSENC_REQUEST_CODE.to_be_bytes());
        assert_eq!(
            decode(Bytes::copy_from_slice(&raw)).unwrap(),
            StartupPacket::GssEncRequest
        );
    }

    #[test]
    fn cancel_request_roundtrip_with_3_0_and_3_2_keys() {
        for len in [4, 32] {
            let key = BackendKey {
                pid: 77,
                secret: Bytes::from(vec![1u8; len]),
            };
            let raw = encode_cancel_request(&key);
            assert_eq!(decode(raw).unwrap(), StartupPacket::Cancel(key));
        }
    }

    #[test]
    fn startup_roundtrip_keeps_raw_bytes_and_params() {
        let raw = encode_startup(&[("user", "alice"), ("database", "app")]);
        let StartupPacket::Startup(msg) = decode(raw.clone()).unwrap() else {
            unreachable!("not a startup message")
        };
        assert_eq!((msg.major, msg.minor), (3, 0));
        assert_eq!(msg.param("user"), Some("alice"));
        assert_eq!(msg.param("database"), Some("app"));
        assert_eq!(msg.param("options"), None);
        assert_eq!(msg.raw, raw);
    }

    #[test]
    fn protocol_2_is_refused() {
        let mut raw = encode_startup(&[("user", "a")]).to_vec();
        raw[4..8].copy_from_slice(&(2u32 << 16).to_be_bytes());
        assert_eq!(
            decode(Bytes::from(raw)).unwrap_err().to_string(),
            "unsupported frontend protocol 2.0: ddlgate speaks protocol 3"
        );
    }

    #[test]
    fn unterminated_parameters_are_malformed() {
        let mut raw = encode_startup(&[("user", "a")]).to_vec();
        raw.pop();
        raw.pop();
        assert!(decode(Bytes::from(raw)).is_err());
    }

    #[test]
    fn startup_length_limits_follow_postgres() {
        assert!(packet_len(7u32.to_be_bytes()).is_err());
        assert!(packet_len(10_001u32.to_be_bytes()).is_err());
        assert_eq!(packet_len(10_000u32.to_be_bytes()).unwrap(), 10_000);
    }
}
