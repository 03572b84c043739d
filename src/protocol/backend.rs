//! Backend (B) messages: a scanner that finds frame boundaries in the server's byte stream, and
//! the few server messages ddlgate reads or writes itself.
//!
//! The scanner never copies: it reports how many leading bytes are complete, and the proxy
//! forwards exactly that prefix. Frames it does not need to read (`DataRow`, `CopyData`, …) are
//! passed through as their bytes arrive, so a 1 GB value never has to fit in memory at once.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::{HEADER_LEN, POSTGRES_MESSAGE_LIMIT, put_header, read_header, split_cstr};

/// Backend message tags (see [`super::tag`]).
pub(crate) use super::tag::backend as tag;

/// Codes of the `Authentication*` (B) message family.
#[allow(dead_code, reason = "the complete table of codes")]
pub(crate) mod auth {
    /// `AuthenticationOk`.
    pub(crate) const OK: u32 = 0;
    /// `AuthenticationCleartextPassword`.
    pub(crate) const CLEARTEXT_PASSWORD: u32 = 3;
    /// `AuthenticationMD5Password`.
    pub(crate) const MD5_PASSWORD: u32 = 5;
    /// `AuthenticationGSS`.
    pub(crate) const GSS: u32 = 7;
    /// `AuthenticationGSSContinue`.
    pub(crate) const GSS_CONTINUE: u32 = 8;
    /// `AuthenticationSSPI`.
    pub(crate) const SSPI: u32 = 9;
    /// `AuthenticationSASL`: the body lists mechanism names.
    pub(crate) const SASL: u32 = 10;
    /// `AuthenticationSASLContinue`.
    pub(crate) const SASL_CONTINUE: u32 = 11;
    /// `AuthenticationSASLFinal`: carries the server signature; no client reply follows.
    pub(crate) const SASL_FINAL: u32 = 12;

    /// Whether the server waits for a client message (`PasswordMessage`, `SASLResponse`, …)
    /// after sending this authentication request.
    pub(crate) fn expects_client_reply(code: u32) -> bool {
        matches!(
            code,
            CLEARTEXT_PASSWORD | MD5_PASSWORD | GSS | GSS_CONTINUE | SSPI | SASL | SASL_CONTINUE
        )
    }
}

/// The SASL mechanism that binds SCRAM to the TLS channel (`tls-server-end-point`).
pub(crate) const SCRAM_SHA_256_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// The transaction status carried by `ReadyForQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    #[default]
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; statements are refused until it ends.
    Failed,
}

impl TxStatus {
    /// The status byte as sent on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InTransaction => b'T',
            Self::Failed => b'E',
        }
    }

    /// Reads the status byte of a `ReadyForQuery` body.
    pub fn from_ready_for_query(body: &[u8]) -> Result<Self, ProtocolError> {
        match body {
            [b'I'] => Ok(Self::Idle),
            [b'T'] => Ok(Self::InTransaction),
            [b'E'] => Ok(Self::Failed),
            _ => Err(ProtocolError::malformed(
                "ReadyForQuery",
                "the status must be one byte: I, T or E",
            )),
        }
    }
}

/// One complete backend message, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendMessage<'a> {
    /// The message type byte.
    pub tag: u8,
    /// The bytes after the header.
    pub body: &'a [u8],
    /// For `ReadyForQuery`: an `ErrorResponse` came since the previous one (the answer it
    /// ends failed).
    pub after_error: bool,
}

/// Finds frame boundaries in the server's byte stream.
///
/// Frames whose tag is in the inspected set arrive whole at `inspect`; all others are streamed.
#[derive(Debug)]
pub struct BackendScanner {
    /// Bytes still to come of a frame being streamed through uninspected.
    passthrough_left: usize,
    /// The largest inspected frame accepted; these are small in practice (status, keys).
    inspect_limit: usize,
    /// Messages ending the answer to one pipelined extended-protocol message (see
    /// [`ends_a_pipelined_answer`]) since the last `ReadyForQuery`.
    pipeline_answers: u64,
    /// An `ErrorResponse` arrived since the last `ReadyForQuery`: the server skips everything
    /// until the next `Sync`.
    pipeline_failed: bool,
    /// The server sent `CopyInResponse` (or `CopyBothResponse`) and has not ended that COPY
    /// yet: it waits for the client's data.
    copy_in: bool,
}

