//! The extended query protocol's frontend messages: `Parse`, `Bind`, `Execute`, `Close`,
//! `Sync`, `Flush` (F) —
//! validating readers of the parts ddlgate looks at, and writers for the messages ddlgate
//! sends itself.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::frame::{put_header, split_cstr};
use super::tag::frontend::{BIND, CLOSE, EXECUTE, PARSE, SYNC};

/// What a `Close` or `Describe` names: a prepared statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `'S'`: a prepared statement.
    Statement,
    /// `'P'`: a portal.
    Portal,
}

impl Target {
    fn byte(self) -> u8 {
        match self {
            Self::Statement => b'S',
            Self::Portal => b'P',
        }
    }
}

/// A `Parse` body: the statement's name, its SQL text, and the parameter types after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    /// The prepared statement's name (empty: the unnamed statement).
    pub name: &'a [u8],
    /// The SQL text.
    pub sql: &'a [u8],
    /// The parameter type count and OIDs, as sent.
    pub rest: &'a [u8],
}

impl<'a> Parse<'a> {
    /// Reads a `Parse` body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let malformed = || ProtocolError::malformed("Parse", "missing statement name or query");
        let (name, rest) = split_cstr(body).ok_or_else(malformed)?;
        let (sql, rest) = split_cstr(rest).ok_or_else(malformed)?;
        Ok(Self { name, sql, rest })
    }

    /// Appends this `Parse` (F).
    pub fn encode(&self, out: &mut BytesMut) {
        put_two_strings(PARSE, self.name, self.sql, self.rest, out);
    }
}

/// A `Bind` body: the portal, the statement it binds, and the parameters after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    /// The portal's name (empty: the unnamed portal).
    pub portal: &'a [u8],
    /// The prepared statement's name.
    pub statement: &'a [u8],
    /// Format codes, parameter values and result format codes, as sent.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Reads a `Bind` body, checking that the parameters after the names are laid out as the
    /// protocol says (format codes, values, result format codes) and end with the body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let malformed = || ProtocolError::malformed("Bind", "missing portal or statement name");
        let (portal, rest) = split_cstr(body).ok_or_else(malformed)?;
        let (statement, rest) = split_cstr(rest).ok_or_else(malformed)?;
        check_bind_parameters(rest)?;
        Ok(Self {
            portal,
            statement,
            rest,
        })
    }

    /// Appends this `Bind` (F).
    pub fn encode(&self, out: &mut BytesMut) {
        put_two_strings(BIND, self.portal, self.statement, self.rest, out);
    }
}

/// Checks the part of a `Bind` body after the names.
fn check_bind_parameters(rest: &[u8]) -> Result<(), ProtocolError> {
    let cut = || ProtocolError::malformed("Bind", "the parameters are cut short or run over");
    let count = |rest: &[u8]| -> Result<(usize, usize), ProtocolError> {
        // Unsigned, as PostgreSQL reads them: up to 65,535 parameters.
        let n = rest.first_chunk::<2>().ok_or_else(cut)?;
        Ok((usize::from(u16::from_be_bytes(*n)), 2))
    };
    let (formats, skip) = count(rest)?;
    let rest = rest
        .get(skip.saturating_add(formats.saturating_mul(2))..)
        .ok_or_else(cut)?;
    let (params, skip) = count(rest)?;
    let mut rest = rest.get(skip..).ok_or_else(cut)?;
    for _ in 0..params {
        let (len, after) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
        let len = i32::from_be_bytes(*len);
        rest = match usize::try_from(len) {
            Ok(len) => after.get(len..).ok_or_else(cut)?,
            Err(_) if len == -1 => after,
            Err(_) => return Err(cut()),
        };
    }
    let (results, skip) = count(rest)?;
    if rest.len() == skip.saturating_add(results.saturating_mul(2)) {
        Ok(())
    } else {
        Err(cut())
    }
}

/// The portal an `Execute` body runs.
pub fn execute_portal(body: &[u8]) -> Result<&[u8], ProtocolError> {
    match split_cstr(body) {
        Some((portal, rest)) if rest.len() == 4 => Ok(portal),
        _ => Err(ProtocolError::malformed(
            "Execute",
            "expected a portal name and a row limit",
        )),
    }
}

/// Appends `Execute` (F) of `portal` with no row limit.
pub(crate) fn put_execute(portal: &[u8], out: &mut BytesMut) {
    put_header(out, EXECUTE, portal.len().saturating_add(5));
    out.put_slice(portal);
    out.put_u8(0);
    out.put_u32(0);
}

