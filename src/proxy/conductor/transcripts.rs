//! Transcript tests for the executor: a program from the real planner, scripted server
//! answers, and every byte each way written down in order — what goes up, what the client
//! gets, when audit records are handed over — so that retries, cleanup, the audit hand-off and
//! hidden answers are tested without a server and without timing.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::{BufMut, BytesMut};

use crate::analysis::Context;
use crate::config::policy::Policy;
use crate::protocol::backend::TxStatus;
use crate::protocol::frame::frames;
use crate::protocol::reply::{self, Fields, Severity};
use crate::protocol::{query, rows};

use super::super::outbox::Outbox;
use super::super::plan::{self, Held, Review, Verdict};
use super::super::request::{MessageSpan, Request, RequestEnd};
use super::super::state::SessionState;
use super::super::tx::Since;
use super::Conductor;

/// A conductor in the middle of a scripted conversation.
struct Transcript {
    conductor: Conductor,
    state: SessionState,
    up: Outbox,
    client: Outbox,
    /// Everything that happened, in order: `up Q <sql>`, `client C:ALTER TABLE`, `audit 1`, …
    log: Vec<String>,
    /// Records handed to the audit trail and not yet confirmed.
    unconfirmed: usize,
}

/// One server message.
fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}

fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn error(code: &str, message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    reply::encode_fields(Severity::Error, code, message, None, None, &mut out);
    out.to_vec()
}

fn fatal(code: &str, message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    reply::encode_fields(Severity::Fatal, code, message, None, None, &mut out);
    out.to_vec()
}

fn row(columns: &[Option<&str>]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(u16::try_from(columns.len()).unwrap());
    for c in columns {
        match c {
            Some(v) => {
                body.put_i32(i32::try_from(v.len()).unwrap());
                body.put_slice(v.as_bytes());
            }
            None => body.put_i32(-1),
        }
    }
    msg(b'D', &body)
}

/// The row ddlgate's timeouts statement returns: the client had none, the policy set 2 s and
/// 5 s.
fn timeouts_row() -> Vec<u8> {
    row(&[
        Some("0"),
        Some("0"),
        Some("0"),
        Some("0"),
        Some("2000"),
        Some("5000"),
    ])
}

/// A `RowDescription` the conductor passes over (its content is not read).
fn columns() -> Vec<u8> {
    msg(b'T', &[0, 0])
}

/// How a message reads in the log: frontend messages by their tag (a `Query` with its text),
/// backend messages with what matters of them.
fn summary(up: bool, tag: u8, body: &[u8]) -> String {
    if up && tag != b'Q' {
        return (tag as char).to_string();
    }
    match tag {
        b'Q' => format!(
            "Q {}",
            String::from_utf8_lossy(query::query_text(body).unwrap())
        ),
        b'C' => format!(
            "C:{}",
            String::from_utf8_lossy(rows::command_tag(body).unwrap())
        ),
        b'E' | b'N' => {
            let f = Fields::decode(body).unwrap();
            format!("{}:{} {}", tag as char, f.code(), f.message())
        }
        b'Z' => format!("Z:{}", body[0] as char),
        b'D' => format!("D:{:?}", rows::data_row(body).unwrap().len()),
        _ => (tag as char).to_string(),
    }
}

impl Transcript {
    /// The program the default policy plans for `sql` sent as one `Query` in this state.
    fn query(sql: &str, tx: TxStatus) -> Self {
        Self::planned(&[msg(b'Q', format!("{sql}\0").as_bytes())], tx, false)
    }

