//! Never hang a session: whatever ddlgate holds back — a request it waits to decide, the
//! answer of a governed request it keeps for a retry or the audit trail — has an exit that
//! does not depend on the client sending more. COPY in particular flows inside held and
//! governed requests, both ways, byte for byte, in the simple and the extended protocol.

use crate::support::pg::{PgServer, SUPERUSER, TRUST, run_direct as setup};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Msg, Wire};

fn copy_data(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'd'];
    out.extend(u32::try_from(bytes.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn copy_done() -> Vec<u8> {
    vec![b'c', 0, 0, 0, 4]
}

fn copy_fail(why: &str) -> Vec<u8> {
    let mut out = vec![b'f'];
    out.extend(u32::try_from(why.len() + 5).unwrap().to_be_bytes());
    out.extend_from_slice(why.as_bytes());
    out.push(0);
    out
}

/// Reads until the server asks for COPY data (`CopyInResponse`), failing when it does not
/// come: ddlgate held it back and the session hung.
async fn until_copy_in(w: &mut Wire, what: &str) -> Vec<Msg> {
    let mut seen = Vec::new();
    loop {
        let Some(m) = w.recv().await else {
            panic!(
                "{what}: no CopyInResponse within 10 s — the session hangs; seen {:?}",
                seen.iter().map(Msg::summary).collect::<Vec<_>>()
            );
        };
        let tag = m.tag;
        seen.push(m);
        match tag {
            b'G' => return seen,
            b'Z' => panic!(
                "{what}: the request ended without COPY: {:?}",
                seen.iter().map(Msg::summary).collect::<Vec<_>>()
            ),
            _ => {}
        }
    }
}

/// The messages' summaries, ddlgate's warnings (a rule at `warn`) left out.
fn summaries(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag != b'N')
        .map(Msg::summary)
        .collect()
}

async fn session(proxy: &TestProxy) -> Wire {
    Wire::startup(&proxy.addr.to_string(), TRUST.name, "app")
        .await
        .0
}

async fn count(pg: &PgServer, sql: &str) -> i64 {
    pg.connect(SUPERUSER)
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// PostgreSQL's copy2.sql, reduced: `ENCODING` in a COPY makes the request one that may change
/// how the server reads later text, so ddlgate holds it until the server answers — and the
/// server's answer is the CopyInResponse, which must reach the client.
#[tokio::test]
async fn copy_with_an_encoding_option_is_not_held_for_ever() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_enc; CREATE TABLE nh_enc (a int, b text); GRANT ALL ON nh_enc TO PUBLIC",
    )
    .await;
    let mut w = session(&proxy).await;
    w.send(&wire::query(
        "COPY nh_enc FROM stdin WITH DELIMITER AS ':' ENCODING 'sql_ascii'",
    ))
    .await;
    until_copy_in(&mut w, "COPY … ENCODING").await;
    w.send(&copy_data(b"1:one\n2:two\n")).await;
    w.send(&copy_done()).await;
    assert_eq!(summaries(&w.until_ready().await), ["C:COPY 2", "Z:I"]);
    assert_eq!(count(pg, "SELECT count(*) FROM nh_enc").await, 2);
    // The extended protocol, the same.
    let mut run = wire::parse(
        "",
        "COPY nh_enc FROM stdin WITH (FORMAT csv, ENCODING 'UTF8')",
    );
    run.extend(wire::bind("", ""));
    run.extend(wire::execute(""));
    run.extend(wire::sync());
    w.send(&run).await;
    until_copy_in(&mut w, "extended COPY … ENCODING").await;
    w.send(&copy_data(b"3,three\n")).await;
    w.send(&copy_done()).await;
    // The server ignored the Sync sent during COPY: the client syncs again.
    w.send(&wire::sync()).await;
    assert_eq!(summaries(&w.until_ready().await), ["C:COPY 1", "Z:I"]);
    assert_eq!(count(pg, "SELECT count(*) FROM nh_enc").await, 3);
}

