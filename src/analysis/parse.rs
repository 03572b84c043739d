//! The only module that names the parser crate: `pg_query`, PostgreSQL's own grammar (version
//! 18) compiled as a library.
//!
//! A query string is split into statements by the parser itself, so the boundaries are exactly
//! PostgreSQL's (dollar quotes, nested comments, `E''` strings, `standard_conforming_strings`).
//! When the whole string does not parse, it is split by PostgreSQL's scanner and each piece is
//! parsed on its own, so the good statements are still analysed and the bad one is reported
//! with the position of the token the grammar rejected.
//!
//! Every call into the parser is made under `catch_unwind`: the crate's tree walk has panicking
//! paths, and a parser bug must make a statement "unparsable", never take down a session.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub(crate) use pg_query::NodeEnum;
pub(crate) use pg_query::NodeRef;
pub(crate) use pg_query::protobuf as ast;

/// Parser settings that change how text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `standard_conforming_strings`: with it off, a backslash escapes a quote in `'...'`.
    pub standard_conforming_strings: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            standard_conforming_strings: true,
        }
    }
}

impl Options {
    fn parser_options(self) -> pg_query::ParserOptions {
        if self.standard_conforming_strings {
            pg_query::ParserOptions::DEFAULT
        } else {
            pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
        }
    }
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Byte range of the statement in the source, from its first token to its last (comments
    /// before it and the terminating semicolon excluded).
    pub span: Range<usize>,
    /// The statement's tree, or the reason the grammar refused it.
    pub tree: Result<NodeEnum, SyntaxError>,
}

/// A statement PostgreSQL's grammar refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// PostgreSQL's message, e.g. `syntax error at or near "garbage"`.
    pub message: String,
    /// Byte offset in the source of the token the grammar stopped at.
    pub position: usize,
}

/// A lexical token of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte range in the source.
    pub span: Range<usize>,
    /// What kind of token.
    pub kind: TokenKind,
}

/// Token classes the analysis cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `-- …` up to the end of the line.
    LineComment,
    /// `/* … */`, possibly nested.
    BlockComment,
    /// A keyword (reserved or not).
    Keyword,
    /// `;`
    Semicolon,
    /// An identifier, plain or quoted (`orders`, `"Orders"`, `U&"…"`), as written.
    Identifier,
    /// A string constant in any spelling: `'…'`, `E'…'`, `U&'…'`, `$tag$…$tag$`, `B'…'`,
    /// `X'…'`.
    StringLiteral,
    /// Anything else: identifiers, literals, operators, punctuation.
    Other,
}

// Token numbers from PostgreSQL's gram.h as exported by libpg_query's protobuf enum.
const TOKEN_SEMICOLON: i32 = 59;
const TOKEN_IDENT: i32 = 258;
const TOKEN_UIDENT: i32 = 259;
const TOKEN_SCONST: i32 = 261;
const TOKEN_XCONST: i32 = 264;
const TOKEN_SQL_COMMENT: i32 = 275;
const TOKEN_C_COMMENT: i32 = 276;
const KEYWORD_KIND_NO_KEYWORD: i32 = 0;

fn guarded<T>(f: impl FnOnce() -> Result<T, pg_query::Error>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(
            pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m),
        )) => Err(m),
        Ok(Err(pg_query::Error::Conversion(_))) => {
            Err("the text contains a NUL byte, which PostgreSQL never accepts".into())
        }
        Ok(Err(pg_query::Error::Decode(e))) => {
            Err(format!("statement too deeply nested to analyse ({e})"))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the parser failed on this statement".into()),
    }
}

/// Parses a whole query string into its statements.
///
/// Empty statements (`;;`) yield nothing, as in PostgreSQL.
pub fn parse_script(source: &str, options: Options) -> Vec<Parsed> {
    match guarded(|| pg_query::parse(source, options.parser_options())) {
        Ok(result) => result
            .protobuf
            .stmts
            .into_iter()
            .filter_map(|raw| {
                let start = usize::try_from(raw.stmt_location).ok()?;
                let len = usize::try_from(raw.stmt_len).ok()?;
                let end = if len == 0 {
                    source.len()
                } else {
                    start.saturating_add(len)
                };
                let end = trim_end(source, start, end.min(source.len()));
                let tree = raw.stmt?.node?;
                Some(Parsed {
                    span: start..end,
                    tree: Ok(tree),
                })
            })
            .collect(),
        Err(_) => parse_piecewise(source, options),
    }
}