    /// The program the default policy plans for these client messages in this state;
    /// `unsynced`: a pipeline is open (messages went up without a `Sync` after them).
    fn planned(messages: &[Vec<u8>], tx: TxStatus, unsynced: bool) -> Self {
        let mut state = SessionState::with_server_version("17.2");
        state.tx_status = tx;
        let bytes = messages.concat();
        let mut spans = Vec::new();
        let mut start = 0;
        for m in messages {
            spans.push(MessageSpan {
                tag: m[0],
                start,
                end: start + m.len(),
            });
            start += m.len();
        }
        let mut review = Review::default();
        let verdict = review.review(
            &Request::new(&bytes, &spans, RequestEnd::Complete),
            &state,
            unsynced,
        );
        assert_eq!(verdict, Ok(Verdict::Hold), "the request is governed");
        let policy = Policy::builtin_default();
        let program = plan::plan(
            Held {
                bytes: bytes.into(),
                spans,
                parsed: review.take_parsed(),
            },
            &state,
            &mut review,
            &mut Context::default(),
            &policy.base,
            unsynced,
            Since::default(),
        );
        let mut t = Self {
            conductor: Conductor::new(program, tracing::Span::none(), true),
            state,
            up: Outbox::default(),
            client: Outbox::default(),
            log: Vec::new(),
            unconfirmed: 0,
        };
        t.advance();
        t
    }

    /// Lets the conductor act, and writes down what it sent each way.
    fn advance(&mut self) {
        self.conductor
            .advance(&mut self.up, &mut self.client, &mut self.state);
        self.collect();
    }

    fn collect(&mut self) {
        for (side, bytes) in [
            ("up", self.up.take_all()),
            ("client", self.client.take_all()),
        ] {
            let mut seen = 0;
            for f in frames(&bytes) {
                seen += f.bytes.len();
                self.log
                    .push(format!("{side} {}", summary(side == "up", f.tag, f.body)));
            }
            assert_eq!(seen, bytes.len(), "{side}: whole messages only");
        }
        if let Some(records) = self.conductor.take_audit() {
            self.unconfirmed = records.len();
            self.log.push(format!("audit {}", records.len()));
        }
    }

    /// The server answers.
    fn server(&mut self, messages: &[Vec<u8>]) {
        let mut buf = BytesMut::from(&messages.concat()[..]);
        self.conductor
            .on_upstream(&mut buf, &mut self.client, &mut self.state)
            .unwrap();
        assert!(buf.is_empty(), "every message consumed");
        self.collect();
        self.advance();
    }

    /// The audit trail confirms (or fails) the records handed over.
    fn audited(&mut self, result: Result<(), String>, fail_closed: bool) {
        assert!(self.unconfirmed > 0, "no records wait for the trail");
        self.unconfirmed = 0;
        self.conductor.audited(result, fail_closed);
        self.advance();
    }

    /// The answer to ddlgate's own timeouts statement.
    fn timeouts_applied(&mut self) {
        self.server(&[columns(), timeouts_row(), complete("SELECT 1"), ready(b'I')]);
    }

    /// The answer to ddlgate's look, before a concurrent build, for the client's own idle
    /// transactions: these lines (`pid|transaction start|state change|description`).
    fn own_idle(&mut self, lines: &[&str]) {
        let mut answer = vec![columns()];
        answer.extend(lines.iter().map(|l| row(&[Some(l)])));
        answer.push(complete(&format!("SELECT {}", lines.len())));
        answer.push(ready(b'I'));
        self.server(&answer);
    }

    /// The answer to ddlgate's look for lock holders: none that would block.
    fn no_blockers(&mut self) {
        self.server(&[columns(), complete("SELECT 0"), ready(b'I')]);
    }

    /// The answer to ddlgate's look for lock holders: this one.
    fn blocker(&mut self, line: &str) {
        self.holders(&[("3/7", "t", line)]);
    }

    /// The answer to ddlgate's look for lock holders: these transactions (virtual id, old,
    /// description).
    fn holders(&mut self, holders: &[(&str, &str, &str)]) {
        let mut answer = vec![columns()];
        for (vxid, old, line) in holders {
            // pid 7, not idle, application_name "app" (hex).
            answer.push(row(&[Some(&format!("{vxid}|{old}|7||617070|{line}"))]));
        }
        answer.push(complete(&format!("SELECT {}", holders.len())));
        answer.push(ready(b'I'));
        self.server(&answer);
    }

