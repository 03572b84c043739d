//! The review: the cheap look at every request before any of its bytes reach the server.
//! Plain DML is proven harmless by the pre-filter and forwarded; a request that runs or
//! prepares DDL (or a `DO`/`CALL`), or may change how the server reads later text, is held
//! for [`super::plan`]. The review also keeps what the session's prepared statements and
//! portals are, and what a forwarded request does to transactions.

use crate::analysis::routines::Routines;
/// The session's maps by statement or portal name, which each `Bind` and `Execute` looks up:
/// foldhash, seeded at random per map and process (the names are the client's), instead of
/// std's SipHash-1-3, which cost more than the rest of a `Bind`'s review.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use crate::analysis::classify::{ClassifyOptions, TxControl, classify};
use crate::analysis::parse::{self, Options};
use crate::analysis::prefilter::{Prefilter, prefilter, prefilter_bytes};
use crate::analysis::scan::ByteSet;
use crate::enforce::{Class, GRAMMAR_MAJOR};
use crate::evidence::observe::Observing;
use crate::protocol::ProtocolError;
use crate::protocol::extended::{Bind, Parse, Target, close_target, execute_portal};
use crate::protocol::frontend::{ends_with_ready_for_query, tag as fe};
use crate::protocol::query::query_text;

use super::super::client_text::{self, Mapping};
use super::super::request::{Request, RequestEnd};
use super::super::state::SessionState;
use super::super::tx::TxEffect;
use super::ParsedText;
use super::pool::PLAN_OFF_THREAD_ABOVE;
use super::recent::{Found, RecentTexts};

/// What the session does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Send the request's bytes upstream exactly as the client sent them.
    Forward,
    /// Hold it until the session is quiet, then [`super::plan`] it.
    Hold,
    /// The request cannot be decided and must not be forwarded unreviewed: the session ends.
    /// [`Review::unreviewable_statement`] says which statement.
    Unreviewable(Unreviewable),
}

/// Why a request cannot be reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreviewable {
    /// A part of a run too large to hold whole holds a statement the policy governs: it can
    /// be neither decided (the rest of the run is unknown) nor forwarded.
    TooLarge,
    /// A statement of an extended-protocol run may change `client_encoding`, and a later
    /// `Parse` of the same run holds non-ASCII text: the server reads it in an encoding
    /// ddlgate cannot know yet.
    EncodingChanged,
}

/// What the session remembers about the client's prepared statements and portals: the
/// timeout class of those that run DDL. Others are not stored.
#[derive(Debug, Default)]
pub struct Review {
    /// The statements the last review parsed, by message index (`Query` and `Parse` texts), for
    /// the plan of a held request.
    pub(super) parsed: Vec<(usize, ParsedText)>,
    pub(super) statements: HashMap<Vec<u8>, Class>,
    pub(super) portals: HashMap<Vec<u8>, Class>,
    /// Statements prepared by a run that executed nothing (tokio-postgres, sqlx, psycopg's
    /// `prepare=True`, pgjdbc's describe round trip): their text as the client sent it,
    /// decided when a later run binds them. See [`plan`].
    pub(super) deferred: HashMap<Vec<u8>, (String, Mapping)>,
    /// The statement behind the last [`Verdict::Unreviewable`].
    pub(super) unreviewable: Option<String>,
    /// Prepared statements refused when parsed: the server holds ddlgate's statement that
    /// raises the refusal under their name, which takes no parameters.
    pub(super) refused_statements: HashSet<Vec<u8>>,
    /// Prepared statements (`""`: the unnamed one) that end a transaction or roll back to a
    /// savepoint when executed: their executions are transaction boundaries.
    pub(super) transaction_statements: HashMap<Vec<u8>, TxEffect>,
    /// What the last forwarded request does to transactions, and whether it is one statement
    /// alone in flight; taken by [`Review::take_forwarded_tx`].
    pub(super) forwarded_tx: (TxEffect, bool),
    /// `Parse` texts cleared lately ([`super::recent`]).
    recent: RecentTexts,
    /// Counts the statements the session runs, when ddlgate observes them
    /// (`evidence_observe`, [`crate::evidence::observe`]).
    observing: Option<Observing>,
}

