//! A cheap check that proves a query string is one plain DML statement (or one
//! transaction-control statement), so the proxy can skip the full parse on the hot path.
//!
//! It reads the first keyword after whitespace and comments, then walks the rest once to prove
//! there is no second statement and no `SELECT … INTO` (which creates a table). Anything it
//! cannot prove — another first word, a second statement, `INTO` after `SELECT`/`WITH`, a
//! backslash inside a quoted string (whose meaning depends on `standard_conforming_strings`),
//! an unterminated quote or comment — is sent to the full parse. It may say "parse it" for a
//! harmless statement; it must never say "plain DML" for anything else.

use super::scan::ByteSet;

/// What the pre-filter proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefilter {
    /// One statement of plain DML; no DDL, no table creation.
    Dml(DmlKind),
    /// One transaction-control statement (`BEGIN`, `START TRANSACTION`, `COMMIT`, `END`,
    /// `ROLLBACK`, `ABORT`, `SAVEPOINT`, `RELEASE`), which the TPC-B-like traffic of every
    /// application sends around its DML.
    TransactionControl,
    /// Could not prove it: parse it.
    NeedsParse,
}

/// The kind of a proven DML statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    /// `SELECT`, `VALUES` or `TABLE`: reads only (functions it calls aside).
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `WITH …`: may contain data-modifying CTEs.
    With,
}

/// Classifies a query string. See the module docs for what is proven.
pub fn prefilter(sql: &str) -> Prefilter {
    prefilter_bytes(sql.as_bytes()).0
}

/// [`prefilter`] of a text's bytes (which must be the text as the server reads it: ASCII, or
/// UTF-8), and for a proven statement whether it quotes anything (a string, a quoted
/// identifier or a dollar-quoted body).
pub(crate) fn prefilter_bytes(bytes: &[u8]) -> (Prefilter, bool) {
    let Some(start) = skip_space_and_comments(bytes, 0) else {
        return (Prefilter::NeedsParse, false);
    };
    let word_end = bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .map_or(bytes.len(), |n| start.saturating_add(n));
    let word = bytes.get(start..word_end).unwrap_or_default();
    let kind = match word.len() {
        4 if word.eq_ignore_ascii_case(b"with") => DmlKind::With,
        5 if word.eq_ignore_ascii_case(b"table") => DmlKind::Select,
        6 if word.eq_ignore_ascii_case(b"select") => DmlKind::Select,
        6 if word.eq_ignore_ascii_case(b"insert") => DmlKind::Insert,
        6 if word.eq_ignore_ascii_case(b"update") => DmlKind::Update,
        6 if word.eq_ignore_ascii_case(b"delete") => DmlKind::Delete,
        6 if word.eq_ignore_ascii_case(b"values") => DmlKind::Select,
        _ if is_transaction_control(word) => {
            return match rest_is_one_plain_statement(bytes, word_end, false) {
                Some(quoted) => (Prefilter::TransactionControl, quoted),
                None => (Prefilter::NeedsParse, false),
            };
        }
        _ => return (Prefilter::NeedsParse, false),
    };
    let forbid_into = matches!(kind, DmlKind::Select | DmlKind::With);
    match rest_is_one_plain_statement(bytes, word_end, forbid_into) {
        Some(quoted) => (Prefilter::Dml(kind), quoted),
        None => (Prefilter::NeedsParse, false),
    }
}

/// The first words of transaction-control statements. `PREPARE TRANSACTION` is left out (its
/// first word also starts `PREPARE name AS …`).
fn is_transaction_control(word: &[u8]) -> bool {
    let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
    match word.len() {
        3 => is(b"end"),
        5 => is(b"begin") || is(b"start") || is(b"abort"),
        6 => is(b"commit"),
        7 => is(b"release"),
        8 => is(b"rollback"),
        9 => is(b"savepoint"),
        _ => false,
    }
}

