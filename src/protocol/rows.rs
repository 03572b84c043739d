//! Result messages ddlgate reads from its own statements' answers: `DataRow` and
//! `CommandComplete` (B).

use super::error::ProtocolError;
use super::frame::one_cstr;

/// The columns of a `DataRow` body (`None` for SQL NULL).
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let malformed = |why| ProtocolError::malformed("DataRow", why);
    let (count, mut rest) = body
        .split_first_chunk::<2>()
        .ok_or_else(|| malformed("shorter than a column count"))?;
    let count = u16::from_be_bytes(*count);
    let mut columns = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("a column length is cut short"))?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            columns.push(None);
            rest = after;
            continue;
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let value = after
            .get(..len)
            .ok_or_else(|| malformed("a column value is cut short"))?;
        columns.push(Some(value));
        rest = after.get(len..).unwrap_or_default();
    }
    if !rest.is_empty() {
        return Err(malformed("bytes after the last column"));
    }
    Ok(columns)
}

/// The command tag of a `CommandComplete` body (`INSERT 0 1`, `ALTER TABLE`, …).
pub fn command_tag(body: &[u8]) -> Result<&[u8], ProtocolError> {
    one_cstr(body, "CommandComplete")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_with_nulls_and_cut_rows_are_refused() {
        let mut body = vec![0, 3];
        body.extend(2i32.to_be_bytes());
        body.extend(b"ab");
        body.extend((-1i32).to_be_bytes());
        body.extend(0i32.to_be_bytes());
        assert_eq!(
            data_row(&body).unwrap(),
            [Some(&b"ab"[..]), None, Some(&b""[..])]
        );
        assert!(data_row(&body[..body.len() - 1]).is_err());
        assert!(data_row(&[0]).is_err());
        let mut long = body.clone();
        long.push(0);
        assert!(data_row(&long).is_err());
    }

    #[test]
    fn command_tags_are_read() {
        assert_eq!(command_tag(b"ALTER TABLE\0").unwrap(), b"ALTER TABLE");
        assert!(command_tag(b"ALTER TABLE").is_err());
    }
}
