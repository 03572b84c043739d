//! Frontend (F) messages after startup: a scanner that finds frame boundaries in the client's
//! byte stream, and readers for the message bodies later layers look at.
//!
//! Every frame is buffered whole (the proxy must see a `Query` or `Parse` in full before it can
//! decide about it) except `CopyData`, which is streamed: a client may send a bulk load in
//! frames of any size, and none of it is SQL.

use super::error::ProtocolError;
use super::frame::{HEADER_LEN, Header, POSTGRES_MESSAGE_LIMIT, read_header};

/// Frontend message tags (see [`super::tag`]).
pub(crate) use super::tag::frontend as tag;

/// `Flush` (F), whole: ddlgate asks the server for the answers of an open pipeline.
pub(crate) const FLUSH_MESSAGE: &[u8] = b"H\0\0\0\x04";
/// `Terminate` (F), whole: sent upstream when the client leaves without one.
pub(crate) const TERMINATE_MESSAGE: &[u8] = b"X\0\0\0\x04";

/// Whether this message is part of an extended-protocol batch that the server only answers
/// after a later `Sync` or `Flush`. Every other message ends the request it belongs to.
pub(crate) fn waits_for_sync(tag: u8) -> bool {
    matches!(
        tag,
        tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE
    )
}

/// How many messages that end its answer the server sends for this message in a pipeline
/// (`ParseComplete`, `BindComplete`, `CloseComplete`, `RowDescription`/`NoData`, or the end of
/// an Execute); an `ErrorResponse` ends the answers of everything up to the next `Sync` instead.
pub(crate) fn answers_in_pipeline(tag: u8) -> u64 {
    u64::from(waits_for_sync(tag))
}

/// Whether the server answers this message with a `ReadyForQuery` of its own.
pub(crate) fn ends_with_ready_for_query(tag: u8) -> bool {
    matches!(tag, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL)
}

/// The next thing at a position of the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendItem {
    /// A complete message that ends at byte `end` of the buffer.
    Message {
        /// The message type byte.
        tag: u8,
        /// Offset just past the message.
        end: usize,
    },
    /// Bytes of a `CopyData` frame, up to `end`, to be forwarded as they are.
    CopyChunk {
        /// Offset just past the bytes available now.
        end: usize,
    },
}

/// Finds frame boundaries in the client's byte stream after startup.
#[derive(Debug)]
pub struct FrontendScanner {
    /// Bytes still to come of a `CopyData` frame being streamed.
    copy_left: usize,
    /// The largest buffered message accepted (`max_message_bytes`).
    limit: usize,
}

