//! The only builder of the messages ddlgate itself says to a client: `ErrorResponse`,
//! `NoticeResponse` and `ReadyForQuery` (B), and the table of SQLSTATEs it uses; and the
//! reader of the server's own `ErrorResponse` and `NoticeResponse` ([`Fields`]).
//!
//! Every ddlgate-originated message starts with `ddlgate:` so that people reading a client's
//! log can tell the proxy's words from the server's.

use bytes::{BufMut, BytesMut};

use super::backend::TxStatus;
use super::error::ProtocolError;
use super::frame::{put_header, split_cstr};
use super::tag::backend;

/// The SQLSTATE codes ddlgate sends, and those of the server's it acts on, from PostgreSQL's
/// Appendix A: the one table of them.
pub(crate) mod sqlstate {
    /// `08006 connection_failure`: the upstream could not be reached or went away.
    pub(crate) const CONNECTION_FAILURE: &str = "08006";
    /// `08P01 protocol_violation`: the client broke the protocol.
    pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
    /// `0A000 feature_not_supported`.
    pub(crate) const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `28000 invalid_authorization_specification`: e.g. TLS required but not used.
    pub(crate) const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    /// `53300 too_many_connections`: ddlgate's own connection limit is reached.
    pub(crate) const TOO_MANY_CONNECTIONS: &str = "53300";
    /// `57P01 admin_shutdown`: ddlgate is shutting down.
    pub(crate) const ADMIN_SHUTDOWN: &str = "57P01";
    /// `57014 query_canceled`: what PostgreSQL reports when authentication times out.
    pub(crate) const QUERY_CANCELED: &str = "57014";
    /// `ZD001`: a statement refused by ddlgate's policy. Class `ZD` is not used by PostgreSQL;
    /// clients can tell a policy refusal from a server error by it.
    pub(crate) const POLICY_REJECTED: &str = "ZD001";
    /// `ZD002`: the audit trail cannot be written and `audit_fail_closed` is on.
    pub(crate) const AUDIT_UNAVAILABLE: &str = "ZD002";
    /// `01000 warning`: a policy warning sent as a `NoticeResponse`.
    pub(crate) const WARNING: &str = "01000";
    /// `00000 successful_completion`: an informational `NoticeResponse` (what PostgreSQL sends
    /// with its own NOTICEs).
    pub(crate) const SUCCESSFUL_COMPLETION: &str = "00000";
    /// `42601 syntax_error`: a statement the parser refuses, on a server newer than its grammar.
    pub(crate) const SYNTAX_ERROR: &str = "42601";
    /// `XX000 internal_error`: a part of ddlgate itself failed (the session ends; nothing of
    /// the request ran).
    pub(crate) const INTERNAL_ERROR: &str = "XX000";
    /// `55P03 lock_not_available` (the server's): `lock_timeout` expired. ddlgate retries the
    /// statement and names the blockers in the error's DETAIL.
    pub(crate) const LOCK_NOT_AVAILABLE: &str = "55P03";
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

/// What ddlgate tells a client: the fields of an `ErrorResponse` or `NoticeResponse`. The one
/// type for it — the proxy's own errors, the policy's refusals and warnings
/// ([`crate::enforce`]) alike.
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