/// Appends `Sync` (F).
pub(crate) fn put_sync(out: &mut BytesMut) {
    put_header(out, SYNC, 0);
}

/// Appends `Flush` (F).
#[cfg(test)]
pub(crate) fn put_flush(out: &mut BytesMut) {
    put_header(out, super::tag::frontend::FLUSH, 0);
}

/// What a `Close` body closes.
pub fn close_target(body: &[u8]) -> Result<(Target, &[u8]), ProtocolError> {
    let malformed = || ProtocolError::malformed("Close", "expected 'S' or 'P' and a name");
    let (&kind, rest) = body.split_first().ok_or_else(malformed)?;
    let target = match kind {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => return Err(malformed()),
    };
    match split_cstr(rest) {
        Some((name, [])) => Ok((target, name)),
        _ => Err(malformed()),
    }
}

/// Appends `Close` (F) of a prepared statement or portal.
pub(crate) fn put_close(target: Target, name: &[u8], out: &mut BytesMut) {
    put_header(out, CLOSE, name.len().saturating_add(2));
    out.put_u8(target.byte());
    out.put_slice(name);
    out.put_u8(0);
}

/// Appends a message whose body is two C strings and then `rest`.
fn put_two_strings(tag: u8, first: &[u8], second: &[u8], rest: &[u8], out: &mut BytesMut) {
    let len = first
        .len()
        .saturating_add(1)
        .saturating_add(second.len())
        .saturating_add(1)
        .saturating_add(rest.len());
    put_header(out, tag, len);
    out.put_slice(first);
    out.put_u8(0);
    out.put_slice(second);
    out.put_u8(0);
    out.put_slice(rest);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let mut out = BytesMut::new();
        let parse = Parse {
            name: b"s1",
            sql: b"SELECT $1",
            rest: &[0, 1, 0, 0, 0, 23],
        };
        parse.encode(&mut out);
        assert_eq!(out[0], PARSE);
        assert_eq!(Parse::decode(&out[5..]).unwrap(), parse);

        let mut out = BytesMut::new();
        let bind = Bind {
            portal: b"p",
            statement: b"s1",
            rest: &[0, 0, 0, 0, 0, 0],
        };
        bind.encode(&mut out);
        assert_eq!(Bind::decode(&out[5..]).unwrap(), bind);

        let mut out = BytesMut::new();
        put_execute(b"p", &mut out);
        assert_eq!(&out[..], b"E\0\0\0\x0ap\0\0\0\0\0");
        assert_eq!(execute_portal(&out[5..]).unwrap(), b"p");

        let mut out = BytesMut::new();
        put_sync(&mut out);
        put_flush(&mut out);
        assert_eq!(&out[..], b"S\0\0\0\x04H\0\0\0\x04");

        for target in [Target::Statement, Target::Portal] {
            let mut out = BytesMut::new();
            put_close(target, b"x", &mut out);
            assert_eq!(close_target(&out[5..]).unwrap(), (target, &b"x"[..]));
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(Parse::decode(b"name-without-end").is_err());
        assert!(Parse::decode(b"name\0sql-without-end").is_err());
        assert!(Bind::decode(b"\0").is_err());
        assert!(Bind::decode(b"\0\0\0\0\0").is_err());
        // One text parameter of 3 bytes, one NULL, one binary result column.
        let good = b"p\0s\0\0\x01\0\0\0\x02\0\0\0\x03abc\xff\xff\xff\xff\0\x01\0\x01";
        assert!(Bind::decode(good).is_ok());
        assert!(Bind::decode(&good[..good.len() - 1]).is_err());
        assert!(Bind::decode(&[&good[..], b"x"].concat()).is_err());
        // Counts are unsigned: 40,000 parameters (batch inserts) are fine.
        let mut many = b"\0\0\0\0".to_vec();
        many.extend(40_000u16.to_be_bytes());
        for _ in 0..40_000 {
            many.extend((-1i32).to_be_bytes());
        }
        many.extend([0, 0]);
        assert!(Bind::decode(&many).is_ok());
        assert!(execute_portal(b"p\0\0\0").is_err());
        assert!(close_target(b"Xname\0").is_err());
        assert!(close_target(b"S").is_err());
        assert!(close_target(b"Sname\0extra").is_err());
    }
}