impl Review {
    /// A session's review, counting its statements into `observing` when given.
    pub(crate) fn observing(observing: Option<Observing>) -> Self {
        Self {
            observing,
            ..Self::default()
        }
    }

    /// The cheap look at a request: does it need the policy at all? `in_flight`: earlier
    /// requests are not answered yet. Every `Query`, `Parse`, `Bind`, `Execute` and `Close` is
    /// read with a validating decoder: a malformed one is an error (the session ends with
    /// 08P01), never reviewed as empty text and forwarded.
    #[expect(
        clippy::too_many_lines,
        reason = "one pass over the request's messages; the proxy restructuring (issue 15) splits it"
    )]
    pub fn review(
        &mut self,
        request: &Request<'_>,
        session: &SessionState,
        in_flight: bool,
    ) -> Result<Verdict, ProtocolError> {
        let mut hold = false;
        // The first governed statement, for a run that turns out too large to hold.
        let mut governed: Option<String> = None;
        let mut note = |text: &str| {
            governed.get_or_insert_with(|| text.to_owned());
        };
        // A statement of this request may change client_encoding: the server reads what
        // follows it in an encoding ddlgate learns only from the answer.
        let mut encoding_may_change = false;
        // What the request does to transactions, for a forwarded one (see `super::tx`).
        let mut tx = TxEffect::None;
        let mut statements = 0usize;
        let mut executes = 0usize;
        self.parsed.clear();
        for (index, message) in request.messages().enumerate() {
            match message.tag {
                fe::QUERY => {
                    let bytes = query_text(message.body)?;
                    if let Some(o) = &self.observing {
                        o.query(bytes);
                    }
                    // Non-ASCII text is read in the encoding in force when it runs, which an
                    // earlier request still running may change (even from inside a function).
                    hold |= in_flight && !bytes.is_ascii();
                    let (checked, governed) = self.look(index, bytes, session);
                    if let Some(text) = governed {
                        hold = true;
                        note(&text);
                    }
                    tx = tx.and(checked.tx);
                    statements += 1;
                    // Held, so that the next request is read after the change is known.
                    hold |= may_change_encoding(bytes, checked);
                }
                fe::PARSE => {
                    let Parse {
                        name, sql: bytes, ..
                    } = Parse::decode(message.body)?;
                    if let Some(o) = &mut self.observing {
                        o.parse(name, bytes);
                    }
                    hold |= in_flight && !bytes.is_ascii();
                    if encoding_may_change && !bytes.is_ascii() {
                        self.unreviewable = Some(String::from_utf8_lossy(bytes).into_owned());
                        return Ok(Verdict::Unreviewable(Unreviewable::EncodingChanged));
                    }
                    let found = if let Some(found) = self.recent.find(bytes, &session.routines) {
                        found
                    } else {
                        let parsed_before = self.parsed.len();
                        let (checked, governed) = self.look(index, bytes, session);
                        if let Some(text) = governed {
                            note(&text);
                        }
                        let found = Found {
                            checked,
                            may_change_encoding: may_change_encoding(bytes, checked),
                        };
                        let parsed = self.parsed.len() != parsed_before;
                        self.recent
                            .remember(bytes, &session.routines, found, parsed);
                        found
                    };
                    let checked = found.checked;
                    if found.may_change_encoding {
                        encoding_may_change = true;
                        hold = true;
                    }
                    match checked.class {
                        Some(class) => {
                            self.statements.insert(name.to_vec(), class);
                            hold = true;
                        }
                        None if self.statements.is_empty() => {}
                        None => {
                            self.deferred.remove(name);
                            self.statements.remove(name);
                        }
                    }
                    if checked.tx != TxEffect::None {
                        self.transaction_statements
                            .insert(name.to_vec(), checked.tx);
                    } else if !self.transaction_statements.is_empty() {
                        self.transaction_statements.remove(name);
                    }
                }
                fe::BIND => {
                    let Bind {
                        portal, statement, ..
                    } = Bind::decode(message.body)?;
                    if let Some(o) = &self.observing {
                        o.bind(statement);
                    }
                    if self.statements.is_empty()
                        && self.portals.is_empty()
                        && self.transaction_statements.is_empty()
                        && self.refused_statements.is_empty()
                    {
                        continue;
                    }
                    // Its parameters must be taken off (see `refused_statements`).
                    if self.refused_statements.contains(statement) {
                        hold = true;
                        note("(a statement refused earlier in the session)");
                    }
                    // Counted when bound: a portal is executed in the same run in practice,
                    // and counting one too many only makes ddlgate stricter.
                    if let Some(effect) = self.transaction_statements.get(statement) {
                        tx = tx.and(*effect);
                        statements += 1;
                    }
                    match self.statements.get(statement) {
                        Some(class) => {
                            self.portals.insert(portal.to_vec(), *class);
                        }
                        None => {
                            self.portals.remove(portal);
                        }
                    }
                }
                fe::EXECUTE => {
                    executes += 1;
                    let portal = execute_portal(message.body)?;
                    if self.portals.contains_key(portal) {
                        hold = true;
                        note("(a statement prepared earlier in the session)");
                    }
                }
                fe::CLOSE => match close_target(message.body)? {
                    (Target::Statement, name) => {
                        if let Some(o) = &mut self.observing {
                            o.close(name);
                        }
                        self.deferred.remove(name);
                        self.refused_statements.remove(name);
                        self.transaction_statements.remove(name);
                        self.statements.remove(name);
                    }
                    (Target::Portal, name) => {
                        self.portals.remove(name);
                    }
                },
                _ => {}
            }
        }
        // A run cut at the size limit is forwarded in parts, unless a part holds something
        // the policy governs: that cannot be decided without the whole run.
        match (hold, request.end) {
            (false, _) => {
                // One statement with nothing else in flight: its ReadyForQuery is its own.
                let alone = statements == 1
                    && executes <= 1
                    && !in_flight
                    && request.end == RequestEnd::Complete
                    && request
                        .messages()
                        .last()
                        .is_some_and(|m| ends_with_ready_for_query(m.tag));
                self.forwarded_tx = (tx, alone);
                Ok(Verdict::Forward)
            }
            (true, RequestEnd::Complete) => Ok(Verdict::Hold),
            (true, RequestEnd::Partial) => {
                self.unreviewable = governed;
                Ok(Verdict::Unreviewable(Unreviewable::TooLarge))
            }
        }
    }

    /// The pre-check of the statement text `bytes` of message `index`: the plain look when it
    /// suffices ([`precheck_plain`]), else [`Self::check`] of the text as the server reads it;
    /// and that text when the policy governs it.
    fn look(
        &mut self,
        index: usize,
        bytes: &[u8],
        session: &SessionState,
    ) -> (Checked, Option<String>) {
        if let Some(checked) = precheck_plain(bytes, session) {
            return (checked, None);
        }
        // Looked up only for text that is not ASCII (which every encoding reads alike).
        let encoding = if bytes.is_ascii() {
            None
        } else {
            session.parameter("client_encoding")
        };
        let (text, _) = client_text::decode(bytes, encoding);
        let checked = self.check(index, &text, session);
        let governed = checked.class.is_some().then(|| text.into_owned());
        (checked, governed)
    }

    /// The pre-check of the text of message `index`, keeping what it parsed for the plan. A
    /// text too large to parse on the worker without stalling its other sessions is held
    /// unparsed (as if it ran DDL), and parsed when it is planned, off the worker.
    fn check(&mut self, index: usize, text: &str, session: &SessionState) -> Checked {
        if text.len() > PLAN_OFF_THREAD_ABOVE && matches!(prefilter(text), Prefilter::NeedsParse) {
            return Checked {
                class: Some(Class::Brief),
                tx: TxEffect::None,
                plain: false,
                quoted: false,
            };
        }
        let (checked, parsed) = precheck_with_parse(text, session);
        if let Some(parsed) = parsed {
            self.parsed.push((index, parsed));
        }
        checked
    }

    /// The statements the last review parsed (see [`Held::parsed`]).
    pub fn take_parsed(&mut self) -> Vec<(usize, ParsedText)> {
        std::mem::take(&mut self.parsed)
    }

    /// What the request just forwarded does to transactions (see [`super::super::tx::Transactions`]).
    pub fn take_forwarded_tx(&mut self) -> (TxEffect, bool) {
        std::mem::take(&mut self.forwarded_tx)
    }

    /// The statement behind the last [`Verdict::Unreviewable`].
    pub fn unreviewable_statement(&mut self) -> Option<String> {
        self.unreviewable.take()
    }

    pub(super) fn remember_statement(&mut self, name: &[u8], class: Option<Class>) {
        match class {
            Some(c) => {
                self.statements.insert(name.to_vec(), c);
            }
            None => {
                self.statements.remove(name);
            }
        }
    }

    pub(super) fn remember_refused(&mut self, name: &[u8], refused: bool) {
        if refused {
            self.refused_statements.insert(name.to_vec());
        } else if !self.refused_statements.is_empty() {
            self.refused_statements.remove(name);
        }
    }

    pub(super) fn class_of_portal(&self, portal: &[u8]) -> Option<Class> {
        self.portals.get(portal).copied()
    }

    pub(super) fn defer(&mut self, name: &[u8], text: Option<(String, Mapping)>) {
        match text {
            Some(t) => {
                self.deferred.insert(name.to_vec(), t);
            }
            None if self.deferred.is_empty() => {}
            None => {
                self.deferred.remove(name);
            }
        }
    }
}