/// Whether a server message ends the answer to one extended-protocol message: `ParseComplete`,
/// `BindComplete`, `CloseComplete`, `RowDescription` or `NoData` (Describe), `CommandComplete`,
/// `EmptyQueryResponse` or `PortalSuspended` (Execute).
pub(crate) fn ends_a_pipelined_answer(tag: u8) -> bool {
    matches!(tag, b'1' | b'2' | b'3' | b'T' | b'n' | b'C' | b'I' | b's')
}

impl BackendScanner {
    /// A scanner at a frame boundary.
    pub fn new(inspect_limit: usize) -> Self {
        Self {
            passthrough_left: 0,
            inspect_limit,
            pipeline_answers: 0,
            pipeline_failed: false,
            copy_in: false,
        }
    }

    /// Whether the server waits for the client's COPY data (see `copy_in`).
    pub fn server_awaits_copy_data(&self) -> bool {
        self.copy_in
    }

    /// Answers to pipelined messages since the last `ReadyForQuery`, and whether an error
    /// came among them.
    pub fn pipeline(&self) -> (u64, bool) {
        (self.pipeline_answers, self.pipeline_failed)
    }

    /// Starts counting answers afresh (someone else read the answers so far).
    pub fn reset_pipeline(&mut self, failed: bool) {
        self.pipeline_answers = 0;
        self.pipeline_failed = failed;
        self.copy_in = false;
    }

    /// Whether a frame with this tag is read by the proxy (and therefore buffered whole).
    fn inspects(tag: u8) -> bool {
        matches!(
            tag,
            tag::READY_FOR_QUERY | tag::PARAMETER_STATUS | tag::BACKEND_KEY_DATA
        )
    }

    /// Walks the frames at the start of `buf`, calling `inspect` once per complete inspected
    /// frame, and returns how many leading bytes are done with and may be forwarded.
    ///
    /// Bytes after the returned count belong to a frame that is not complete yet; call again
    /// with them at the front once more bytes have arrived.
    pub fn scan<F>(&mut self, buf: &[u8], mut inspect: F) -> Result<usize, ProtocolError>
    where
        F: FnMut(BackendMessage<'_>) -> Result<(), ProtocolError>,
    {
        let mut done = 0usize;
        loop {
            let rest = buf.get(done..).unwrap_or_default();
            if self.passthrough_left > 0 {
                let n = self.passthrough_left.min(rest.len());
                self.passthrough_left = self.passthrough_left.saturating_sub(n);
                done = done.saturating_add(n);
                if self.passthrough_left > 0 {
                    return Ok(done);
                }
                continue;
            }
            let Some(peek_tag) = rest.first().copied() else {
                return Ok(done);
            };
            let limit = if Self::inspects(peek_tag) {
                self.inspect_limit
            } else {
                POSTGRES_MESSAGE_LIMIT
            };
            let Some(header) = read_header(rest, limit)? else {
                return Ok(done);
            };
            if Self::inspects(header.tag) {
                let Some(body) = rest.get(HEADER_LEN..header.frame_len) else {
                    return Ok(done);
                };
                let after_error = self.pipeline_failed;
                if header.tag == tag::READY_FOR_QUERY {
                    self.reset_pipeline(false);
                }
                inspect(BackendMessage {
                    tag: header.tag,
                    body,
                    after_error,
                })?;
                done = done.saturating_add(header.frame_len);
            } else {
                match header.tag {
                    tag::ERROR_RESPONSE => {
                        self.pipeline_failed = true;
                        self.copy_in = false;
                    }
                    b'G' | b'W' => self.copy_in = true,
                    _ => {}
                }
                if ends_a_pipelined_answer(header.tag) {
                    if header.tag == b'C' {
                        self.copy_in = false;
                    }
                    self.pipeline_answers = self.pipeline_answers.saturating_add(1);
                }
                // A frame wholly read is done with at once; the rest of a longer one streams.
                if header.frame_len <= rest.len() {
                    done = done.saturating_add(header.frame_len);
                } else {
                    done = done.saturating_add(rest.len());
                    self.passthrough_left = header.frame_len.saturating_sub(rest.len());
                    return Ok(done);
                }
            }
        }
    }
}

/// Reads a `ParameterStatus` body: the parameter name and its value.
pub fn parameter_status(body: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let malformed = || ProtocolError::malformed("ParameterStatus", "expected two strings");
    let (name, rest) = split_cstr(body).ok_or_else(malformed)?;
    let (value, rest) = split_cstr(rest).ok_or_else(malformed)?;
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok((name, value))
}

/// The key a client presents in a `CancelRequest` to cancel this backend's running query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The backend's process id.
    pub pid: u32,
    /// The secret: 4 bytes in protocol 3.0, up to 256 in 3.2.
    pub secret: Bytes,
}

