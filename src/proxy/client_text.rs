//! Query text as the server will read it, whatever the client's `client_encoding`.
//!
//! The analysis engine reads UTF-8. The server converts a query from the client's encoding
//! before its lexer sees it, so ddlgate must read the same structure — the same quotes,
//! backslashes, semicolons and dollar-quote tags — or a statement could look like a string to
//! ddlgate and like code to the server. Two traps:
//!
//! - Replacing every byte that is not UTF-8 with U+FFFD makes different characters equal:
//!   with `client_encoding = LATIN1`, `$é$` and `$è$` are different dollar-quote tags to the
//!   server and the same one to a lossy reading.
//! - In the client-only encodings (`SJIS`, `SHIFT_JIS_2004`, `BIG5`, `GBK`, `UHC`, `GB18030`, `JOHAB`; the
//!   server refuses them as database encodings for this reason) the second byte of a character
//!   may be ASCII: `0x83 0x5C` is one SJIS character, not a character and a backslash.
//!
//! So text that is not UTF-8 (and, in a client-only encoding, any text with a non-ASCII byte)
//! is read through a mapping that is one-to-one and keeps the encoding's character
//! boundaries: each non-ASCII byte of a single-byte character becomes U+0080–U+00FF, each
//! two-byte character of a client-only encoding one character of plane 15. The server-safe
//! encodings (LATIN*, WIN*, EUC_*, …) never put an ASCII byte inside a character, so for them
//! text that is valid UTF-8 can be read as it is. The mapping is reversed when ddlgate sends
//! text it changed (a rewrite), and text it did not change is sent as the client's own bytes.

use std::borrow::Cow;

/// How a query text was turned into the string the analysis read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The bytes are the string (UTF-8).
    Identity,
    /// Byte by byte: ASCII as is, other bytes as U+0080–U+00FF.
    Bytes,
    /// Character by character in a client-only encoding: ASCII as is, other single bytes as
    /// U+0080–U+00FF, each two-byte unit of a character as U+F0000 + its value, a character's odd
    /// last byte as U+100000 + its value.
    ClientOnly(ClientOnly),
}

/// The client-only encodings, whose multibyte characters may contain ASCII bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOnly {
    /// `SJIS` and `SHIFT_JIS_2004`: 0xA1–0xDF are single-byte katakana.
    ShiftJis,
    /// BIG5, GBK, UHC: every non-ASCII byte starts a two-byte character.
    TwoByte,
    /// GB18030: two bytes, or four when the second is a digit.
    Gb18030,
    /// JOHAB, measured like EUC: 0x8E two bytes, 0x8F three, other non-ASCII two.
    Johab,
}

const PLANE_15: u32 = 0xF_0000;
const PLANE_16: u32 = 0x10_0000;

/// The encodings whose characters may hold ASCII bytes, by the name the server reports in
/// `client_encoding`.
fn client_only(encoding: &str) -> Option<ClientOnly> {
    let is = |name: &str| encoding.eq_ignore_ascii_case(name);
    if is("SJIS") || is("SHIFT_JIS_2004") {
        Some(ClientOnly::ShiftJis)
    } else if is("BIG5") || is("GBK") || is("UHC") {
        Some(ClientOnly::TwoByte)
    } else if is("GB18030") {
        Some(ClientOnly::Gb18030)
    } else if is("JOHAB") {
        Some(ClientOnly::Johab)
    } else {
        None
    }
}

/// The query text `bytes` as the analysis should read it, for a session whose
/// `client_encoding` is `encoding` (UTF-8 when unknown).
pub(crate) fn decode<'a>(bytes: &'a [u8], encoding: Option<&str>) -> (Cow<'a, str>, Mapping) {
    // Every encoding the server accepts from a client reads ASCII as ASCII.
    if bytes.is_ascii() {
        return (Cow::Borrowed(ascii(bytes)), Mapping::Identity);
    }
    let encoding = encoding.unwrap_or("UTF8");
    if let Some(kind) = client_only(encoding) {
        return (
            Cow::Owned(decode_client_only(bytes, kind)),
            Mapping::ClientOnly(kind),
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), Mapping::Identity),
        // A UTF-8 session's server refuses text that is not UTF-8: any reading will do.
        Err(_) if is_utf8(encoding) => (String::from_utf8_lossy(bytes), Mapping::Identity),
        Err(_) => (
            Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            Mapping::Bytes,
        ),
    }
}

fn is_utf8(encoding: &str) -> bool {
    encoding.eq_ignore_ascii_case("UTF8") || encoding.eq_ignore_ascii_case("UNICODE")
}