    /// `08006 connection_failure`, closing the session: the upstream went away or broke.
    pub fn connection_failure(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::CONNECTION_FAILURE, message)
    }

    /// `08P01 protocol_violation`, closing the session: the client broke the protocol.
    pub fn protocol_violation(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::PROTOCOL_VIOLATION, message)
    }

    /// `0A000 feature_not_supported`, closing the session.
    pub fn feature_not_supported(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::FEATURE_NOT_SUPPORTED, message)
    }

    /// `28000 invalid_authorization_specification`, closing the session.
    pub fn invalid_authorization(message: impl Into<String>) -> Self {
        Self::new(
            Severity::Fatal,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            message,
        )
    }

    /// `53300 too_many_connections`, closing the session.
    pub fn too_many_connections(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::TOO_MANY_CONNECTIONS, message)
    }

    /// `57P01 admin_shutdown`, closing the session: ddlgate is shutting down.
    pub fn admin_shutdown(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, message)
    }

    /// `57014 query_canceled`, closing the session (startup took too long).
    pub fn query_canceled(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::QUERY_CANCELED, message)
    }

    /// `57014 query_canceled`, failing the statement: the client cancelled it while ddlgate
    /// waited; the session goes on.
    pub fn statement_canceled(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, sqlstate::QUERY_CANCELED, message)
    }

    /// `XX000 internal_error`, closing the session: a part of ddlgate failed.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, sqlstate::INTERNAL_ERROR, message)
    }

    /// `ZD001`, failing the statement: refused by the policy.
    pub fn policy_rejected(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, sqlstate::POLICY_REJECTED, message)
    }

    /// `ZD002`, failing the statement: the audit trail cannot be written.
    pub fn audit_unavailable(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, sqlstate::AUDIT_UNAVAILABLE, message)
    }

    /// `42601 syntax_error`, failing the statement: the grammar refuses it.
    pub fn syntax_error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, sqlstate::SYNTAX_ERROR, message)
    }

    /// `01000 warning`: a `NoticeResponse`; the statement runs.
    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, sqlstate::WARNING, message)
    }

    /// `00000`: a `NoticeResponse` with information (ddlgate is waiting, and why).
    pub fn notice(message: impl Into<String>) -> Self {
        Self::new(Severity::Notice, sqlstate::SUCCESSFUL_COMPLETION, message)
    }

    /// The same said as a warning (`01000`), the statement running after all.
    #[must_use]
    pub fn downgraded_to_warning(self) -> Self {
        Self {
            severity: Severity::Warning,
            code: sqlstate::WARNING,
            ..self
        }
    }

    /// The same, closing the session.
    #[must_use]
    pub fn closing(self) -> Self {
        Self {
            severity: Severity::Fatal,
            ..self
        }
    }

    /// Sets or clears the detail field.
    #[must_use]
    pub fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    /// Sets or clears the hint field.
    #[must_use]
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
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

    /// The primary message as the client reads it: `ddlgate: <message>`.
    pub fn text(&self) -> String {
        format!("ddlgate: {}", self.message)
    }

    /// Appends this report as an `ErrorResponse` (for `Error` and `Fatal`) or a
    /// `NoticeResponse` (otherwise).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_fields(
            self.severity,
            self.code,
            &self.text(),
            self.detail.as_deref(),
            self.hint.as_deref(),
            out,
        );
    }
}

/// Appends an `ErrorResponse` (for `Error` and `Fatal`) or a `NoticeResponse` (otherwise) with
/// exactly these fields; the message is used as given. For passing on the server's own words
/// changed (a detail added, a context dropped); ddlgate's own go through [`Report`].
pub(crate) fn encode_fields(
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
    out: &mut BytesMut,
) {
    let tag = match severity {
        Severity::Error | Severity::Fatal => backend::ERROR_RESPONSE,
        Severity::Warning | Severity::Notice => backend::NOTICE_RESPONSE,
    };
    let fields: [(u8, Option<&str>); 6] = [
        (field::SEVERITY, Some(severity.as_str())),
        (field::SEVERITY_NONLOCALIZED, Some(severity.as_str())),
        (field::CODE, Some(code)),
        (field::MESSAGE, Some(message)),
        (field::DETAIL, detail),
        (field::HINT, hint),
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

/// Codes of the fields of `ErrorResponse` and `NoticeResponse`.
pub(crate) mod field {
    /// Severity, localized.
    pub(crate) const SEVERITY: u8 = b'S';
    /// Severity, never localized (PostgreSQL 9.6+).
    pub(crate) const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE.
    pub(crate) const CODE: u8 = b'C';
    /// Primary message.
    pub(crate) const MESSAGE: u8 = b'M';
    /// Detail.
    pub(crate) const DETAIL: u8 = b'D';
    /// Hint.
    pub(crate) const HINT: u8 = b'H';
}

/// An `ErrorResponse` or `NoticeResponse` read back from the server: its fields by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a>(Vec<(u8, &'a [u8])>);

impl<'a> Fields<'a> {
    /// Reads the body of an `ErrorResponse` or `NoticeResponse`: code-value pairs, each value
    /// NUL-terminated, and a final NUL.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let malformed =
            || ProtocolError::malformed("ErrorResponse", "a field is not NUL-terminated");
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            match rest.split_first() {
                Some((0, [])) => return Ok(Self(out)),
                Some((&code, after)) if code != 0 => {
                    let (value, after) = split_cstr(after).ok_or_else(malformed)?;
                    out.push((code, value));
                    rest = after;
                }
                _ => return Err(malformed()),
            }
        }
    }

    /// One field as text, if present.
    pub fn get(&self, code: u8) -> Option<String> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The SQLSTATE, empty when missing.
    pub fn code(&self) -> String {
        self.get(field::CODE).unwrap_or_default()
    }

    /// The primary message, empty when missing.
    pub fn message(&self) -> String {
        self.get(field::MESSAGE).unwrap_or_default()
    }

    /// Whether the session ends after it (severity FATAL or PANIC).
    pub fn is_fatal(&self) -> bool {
        self.0.iter().any(|(c, v)| {
            matches!(*c, field::SEVERITY | field::SEVERITY_NONLOCALIZED)
                && matches!(*v, b"FATAL" | b"PANIC")
        })
    }
}