/// The fallback when the whole string does not parse: split with the scanner, parse each
/// piece, locate each failure.
fn parse_piecewise(source: &str, options: Options) -> Vec<Parsed> {
    let Ok(tokens) = tokens(source) else {
        // Not even the scanner can read it (an unterminated quote or comment): one statement
        // from the first token to the end, failing where the scanner gave up.
        let start = first_non_space(source, 0);
        let message = guarded(|| pg_query::scan(source).map(|_| ()))
            .err()
            .unwrap_or_else(|| "cannot be read".into());
        return vec![Parsed {
            span: start..trim_end(source, start, source.len()),
            tree: Err(SyntaxError {
                position: start,
                message,
            }),
        }];
    };
    let mut out = Vec::new();
    let mut piece: Vec<&Token> = Vec::new();
    for token in tokens.iter().chain(std::iter::once(&Token {
        span: source.len()..source.len(),
        kind: TokenKind::Semicolon,
    })) {
        match token.kind {
            TokenKind::Semicolon => {
                if let (Some(first), Some(last)) = (piece.first(), piece.last()) {
                    let span = first.span.start..last.span.end;
                    out.push(parse_piece(source, span, &piece, options));
                }
                piece.clear();
            }
            TokenKind::LineComment | TokenKind::BlockComment => {}
            _ => piece.push(token),
        }
    }
    out
}

fn parse_piece(source: &str, span: Range<usize>, piece: &[&Token], options: Options) -> Parsed {
    let text = source.get(span.clone()).unwrap_or_default();
    match guarded(|| pg_query::parse(text, options.parser_options())) {
        Ok(result) => {
            let tree = result
                .protobuf
                .stmts
                .into_iter()
                .next()
                .and_then(|raw| raw.stmt)
                .and_then(|n| n.node);
            Parsed {
                span,
                tree: tree.ok_or_else(|| SyntaxError {
                    message: "empty statement".into(),
                    position: 0,
                }),
            }
        }
        Err(message) => {
            let position = error_position(source, &span, piece, options, &message);
            Parsed {
                span,
                tree: Err(SyntaxError { message, position }),
            }
        }
    }
}