impl FrontendScanner {
    /// A scanner at a frame boundary that refuses buffered messages larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            copy_left: 0,
            limit,
        }
    }

    /// Returns the item starting at `pos` of `buf`, or `None` until more bytes arrive.
    pub fn next(&mut self, buf: &[u8], pos: usize) -> Result<Option<FrontendItem>, ProtocolError> {
        let rest = buf.get(pos..).unwrap_or_default();
        if self.copy_left > 0 {
            if rest.is_empty() {
                return Ok(None);
            }
            let n = self.copy_left.min(rest.len());
            self.copy_left = self.copy_left.saturating_sub(n);
            return Ok(Some(FrontendItem::CopyChunk {
                end: pos.saturating_add(n),
            }));
        }
        let limit = if rest.first() == Some(&tag::COPY_DATA) {
            POSTGRES_MESSAGE_LIMIT
        } else {
            self.limit
        };
        let Some(Header { tag, frame_len }) = read_header(rest, limit)? else {
            return Ok(None);
        };
        if tag == tag::COPY_DATA {
            self.copy_left = frame_len;
            return self.next(buf, pos);
        }
        if rest.len() < frame_len {
            return Ok(None);
        }
        Ok(Some(FrontendItem::Message {
            tag,
            end: pos.saturating_add(frame_len),
        }))
    }

    /// Bytes the message starting at `pos` still needs, so the reader can size its buffer.
    pub fn missing(&self, buf: &[u8], pos: usize) -> usize {
        if self.copy_left > 0 {
            return 0;
        }
        let rest = buf.get(pos..).unwrap_or_default();
        match read_header(rest, self.limit) {
            Ok(Some(h)) => h.frame_len.saturating_sub(rest.len()),
            _ => HEADER_LEN.saturating_sub(rest.len()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn items(scanner: &mut FrontendScanner, buf: &[u8]) -> (Vec<FrontendItem>, usize) {
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some(item) = scanner.next(buf, pos).unwrap() {
            pos = match item {
                FrontendItem::Message { end, .. } | FrontendItem::CopyChunk { end } => end,
            };
            out.push(item);
        }
        (out, pos)
    }

    #[test]
    fn whole_messages_are_what_they_say() {
        assert_eq!(FLUSH_MESSAGE, frame(tag::FLUSH, b""));
        assert_eq!(TERMINATE_MESSAGE, frame(tag::TERMINATE, b""));
    }

    #[test]
    fn pipelined_messages_are_found_in_order() {
        let mut buf = frame(b'P', b"\0SELECT 1\0\0\0");
        buf.extend(frame(b'B', b"\0\0\0\0\0\0\0\0"));
        buf.extend(frame(b'E', b"\0\0\0\0\0"));
        buf.extend(frame(b'S', b""));
        let mut scanner = FrontendScanner::new(1024);
        let (found, pos) = items(&mut scanner, &buf);
        let tags: Vec<u8> = found
            .iter()
            .map(|i| match i {
                FrontendItem::Message { tag, .. } => *tag,
                FrontendItem::CopyChunk { .. } => b'd',
            })
            .collect();
        assert_eq!(tags, b"PBES");
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn a_message_split_at_every_offset_is_found_once_complete() {
        let msg = frame(b'Q', b"SELECT 1\0");
        for split in 0..msg.len() {
            let mut scanner = FrontendScanner::new(1024);
            assert_eq!(
                scanner.next(&msg[..split], 0).unwrap(),
                None,
                "split {split}"
            );
            let expected_missing = if split < 5 {
                5 - split
            } else {
                msg.len() - split
            };
            assert_eq!(
                scanner.missing(&msg[..split], 0),
                expected_missing,
                "split {split}"
            );
        }
        let mut scanner = FrontendScanner::new(1024);
        assert_eq!(
            scanner.next(&msg, 0).unwrap(),
            Some(FrontendItem::Message {
                tag: b'Q',
                end: msg.len()
            })
        );
    }

    /// A whole client stream (pipelined extended protocol, then COPY) fed in two parts split at
    /// every offset yields the same messages and forwards every byte once.
    #[test]
    fn stream_split_at_every_offset_yields_the_same_items() {
        let mut stream = frame(b'P', b"\0COPY t FROM STDIN\0\0\0");
        stream.extend(frame(b'B', b"\0\0\0\0\0\0\0\0"));
        stream.extend(frame(b'E', b"\0\0\0\0\0"));
        stream.extend(frame(b'S', b""));
        stream.extend(frame(b'd', b"1\tone\n2\ttwo\n"));
        stream.extend(frame(b'c', b""));
        stream.extend(frame(b'X', b""));
        let whole = {
            let mut scanner = FrontendScanner::new(1024);
            let (items, consumed) = items(&mut scanner, &stream);
            assert_eq!(consumed, stream.len());
            items
        };
        let tags = |items: &[FrontendItem]| -> Vec<u8> {
            items
                .iter()
                .filter_map(|i| match i {
                    FrontendItem::Message { tag, .. } => Some(*tag),
                    FrontendItem::CopyChunk { .. } => None,
                })
                .collect()
        };
        for split in 0..=stream.len() {
            let mut scanner = FrontendScanner::new(1024);
            let (mut first, consumed) = items(&mut scanner, &stream[..split]);
            // The caller keeps unconsumed bytes and appends what arrives next.
            let rest = &stream[consumed..];
            let (second, consumed2) = items(&mut scanner, rest);
            assert_eq!(consumed + consumed2, stream.len(), "split {split}");
            first.extend(second);
            assert_eq!(tags(&first), tags(&whole), "split {split}");
        }
    }

    #[test]
    fn copy_data_streams_in_chunks_larger_than_the_limit() {
        let mut scanner = FrontendScanner::new(16);
        let mut buf = frame(b'd', &[b'x'; 100]);
        buf.extend(frame(b'c', b""));
        // First read: only part of the CopyData frame.
        assert_eq!(
            scanner.next(&buf[..50], 0).unwrap(),
            Some(FrontendItem::CopyChunk { end: 50 })
        );
        assert_eq!(scanner.next(&buf[..50], 50).unwrap(), None);
        assert_eq!(
            scanner.next(&buf, 50).unwrap(),
            Some(FrontendItem::CopyChunk { end: 105 })
        );
        assert_eq!(
            scanner.next(&buf, 105).unwrap(),
            Some(FrontendItem::Message {
                tag: b'c',
                end: 110
            })
        );
    }

    #[test]
    fn oversized_query_is_refused_from_its_header() {
        let mut scanner = FrontendScanner::new(16);
        let buf = frame(b'Q', &[b'x'; 40]);
        assert!(matches!(
            scanner.next(&buf[..5], 0),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn request_boundaries() {
        for t in *b"PBDEC" {
            assert!(waits_for_sync(t));
        }
        for t in *b"QSHFXdcf" {
            assert!(!waits_for_sync(t));
        }
        assert!(ends_with_ready_for_query(b'S') && !ends_with_ready_for_query(b'H'));
    }
}