/// The name under which ddlgate prepares the n-th decided text of a deferred statement in a run.
pub(super) fn deferred_name(n: usize) -> Vec<u8> {
    format!("ddlgate_deferred_{n}").into_bytes()
}

/// The timeout class of a query text when it needs the policy's attention: DDL, `DO`/`CALL`,
/// or (on a server newer than the grammar) a statement that does not parse.
/// Whether a statement text may change `client_encoding`: `SET client_encoding`, `SET NAMES`,
/// `set_config('client_encoding', …)`, `RESET ALL`, `DISCARD ALL`, … A plain look at the
/// words, generous on purpose: a false alarm only holds the request until it is answered.
///
/// Plain DML or transaction control ([`Checked::plain`]) can change it only by naming it in a
/// quoted string (`set_config`'s argument), so there the word is looked for only when the
/// statement quotes something. The text's bytes are read as they are: the words are ASCII,
/// which every client encoding writes alike.
pub(super) fn may_change_encoding(text: &[u8], checked: Checked) -> bool {
    if checked.plain {
        return checked.quoted && contains_ignoring_case(text, &ENCODING);
    }
    contains_ignoring_case(text, &ENCODING)
        || contains_ignoring_case(text, &NAMES)
        || contains_ignoring_case(text, &RESET)
        || contains_ignoring_case(text, &DISCARD)
}