    /// The log since the last call.
    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

/// The log with ddlgate's own long statements named instead of written out.
fn short(log: Vec<String>) -> Vec<String> {
    log.into_iter()
        .map(|line| {
            let name = if line.starts_with("up Q SELECT c.lt, c.st") {
                "apply timeouts"
            } else if line
                .starts_with("up Q SELECT CASE WHEN pg_catalog.current_setting('lock_timeout')")
            {
                "restore timeouts"
            } else if line.starts_with("up Q SELECT x.vxid || '|'") {
                "look for blockers"
            } else if line.starts_with("up Q SELECT pg_catalog.format('pid %s") {
                "find blockers"
            } else if line.starts_with("up Q SELECT pg_catalog.array_agg(indexrelid)") {
                "probe indexes"
            } else if line.starts_with("up Q SELECT i.indexrelid::regclass::text") {
                "find new invalid indexes"
            } else if line.starts_with("up Q SELECT a.pid || '|'") {
                "look for own"
            } else {
                return line;
            };
            format!("up <{name}>")
        })
        .collect()
}

/// The client's `Query` after the policy: timeouts first, then the statement; the answer is
/// held until the audit trail confirms the record, then it reaches the client while the
/// client's timeouts are put back.
#[test]
fn a_governed_statement_runs_under_timeouts_and_is_answered_after_its_record() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    assert_eq!(short(t.take()), ["up <apply timeouts>"]);
    t.timeouts_applied();
    assert_eq!(short(t.take()), ["up <look for blockers>"]);
    t.no_blockers();
    assert_eq!(short(t.take()), ["up Q ALTER TABLE t ADD COLUMN b int"]);
    t.server(&[complete("ALTER TABLE"), ready(b'I')]);
    // Nothing reaches the client before its record is written.
    assert_eq!(short(t.take()), ["audit 1"]);
    t.audited(Ok(()), true);
    assert_eq!(
        short(t.take()),
        [
            "up <restore timeouts>",
            "client C:ALTER TABLE",
            "client Z:I"
        ]
    );
    assert!(!t.conductor.is_finished(), "the restore is still running");
    t.server(&[
        columns(),
        row(&[None, None]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(
        short(t.take()),
        Vec::<String>::new(),
        "ddlgate's answers stay hidden"
    );
    assert!(t.conductor.is_finished());
    let outcome = t.conductor.into_outcome();
    assert!(!outcome.failed && outcome.retries == 0);
}

/// `lock_not_available` outside a transaction: the statement is sent again after a backoff
/// that doubles with jitter (default: 3 retries from 500 ms), nothing reaches the client in
/// between, and the final error names who held the lock in its DETAIL.
#[test]
fn lock_timeouts_are_retried_with_jitter_then_the_blockers_are_named() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    t.timeouts_applied();
    let mut waits = Vec::new();
    let lock_timeout = || {
        [
            error("55P03", "canceling statement due to lock timeout"),
            ready(b'I'),
        ]
    };
    t.no_blockers();
    loop {
        t.server(&lock_timeout());
        let Some(at) = t.conductor.wake_at() else {
            break;
        };
        waits.push(at.saturating_duration_since(std::time::Instant::now()));
        t.conductor.wake();
        t.advance();
        // Each attempt looks first.
        t.no_blockers();
    }
    assert_eq!(
        short(t.take()),
        [
            "up <apply timeouts>",
            "up <look for blockers>",
            "up Q ALTER TABLE t ADD COLUMN b int",
            "up <look for blockers>",
            "up Q ALTER TABLE t ADD COLUMN b int",
            "up <look for blockers>",
            "up Q ALTER TABLE t ADD COLUMN b int",
            "up <look for blockers>",
            "up Q ALTER TABLE t ADD COLUMN b int",
            "up <find blockers>",
        ]
    );
    // 500 ms, 1 s, 2 s, each jittered over its upper half (sessions retrying together spread
    // out); measured a moment after the pause was set, hence the small allowance below.
    assert_eq!(waits.len(), 3);
    for (wait, base_ms) in waits.iter().zip([500u64, 1000, 2000]) {
        let ms = u64::try_from(wait.as_millis()).unwrap();
        assert!(
            (base_ms / 2 - 10..=base_ms).contains(&ms),
            "waited {ms} ms for a {base_ms} ms backoff: {waits:?}"
        );
    }
    let blocker = "pid 7 (application_name 'app', idle in transaction, query started x): SELECT";
    t.server(&[
        columns(),
        row(&[Some(blocker)]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(short(t.take()), ["audit 1"]);
    t.conductor.audited(Ok(()), false);
    let mut client = Outbox::default();
    t.conductor.advance(&mut t.up, &mut client, &mut t.state);
    let answer = client.take_all();
    let errors: Vec<_> = frames(&answer).filter(|f| f.tag == b'E').collect();
    assert_eq!(errors.len(), 1);
    let fields = Fields::decode(errors[0].body).unwrap();
    assert_eq!(fields.code(), "55P03");
    assert_eq!(
        fields.get(reply::field::DETAIL).as_deref(),
        Some(format!("Blocked by: {blocker}.").as_str())
    );
    assert_eq!(t.conductor.into_outcome().retries, 3);
}

/// A concurrent build that fails leaves an INVALID index; ddlgate finds the index that was
/// not there before and drops it (under the online class's timeouts) before the client gets
/// its `ReadyForQuery` — so the client's next statement never meets the leftover.
#[test]
fn a_failed_concurrent_build_is_cleaned_up_before_the_client_goes_on() {
    let mut t = Transcript::query("CREATE UNIQUE INDEX i ON t (a)", TxStatus::Idle);
    assert_eq!(short(t.take()), ["up <look for own>"]);
    t.own_idle(&[]);
    t.timeouts_applied();
    t.server(&[
        columns(),
        row(&[Some("{1,2}")]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(
        short(t.take()),
        [
            "up <apply timeouts>",
            "up <probe indexes>",
            "up Q CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)",
        ]
    );
    t.server(&[
        error("23505", "could not create unique index \"i\""),
        ready(b'I'),
    ]);
    assert_eq!(short(t.take()), ["audit 1"]);
    t.audited(Ok(()), false);
    // The error now; its ReadyForQuery after the cleanup.
    assert_eq!(
        short(t.take()),
        [
            "up <apply timeouts>",
            "client E:23505 could not create unique index \"i\""
        ]
    );
    t.timeouts_applied();
    assert_eq!(short(t.take()), ["up <find new invalid indexes>"]);
    t.server(&[
        columns(),
        row(&[Some("i")]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(
        short(t.take()),
        ["up Q DROP INDEX CONCURRENTLY IF EXISTS i"]
    );
    t.server(&[complete("DROP INDEX"), ready(b'I')]);
    assert_eq!(short(t.take()), ["up <restore timeouts>"]);
    t.server(&[
        columns(),
        row(&[None, None]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(short(t.take()), ["client Z:I"]);
    assert!(t.conductor.is_finished());
    assert!(t.conductor.into_outcome().failed);
}

/// With `audit_fail_closed`, a statement whose record could not be written is not reported
/// as a success: the client gets ddlgate's ZD002 (saying the statement did run) instead of
/// its `CommandComplete`.
#[test]
fn an_unwritten_record_turns_success_into_ddlgates_error_when_fail_closed() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    t.timeouts_applied();
    t.no_blockers();
    t.server(&[complete("ALTER TABLE"), ready(b'I')]);
    t.take();
    t.audited(Err("No space left on device".into()), true);
    let log = short(t.take());
    assert!(
        log.iter().any(|l| l.starts_with("client E:ZD002")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l == "client C:ALTER TABLE"), "{log:?}");
    assert_eq!(
        log.last().map(String::as_str),
        Some("client Z:I"),
        "{log:?}"
    );
}

/// The server's FATAL in the middle of a governed request (an administrator's shutdown) is
/// kept for the client, and the statement's record says how it ended — never dropped.
#[test]
fn a_fatal_error_mid_request_is_kept_for_the_client_and_the_record() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    t.timeouts_applied();
    t.no_blockers();
    t.take();
    let mut buf = BytesMut::from(
        &fatal(
            "57P01",
            "terminating connection due to administrator command",
        )[..],
    );
    t.conductor
        .on_upstream(&mut buf, &mut t.client, &mut t.state)
        .unwrap();
    assert!(t.client.take_all().is_empty(), "held with the answer");
    let held = t.conductor.held_fatal().expect("the server's FATAL");
    assert_eq!(Fields::decode(&held[5..]).unwrap().code(), "57P01");
    let records = t
        .conductor
        .records_if_cut_short(&t.state, "upstream closed the connection")
        .expect("the statement's record");
    assert_eq!(records.len(), 1);
    let outcome = records[0].outcome.as_ref().unwrap();
    assert_eq!(
        (outcome.status, outcome.sqlstate.as_deref()),
        (crate::audit::record::Status::Error, Some("57P01"))
    );
}

/// The server's FATAL in answer to ddlgate's own statement (the session's backend terminated
/// while ddlgate sets its timeouts) is the client's too: the session ends with the server's
/// own last words, once.
#[test]
fn a_fatal_error_answering_ddlgates_own_statement_reaches_the_client() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    let sent = t.take();
    assert!(
        sent.iter().any(|l| l.starts_with("up Q ")),
        "ddlgate's own statement went up first: {sent:?}"
    );
    t.server(&[fatal(
        "57P01",
        "terminating connection due to administrator command",
    )]);
    let log = t.take();
    let passed = log
        .iter()
        .filter(|l| {
            l.as_str() == "client E:57P01 terminating connection due to administrator command"
        })
        .count();
    let held = usize::from(t.conductor.held_fatal().is_some());
    assert_eq!(
        passed + held,
        1,
        "exactly one FATAL for the client: {log:?}"
    );
}

/// Inside an open pipeline ddlgate cannot run a statement of its own before the client's run,
/// so its timeouts travel in front of the run as extended-protocol messages of its own; their
/// six answers are hidden, and the client sees exactly the answers to its own messages.
#[test]
fn timeouts_in_an_open_pipeline_travel_with_the_run_and_their_answers_stay_hidden() {
    let mut parse = b"\0ALTER TABLE t ADD COLUMN c int\0".to_vec();
    parse.extend([0, 0]);
    let run = [
        msg(b'P', &parse),
        msg(b'B', b"\0\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ];
    let mut t = Transcript::planned(&run, TxStatus::Idle, true);
    let sent = t.take();
    assert_eq!(sent.len(), 9, "{sent:?}");
    assert_eq!(
        &sent[..5],
        ["up C", "up C", "up P", "up B", "up E"],
        "ddlgate's own close, close, parse, bind, execute first"
    );
    assert_eq!(&sent[5..], ["up P", "up B", "up E", "up S"]);
    t.server(&[
        msg(b'3', b""),
        msg(b'3', b""),
        msg(b'1', b""),
        msg(b'2', b""),
        timeouts_row(),
        complete("SELECT 1"),
        msg(b'1', b""),
        msg(b'2', b""),
        complete("ALTER TABLE"),
        ready(b'I'),
    ]);
    assert_eq!(short(t.take()), ["audit 1"]);
    t.audited(Ok(()), false);
    assert_eq!(
        short(t.take()),
        ["client 1", "client 2", "client C:ALTER TABLE", "client Z:I"]
    );
}

/// DDL and `COPY … FROM STDIN` in one extended-protocol run, under `audit_fail_closed`, with a
/// trail that fails when the COPY starts: the ALTER's record cannot be written, so the client
/// never sees the COPY begin. ddlgate ends it in the client's place (`CopyFail`, then a `Sync`
/// of its own, since the server ignored the run's `Sync` during the COPY); the server's error
/// rolls the run back, and the client gets that error and one `ReadyForQuery` — nothing left
/// waiting for data, and no answer for a Sync the client did not send.
#[test]
fn an_unwritable_trail_at_copy_start_ends_an_extended_copy_in_the_clients_place() {
    let statement = |sql: &str| {
        let mut parse = format!("\0{sql}\0").into_bytes();
        parse.extend([0, 0]);
        [
            msg(b'P', &parse),
            msg(b'B', b"\0\0\0\0\0\0\0\0"),
            msg(b'E', b"\0\0\0\0\0"),
        ]
    };
    let mut run: Vec<Vec<u8>> = statement("ALTER TABLE t ADD COLUMN b int").into();
    run.extend(statement("COPY u (a) FROM STDIN"));
    run.push(msg(b'S', b""));
    let mut t = Transcript::planned(&run, TxStatus::Idle, false);
    // (The COPY gets a warning: it runs while the ALTER's lock is held.)
    assert_eq!(short(t.take())[0], "up <apply timeouts>");
    t.timeouts_applied();
    assert_eq!(short(t.take()), ["up <look for blockers>"]);
    t.no_blockers();
    let sent = t.take();
    assert_eq!(
        sent,
        ["up P", "up B", "up E", "up P", "up B", "up E", "up S"]
    );
    let copy_in = msg(b'G', &[0, 0, 1, 0, 0]);
    t.server(&[
        msg(b'1', b""),
        msg(b'2', b""),
        complete("ALTER TABLE"),
        msg(b'1', b""),
        msg(b'2', b""),
        copy_in,
    ]);
    assert_eq!(
        short(t.take()),
        ["audit 1"],
        "the answer waits for the record"
    );
    t.audited(Err("No space left on device".into()), true);
    let ended = short(t.take());
    assert_eq!(ended, ["up f", "up S"], "CopyFail, then a Sync: {ended:?}");
    t.server(&[
        error(
            "57014",
            "COPY from stdin failed: ddlgate: the audit trail cannot be written",
        ),
        ready(b'I'),
    ]);
    // The COPY's own record (it drew a warning) is handed over when the run ends.
    assert_eq!(short(t.take()), ["audit 1"]);
    t.audited(Err("No space left on device".into()), true);
    let answer = short(t.take());
    // The ALTER's completion followed by an error: the run's implicit transaction rolled
    // back, as PostgreSQL reports it. No CopyInResponse: the client sends no data and no
    // second Sync.
    assert_eq!(
        answer,
        [
            "up <restore timeouts>",
            "client 1",
            "client 2",
            "client C:ALTER TABLE",
            "client 1",
            "client 2",
            "client E:57014 COPY from stdin failed: ddlgate: the audit trail cannot be written",
            "client Z:I",
        ]
    );
}

/// Before a statement whose lock blocks the application, ddlgate looks for older transactions
/// holding conflicting locks: while one does, it waits — sending nothing that would queue,
/// telling the client whom it waits for once (then at most every `notice_interval`) — and
/// looks again with a growing pause; once none does, the statement goes up under the short
/// attempt `lock_timeout` (200 ms), and the record says how long it waited and for whom.
#[test]
fn a_statement_waits_without_queueing_until_older_lock_holders_end() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    let log = t.take();
    assert!(
        log[0].contains("ELSE '200' END"),
        "the attempt's short lock_timeout: {log:?}"
    );
    t.timeouts_applied();
    t.take();
    let blocker = "pid 7 (application_name 'report', idle in transaction, transaction running 12.0 s) holds RowExclusiveLock on t";
    let mut pauses = Vec::new();
    for _ in 0..3 {
        t.blocker(blocker);
        let at = t.conductor.wake_at().expect("a pause before the next look");
        pauses.push(at.saturating_duration_since(std::time::Instant::now()));
        t.conductor.wake();
        t.advance();
    }
    let log = short(t.take());
    let notices: Vec<&String> = log.iter().filter(|l| l.starts_with("client N:")).collect();
    assert_eq!(
        notices.len(),
        1,
        "one notice within notice_interval: {log:?}"
    );
    assert!(
        notices[0].contains("waiting without queueing for the ACCESS EXCLUSIVE lock on t"),
        "{log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| *l == "up <look for blockers>")
            .count(),
        3,
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("ALTER TABLE")),
        "nothing queued: {log:?}"
    );
    assert!(pauses[0] < pauses[2], "the pause grows: {pauses:?}");
    t.no_blockers();
    assert_eq!(short(t.take()), ["up Q ALTER TABLE t ADD COLUMN b int"]);
    t.server(&[complete("ALTER TABLE"), ready(b'I')]);
    let records = t.conductor.records(&t.state);
    assert_eq!(records.len(), 1);
    let waited = records[0].lock_wait.as_ref().expect("the wait is recorded");
    assert_eq!(waited.waited_ms, 25 + 50 + 100);
    assert_eq!(waited.blockers, [blocker]);
    assert_eq!(
        records[0]
            .timeouts
            .as_ref()
            .map(|t| t.lock_timeout.as_str()),
        Some("200ms")
    );
}

/// A blocker that outlasts `lock_wait.max_wait` (30 s in all): ddlgate stops waiting and
/// makes the attempt under the short `lock_timeout` anyway — the server's own error then says
/// what happened, in the transaction state the server is in.
#[test]
fn after_max_wait_the_statement_is_attempted_anyway() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    t.timeouts_applied();
    t.take();
    let blocker = "pid 7 (application_name 'report', active, transaction running 40.0 s) holds AccessShareLock on t";
    let mut looks = 0;
    loop {
        t.blocker(blocker);
        looks += 1;
        if t.conductor.wake_at().is_none() {
            break;
        }
        t.conductor.wake();
        t.advance();
        assert!(looks < 100, "the wait ends");
    }
    let log = short(t.take());
    assert_eq!(
        log.last().map(String::as_str),
        Some("up Q ALTER TABLE t ADD COLUMN b int"),
        "{log:?}"
    );
    let notices = log.iter().filter(|l| l.starts_with("client N:")).count();
    assert_eq!(notices, 1, "scripted time is instant: one notice");
    t.server(&[complete("ALTER TABLE"), ready(b'I')]);
    let records = t.conductor.records(&t.state);
    assert_eq!(records[0].lock_wait.as_ref().unwrap().waited_ms, 30_000);
}

/// A role that cannot see other roles' transaction ages: a transaction holding a conflicting
/// lock at the first look is of unknown age, so ddlgate looks again once it would have waited
/// as long as the attempt may (silently: it may be a short one); still there, it is old and
/// waited for. Transactions that appear at a later look began since the one before: young, not
/// waited for — on a busy table the statement goes up as soon as the first ones have ended.
#[test]
fn transactions_of_unknown_age_are_timed_by_watching_them() {
    let mut t = Transcript::query("ALTER TABLE t ADD COLUMN b int", TxStatus::Idle);
    t.timeouts_applied();
    t.take();
    let hidden = "pid 9 (application_name 'app', state not visible to this role) holds RowExclusiveLock on t";
    t.holders(&[("4/1", "?", hidden)]);
    let pause = t
        .conductor
        .wake_at()
        .expect("an undecided holder is looked at again");
    let ms = pause
        .saturating_duration_since(std::time::Instant::now())
        .as_millis();
    assert!((150..=200).contains(&ms), "until it would be old: {ms} ms");
    assert!(
        !short(t.take()).iter().any(|l| l.starts_with("client N:")),
        "no notice yet"
    );
    // Seen for the whole lock_timeout: old.
    std::thread::sleep(std::time::Duration::from_millis(200));
    t.conductor.wake();
    t.advance();
    t.holders(&[("4/1", "?", hidden), ("4/2", "?", hidden)]);
    let log = short(t.take());
    assert!(
        log.iter().any(|l| l.starts_with("client N:")),
        "now waited for, and said: {log:?}"
    );
    t.conductor.wake();
    t.advance();
    // It ended; the one that appeared since the first look is young.
    t.holders(&[("4/2", "?", hidden), ("4/3", "?", hidden)]);
    assert_eq!(
        short(t.take()),
        [
            "up <look for blockers>",
            "up Q ALTER TABLE t ADD COLUMN b int"
        ]
    );
}

const FLYWAY_LOCK: &str = "81|2026-12-06 13:20:01.5+00|2026-12-06 13:20:01.6+00|pid 81 (application_name 'Redgate_Flyway', idle in transaction for 0.2 s, transaction running 0.3 s, holding advisory lock 4163491309)";

/// Flyway's default lock: a second session of the same client, idle in a transaction that
/// holds a snapshot and an advisory lock while the migration runs. A concurrent build would
/// wait for it forever; still in the same idle stretch after the pause, it is taken for the
/// client's own, and the build is refused without being sent.
#[test]
fn a_concurrent_build_that_would_wait_for_its_own_clients_lock_transaction_is_refused() {
    let mut t = Transcript::query("CREATE INDEX CONCURRENTLY i ON t (a)", TxStatus::Idle);
    assert_eq!(short(t.take()), ["up <look for own>"]);
    t.own_idle(&[FLYWAY_LOCK]);
    assert!(t.take().is_empty(), "nothing sent during the pause");
    let at = t.conductor.wake_at().expect("a pause before looking again");
    let pause = at.saturating_duration_since(std::time::Instant::now());
    assert!(pause > std::time::Duration::from_millis(900), "{pause:?}");
    t.conductor.wake();
    t.advance();
    assert_eq!(short(t.take()), ["up <look for own>"]);
    t.own_idle(&[FLYWAY_LOCK]);
    assert_eq!(short(t.take()), ["audit 1"]);
    t.conductor.audited(Ok(()), false);
    let mut client = Outbox::default();
    t.conductor.advance(&mut t.up, &mut client, &mut t.state);
    let answer = client.take_all();
    let tags: Vec<u8> = frames(&answer).map(|f| f.tag).collect();
    assert_eq!(tags, [b'E', b'Z']);
    let error = frames(&answer).next().unwrap();
    let fields = Fields::decode(error.body).unwrap();
    assert_eq!(fields.code(), "ZD001");
    let detail = fields.get(reply::field::DETAIL).unwrap_or_default();
    assert!(
        detail.contains("pid 81 (application_name 'Redgate_Flyway'"),
        "{detail}"
    );
    let hint = fields.get(reply::field::HINT).unwrap_or_default();
    assert!(
        hint.contains("postgresql.transactional.lock=false"),
        "{hint}"
    );
    assert!(t.up.take_all().is_empty(), "the build was never sent");
    assert!(t.conductor.is_finished());
    assert!(t.conductor.into_outcome().failed);
}

/// The same shape that moves on during the pause (its next statement changed its state) is
/// somebody working, not the client waiting for itself: the build goes ahead.
#[test]
fn a_transaction_that_moves_on_during_the_pause_does_not_stop_the_build() {
    let mut t = Transcript::query("CREATE INDEX CONCURRENTLY i ON t (a)", TxStatus::Idle);
    t.take();
    t.own_idle(&[FLYWAY_LOCK]);
    t.conductor.wake();
    t.advance();
    assert_eq!(short(t.take()), ["up <look for own>"]);
    t.own_idle(&[&FLYWAY_LOCK.replace("13:20:01.6", "13:20:02.4")]);
    assert_eq!(short(t.take()), ["up <apply timeouts>"]);
    t.timeouts_applied();
    assert_eq!(short(t.take()), ["up <probe indexes>"]);
}
