//! The one place where a session decides what happens to a client request.
//!
//! Every request passes through [`review`] before any of its bytes reach the server. The proxy
//! core allows everything; policy enforcement (timeouts before DDL, rejections, rewrites) plugs
//! in here and nowhere else, and the session applies whatever [`Verdict`] comes back.

use super::request::Request;
use super::state::SessionState;

/// What the session does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Send the request's bytes upstream exactly as the client sent them.
    Forward,
}

/// Decides about one request in the context of its session.
pub fn review(_request: &Request<'_>, _session: &SessionState) -> Verdict {
    Verdict::Forward
}
