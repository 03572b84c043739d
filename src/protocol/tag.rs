//! Every message type byte of protocol 3.0/3.2, in one place: frontend (F) and backend (B).
//! Other modules name tags only through these constants.

/// Frontend (F) message tags.
pub mod frontend {
    /// `Bind` (F).
    pub const BIND: u8 = b'B';
    /// `Close` (F).
    pub const CLOSE: u8 = b'C';
    /// `CopyData` (F & B).
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone` (F & B).
    pub const COPY_DONE: u8 = b'c';
    /// `CopyFail` (F).
    pub const COPY_FAIL: u8 = b'f';
    /// `Describe` (F).
    pub const DESCRIBE: u8 = b'D';
    /// `Execute` (F).
    pub const EXECUTE: u8 = b'E';
    /// `Flush` (F).
    pub const FLUSH: u8 = b'H';
    /// `FunctionCall` (F).
    pub const FUNCTION_CALL: u8 = b'F';
    /// `Parse` (F).
    pub const PARSE: u8 = b'P';
    /// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse`, `GSSResponse` (F).
    pub const PASSWORD: u8 = b'p';
    /// `Query` (F).
    pub const QUERY: u8 = b'Q';
    /// `Sync` (F).
    pub const SYNC: u8 = b'S';
    /// `Terminate` (F).
    pub const TERMINATE: u8 = b'X';
}

/// Backend (B) message tags.
pub mod backend {
    /// `Authentication*` (B).
    pub const AUTHENTICATION: u8 = b'R';
    /// `BackendKeyData` (B).
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// `BindComplete` (B).
    pub const BIND_COMPLETE: u8 = b'2';
    /// `CloseComplete` (B).
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// `CommandComplete` (B).
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// `CopyBothResponse` (B): replication only.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// `CopyData` (B & F).
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone` (B & F).
    pub const COPY_DONE: u8 = b'c';
    /// `CopyInResponse` (B): the server waits for the client's COPY data.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// `CopyOutResponse` (B).
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// `DataRow` (B).
    pub const DATA_ROW: u8 = b'D';
    /// `EmptyQueryResponse` (B).
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// `ErrorResponse` (B).
    pub const ERROR_RESPONSE: u8 = b'E';
    /// `NegotiateProtocolVersion` (B).
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// `NoData` (B).
    pub const NO_DATA: u8 = b'n';
    /// `NoticeResponse` (B).
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// `NotificationResponse` (B).
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// `ParameterDescription` (B).
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// `ParameterStatus` (B).
    pub const PARAMETER_STATUS: u8 = b'S';
    /// `ParseComplete` (B).
    pub const PARSE_COMPLETE: u8 = b'1';
    /// `PortalSuspended` (B).
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// `ReadyForQuery` (B).
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// `RowDescription` (B).
    pub const ROW_DESCRIPTION: u8 = b'T';
}