/// psql.sql, reduced, under the default policy: DDL and `COPY … FROM STDIN` in one query
/// string. The DDL's answer is kept back for the audit trail (and a retry), but the
/// CopyInResponse must reach the client at once — the session used to hang holding ACCESS
/// EXCLUSIVE on the table. Afterwards no lock is left, and both statements are audited.
#[tokio::test]
async fn ddl_and_copy_from_stdin_in_one_request_flow() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_cy; CREATE TABLE nh_cy (a int); ALTER TABLE nh_cy OWNER TO ddlgate_trust",
    )
    .await;
    let mut w = session(&proxy).await;
    w.send(&wire::query(
        "ALTER TABLE nh_cy ADD COLUMN b text; COPY nh_cy (a) FROM STDIN",
    ))
    .await;
    let before = until_copy_in(&mut w, "ALTER …; COPY … FROM STDIN").await;
    assert_eq!(summaries(&before), ["C:ALTER TABLE", "G"]);
    w.send(&copy_data(b"1\n2\n")).await;
    w.send(&copy_done()).await;
    assert_eq!(summaries(&w.until_ready().await), ["C:COPY 2", "Z:I"]);
    assert_eq!(count(pg, "SELECT count(b IS NULL) FROM nh_cy").await, 2);
    assert_eq!(
        count(
            pg,
            "SELECT count(*) FROM pg_locks WHERE relation = 'nh_cy'::regclass"
        )
        .await,
        0
    );
    // A COPY the client abandons: the server's error ends it, the session goes on.
    w.send(&wire::query(
        "ALTER TABLE nh_cy ADD COLUMN c text; COPY nh_cy (a) FROM STDIN",
    ))
    .await;
    until_copy_in(&mut w, "ALTER …; COPY … (CopyFail)").await;
    w.send(&copy_fail("changed my mind")).await;
    let end = w.until_ready().await;
    assert_eq!(summaries(&end), ["E:57014", "Z:I"]);
    w.send(&wire::query("SELECT 1")).await;
    assert_eq!(
        summaries(&w.until_ready().await),
        ["T", "D", "C:SELECT 1", "Z:I"]
    );
    // Both requests are in the trail, each statement once.
    let records = crate::support::audit_records(&log);
    let alters: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "ALTER TABLE")
        .collect();
    assert_eq!(alters.len(), 2, "{records:#?}");
    assert_eq!(alters[0]["outcome"]["status"], "ok");
}

/// The same in the extended protocol: DDL and COPY FROM STDIN in one run, and COPY TO STDOUT
/// after DDL, each byte for byte.
#[tokio::test]
async fn ddl_and_copy_in_one_extended_run_flow_both_ways() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_ext; CREATE TABLE nh_ext (a int, t text); ALTER TABLE nh_ext OWNER TO ddlgate_trust",
    )
    .await;
    let mut w = session(&proxy).await;
    let mut run = Vec::new();
    for sql in [
        "ALTER TABLE nh_ext ADD COLUMN b text",
        "COPY nh_ext (a, t) FROM STDIN",
    ] {
        run.extend(wire::parse("", sql));
        run.extend(wire::bind("", ""));
        run.extend(wire::execute(""));
    }
    run.extend(wire::sync());
    w.send(&run).await;
    let before = until_copy_in(&mut w, "extended ALTER; COPY FROM STDIN").await;
    assert_eq!(
        summaries(&before),
        ["1", "2", "C:ALTER TABLE", "1", "2", "G"]
    );
    let rows = "1\tà\\tb\n2\t\\N\n";
    w.send(&copy_data(rows.as_bytes())).await;
    w.send(&copy_done()).await;
    w.send(&wire::sync()).await;
    assert_eq!(summaries(&w.until_ready().await), ["C:COPY 2", "Z:I"]);
    // COPY TO STDOUT after DDL in one query string.
    w.send(&wire::query(
        "ALTER TABLE nh_ext ADD COLUMN c text; COPY (SELECT a, t FROM nh_ext ORDER BY a) TO STDOUT",
    ))
    .await;
    let out = w.until_ready().await;
    let data: Vec<u8> = out
        .iter()
        .filter(|m| m.tag == b'd')
        .flat_map(|m| m.body.clone())
        .collect();
    assert_eq!(String::from_utf8(data).unwrap(), rows);
    assert_eq!(
        summaries(&out).first().map(String::as_str),
        Some("C:ALTER TABLE"),
        "{:?}",
        summaries(&out)
    );
}

/// With `audit_fail_closed` and a trail that cannot be written, DDL followed by a COPY in one
/// request is refused up front (ZD002) — nothing runs, nothing waits for COPY data — and the
/// session goes on. (When the trail fails between the session's start and the COPY, ddlgate
/// ends the COPY itself with a CopyFail; see `Conductor::copy_started`.)
#[tokio::test]
async fn an_unwritable_trail_refuses_ddl_and_copy_without_hanging() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some("/dev/full".into());
        o.audit_fail_closed = Some(true);
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_full; CREATE TABLE nh_full (a int); ALTER TABLE nh_full OWNER TO ddlgate_trust",
    )
    .await;
    let mut w = session(&proxy).await;
    let request = wire::query("ALTER TABLE nh_full ADD COLUMN b text; COPY nh_full (a) FROM STDIN");
    // The session's first record (its start) is written without waiting, so the first request
    // may be decided before the trail is known broken: then the records before the COPY fail
    // when the COPY starts, and ddlgate ends the COPY itself (CopyFail → 57014, the query
    // string's implicit transaction rolled back) without telling the client a COPY began.
    // Either way the session is answered and nothing stays done.
    w.send(&request).await;
    let first = summaries(&w.until_ready().await);
    assert!(
        first == ["E:ZD002", "Z:I"] || first == ["C:ALTER TABLE", "E:57014", "Z:I"],
        "{first:?}"
    );
    // Now the trail is known broken: refused up front.
    w.send(&request).await;
    assert_eq!(summaries(&w.until_ready().await), ["E:ZD002", "Z:I"]);
    assert_eq!(
        count(
            pg,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'nh_full'::regclass AND attname = 'b'"
        )
        .await,
        0
    );
    w.send(&wire::query("SELECT 1")).await;
    assert_eq!(
        summaries(&w.until_ready().await),
        ["T", "D", "C:SELECT 1", "Z:I"]
    );
}