/// The pre-check of a text the pre-filter clears without reading it as a string: ASCII (which
/// every client encoding reads alike) that is plain DML with no routine that runs DDL to call,
/// or transaction control. `None`: the text needs the full [`Review::check`].
fn precheck_plain(bytes: &[u8], session: &SessionState) -> Option<Checked> {
    if !bytes.is_ascii() {
        return None;
    }
    match prefilter_bytes(bytes) {
        (Prefilter::Dml(_), quoted) if session.routines.is_empty() => Some(Checked {
            plain: true,
            quoted,
            ..Checked::default()
        }),
        (Prefilter::TransactionControl, quoted) => Some(Checked {
            class: None,
            tx: TxEffect::of_transaction_control(bytes),
            plain: true,
            quoted,
        }),
        _ => None,
    }
}

/// A lowercase ASCII word looked for in any case, with the set of its last letter.
struct Word {
    text: &'static [u8],
    last: ByteSet,
}

impl Word {
    const fn new(text: &'static [u8]) -> Self {
        Self {
            text,
            last: ByteSet::letter(text[text.len() - 1]),
        }
    }
}

static ENCODING: Word = Word::new(b"encoding");
static NAMES: Word = Word::new(b"names");
static RESET: Word = Word::new(b"reset");
static DISCARD: Word = Word::new(b"discard");