/// The longest cancel secret protocol 3.2 allows.
pub(crate) const MAX_CANCEL_SECRET: usize = 256;

impl BackendKey {
    /// Reads a `BackendKeyData` body.
    pub fn from_backend_key_data(body: &[u8]) -> Result<Self, ProtocolError> {
        let Some((pid, secret)) = body.split_first_chunk::<4>() else {
            return Err(ProtocolError::malformed(
                "BackendKeyData",
                "shorter than a process id",
            ));
        };
        if secret.len() < 4 || secret.len() > MAX_CANCEL_SECRET {
            return Err(ProtocolError::malformed(
                "BackendKeyData",
                "the secret key must be 4 to 256 bytes",
            ));
        }
        Ok(Self {
            pid: u32::from_be_bytes(*pid),
            secret: Bytes::copy_from_slice(secret),
        })
    }

    /// Encodes this key as a `BackendKeyData` (B) message.
    pub fn encode_backend_key_data(&self, out: &mut BytesMut) {
        put_header(
            out,
            tag::BACKEND_KEY_DATA,
            4usize.saturating_add(self.secret.len()),
        );
        out.put_u32(self.pid);
        out.put_slice(&self.secret);
    }
}

/// Reads the code of an `Authentication*` body.
pub fn authentication_code(body: &[u8]) -> Result<u32, ProtocolError> {
    body.first_chunk::<4>()
        .map(|c| u32::from_be_bytes(*c))
        .ok_or_else(|| ProtocolError::malformed("Authentication", "shorter than its code"))
}

/// Reads the mechanism names of an `AuthenticationSASL` body.
pub fn sasl_mechanisms(body: &[u8]) -> Result<Vec<&[u8]>, ProtocolError> {
    let malformed = || ProtocolError::malformed("AuthenticationSASL", "unterminated list");
    let mut rest = body.get(4..).ok_or_else(malformed)?;
    let mut names = Vec::new();
    loop {
        let (name, after) = split_cstr(rest).ok_or_else(malformed)?;
        if name.is_empty() {
            if !after.is_empty() {
                return Err(ProtocolError::malformed(
                    "AuthenticationSASL",
                    "bytes after the list terminator",
                ));
            }
            return Ok(names);
        }
        names.push(name);
        rest = after;
    }
}

