//! The COPY sub-protocol's messages ddlgate writes itself: `CopyFail` (F).

use bytes::{BufMut, BytesMut};

use super::frame::put_header;
use super::tag::frontend::COPY_FAIL;

/// Appends `CopyFail` (F) with `reason`: ddlgate ends a COPY in the client's place.
pub(crate) fn put_copy_fail(reason: &str, out: &mut BytesMut) {
    // An embedded NUL would end the string early: dropped.
    let reason: Vec<u8> = reason.bytes().filter(|&b| b != 0).collect();
    put_header(out, COPY_FAIL, reason.len().saturating_add(1));
    out.put_slice(&reason);
    out.put_u8(0);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn copy_fail_is_one_string() {
        let mut out = BytesMut::new();
        put_copy_fail("audit trail unavailable", &mut out);
        assert_eq!(out[0], b'f');
        assert_eq!(&out[5..], b"audit trail unavailable\0");
        assert_eq!(
            u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            out.len() - 1
        );
    }
}
