//! A client request as the decision point sees it: one `Query`, or a run of extended-protocol
//! messages (`Parse`, `Bind`, `Describe`, `Execute`, `Close`) up to and including the `Sync` or
//! `Flush` that makes the server answer them.
//!
//! Holding a run until its `Sync` costs nothing (the server answers nothing before it) and lets
//! the decision see a whole pipeline. A client that pipelines more than [`MAX_HELD_BYTES`]
//! without a `Sync` (libpq pipeline mode may) has the run handed over in parts, so memory stays
//! bounded and the client never waits on ddlgate; a part that holds a statement the policy
//! governs cannot be decided without the rest, so it ends the session instead of passing.

use crate::protocol::frame::HEADER_LEN;

/// The most bytes of an unfinished extended-protocol run held back before it is reviewed and
/// forwarded in part.
pub(crate) const MAX_HELD_BYTES: usize = 256 * 1024;

/// Where one message lies in the client read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    /// The message type byte.
    pub tag: u8,
    /// Offset of the tag byte.
    pub start: usize,
    /// Offset just past the message.
    pub end: usize,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// With its last message, which the server answers (`Query`, `Sync`, `Flush`,
    /// `FunctionCall`, `Terminate`, …).
    Complete,
    /// Cut at [`MAX_HELD_BYTES`], or by `CopyData`; more of the same run may follow.
    Partial,
}

/// One client message of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendMessage<'a> {
    /// The message type byte.
    pub tag: u8,
    /// The bytes after the header.
    pub body: &'a [u8],
}

/// A request, borrowed from the session's read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    buf: &'a [u8],
    spans: &'a [MessageSpan],
    /// Whether the request is whole.
    pub end: RequestEnd,
}

impl<'a> Request<'a> {
    /// A request made of `spans` within `buf`.
    pub fn new(buf: &'a [u8], spans: &'a [MessageSpan], end: RequestEnd) -> Self {
        Self { buf, spans, end }
    }

    /// The messages in the order the client sent them.
    pub fn messages(&self) -> impl Iterator<Item = FrontendMessage<'a>> + 'a {
        let buf = self.buf;
        self.spans.iter().map(move |s| FrontendMessage {
            tag: s.tag,
            body: buf
                .get(s.start.saturating_add(HEADER_LEN)..s.end)
                .unwrap_or_default(),
        })
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the request has no message.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Total bytes on the wire.
    pub fn wire_len(&self) -> usize {
        match (self.spans.first(), self.spans.last()) {
            (Some(first), Some(last)) => last.end.saturating_sub(first.start),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_expose_tag_and_body() {
        let buf = b"Q\0\0\0\x0bSELECT 1\0S\0\0\0\x04";
        let spans = [
            MessageSpan {
                tag: b'Q',
                start: 0,
                end: 14,
            },
            MessageSpan {
                tag: b'S',
                start: 14,
                end: 19,
            },
        ];
        let req = Request::new(buf, &spans, RequestEnd::Complete);
        let msgs: Vec<_> = req.messages().collect();
        assert_eq!(
            msgs[0],
            FrontendMessage {
                tag: b'Q',
                body: b"SELECT 1\0"
            }
        );
        assert_eq!(
            msgs[1],
            FrontendMessage {
                tag: b'S',
                body: b""
            }
        );
        assert_eq!(req.wire_len(), 19);
        assert_eq!(req.len(), 2);
    }
}