/// The next word (ASCII letters) at or after `from`, outside comments, and the offset after
/// it; other bytes between words are skipped. For reading the few words of a statement the
/// pre-filter already proved to be transaction control.
pub(crate) fn word_at(bytes: &[u8], mut from: usize) -> Option<(&[u8], usize)> {
    loop {
        from = skip_space_and_comments(bytes, from)?;
        let rest = bytes.get(from..)?;
        let len = rest
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if len > 0 {
            let end = from.saturating_add(len);
            return Some((bytes.get(from..end)?, end));
        }
        from = from.saturating_add(1);
    }
}

/// Skips whitespace and comments from `i`; `None` if a comment is unterminated or nothing but
/// space and comments remain.
fn skip_space_and_comments(bytes: &[u8], mut i: usize) -> Option<usize> {
    // Most statements start with their first word.
    if bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
        return Some(i);
    }
    loop {
        match (bytes.get(i), bytes.get(i.saturating_add(1))) {
            (Some(b), _) if b.is_ascii_whitespace() => i = i.saturating_add(1),
            (Some(b'-'), Some(b'-')) => {
                let rest = bytes.get(i..)?;
                i = i.saturating_add(rest.iter().position(|&b| b == b'\n')?);
            }
            (Some(b'/'), Some(b'*')) => i = skip_block_comment(bytes, i)?,
            (Some(_), _) => return Some(i),
            (None, _) => return None,
        }
    }
}

/// Skips a (possibly nested) block comment starting at `i`; the offset after it, if closed.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match (bytes.get(i)?, bytes.get(i.saturating_add(1))) {
            (b'/', Some(b'*')) => {
                depth = depth.saturating_add(1);
                i = i.saturating_add(2);
            }
            (b'*', Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i = i.saturating_add(2);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i = i.saturating_add(1),
        }
    }
}

