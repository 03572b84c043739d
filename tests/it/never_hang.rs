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
    w.send(&wire::query(
        "ALTER TABLE nh_full ADD COLUMN b text; COPY nh_full (a) FROM STDIN",
    ))
    .await;
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