/// Appends a `ReadyForQuery` with the given transaction status.
pub(crate) fn ready_for_query(status: TxStatus, out: &mut BytesMut) {
    put_header(out, backend::READY_FOR_QUERY, 1);
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
    use crate::protocol::frame::read_header;

    /// Each constructor says its SQLSTATE at the severity ddlgate uses it with.
    #[test]
    fn constructors_pair_each_sqlstate_with_its_severity() {
        let cases = [
            (
                Report::connection_failure("m"),
                Severity::Fatal,
                sqlstate::CONNECTION_FAILURE,
            ),
            (
                Report::protocol_violation("m"),
                Severity::Fatal,
                sqlstate::PROTOCOL_VIOLATION,
            ),
            (
                Report::feature_not_supported("m"),
                Severity::Fatal,
                sqlstate::FEATURE_NOT_SUPPORTED,
            ),
            (
                Report::invalid_authorization("m"),
                Severity::Fatal,
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            ),
            (
                Report::too_many_connections("m"),
                Severity::Fatal,
                sqlstate::TOO_MANY_CONNECTIONS,
            ),
            (
                Report::admin_shutdown("m"),
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
            ),
            (
                Report::query_canceled("m"),
                Severity::Fatal,
                sqlstate::QUERY_CANCELED,
            ),
            (
                Report::internal_error("m"),
                Severity::Fatal,
                sqlstate::INTERNAL_ERROR,
            ),
            (
                Report::policy_rejected("m"),
                Severity::Error,
                sqlstate::POLICY_REJECTED,
            ),
            (
                Report::audit_unavailable("m"),
                Severity::Error,
                sqlstate::AUDIT_UNAVAILABLE,
            ),
            (
                Report::syntax_error("m"),
                Severity::Error,
                sqlstate::SYNTAX_ERROR,
            ),
            (Report::warning("m"), Severity::Warning, sqlstate::WARNING),
            (
                Report::policy_rejected("m").closing(),
                Severity::Fatal,
                sqlstate::POLICY_REJECTED,
            ),
            (
                Report::policy_rejected("m").downgraded_to_warning(),
                Severity::Warning,
                sqlstate::WARNING,
            ),
        ];
        for (report, severity, code) in cases {
            assert_eq!(
                (report.severity, report.code),
                (severity, code),
                "{report:?}"
            );
        }
    }

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
    fn server_errors_are_read_and_malformed_ones_refused() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0\0";
        let fields = Fields::decode(body).unwrap();
        assert_eq!(fields.code(), "28P01");
        assert_eq!(
            fields.message(),
            "password authentication failed for user \"x\""
        );
        assert_eq!(fields.get(field::DETAIL), None);
        assert!(fields.is_fatal());
        assert!(!Fields::decode(b"SERROR\0C42P01\0\0").unwrap().is_fatal());
        assert!(Fields::decode(b"SERROR\0C42P01").is_err());
        assert!(Fields::decode(b"SERROR\0").is_err());
        assert!(Fields::decode(b"").is_err());
        // What ddlgate writes, it reads back.
        let mut out = BytesMut::new();
        Report::new(Severity::Error, sqlstate::POLICY_REJECTED, "m")
            .hint("h")
            .encode(&mut out);
        let fields = Fields::decode(&out[5..]).unwrap();
        assert_eq!(
            (fields.code(), fields.message(), fields.get(field::HINT)),
            (
                "ZD001".to_owned(),
                "ddlgate: m".to_owned(),
                Some("h".to_owned())
            )
        );
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