fn ascii(bytes: &[u8]) -> &str {
    // Checked by the caller: ASCII is UTF-8.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The length of the character starting with the non-ASCII byte `lead`, followed by `next`,
/// as the server measures it (`pg_encoding_mblen`).
fn char_len(kind: ClientOnly, lead: u8, next: Option<u8>) -> usize {
    match kind {
        ClientOnly::ShiftJis if (0xA1..=0xDF).contains(&lead) => 1,
        ClientOnly::Gb18030 if next.is_some_and(|b| b.is_ascii_digit()) => 4,
        ClientOnly::Johab if lead == 0x8F => 3,
        ClientOnly::ShiftJis | ClientOnly::TwoByte | ClientOnly::Gb18030 | ClientOnly::Johab => 2,
    }
}

fn decode_client_only(bytes: &[u8], kind: ClientOnly) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            out.push(char::from(b));
            i = i.saturating_add(1);
            continue;
        }
        let len = char_len(kind, b, bytes.get(i.saturating_add(1)).copied());
        let unit = bytes.get(i..i.saturating_add(len)).unwrap_or_default();
        // A truncated character at the end: the server refuses it; read its bytes one by one.
        if unit.len() < len || len == 1 {
            out.push(char::from(b));
            i = i.saturating_add(1);
            continue;
        }
        // Two bytes at a time: one character each, so a four-byte GB18030 character is two
        // and a three-byte JOHAB one is a pair and a last byte, which may be ASCII and so
        // goes to plane 16 — still one-to-one, and never an ASCII character.
        for pair in unit.chunks(2) {
            match pair {
                [a, b] => out.push(plane_15(*a, *b)),
                [a] => out.push(char::from_u32(PLANE_16 | u32::from(*a)).unwrap_or('?')),
                _ => {}
            }
        }
        i = i.saturating_add(len);
    }
    out
}

fn plane_15(a: u8, b: u8) -> char {
    let value = PLANE_15 | (u32::from(a) << 8) | u32::from(b);
    char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The bytes to send for `text`, a string the analysis read through `mapping` (or produced
/// from one): the inverse mapping. A character the mapping cannot have produced (one in a
/// message ddlgate wrote) becomes `?`.
pub(crate) fn encode(text: &str, mapping: Mapping) -> Cow<'_, [u8]> {
    if mapping == Mapping::Identity {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let code = u32::from(c);
        match (code, mapping) {
            (0..=0xFF, _) => out.push(u8::try_from(code).unwrap_or(b'?')),
            (PLANE_16..=0x10_00FF, Mapping::ClientOnly(_)) => {
                out.push(u8::try_from(code & 0xFF).unwrap_or(b'?'));
            }
            (PLANE_15..=0xF_FFFF, Mapping::ClientOnly(_)) => {
                out.extend_from_slice(&[
                    u8::try_from((code >> 8) & 0xFF).unwrap_or(b'?'),
                    u8::try_from(code & 0xFF).unwrap_or(b'?'),
                ]);
            }
            _ => out.push(b'?'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_read_as_it_is() {
        let (text, mapping) = decode("ALTER TABLE café".as_bytes(), Some("UTF8"));
        assert_eq!(text, "ALTER TABLE café");
        assert_eq!(mapping, Mapping::Identity);
        let (text, _) = decode("SELECT 'é'".as_bytes(), None);
        assert_eq!(text, "SELECT 'é'");
    }

    #[test]
    fn single_byte_encodings_keep_characters_apart() {
        // LATIN1 é (0xE9) and è (0xE8): different dollar-quote tags to the server.
        let bytes = b"SELECT $\xE9$ a $\xE8$ b $\xE9$";
        let (text, mapping) = decode(bytes, Some("LATIN1"));
        assert_eq!(mapping, Mapping::Bytes);
        assert_eq!(text, "SELECT $é$ a $è$ b $é$");
        assert_eq!(encode(&text, mapping).as_ref(), bytes);
    }

    #[test]
    fn client_only_encodings_keep_ascii_trail_bytes_inside_their_character() {
        // SJIS 0x83 0x5C is one character (katakana SO), not a character and a backslash.
        let bytes = b"SELECT E'\x83\x5C'; ALTER TABLE t RENAME a TO b; --'";
        let (text, mapping) = decode(bytes, Some("SJIS"));
        assert_eq!(mapping, Mapping::ClientOnly(ClientOnly::ShiftJis));
        assert!(!text.contains('\\'), "{text}");
        assert_eq!(text.matches('\'').count(), 3);
        assert_eq!(encode(&text, mapping).as_ref(), bytes);
        // Half-width katakana are single bytes.
        let (text, _) = decode(b"SELECT '\xB1'", Some("SJIS"));
        assert_eq!(text, "SELECT '\u{B1}'");
        // Even text that happens to be UTF-8 is read the server's way.
        let (text, _) = decode("SELECT 'Ā\\'".as_bytes(), Some("SJIS"));
        assert_eq!(text.matches('\\').count(), 0, "{text}");
    }

    #[test]
    fn gb18030_and_johab_lengths() {
        let bytes = b"SELECT '\x81\x30\x81\x30' || '\x81\x5C'";
        let (text, mapping) = decode(bytes, Some("GB18030"));
        assert!(!text.contains('\\'));
        assert_eq!(encode(&text, mapping).as_ref(), bytes);
        let bytes = b"SELECT '\x8F\xA1\x5C' || '\xB0\x5C'";
        let (text, mapping) = decode(bytes, Some("JOHAB"));
        assert_eq!(encode(&text, mapping).as_ref(), bytes);
        assert!(!text.contains('\\'), "{text}");
    }

    #[test]
    fn text_ddlgate_wrote_encodes_without_surprises() {
        assert_eq!(
            encode("CREATE INDEX CONCURRENTLY \u{E9} — ok", Mapping::Bytes).as_ref(),
            b"CREATE INDEX CONCURRENTLY \xE9 ? ok"
        );
    }
}
