//! Why a session ended early. Each error is confined to its own session.

use std::io;
use std::time::Duration;

use crate::protocol::ProtocolError;
use crate::protocol::reply::Report;

use super::upstream::UpstreamError;

/// A failure that ends one session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading from or writing to the client failed.
    #[error("client connection failed: {0}")]
    ClientIo(io::Error),
    /// Reading from or writing to the upstream failed.
    #[error("upstream connection failed: {0}")]
    UpstreamIo(io::Error),
    /// The client sent bytes that break the protocol.
    #[error("client broke the protocol: {0}")]
    ClientProtocol(ProtocolError),
    /// The upstream sent bytes that break the protocol.
    #[error("upstream broke the protocol: {0}")]
    UpstreamProtocol(ProtocolError),
    /// The client's TLS handshake failed.
    #[error("TLS handshake with the client failed: {0}")]
    ClientTls(io::Error),
    /// A direct-TLS client did not negotiate the `postgresql` ALPN protocol.
    #[error("direct TLS connection without ALPN protocol \"postgresql\"")]
    MissingAlpn,
    /// The upstream could not be reached.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The startup phase did not finish in time.
    #[error("startup did not finish within {0:?}")]
    StartupTimeout(Duration),
    /// The client needs TLS but did not use it.
    #[error("plaintext connection refused: require_tls is on")]
    TlsRequired,
    /// The client asked for a replication connection (`replication=true|database`), whose
    /// walsender commands and COPY BOTH streams ddlgate does not proxy.
    #[error("replication connections are not proxied (replication={0})")]
    ReplicationRefused(String),
    /// The connection limit is reached.
    #[error("connection limit of {0} sessions reached")]
    TooManyConnections(usize),
    /// SCRAM channel binding cannot work across this pair of TLS legs.
    #[error(
        "SCRAM channel binding cannot pass through ddlgate with a different certificate than the upstream's"
    )]
    ChannelBinding,
    /// The server refused the session (bad password, unknown database, …); the client has
    /// already received the server's own error.
    #[error("upstream refused the session: {code} {message}")]
    Refused {
        /// The server's SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The client went away before the session was ready.
    #[error("client closed the connection during startup")]
    ClientGone,
    /// An extended-protocol run too large to hold whole holds a statement the policy governs.
    #[error(
        "an extended-protocol run of more than {limit} bytes without Sync holds a statement the policy governs"
    )]
    UnreviewableRun {
        /// The most bytes of a run ddlgate holds.
        limit: usize,
    },
    /// An extended-protocol run changes `client_encoding` before a `Parse` of non-ASCII text.
    #[error("an extended-protocol run may change client_encoding before a later statement")]
    EncodingChangedInRun,
    /// The planning threads stopped answering (they are gone, or one failed).
    #[error("the planning threads stopped")]
    PlanningStopped,
    /// No randomness for a cancel key.
    #[error("cannot generate a cancel key: {0}")]
    Random(getrandom::Error),
}

impl SessionError {
    /// What the client is told before its connection is closed, if anything can be said.
    pub fn client_report(&self) -> Option<Report> {
        match self {
            Self::ClientProtocol(e @ ProtocolError::UnsupportedProtocol { .. }) => {
                Some(Report::feature_not_supported(e.to_string()))
            }
            Self::ClientProtocol(e) => Some(Report::protocol_violation(format!("invalid message: {e}"))),
            Self::UpstreamProtocol(e) => Some(Report::connection_failure(format!(
                "the upstream server broke the protocol: {e}"
            ))),
            Self::UpstreamIo(e) => Some(Report::connection_failure(format!(
                "lost the connection to the upstream server: {e}"
            ))),
            Self::Upstream(e) => Some(Report::connection_failure(e.to_string())),
            Self::StartupTimeout(d) => Some(Report::query_canceled(format!(
                "canceling startup: it did not finish within {}",
                crate::config::format_duration(*d)
            ))),
            Self::TlsRequired => Some(
                Report::invalid_authorization("this server accepts only TLS connections")
                    .hint("Connect with sslmode=require (or stricter)."),
            ),
            Self::ReplicationRefused(mode) => Some(
                Report::feature_not_supported(format!(
                    "ddlgate does not proxy replication connections (replication={mode})"
                ))
                .detail("A walsender session speaks replication commands and streams WAL with COPY BOTH; ddlgate governs SQL sessions only.")
                .hint("Connect replication clients (pg_basebackup, pg_receivewal, pg_recvlogical, subscriptions, change-data-capture tools) to the server directly."),
            ),
            Self::TooManyConnections(n) => Some(
                Report::too_many_connections(format!(
                    "sorry, too many clients already (ddlgate's limit is {n})"
                ))
                .hint("Raise max_connections, or use fewer connections."),
            ),
            Self::ChannelBinding => Some(
                Report::invalid_authorization(
                    "SCRAM channel binding cannot pass through ddlgate: its TLS certificate differs from the upstream server's",
                )
                .detail("The client supports channel binding over TLS, and the upstream server would insist on it, but the binding is to the certificate each side sees.")
                .hint("Give ddlgate the upstream server's certificate and key (tls_cert, tls_key), connect with channel_binding=disable, or set upstream_tls = \"disable\"."),
            ),
            Self::UnreviewableRun { limit } => Some(
                Report::policy_rejected(format!(
                    "an extended-protocol run of more than {} KiB without Sync holds a statement the policy governs; it cannot be reviewed in parts, so the session is closed",
                    limit / 1024
                ))
                .closing()
                .detail("The statement was not sent to the server; the server rolls back what the run had left uncommitted.")
                .hint("Send schema changes in a run of their own: end the run before them with Sync."),
            ),
            Self::EncodingChangedInRun => Some(
                Report::policy_rejected(
                    "an extended-protocol run may change client_encoding before a later statement with non-ASCII text, which ddlgate cannot read the way the server will; the session is closed",
                )
                .closing()
                .detail("The statement was not sent to the server; the server rolls back what the run had left uncommitted.")
                .hint("Change client_encoding in a request of its own (end the run with Sync after it)."),
            ),
            Self::ClientIo(_)
            | Self::ClientTls(_)
            | Self::MissingAlpn
            | Self::Refused { .. }
            | Self::ClientGone
            | Self::Random(_) => None,
            Self::PlanningStopped => Some(Report::internal_error(
                "the planning threads stopped; the statement was not run",
            )),
        }
    }
}
