//! Errors found in the bytes a peer sent: wrong lengths, truncated or malformed messages.

use std::fmt;

/// A message tag shown the way people read protocol traces: the ASCII letter, or `\xNN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

/// Something in a peer's byte stream that breaks the protocol.
///
/// Every variant ends only the session that sent it; none of them is ddlgate's own fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A length field smaller than the four bytes it occupies itself.
    #[error("message {tag} declares a length of {declared}, less than the minimum of 4")]
    LengthTooSmall { tag: Tag, declared: u32 },
    /// A message larger than this direction allows (`max_message_bytes`).
    #[error("message {tag} declares {declared} bytes, over the limit of {limit} bytes")]
    TooLarge {
        tag: Tag,
        declared: u32,
        limit: usize,
    },
    /// A startup-phase packet whose length is outside what PostgreSQL accepts.
    #[error("startup packet declares a length of {0}, outside the accepted range 8..=10000")]
    StartupLength(u32),
    /// A frontend protocol major version other than 3.
    #[error("unsupported frontend protocol {major}.{minor}: ddlgate speaks protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
    /// A message whose body does not have the layout its tag requires.
    #[error("malformed {what} message: {problem}")]
    Malformed {
        what: &'static str,
        problem: &'static str,
    },
    /// A message that is valid in general but not at this point of the conversation.
    #[error("unexpected message {tag} {context}")]
    Unexpected { tag: Tag, context: &'static str },
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str, problem: &'static str) -> Self {
        Self::Malformed { what, problem }
    }
}