/// Whether `haystack` contains `word` in any case. Candidates are found by the word's last
/// byte, eight bytes at a time.
fn contains_ignoring_case(haystack: &[u8], word: &Word) -> bool {
    let last = word.text.len().saturating_sub(1);
    let mut from = 0;
    while let Some(at) = haystack.get(from..).and_then(|rest| word.last.find(rest)) {
        let end = from + at;
        if end >= last
            && haystack
                .get(end - last..=end)
                .is_some_and(|w| w.eq_ignore_ascii_case(word.text))
        {
            return true;
        }
        from = end + 1;
    }
    false
}

/// What the cheap look at a query text found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The timeout class of a text that needs the policy's attention: DDL, `DO`/`CALL`, an
    /// explicit lock that blocks writes, or (on a server newer than the grammar) a statement
    /// that does not parse.
    pub(super) class: Option<Class>,
    /// What it does to the transaction it runs in.
    pub(super) tx: TxEffect,
    /// The pre-filter proved it DML or transaction control.
    pub(super) plain: bool,
    /// A plain statement that quotes something (a string, a quoted identifier, a
    /// dollar-quoted body).
    pub(super) quoted: bool,
}

/// The pre-check of a text (as [`client_text::decode`] reads it), and the statements it
/// parsed (none when the pre-filter cleared the text): the plan of a held request reuses them
/// instead of parsing the text again.
fn precheck_with_parse(text: &str, session: &SessionState) -> (Checked, Option<ParsedText>) {
    let (filtered, quoted) = prefilter_bytes(text.as_bytes());
    match filtered {
        // DML is harmless unless it may call a routine that runs DDL: then it is parsed.
        Prefilter::Dml(_) if !session.routines.mentioned_in(text) => (
            Checked {
                plain: true,
                quoted,
                ..Checked::default()
            },
            None,
        ),
        Prefilter::TransactionControl => (
            Checked {
                class: None,
                tx: TxEffect::of_transaction_control(text),
                plain: true,
                quoted,
            },
            None,
        ),
        Prefilter::Dml(_) | Prefilter::NeedsParse => {
            let scs = session.parameter("standard_conforming_strings") != Some("off");
            let (mut checked, statements) =
                precheck_keeping_parse(text, session.server_major(), scs, &session.routines);
            if matches!(filtered, Prefilter::Dml(_)) {
                checked.plain = true;
                checked.quoted = quoted;
            }
            (
                checked,
                Some(ParsedText {
                    standard_conforming_strings: scs,
                    class: checked.class,
                    statements,
                }),
            )
        }
    }
}

/// The pre-check after the pre-filter could not prove the text harmless.
pub(super) fn precheck_parsed(
    text: &str,
    server_major: u32,
    scs: bool,
    routines: &Routines,
) -> Checked {
    precheck_keeping_parse(text, server_major, scs, routines).0
}

