//! `Query` (F): the simple query protocol's one message.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::frame::{one_cstr, put_header};
use super::tag::frontend::QUERY;

/// The SQL text of a `Query` body.
pub fn query_text(body: &[u8]) -> Result<&[u8], ProtocolError> {
    one_cstr(body, "Query")
}

/// Appends a `Query` (F) of `sql`.
pub(crate) fn put_query(sql: &[u8], out: &mut BytesMut) {
    put_header(out, QUERY, sql.len().saturating_add(1));
    out.put_slice(sql);
    out.put_u8(0);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_and_a_body_without_its_nul_is_refused() {
        let mut out = BytesMut::new();
        put_query(b"SELECT 1", &mut out);
        assert_eq!(&out[..], b"Q\0\0\0\x0dSELECT 1\0");
        assert_eq!(query_text(&out[5..]).unwrap(), b"SELECT 1");
        assert!(query_text(b"SELECT 1").is_err());
        assert!(query_text(b"SELECT 1\0trailing").is_err());
    }
}