/// A request held behind an earlier one that is in COPY: the server waits for the client's
/// data, and the data comes after the held request in the client's stream. It flows — the
/// COPY ends, then the held request is decided and runs — instead of the session waiting on
/// itself. (On a direct connection the server would abort the COPY at the pipelined message;
/// ddlgate lets the data the client sent for it through first.)
#[tokio::test]
async fn copy_data_flows_past_a_request_held_behind_the_copy() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_behind; CREATE TABLE nh_behind (a int); ALTER TABLE nh_behind OWNER TO ddlgate_trust",
    )
    .await;
    for extended in [false, true] {
        let mut w = session(&proxy).await;
        let mut first = if extended {
            let mut run = wire::parse("", "COPY nh_behind (a) FROM STDIN");
            run.extend(wire::bind("", ""));
            run.extend(wire::execute(""));
            run.extend(wire::sync());
            run
        } else {
            wire::query("COPY nh_behind (a) FROM STDIN")
        };
        // Sent before the CopyInResponse is read: held, it waits behind the COPY.
        first.extend(wire::query(
            "ALTER TABLE nh_behind ADD COLUMN IF NOT EXISTS b int",
        ));
        w.send(&first).await;
        until_copy_in(&mut w, "COPY with a held request behind it").await;
        w.send(&copy_data(b"1\n2\n")).await;
        w.send(&copy_done()).await;
        if extended {
            // The server ignored the run's Sync during the COPY (and flushes nothing before
            // the next one): the client syncs again.
            w.send(&wire::sync()).await;
        }
        assert_eq!(summaries(&w.until_ready().await), ["C:COPY 2", "Z:I"]);
        assert_eq!(summaries(&w.until_ready().await), ["C:ALTER TABLE", "Z:I"]);
    }
    assert_eq!(count(pg, "SELECT count(*) FROM nh_behind").await, 4);
}

/// A stuck audit trail (here: a pipe nobody reads, so writes block once it is full) does not
/// keep a governed request — and the locks of its transaction — waiting: after the audit wait
/// limit (5 s) the client is answered, and the session goes on.
#[tokio::test]
async fn a_stuck_audit_trail_does_not_hold_the_answer_for_ever() {
    use std::os::unix::fs::OpenOptionsExt;
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A reader that never reads: the writer can open the pipe, and blocks once it is full.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000) // O_NONBLOCK
        .open(&fifo)
        .unwrap();
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(fifo.clone());
        o.audit_fsync = Some(ddlgate::internals::config::Fsync::Never);
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_stuck; CREATE TABLE nh_stuck (a int); ALTER TABLE nh_stuck OWNER TO ddlgate_trust",
    )
    .await;
    let mut w = session(&proxy).await;
    // Fill the pipe (64 KiB) with records of DDL that succeeds, until one answer is slow.
    let started = std::time::Instant::now();
    let mut slow = None;
    for n in 0..400 {
        let sent = std::time::Instant::now();
        w.send(&wire::query(&format!(
            "COMMENT ON TABLE nh_stuck IS 'comment number {n} {}'",
            "x".repeat(200)
        )))
        .await;
        let answer = summaries(&w.until_ready().await);
        assert_eq!(answer, ["C:COMMENT", "Z:I"], "statement {n}");
        if sent.elapsed() >= std::time::Duration::from_secs(3) {
            slow = Some(sent.elapsed());
            break;
        }
    }
    let slow =
        slow.unwrap_or_else(|| panic!("the pipe never filled ({:?} in all)", started.elapsed()));
    assert!(
        slow < std::time::Duration::from_secs(9),
        "answered after {slow:?}, past the audit wait limit"
    );
    // The session still works.
    w.send(&wire::query("SELECT 1")).await;
    assert_eq!(
        summaries(&w.until_ready().await),
        ["T", "D", "C:SELECT 1", "Z:I"]
    );
}