/// [`precheck_parsed`], and the statements it parsed.
fn precheck_keeping_parse(
    text: &str,
    server_major: u32,
    scs: bool,
    routines: &Routines,
) -> (Checked, Vec<parse::Parsed>) {
    let parsed = parse::parse_script(
        text,
        Options {
            standard_conforming_strings: scs,
        },
    );
    let alone = parsed.len() == 1;
    let mut checked = Checked::default();
    for statement in &parsed {
        let this = match &statement.tree {
            Ok(node) => {
                let mut facts = classify(node, ClassifyOptions { server_major });
                // A call of a routine that runs DDL is governed like a `DO` block.
                facts.dynamic |= !routines.called_by(node).is_empty();
                let tx = match (facts.tx_control, node) {
                    (Some(TxControl::Commit), parse::NodeEnum::TransactionStmt(t)) => {
                        TxEffect::End {
                            commit_alone: alone && !t.chain,
                        }
                    }
                    (Some(TxControl::Rollback | TxControl::Prepare), _) => TxEffect::End {
                        commit_alone: false,
                    },
                    (Some(TxControl::RollbackTo), _) => TxEffect::RollbackToSavepoint,
                    _ => TxEffect::None,
                };
                checked.tx = checked.tx.and(tx);
                Class::of(&facts)
            }
            Err(_) if server_major > GRAMMAR_MAJOR => Some(Class::Brief),
            Err(_) => None,
        };
        checked.class = checked.class.max(this);
    }
    (checked, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_that_may_change_the_encoding_are_found_in_any_case() {
        let may = |text: &str| {
            let (filtered, quoted) = prefilter_bytes(text.as_bytes());
            let plain = matches!(filtered, Prefilter::Dml(_) | Prefilter::TransactionControl);
            may_change_encoding(
                text.as_bytes(),
                Checked {
                    plain,
                    quoted,
                    ..Checked::default()
                },
            )
        };
        for text in [
            "SELECT set_config('client_encoding', 'LATIN1', false)",
            "select SET_CONFIG('CLIENT_ENCODING', 'latin1', false)",
            "SELECT set_config('Client_Encoding', 'latin1', false)",
            "SELECT set_config($$client_encoding$$, 'latin1', false)",
            "SELECT pg_catalog.set_config(E'client_encoding', 'latin1', false)",
            "SET client_encoding TO 'LATIN1'",
            "SET NAMES 'LATIN1'",
            "set names 'latin1'",
            "RESET ALL",
            "reset client_encoding",
            "DISCARD ALL",
            "discard all",
            "ENCODING",
        ] {
            assert!(may(text), "{text}");
        }
        for text in [
            "SELECT 1",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345",
            // Words that only matter outside DML, and the word outside quotes in DML.
            "SELECT names, reset_at, discarded, encoding FROM t",
            "SELECT x FROM encodings WHERE id = $1",
            // Near misses, including at the very end of the text.
            "SELECT 'encodin'",
            "SELECT 'ncoding'",
            "SHOW search_path",
        ] {
            assert!(!may(text), "{text}");
        }
    }

    #[test]
    pub(super) fn precheck_passes_dml_and_catches_ddl() {
        let precheck =
            |sql: &[u8], major: u32, scs: bool| match prefilter(&String::from_utf8_lossy(sql)) {
                Prefilter::Dml(_) | Prefilter::TransactionControl => None,
                Prefilter::NeedsParse => {
                    precheck_parsed(
                        &String::from_utf8_lossy(sql),
                        major,
                        scs,
                        &Routines::default(),
                    )
                    .class
                }
            };
        assert_eq!(precheck(b"SELECT 1", 15, true), None);
        assert_eq!(precheck(b"SET lock_timeout = '1s'", 15, true), None);
        assert_eq!(
            precheck(b"CREATE INDEX i ON t (a)", 15, true),
            Some(Class::Brief)
        );
        assert_eq!(
            precheck(b"SELECT 1; CREATE INDEX CONCURRENTLY i ON t (a)", 15, true),
            Some(Class::Online)
        );
        assert_eq!(
            precheck(b"DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", 15, true),
            Some(Class::Brief)
        );
        assert_eq!(precheck(b"SELEC 1", 15, true), None);
        assert_eq!(precheck(b"SELEC 1", 19, true), Some(Class::Brief));
        assert_eq!(
            precheck(b"BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE", 15, true),
            Some(Class::Brief)
        );
        assert_eq!(
            precheck(
                b"BEGIN; LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE",
                15,
                true
            ),
            None
        );
    }

    #[test]
    pub(super) fn parsed_requests_report_where_transactions_end() {
        let tx = |sql: &str| precheck_parsed(sql, 15, true, &Routines::default()).tx;
        assert_eq!(tx("SELECT 1; SELECT 2"), TxEffect::None);
        assert_eq!(
            tx("COMMIT; BEGIN"),
            TxEffect::End {
                commit_alone: false
            }
        );
        assert_eq!(
            tx("SELECT 1; ROLLBACK TO SAVEPOINT s"),
            TxEffect::RollbackToSavepoint
        );
        assert_eq!(
            tx("PREPARE TRANSACTION 'x'"),
            TxEffect::End {
                commit_alone: false
            }
        );
        assert_eq!(
            tx("COMMIT AND CHAIN"),
            TxEffect::End {
                commit_alone: false
            }
        );
    }
}
