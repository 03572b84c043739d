//! The PostgreSQL frontend/backend protocol, version 3: bytes in, messages out, and back.
//!
//! This layer knows nothing about SQL or policy, and it is the only code that reads or writes
//! wire bytes. It finds message boundaries in both byte streams ([`frame::next_frame`], the one
//! size-bounded frame reader, under the two streaming scanners [`frontend::FrontendScanner`]
//! and [`backend::BackendScanner`]), so the proxy can forward whole runs of frames without
//! re-encoding them; reads the messages the proxy looks at with validating decoders; and
//! writes the few messages ddlgate sends itself. One file per message family:
//!
//! | file | messages |
//! |---|---|
//! | [`tag`] | every message type byte |
//! | [`startup`] | `SSLRequest`, `GSSENCRequest`, `CancelRequest`, `StartupMessage` (F) |
//! | [`backend`] | `Authentication*`, `BackendKeyData`, `ParameterStatus`, `ReadyForQuery` (B); the backend scanner |
//! | [`frontend`] | the frontend scanner and what each frontend tag means for a request |
//! | [`query`] | `Query` (F) |
//! | [`extended`] | `Parse`, `Bind`, `Execute`, `Close` (F) |
//! | [`copy`] | `CopyFail` (F) |
//! | [`rows`] | `DataRow`, `CommandComplete` (B) |
//! | [`reply`] | `ErrorResponse`, `NoticeResponse` (B) both ways, `ReadyForQuery` written; the SQLSTATE table |
//! | [`tls`] | TLS on both legs |
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub(crate) mod backend;
pub(crate) mod copy;
pub(crate) mod error;
pub(crate) mod extended;
pub(crate) mod frame;
pub(crate) mod frontend;
pub(crate) mod query;
pub(crate) mod reply;
pub(crate) mod rows;
pub(crate) mod startup;
pub(crate) mod tag;
pub(crate) mod tls;

pub(crate) use error::ProtocolError;