/// Finds the token where the grammar stopped, by bisecting on statement prefixes: a prefix
/// that ends before the bad token fails only "at end of input" (or parses), every prefix that
/// includes it fails at it.
fn error_position(
    source: &str,
    span: &Range<usize>,
    piece: &[&Token],
    options: Options,
    message: &str,
) -> usize {
    if message.ends_with("at end of input") {
        return span.end;
    }
    let fails_before_end = |count: usize| -> bool {
        let Some(last) = count.checked_sub(1).and_then(|i| piece.get(i)) else {
            return false;
        };
        let prefix = source.get(span.start..last.span.end).unwrap_or_default();
        match guarded(|| pg_query::parse(prefix, options.parser_options())) {
            Ok(_) => false,
            Err(m) => !m.ends_with("at end of input"),
        }
    };
    // Smallest token count whose prefix fails somewhere other than at its end.
    let (mut lo, mut hi) = (1, piece.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails_before_end(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo.checked_sub(1)
        .and_then(|i| piece.get(i))
        .map_or(span.start, |t| t.span.start)
}

/// Every token of the source, comments included.
pub fn tokens(source: &str) -> Result<Vec<Token>, String> {
    let scanned = guarded(|| pg_query::scan(source))?;
    Ok(scanned
        .tokens
        .iter()
        .filter_map(|t| {
            let span = usize::try_from(t.start).ok()?..usize::try_from(t.end).ok()?;
            let kind = match t.token {
                TOKEN_SEMICOLON => TokenKind::Semicolon,
                TOKEN_SQL_COMMENT => TokenKind::LineComment,
                TOKEN_C_COMMENT => TokenKind::BlockComment,
                TOKEN_IDENT | TOKEN_UIDENT => TokenKind::Identifier,
                TOKEN_SCONST..=TOKEN_XCONST => TokenKind::StringLiteral,
                _ if t.keyword_kind != KEYWORD_KIND_NO_KEYWORD => TokenKind::Keyword,
                _ => TokenKind::Other,
            };
            Some(Token { span, kind })
        })
        .collect())
}

/// The text with every string constant replaced by `'…'` (for audit records that must not
/// carry secrets from defaults, comments or function bodies). Text the scanner cannot read is
/// replaced whole.
pub fn redact_literals(source: &str) -> String {
    let Ok(tokens) = tokens(source) else {
        return "<redacted: unreadable statement>".to_owned();
    };
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for t in tokens.iter().filter(|t| t.kind == TokenKind::StringLiteral) {
        out.push_str(source.get(at..t.span.start).unwrap_or_default());
        out.push_str("'…'");
        at = t.span.end;
    }
    out.push_str(source.get(at..).unwrap_or_default());
    out
}

/// The text with its constants replaced by `$1`, `$2`, … as `pg_stat_statements` shows them
/// (statements differing only in constants read alike); `None` when it does not parse.
pub(crate) fn normalize(source: &str) -> Option<String> {
    guarded(|| pg_query::normalize(source)).ok()
}

/// Parses the body of a PL/pgSQL function or `DO` block given as a `CREATE FUNCTION` or `DO`
/// statement, returning `libpg_query`'s JSON tree.
pub fn parse_plpgsql(statement: &str) -> Result<serde_json::Value, String> {
    guarded(|| pg_query::parse_plpgsql(statement))
}

fn first_non_space(source: &str, from: usize) -> usize {
    source
        .get(from..)
        .and_then(|rest| rest.find(|c: char| !c.is_whitespace()))
        .map_or(source.len(), |i| from.saturating_add(i))
}

/// Moves `end` back over whitespace and a trailing semicolon.
fn trim_end(source: &str, start: usize, end: usize) -> usize {
    let text = source.get(start..end).unwrap_or_default();
    let trimmed = text.trim_end().trim_end_matches(';').trim_end();
    start.saturating_add(trimmed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<&str> {
        parse_script(source, Options::default())
            .iter()
            .map(|p| &source[p.span.clone()])
            .collect()
    }

    #[test]
    fn statements_are_split_exactly_as_postgres_does() {
        let source = "  -- leading comment\n SELECT 1; /* c /* nested */ */ CREATE INDEX i ON t (a);;\n\
                      DO $body$ BEGIN PERFORM 1; END $body$; SELECT E'it\\'s; fine', 'a;b'";
        assert_eq!(
            texts(source),
            [
                "SELECT 1",
                "CREATE INDEX i ON t (a)",
                "DO $body$ BEGIN PERFORM 1; END $body$",
                "SELECT E'it\\'s; fine', 'a;b'",
            ]
        );
    }

    #[test]
    fn standard_conforming_strings_off_changes_where_a_string_ends() {
        // With the setting off, \' escapes the quote, so the semicolon is inside the string.
        let source = r"SELECT 'a\'; DROP TABLE t; --'";
        let off = Options {
            standard_conforming_strings: false,
        };
        assert_eq!(parse_script(source, off).len(), 1);
        let on = parse_script(source, Options::default());
        assert!(on.len() >= 2, "{on:?}");
    }

    #[test]
    fn a_bad_statement_is_located_and_the_good_ones_still_parse() {
        let source = "SELECT 1;\nCREATE TABLE t (a int) garbage;\nCREATE INDEX i ON t (a);";
        let parsed = parse_script(source, Options::default());
        assert_eq!(parsed.len(), 3);
        assert!(parsed[0].tree.is_ok() && parsed[2].tree.is_ok());
        let err = parsed[1].tree.as_ref().unwrap_err();
        assert_eq!(err.message, "syntax error at or near \"garbage\"");
        assert_eq!(&source[err.position..err.position + 7], "garbage");
    }

    #[test]
    fn an_incomplete_statement_fails_at_its_end() {
        let source = "ALTER TABLE t ADD COLUMN";
        let parsed = parse_script(source, Options::default());
        let err = parsed[0].tree.as_ref().unwrap_err();
        assert_eq!(err.position, source.len());
    }

    #[test]
    fn an_unterminated_string_is_one_failing_statement() {
        let parsed = parse_script("SELECT 1; SELECT 'x", Options::default());
        assert_eq!(parsed.len(), 1);
        assert!(
            parsed[0]
                .tree
                .as_ref()
                .unwrap_err()
                .message
                .contains("unterminated")
        );
    }

    #[test]
    fn nul_bytes_are_an_error_not_a_panic() {
        let parsed = parse_script("SELECT 1\0", Options::default());
        assert!(parsed[0].tree.is_err());
    }

    #[test]
    fn comments_are_tokens() {
        let kinds: Vec<TokenKind> = tokens("SELECT 1; -- hi\n/* c */ x")
            .unwrap()
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                TokenKind::Keyword,
                TokenKind::Other,
                TokenKind::Semicolon,
                TokenKind::LineComment,
                TokenKind::BlockComment,
                TokenKind::Identifier
            ]
        );
    }

    #[test]
    fn redaction_replaces_every_string_constant() {
        let sql = "ALTER ROLE app PASSWORD 'hunter2'; COMMENT ON TABLE t IS E'key=\\'abc\\''; ALTER TABLE t ALTER c SET DEFAULT $s$secret$s$ || U&'x' || X'1F'";
        let redacted = redact_literals(sql);
        for secret in ["hunter2", "key=", "secret", "U&'x'", "1F"] {
            assert!(!redacted.contains(secret), "{secret} in {redacted}");
        }
        assert!(
            redacted.starts_with("ALTER ROLE app PASSWORD '…';"),
            "{redacted}"
        );
        assert_eq!(redact_literals("SELECT 1"), "SELECT 1");
    }
}