/// COPY BOTH exists only on replication connections (walsender `START_REPLICATION`). ddlgate
/// does not proxy those: a client asking for one (`replication=database` or `=true`) gets a
/// FATAL 0A000 that says to connect directly, before anything reaches the server — never a
/// stream that half works. `replication=off` is an ordinary session.
#[tokio::test]
async fn replication_connections_are_refused_cleanly() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    for mode in ["database", "true", "on"] {
        let mut w = Wire::connect(&proxy.addr.to_string()).await;
        w.send(&wire::startup(&[
            ("user", TRUST.name),
            ("database", "app"),
            ("replication", mode),
        ]))
        .await;
        let m = w.recv().await.expect("an ErrorResponse");
        assert_eq!(m.tag, b'E', "{mode}: {}", m.summary());
        assert_eq!(m.field(b'S').as_deref(), Some("FATAL"));
        assert_eq!(m.code().as_deref(), Some("0A000"));
        let message = m.field(b'M').unwrap();
        assert!(message.contains("replication connections"), "{message}");
        assert!(
            m.field(b'H').unwrap().contains("directly"),
            "{:?}",
            m.field(b'H')
        );
        assert!(w.recv().await.is_none(), "closed after the error");
    }
    let (mut w, _) = Wire::startup_with(
        &proxy.addr.to_string(),
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("replication", "off"),
        ],
    )
    .await;
    w.send(&wire::query("SELECT 1")).await;
    assert_eq!(
        summaries(&w.until_ready().await),
        ["T", "D", "C:SELECT 1", "Z:I"]
    );
}

/// The watch over held states: a request that needs the policy, held for 12 s behind slow
/// queries sent before it, is reported (a log line and `ddlgate_held_long_total{held="pending"}`)
/// after 10 s — ddlgate knows what it holds, why and for how long — and is answered as soon as
/// the query before it is.
#[tokio::test]
async fn a_request_held_for_long_is_reported_with_what_holds_it() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_watch; CREATE TABLE nh_watch (a int); ALTER TABLE nh_watch OWNER TO ddlgate_trust",
    )
    .await;
    let metrics = proxy.metrics.unwrap();
    let series = "ddlgate_held_long_total{held=\"pending\"}";
    let (_, before) = crate::metrics::get(metrics, "/metrics").await;
    assert_eq!(crate::metrics::sample(&before, series), 0);
    let mut w = session(&proxy).await;
    // Three slow queries, each answered within the client's 10 s read limit; the ALTER is
    // held until all three are.
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(wire::query("SELECT pg_sleep(4)"));
    }
    all.extend(wire::query("ALTER TABLE nh_watch ADD COLUMN b int"));
    w.send(&all).await;
    for _ in 0..3 {
        assert_eq!(
            summaries(&w.until_ready().await),
            ["T", "D", "C:SELECT 1", "Z:I"]
        );
    }
    assert_eq!(summaries(&w.until_ready().await), ["C:ALTER TABLE", "Z:I"]);
    let (_, after) = crate::metrics::get(metrics, "/metrics").await;
    assert_eq!(crate::metrics::sample(&after, series), 1, "{after}");
}

/// A governed request larger than 256 KiB is parsed and planned off the worker thread (so
/// the worker's other sessions do not stall behind it) and comes back to run as any other:
/// allowed DDL runs, refused DDL is refused, and a large batch of plain DML (several
/// statements, so the pre-filter cannot clear it) runs untouched.
#[tokio::test]
async fn a_large_governed_request_is_planned_off_the_worker() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS nh_large; CREATE TABLE nh_large (a int); ALTER TABLE nh_large OWNER TO ddlgate_trust",
    )
    .await;
    let mut w = session(&proxy).await;
    let comment = "c".repeat(1 << 20);
    w.send(&wire::query(&format!(
        "COMMENT ON TABLE nh_large IS '{comment}'"
    )))
    .await;
    assert_eq!(summaries(&w.until_ready().await), ["C:COMMENT", "Z:I"]);
    w.send(&wire::query(&format!(
        "DROP TABLE nh_large; SELECT '{comment}'"
    )))
    .await;
    let refused = summaries(&w.until_ready().await);
    assert_eq!(
        refused.first().map(String::as_str),
        Some("E:ZD001"),
        "{refused:?}"
    );
    assert_eq!(refused.last().map(String::as_str), Some("Z:I"));
    let batch: String = (0..20_000)
        .map(|i| format!("INSERT INTO nh_large VALUES ({i});"))
        .collect();
    assert!(batch.len() > 256 * 1024);
    w.send(&wire::query(&batch)).await;
    let answers = summaries(&w.until_ready().await);
    assert_eq!(answers.len(), 20_001, "every INSERT answered, then Z");
    assert_eq!(count(pg, "SELECT count(*) FROM nh_large").await, 20_000);
}
