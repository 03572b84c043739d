//! Every message type byte of protocol 3.0/3.2, in one place: frontend (F) and backend (B).
//! Other modules name tags only through these constants.

/// Frontend (F) message tags.
pub(crate) mod frontend {
    /// `Bind` (F).
    pub(crate) const BIND: u8 = b'B';
    /// `Close` (F).
    pub(crate) const CLOSE: u8 = b'C';
    /// `CopyData` (F & B).
    pub(crate) const COPY_DATA: u8 = b'd';
    /// `CopyDone` (F & B).
    pub(crate) const COPY_DONE: u8 = b'c';
    /// `CopyFail` (F).
    pub(crate) const COPY_FAIL: u8 = b'f';
    /// `Describe` (F).
    pub(crate) const DESCRIBE: u8 = b'D';
    /// `Execute` (F).
    pub(crate) const EXECUTE: u8 = b'E';
    /// `Flush` (F).
    pub(crate) const FLUSH: u8 = b'H';
    /// `FunctionCall` (F).
    pub(crate) const FUNCTION_CALL: u8 = b'F';
    /// `Parse` (F).
    pub(crate) const PARSE: u8 = b'P';
    /// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse`, `GSSResponse` (F).
    pub(crate) const PASSWORD: u8 = b'p';
    /// `Query` (F).
    pub(crate) const QUERY: u8 = b'Q';
    /// `Sync` (F).
    pub(crate) const SYNC: u8 = b'S';
    /// `Terminate` (F).
    pub(crate) const TERMINATE: u8 = b'X';
}

/// Backend (B) message tags.
#[allow(
    dead_code,
    reason = "the complete table: a tag is named here, never written as a byte elsewhere"
)]
pub(crate) mod backend {
    /// `Authentication*` (B).
    pub(crate) const AUTHENTICATION: u8 = b'R';
    /// `BackendKeyData` (B).
    pub(crate) const BACKEND_KEY_DATA: u8 = b'K';
    /// `BindComplete` (B).
    pub(crate) const BIND_COMPLETE: u8 = b'2';
    /// `CloseComplete` (B).
    pub(crate) const CLOSE_COMPLETE: u8 = b'3';
    /// `CommandComplete` (B).
    pub(crate) const COMMAND_COMPLETE: u8 = b'C';
    /// `CopyBothResponse` (B): replication only.
    pub(crate) const COPY_BOTH_RESPONSE: u8 = b'W';
    /// `CopyData` (B & F).
    pub(crate) const COPY_DATA: u8 = b'd';
    /// `CopyDone` (B & F).
    pub(crate) const COPY_DONE: u8 = b'c';
    /// `CopyInResponse` (B): the server waits for the client's COPY data.
    pub(crate) const COPY_IN_RESPONSE: u8 = b'G';
    /// `CopyOutResponse` (B).
    pub(crate) const COPY_OUT_RESPONSE: u8 = b'H';
    /// `DataRow` (B).
    pub(crate) const DATA_ROW: u8 = b'D';
    /// `EmptyQueryResponse` (B).
    pub(crate) const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// `ErrorResponse` (B).
    pub(crate) const ERROR_RESPONSE: u8 = b'E';
    /// `NegotiateProtocolVersion` (B).
    pub(crate) const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// `NoData` (B).
    pub(crate) const NO_DATA: u8 = b'n';
    /// `NoticeResponse` (B).
    pub(crate) const NOTICE_RESPONSE: u8 = b'N';
    /// `NotificationResponse` (B).
    pub(crate) const NOTIFICATION_RESPONSE: u8 = b'A';
    /// `ParameterDescription` (B).
    pub(crate) const PARAMETER_DESCRIPTION: u8 = b't';
    /// `ParameterStatus` (B).
    pub(crate) const PARAMETER_STATUS: u8 = b'S';
    /// `ParseComplete` (B).
    pub(crate) const PARSE_COMPLETE: u8 = b'1';
    /// `PortalSuspended` (B).
    pub(crate) const PORTAL_SUSPENDED: u8 = b's';
    /// `ReadyForQuery` (B).
    pub(crate) const READY_FOR_QUERY: u8 = b'Z';
    /// `RowDescription` (B).
    pub(crate) const ROW_DESCRIPTION: u8 = b'T';
}
