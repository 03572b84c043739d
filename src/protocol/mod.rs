//! The PostgreSQL frontend/backend protocol, version 3: bytes in, messages out, and back.
//!
//! This layer knows nothing about SQL or policy. It finds message boundaries in both byte
//! streams (so the proxy can forward whole runs of frames without re-encoding them), reads the
//! handful of messages the proxy needs (startup packets, authentication requests,
//! `ParameterStatus`, `BackendKeyData`, `ReadyForQuery`) and builds the few messages ddlgate
//! writes itself (see [`reply`]).
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub mod backend;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod reply;
pub mod startup;
pub mod tls;

pub use error::ProtocolError;
