//! The only builder of the messages ddlgate itself says to a client: `ErrorResponse`,
//! `NoticeResponse` and `ReadyForQuery` (B), and the table of SQLSTATEs it uses.
//!
//! Every ddlgate-originated message starts with `ddlgate:` so that people reading a client's
//! log can tell the proxy's words from the server's.

use bytes::{BufMut, BytesMut};

use super::backend::TxStatus;
use super::frame::put_header;

/// The SQLSTATE codes ddlgate sends, from PostgreSQL's Appendix A.
pub mod sqlstate {
    /// `08006 connection_failure`: the upstream could not be reached or went away.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// `08P01 protocol_violation`: the client broke the protocol.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `0A000 feature_not_supported`.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `28000 invalid_authorization_specification`: e.g. TLS required but not used.
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    /// `53300 too_many_connections`: ddlgate's own connection limit is reached.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// `57P01 admin_shutdown`: ddlgate is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// `57014 query_canceled`: what PostgreSQL reports when authentication times out.
    pub const QUERY_CANCELED: &str = "57014";
    /// `ZD001`: a statement refused by ddlgate's policy. Class `ZD` is not used by PostgreSQL;
    /// clients can tell a policy refusal from a server error by it.
    pub const POLICY_REJECTED: &str = "ZD001";
    /// `ZD002`: the audit trail cannot be written and `audit_fail_closed` is on.
    pub const AUDIT_UNAVAILABLE: &str = "ZD002";
    /// `01000 warning`: a policy warning sent as a `NoticeResponse`.
    pub const WARNING: &str = "01000";
    /// `42601 syntax_error`: a statement the parser refuses, on a server newer than its grammar.
    pub const SYNTAX_ERROR: &str = "42601";
}

/// How serious a message is; the first two decide what the client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The current statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
    /// A warning the statement ran with.
    Warning,
    /// Information.
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
        }
    }
}

/// The fields of an `ErrorResponse` or `NoticeResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How serious it is.
    pub severity: Severity,
    /// The SQLSTATE, one of [`sqlstate`].
    pub code: &'static str,
    /// The primary message, without the `ddlgate: ` prefix (added when encoding).
    pub message: String,
    /// Optional detail: the facts behind the message.
    pub detail: Option<String>,
    /// Optional hint: what to do about it.
    pub hint: Option<String>,
}

impl Report {
    /// A report with a message and no detail or hint.
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a detail field.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint field.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends this report as an `ErrorResponse` (for `Error` and `Fatal`) or a
    /// `NoticeResponse` (otherwise).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_fields(
            self.severity,
            self.code,
            &format!("ddlgate: {}", self.message),
            self.detail.as_deref(),
            self.hint.as_deref(),
            out,
        );
    }
}

/// Appends an `ErrorResponse` (for `Error` and `Fatal`) or a `NoticeResponse` (otherwise) with
/// exactly these fields; the message is used as given.
pub fn encode_fields(
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
    out: &mut BytesMut,
) {
    let tag = match severity {
        Severity::Error | Severity::Fatal => b'E',
        Severity::Warning | Severity::Notice => b'N',
    };
    let fields: [(u8, Option<&str>); 6] = [
        (b'S', Some(severity.as_str())),
        (b'V', Some(severity.as_str())),
        (b'C', Some(code)),
        (b'M', Some(message)),
        (b'D', detail),
        (b'H', hint),
    ];
    let body_len = fields
        .iter()
        .filter_map(|(_, v)| v.map(|v| cstr_len(v).saturating_add(1)))
        .fold(1usize, usize::saturating_add);
    put_header(out, tag, body_len);
    for (field, value) in fields {
        if let Some(value) = value {
            out.put_u8(field);
            put_cstr(out, value);
        }
    }
    out.put_u8(0);
}

/// Appends a `ReadyForQuery` with the given transaction status.
pub fn ready_for_query(status: TxStatus, out: &mut BytesMut) {
    put_header(out, b'Z', 1);
    out.put_u8(status.as_byte());
}

/// Length of `s` as a C string, NUL excluded, after embedded NULs are dropped.
fn cstr_len(s: &str) -> usize {
    s.bytes().filter(|&b| b != 0).count().saturating_add(1)
}

/// Appends `s` NUL-terminated; an embedded NUL would end the field early, so it is dropped.
fn put_cstr(out: &mut BytesMut, s: &str) {
    out.extend(s.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::protocol::frame::{read_header, split_cstr};

    fn fields(msg: &[u8]) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        let mut rest = &msg[5..];
        while rest[0] != 0 {
            let (v, after) = split_cstr(&rest[1..]).unwrap();
            out.push((rest[0], String::from_utf8(v.to_vec()).unwrap()));
            rest = after;
        }
        assert_eq!(rest, [0]);
        out
    }

    #[test]
    fn error_response_has_every_field_and_a_correct_length() {
        let mut out = BytesMut::new();
        Report::new(Severity::Fatal, sqlstate::PROTOCOL_VIOLATION, "bad\0 input")
            .detail("d")
            .hint("h")
            .encode(&mut out);
        let header = read_header(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(header.tag, b'E');
        assert_eq!(header.frame_len, out.len());
        assert_eq!(
            fields(&out),
            vec![
                (b'S', "FATAL".into()),
                (b'V', "FATAL".into()),
                (b'C', "08P01".into()),
                (b'M', "ddlgate: bad input".into()),
                (b'D', "d".into()),
                (b'H', "h".into()),
            ]
        );
    }

    #[test]
    fn notice_uses_the_notice_tag_and_omits_absent_fields() {
        let mut out = BytesMut::new();
        Report::new(Severity::Notice, sqlstate::FEATURE_NOT_SUPPORTED, "x").encode(&mut out);
        assert_eq!(out[0], b'N');
        assert_eq!(
            read_header(&out, 1024).unwrap().unwrap().frame_len,
            out.len()
        );
        assert_eq!(fields(&out).len(), 4);
    }

    #[test]
    fn ready_for_query_encodes_the_status() {
        let mut out = BytesMut::new();
        ready_for_query(TxStatus::Failed, &mut out);
        assert_eq!(&out[..], b"Z\0\0\0\x05E");
    }
}
