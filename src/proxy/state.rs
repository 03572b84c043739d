//! What a session knows about itself: who is connected, the server's reported parameters,
//! and where the conversation stands. Later layers (policy, audit) read it at each request.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::protocol::ProtocolError;
use crate::protocol::backend::TxStatus;

/// The state of one client session.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// ddlgate's number for this session, unique within the process; appears in every log line.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The role the client logged in as.
    pub user: String,
    /// The database the client connected to.
    pub database: String,
    /// Whether the client leg is encrypted.
    pub client_tls: bool,
    /// The transaction status of the latest `ReadyForQuery`.
    pub tx_status: TxStatus,
    /// Every `ParameterStatus` the server has reported, latest value first: `server_version`,
    /// `application_name`, `standard_conforming_strings`, `client_encoding`, `TimeZone`, ….
    pub parameters: HashMap<String, String>,
    /// Requests forwarded whose `ReadyForQuery` has not come back yet. An over-estimate is
    /// possible (the server ignores a `Sync` sent during COPY IN), never an under-estimate.
    pub awaiting_ready: usize,
    /// Where transactions ended since the analysis last looked (see [`super::tx`]).
    pub tx: super::tx::Transactions,
    /// The database's routines that run DDL, as last read (see [`super::routines`]).
    pub routines: std::sync::Arc<crate::analysis::routines::Routines>,
}

impl SessionState {
    /// A session that has just completed its startup.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        user: String,
        database: String,
        client_tls: bool,
    ) -> Self {
        Self {
            id,
            peer,
            user,
            database,
            client_tls,
            tx_status: TxStatus::Idle,
            parameters: HashMap::new(),
            awaiting_ready: 0,
            tx: super::tx::Transactions::default(),
            routines: std::sync::Arc::default(),
        }
    }

    /// A fresh session of user and database `app` on a server reporting `server_version`
    /// (for tests of what is decided per session).
    #[cfg(test)]
    pub(crate) fn with_server_version(server_version: &str) -> Self {
        let mut state = Self::new(
            1,
            SocketAddr::from(([127, 0, 0, 1], 5000)),
            "app".into(),
            "app".into(),
            false,
        );
        state
            .parameters
            .insert("server_version".into(), server_version.into());
        state
    }

    /// Takes in a `ParameterStatus` from the server: the parameter's new value.
    pub fn parameter_status(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        let (name, value) = crate::protocol::backend::parameter_status(body)?;
        self.parameters.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
        Ok(())
    }

    /// Takes in a `ReadyForQuery` from the server; `after_error`: an `ErrorResponse` came
    /// since the previous one.
    pub fn ready_for_query(
        &mut self,
        body: &[u8],
        after_error: bool,
    ) -> Result<(), crate::protocol::error::ProtocolError> {
        let before = self.tx_status;
        self.tx_status = TxStatus::from_ready_for_query(body)?;
        self.awaiting_ready = self.awaiting_ready.saturating_sub(1);
        self.tx.ready(before, self.tx_status, after_error);
        Ok(())
    }

    /// A parameter the server reported.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server's `server_version`, e.g. `15.4 (Debian 15.4-1)`.
    pub fn server_version(&self) -> Option<&str> {
        self.parameter("server_version")
    }

    /// The server's major version (10 and later number majors with one integer).
    pub fn server_major_version(&self) -> Option<u32> {
        let v = self.server_version()?;
        let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        v.get(..end)?.parse().ok()
    }

    /// The major version the analysis assumes: the server's, or, for a server that does not
    /// report a readable `server_version`, [`crate::analysis::context::DEFAULT_SERVER_MAJOR`]
    /// (review and planning use this one value).
    pub fn server_major(&self) -> u32 {
        self.server_major_version()
            .unwrap_or(crate::analysis::context::DEFAULT_SERVER_MAJOR)
    }

    /// The client's `application_name` as the server last reported it.
    pub fn application_name(&self) -> &str {
        self.parameter("application_name").unwrap_or_default()
    }

    /// Whether no request is in flight and no transaction is open.
    pub fn is_idle(&self) -> bool {
        self.awaiting_ready == 0 && self.tx_status == TxStatus::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_version(v: &str) -> SessionState {
        SessionState::with_server_version(v)
    }

    #[test]
    fn major_version_from_server_version() {
        assert_eq!(
            state_with_version("15.4 (Debian 15.4-1.pgdg120+1)").server_major_version(),
            Some(15)
        );
        assert_eq!(
            state_with_version("18beta1").server_major_version(),
            Some(18)
        );
        assert_eq!(state_with_version("13.22").server_major_version(), Some(13));
        assert_eq!(state_with_version("devel").server_major_version(), None);
    }
}
