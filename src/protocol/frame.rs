//! The five-byte message header shared by both directions, and the size limits applied to it.

use super::error::{ProtocolError, Tag};

/// Bytes in a message header: one tag byte and a big-endian `Int32` length that counts itself
/// but not the tag.
pub(crate) const HEADER_LEN: usize = 5;

/// The largest message PostgreSQL itself accepts from a client (`PQ_LARGE_MESSAGE_LIMIT`,
/// 1 GiB - 1). `CopyData` is streamed rather than buffered, so it is held only to this limit.
pub(crate) const POSTGRES_MESSAGE_LIMIT: usize = 0x3fff_ffff;

/// A message header: its tag and the frame's total size in bytes, tag and length included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The message type byte.
    pub tag: u8,
    /// `1 + declared length`: the bytes from the tag to the end of the body.
    pub frame_len: usize,
}

impl Header {
    /// Bytes of body after the header.
    #[cfg(test)]
    pub(crate) fn body_len(&self) -> usize {
        self.frame_len.saturating_sub(HEADER_LEN)
    }
}

/// Reads the header at the start of `buf`, or `None` when fewer than five bytes are there.
///
/// `limit` is the largest body-plus-length (the declared length) this message may have.
pub(crate) fn read_header(buf: &[u8], limit: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(&[tag, a, b, c, d]) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let declared = u32::from_be_bytes([a, b, c, d]);
    if declared < 4 {
        return Err(ProtocolError::LengthTooSmall {
            tag: Tag(tag),
            declared,
        });
    }
    let declared_len = usize::try_from(declared).unwrap_or(usize::MAX);
    if declared_len > limit {
        return Err(ProtocolError::TooLarge {
            tag: Tag(tag),
            declared,
            limit,
        });
    }
    Ok(Some(Header {
        tag,
        frame_len: declared_len.saturating_add(1),
    }))
}

/// A complete frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message type byte.
    pub tag: u8,
    /// The bytes after the header.
    pub body: &'a [u8],
    /// The whole frame, header included.
    pub bytes: &'a [u8],
}

/// What is at a position of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A whole frame.
    Frame(Frame<'a>),
    /// The header of a frame whose body has not all arrived.
    Partial(Header),
    /// Not even a whole header.
    Nothing,
}

/// The frame at the start of `buf`, checked against `limit` (see [`read_header`]). The one
/// frame reader of the proxy: the session's scanners, the conductor and error inspection all
/// find frames through it.
pub(crate) fn next_frame(buf: &[u8], limit: usize) -> Result<Next<'_>, ProtocolError> {
    let Some(header) = read_header(buf, limit)? else {
        return Ok(Next::Nothing);
    };
    Ok(match buf.get(..header.frame_len) {
        Some(bytes) => Next::Frame(Frame {
            tag: header.tag,
            body: bytes.get(HEADER_LEN..).unwrap_or_default(),
            bytes,
        }),
        None => Next::Partial(header),
    })
}

/// The whole frames at the start of `buf`, in order, up to the first one that is incomplete
/// or malformed.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || match next_frame(rest, POSTGRES_MESSAGE_LIMIT) {
        Ok(Next::Frame(frame)) => {
            rest = rest.get(frame.bytes.len()..).unwrap_or_default();
            Some(frame)
        }
        _ => None,
    })
}

/// Splits a NUL-terminated string off the front of `buf`: `(string, rest)`.
pub(crate) fn split_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr::memchr(0, buf)?;
    let (s, rest) = buf.split_at(nul);
    Some((s, rest.get(1..).unwrap_or_default()))
}

/// A body that is exactly one NUL-terminated string (`Query`, `CommandComplete`, …).
pub(crate) fn one_cstr<'a>(body: &'a [u8], what: &'static str) -> Result<&'a [u8], ProtocolError> {
    match split_cstr(body) {
        Some((s, [])) => Ok(s),
        _ => Err(ProtocolError::malformed(
            what,
            "the body must be one NUL-terminated string",
        )),
    }
}

/// Appends a message header for a body of `body_len` bytes.
///
/// Only used for messages ddlgate builds itself, whose bodies are small and bounded.
pub(crate) fn put_header(out: &mut bytes::BytesMut, tag: u8, body_len: usize) {
    use bytes::BufMut;
    out.put_u8(tag);
    out.put_u32(u32::try_from(body_len.saturating_add(4)).unwrap_or(u32::MAX));
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_header_needs_more_bytes() {
        assert_eq!(read_header(b"Q\0\0\0", 100), Ok(None));
    }

    #[test]
    fn header_counts_the_tag() {
        let h = read_header(b"Q\0\0\0\x09", 100).unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                tag: b'Q',
                frame_len: 10
            }
        );
        assert_eq!(h.body_len(), 5);
    }

    #[test]
    fn length_below_four_is_refused() {
        assert_eq!(
            read_header(b"Q\0\0\0\x03", 100),
            Err(ProtocolError::LengthTooSmall {
                tag: Tag(b'Q'),
                declared: 3
            })
        );
    }

    #[test]
    fn oversized_length_is_refused_before_any_body_arrives() {
        let err = read_header(b"Q\xff\xff\xff\xff", 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message 'Q' declares 4294967295 bytes, over the limit of 1048576 bytes"
        );
    }

    #[test]
    fn frames_are_found_whole_and_partial_ones_by_their_header() {
        let buf = b"Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0D\0\0\0\x10ab";
        let found: Vec<_> = frames(buf).map(|f| (f.tag, f.body.len())).collect();
        assert_eq!(found, [(b'Z', 1), (b'C', 9)]);
        let Ok(Next::Partial(h)) = next_frame(&buf[20..], 100) else {
            panic!("a partial DataRow");
        };
        assert_eq!((h.tag, h.frame_len), (b'D', 17));
        assert_eq!(next_frame(&buf[20..23], 100), Ok(Next::Nothing));
        assert!(next_frame(b"D\0\0\0\x02", 100).is_err());
    }

    #[test]
    fn cstr_split() {
        assert_eq!(split_cstr(b"ab\0cd"), Some((&b"ab"[..], &b"cd"[..])));
        assert_eq!(split_cstr(b"ab"), None);
    }

    #[test]
    fn non_printable_tags_are_escaped() {
        assert_eq!(Tag(0).to_string(), "\\x00");
        assert_eq!(Tag(b'Z').to_string(), "'Z'");
    }
}