/// Walks the statement after its first word: `Some` if it ends without a second statement, an
/// `INTO` (when forbidden), or anything the walk cannot read with certainty, saying whether it
/// quotes anything.
fn rest_is_one_plain_statement(bytes: &[u8], mut i: usize, forbid_into: bool) -> Option<bool> {
    let stops = if forbid_into {
        &STOPS_WITH_INTO
    } else {
        &STOPS
    };
    // Whether the previous byte could be part of an identifier (for word boundaries).
    let mut in_word = false;
    let mut quoted = false;
    loop {
        // Runs of bytes that mean nothing to the walk are skipped in one tight loop: most of
        // an ordinary statement is names, numbers, operators and spaces.
        let rest = bytes.get(i..).unwrap_or_default();
        let run = stops.find(rest).unwrap_or(rest.len());
        if run > 0 {
            in_word = rest.get(run - 1).copied().is_some_and(is_ident_byte);
            i = i.saturating_add(run);
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let next = bytes.get(i.saturating_add(1)).copied();
        match b {
            b'\'' => {
                let end = skip_quoted(bytes, i, b'\'')?;
                quoted = true;
                i = end;
                in_word = false;
                continue;
            }
            b'"' => {
                let end = skip_quoted(bytes, i, b'"')?;
                quoted = true;
                i = end;
                in_word = true;
                continue;
            }
            b'$' if !in_word => match dollar_quote_end(bytes, i) {
                DollarQuote::NotAQuote => {}
                DollarQuote::Unterminated => return None,
                DollarQuote::EndsAt(end) => {
                    quoted = true;
                    i = end;
                    in_word = false;
                    continue;
                }
            },
            b'-' if next == Some(b'-') => {
                match bytes
                    .get(i..)
                    .and_then(|r| r.iter().position(|&c| c == b'\n'))
                {
                    Some(n) => i = i.saturating_add(n),
                    None => return Some(quoted),
                }
                in_word = false;
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(bytes, i)?;
                in_word = false;
                continue;
            }
            b';' => {
                // Only space and comments may follow.
                let only_space_follows = skip_space_and_comments(bytes, i.saturating_add(1))
                    .is_none()
                    && !has_unterminated_comment(bytes, i.saturating_add(1));
                return only_space_follows.then_some(quoted);
            }
            b'i' | b'I' if forbid_into && !in_word => {
                let word = bytes.get(i..i.saturating_add(4)).unwrap_or_default();
                let after = bytes.get(i.saturating_add(4)).copied();
                if word.eq_ignore_ascii_case(b"into") && !after.is_some_and(is_ident_byte) {
                    return None;
                }
            }
            _ => {}
        }
        in_word = is_ident_byte(b);
        i = i.saturating_add(1);
    }
    Some(quoted)
}

/// The bytes at which [`rest_is_one_plain_statement`] must look: quotes, `$`, comment starts,
/// `;`, and (in the second set) the `i` of `INTO`.
static STOPS: ByteSet = ByteSet::stops(false);
static STOPS_WITH_INTO: ByteSet = ByteSet::stops(true);

fn has_unterminated_comment(bytes: &[u8], from: usize) -> bool {
    let mut i = from;
    loop {
        match (bytes.get(i), bytes.get(i.saturating_add(1))) {
            (None, _) => return false,
            (Some(b'/'), Some(b'*')) => match skip_block_comment(bytes, i) {
                Some(end) => i = end,
                None => return true,
            },
            (Some(b'-'), Some(b'-')) => {
                match bytes
                    .get(i..)
                    .and_then(|r| r.iter().position(|&c| c == b'\n'))
                {
                    Some(n) => i = i.saturating_add(n),
                    None => return false,
                }
            }
            _ => i = i.saturating_add(1),
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Skips a quoted string or identifier starting at `i`; `None` if unterminated or if a
/// backslash makes its end depend on settings.
fn skip_quoted(bytes: &[u8], i: usize, quote: u8) -> Option<usize> {
    let mut j = i.saturating_add(1);
    loop {
        match bytes.get(j)? {
            b'\\' if quote == b'\'' => return None,
            &c if c == quote => {
                if bytes.get(j.saturating_add(1)) == Some(&quote) {
                    j = j.saturating_add(2);
                } else {
                    return Some(j.saturating_add(1));
                }
            }
            _ => j = j.saturating_add(1),
        }
    }
}

enum DollarQuote {
    NotAQuote,
    Unterminated,
    EndsAt(usize),
}

/// Reads `$tag$…$tag$` at `i` (the tag may be empty); `$1` is a parameter, not a quote.
fn dollar_quote_end(bytes: &[u8], i: usize) -> DollarQuote {
    let tag_start = i.saturating_add(1);
    let mut j = tag_start;
    while let Some(&c) = bytes.get(j) {
        let allowed = if j == tag_start {
            c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
        } else {
            c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
        };
        if c == b'$' {
            break;
        }
        if !allowed {
            return DollarQuote::NotAQuote;
        }
        j = j.saturating_add(1);
    }
    if bytes.get(j) != Some(&b'$') {
        return DollarQuote::NotAQuote;
    }
    let delimiter = bytes.get(i..=j).unwrap_or_default();
    let body_start = j.saturating_add(1);
    let body = bytes.get(body_start..).unwrap_or_default();
    match body.windows(delimiter.len()).position(|w| w == delimiter) {
        Some(n) => {
            DollarQuote::EndsAt(body_start.saturating_add(n).saturating_add(delimiter.len()))
        }
        None => DollarQuote::Unterminated,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::parse::{self, NodeEnum, Options};

    fn dml(sql: &str) -> Option<DmlKind> {
        match prefilter(sql) {
            Prefilter::Dml(k) => Some(k),
            Prefilter::TransactionControl | Prefilter::NeedsParse => None,
        }
    }

    #[test]
    fn plain_dml_is_proven() {
        assert_eq!(dml("SELECT 1"), Some(DmlKind::Select));
        assert_eq!(
            dml("  -- hi\n /* a /* b */ */ select * from t where id = $1;"),
            Some(DmlKind::Select)
        );
        assert_eq!(
            dml("INSERT INTO t (a) VALUES ($1) RETURNING id"),
            Some(DmlKind::Insert)
        );
        assert_eq!(
            dml("UPDATE t SET a = 'it''s' WHERE id = 1"),
            Some(DmlKind::Update)
        );
        assert_eq!(
            dml("delete from t where id = any($1)"),
            Some(DmlKind::Delete)
        );
        assert_eq!(
            dml("WITH x AS (SELECT 1) SELECT * FROM x"),
            Some(DmlKind::With)
        );
        assert_eq!(dml("VALUES (1), (2)"), Some(DmlKind::Select));
        assert_eq!(
            dml("SELECT $$;$$, $tag$ into ; $tag$, \"into\", 'into;'"),
            Some(DmlKind::Select)
        );
        assert_eq!(
            dml("SELECT intox, x_into, pointo FROM t"),
            Some(DmlKind::Select)
        );
        assert_eq!(dml("SELECT 1; -- trailing comment"), Some(DmlKind::Select));
    }

    #[test]
    fn anything_unusual_goes_to_the_parser() {
        for sql in [
            "CREATE TABLE t (a int)",
            "SELECT 1; DROP TABLE t",
            "SELECT 1;DROP TABLE t",
            "SELECT * INTO new_table FROM t",
            "select a into\tnew_table from t",
            "WITH x AS (SELECT 1) SELECT * INTO t2 FROM x",
            "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
            "SELECT 'a\\'; DROP TABLE t; --'",
            "SELECT E'\\''; DROP TABLE t",
            "SELECT $$ unterminated",
            "SELECT 'unterminated",
            "SELECT /* unterminated",
            "SELECT 1; /* unterminated",
            "/* only a comment */",
            "",
            "   ",
            "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
            "COPY t FROM STDIN",
            "SET lock_timeout = 0",
            "SELECTX 1",
            "/* x */ ALTER TABLE t ADD COLUMN c int",
        ] {
            assert_eq!(prefilter(sql), Prefilter::NeedsParse, "{sql:?}");
        }
    }

    /// Whatever the pre-filter calls plain DML, PostgreSQL's grammar agrees is exactly one
    /// statement of that kind (and not SELECT INTO).
    #[test]
    fn the_parser_agrees_with_every_dml_verdict() {
        let samples = [
            "SELECT 1",
            "select * from t where a = 'x' and b = $1",
            "INSERT INTO t VALUES ('$1', $$x$$)",
            "UPDATE t SET a = a + 1",
            "DELETE FROM t",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "TABLE t",
            "VALUES (1)",
            "SELECT 1 -- ; DROP TABLE t",
            "SELECT $a$ ; $a$ ; ",
            "SELECT \"weird;name\" FROM t;\n\n",
        ];
        for sql in samples {
            let Prefilter::Dml(_) = prefilter(sql) else {
                panic!("expected DML: {sql}");
            };
            let parsed = parse::parse_script(sql, Options::default());
            assert_eq!(parsed.len(), 1, "{sql}");
            let tree = parsed[0].tree.as_ref().unwrap();
            assert!(
                matches!(
                    tree,
                    NodeEnum::SelectStmt(s) if s.into_clause.is_none()
                ) || matches!(
                    tree,
                    NodeEnum::InsertStmt(_) | NodeEnum::UpdateStmt(_) | NodeEnum::DeleteStmt(_)
                ),
                "{sql}: {tree:?}"
            );
        }
    }

    /// Transaction control is proven one statement of that kind; anything after it goes to
    /// the parser.
    #[test]
    fn transaction_control_is_proven_and_the_parser_agrees() {
        for sql in [
            "BEGIN",
            "begin;",
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "COMMIT",
            "END",
            "ROLLBACK",
            "abort",
            "SAVEPOINT s1",
            "RELEASE SAVEPOINT s1",
            "ROLLBACK TO SAVEPOINT s1",
            "COMMIT AND CHAIN",
        ] {
            assert_eq!(prefilter(sql), Prefilter::TransactionControl, "{sql:?}");
            let parsed = parse::parse_script(sql, Options::default());
            assert_eq!(parsed.len(), 1, "{sql}");
            assert!(
                matches!(parsed[0].tree, Ok(NodeEnum::TransactionStmt(_))),
                "{sql}"
            );
        }
        for sql in [
            "BEGIN; DROP TABLE t",
            "COMMIT; CREATE INDEX i ON t (a)",
            "PREPARE TRANSACTION 'x'",
            "ENDX",
        ] {
            assert_eq!(prefilter(sql), Prefilter::NeedsParse, "{sql:?}");
        }
    }
}