/// Encodes an `AuthenticationSASL` (B) message offering `mechanisms`.
pub(crate) fn encode_authentication_sasl(mechanisms: &[&[u8]], out: &mut BytesMut) {
    let body_len = mechanisms.iter().fold(4usize + 1, |n, m| {
        n.saturating_add(m.len()).saturating_add(1)
    });
    put_header(out, tag::AUTHENTICATION, body_len);
    out.put_u32(auth::SASL);
    for m in mechanisms {
        out.put_slice(m);
        out.put_u8(0);
    }
    out.put_u8(0);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A server reply to `SELECT 1`: `RowDescription`, `DataRow`, `CommandComplete`, `ReadyForQuery`.
    fn select_one_reply() -> Vec<u8> {
        let mut s = frame(
            b'T',
            b"\0\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        );
        s.extend(frame(b'D', b"\0\x01\0\0\0\x011"));
        s.extend(frame(b'C', b"SELECT 1\0"));
        s.extend(frame(b'Z', b"T"));
        s
    }

    #[test]
    fn scan_reports_every_inspected_frame_once_at_any_split() {
        let stream = select_one_reply();
        for split in 0..=stream.len() {
            let mut scanner = BackendScanner::new(1024);
            let mut seen = Vec::new();
            let mut buf = stream[..split].to_vec();
            let done = scanner
                .scan(&buf, |m| {
                    seen.push((m.tag, m.body.to_vec()));
                    Ok(())
                })
                .unwrap();
            buf.drain(..done);
            buf.extend_from_slice(&stream[split..]);
            let done2 = scanner
                .scan(&buf, |m| {
                    seen.push((m.tag, m.body.to_vec()));
                    Ok(())
                })
                .unwrap();
            assert_eq!(done + done2, stream.len(), "split at {split}");
            assert_eq!(seen, vec![(b'Z', b"T".to_vec())], "split at {split}");
        }
    }

    #[test]
    fn uninspected_frames_stream_without_being_buffered_whole() {
        let mut scanner = BackendScanner::new(16);
        // A DataRow header announcing a 1 MB body, of which only 10 bytes have arrived.
        let mut buf = vec![b'D'];
        buf.extend_from_slice(&(1_000_004u32).to_be_bytes());
        buf.extend_from_slice(&[0u8; 10]);
        assert_eq!(scanner.scan(&buf, |_| Ok(())).unwrap(), buf.len());
        // The next bytes continue the same frame.
        assert_eq!(scanner.scan(&[7u8; 100], |_| Ok(())).unwrap(), 100);
    }

    #[test]
    fn oversized_inspected_frame_is_an_error() {
        let mut scanner = BackendScanner::new(16);
        let buf = frame(b'S', &[b'x'; 40]);
        assert!(matches!(
            scanner.scan(&buf, |_| Ok(())),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn parameter_status_reads_name_and_value() {
        assert_eq!(
            parameter_status(b"server_version\x0015.4\0").unwrap(),
            (&b"server_version"[..], &b"15.4"[..])
        );
        assert!(parameter_status(b"server_version\x0015.4").is_err());
    }

    #[test]
    fn backend_key_roundtrip_for_both_protocol_versions() {
        for secret_len in [4usize, 32] {
            let key = BackendKey {
                pid: 4242,
                secret: Bytes::from(vec![9u8; secret_len]),
            };
            let mut out = BytesMut::new();
            key.encode_backend_key_data(&mut out);
            let header = read_header(&out, 1024).unwrap().unwrap();
            assert_eq!(header.tag, tag::BACKEND_KEY_DATA);
            assert_eq!(header.frame_len, out.len());
            assert_eq!(BackendKey::from_backend_key_data(&out[5..]).unwrap(), key);
        }
    }

    #[test]
    fn backend_key_with_short_secret_is_malformed() {
        assert!(BackendKey::from_backend_key_data(b"\0\0\0\x01\0").is_err());
    }

    #[test]
    fn sasl_mechanisms_roundtrip() {
        let mut out = BytesMut::new();
        encode_authentication_sasl(&[b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"], &mut out);
        let body = &out[5..];
        assert_eq!(authentication_code(body).unwrap(), auth::SASL);
        assert_eq!(
            sasl_mechanisms(body).unwrap(),
            vec![&b"SCRAM-SHA-256-PLUS"[..], &b"SCRAM-SHA-256"[..]]
        );
        assert!(sasl_mechanisms(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn ready_for_query_status() {
        assert_eq!(
            TxStatus::from_ready_for_query(b"E").unwrap(),
            TxStatus::Failed
        );
        assert!(TxStatus::from_ready_for_query(b"X").is_err());
        assert!(TxStatus::from_ready_for_query(b"").is_err());
    }
}
