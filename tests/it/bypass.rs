//! Policy bypass attempts: the same unsafe statement spelled, wrapped and sent in every way a
//! client can, each of which must be refused exactly like the plain statement (or governed),
//! and each of which must be in the audit trail. Harmless look-alikes must still run.
//!
//! The default policy refuses `RENAME COLUMN` (`rename-column`), so the catalog shows whether a
//! rename slipped through: after every attempt, the column still has its old name.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::audit_records as records;
use crate::support::pg::{PgServer, SUPERUSER, TRUST, columns, run_direct as setup};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Msg, Wire};

/// The audit records of statements whose SQL is exactly `sql`.
fn audited(path: &Path, sql: &str) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|r| r["event"] == "statement" && r["sql"].as_str() == Some(sql))
        .collect()
}

/// The audit records of statements refused by `rule`.
fn refused_by(path: &Path, rule: &str) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|r| {
            r["event"] == "statement" && r["action"] == "reject" && r["rules"][0]["rule"] == rule
        })
        .collect()
}

/// Sends `sql` as one query string and checks that `rule` refused it with ZD001 and that
/// exactly one more refusal by `rule` is in the audit trail; returns that record.
async fn assert_refused(
    client: &tokio_postgres::Client,
    log: &Path,
    sql: &str,
    rule: &str,
) -> Value {
    let before = refused_by(log, rule).len();
    let err = client.batch_execute(sql).await.unwrap_err();
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: {err:?}"));
    assert_eq!(db.code().code(), "ZD001", "{sql}: {db:?}");
    assert!(
        db.message().starts_with(&format!("ddlgate: {rule}: ")),
        "{sql}: {}",
        db.message()
    );
    let refused = refused_by(log, rule);
    assert_eq!(refused.len(), before + 1, "{sql}: {refused:?}");
    refused[before].clone()
}

/// The text column of `sql`'s rows, `$1` being `table`.
async fn names(pg: &PgServer, sql: &str, table: &str) -> Vec<String> {
    pg.connect(SUPERUSER)
        .await
        .query(sql, &[&table])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn indexes(pg: &PgServer, table: &str) -> Vec<String> {
    names(pg, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::text::regclass ORDER BY 1", table).await
}

async fn proxy_with_audit(pg: &PgServer) -> (TestProxy, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    (proxy, dir, log)
}

/// One extended-protocol run: Parse, Bind and Execute of each statement (unnamed), then Sync.
fn extended_run(statements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for sql in statements {
        out.extend(wire::parse("", sql));
        out.extend(wire::bind("", ""));
        out.extend(wire::execute(""));
    }
    out.extend(wire::sync());
    out
}

/// Checks that `msgs` hold ddlgate's refusal (ZD001) by `rule`.
fn assert_refusal_by(msgs: &[Msg], rule: &str, what: &str) {
    let (code, message) = refusal(msgs).unwrap_or_else(|| panic!("{what}: not refused: {msgs:?}"));
    assert_eq!(code, "ZD001", "{what}: {message}");
    assert!(
        message.starts_with(&format!("ddlgate: {rule}: ")),
        "{what}: {message}"
    );
}

/// The refusal among `msgs`: its SQLSTATE and message.
fn refusal(msgs: &[Msg]) -> Option<(String, String)> {
    msgs.iter().find(|m| m.tag == b'E').map(|m| {
        (
            m.code().unwrap_or_default(),
            m.field(b'M').unwrap_or_default(),
        )
    })
}

/// Every spelling of a column rename in a simple-protocol query string is refused by
/// `rename-column`, the column keeps its name, and each attempt is audited as refused.
#[tokio::test]
async fn renames_in_disguise_are_refused_and_audited() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_orders; CREATE TABLE bp_orders (id int, note text); \
         INSERT INTO bp_orders SELECT g, 'n' FROM generate_series(1, 100) g; \
         DROP SCHEMA IF EXISTS bp_scratch CASCADE; CREATE SCHEMA bp_scratch",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let attempts = [
        "/* outer /* nested */ still a comment */ ALTER TABLE bp_orders RENAME COLUMN note TO n2",
        "-- a line comment\nALTER TABLE bp_orders RENAME COLUMN note TO n2",
        "aLtEr\tTaBlE\n  bp_orders   rEnAmE    note\n\tto n2",
        "ALTER TABLE \"bp_orders\" RENAME COLUMN \"note\" TO \"n2\"",
        "ALTER TABLE U&\"bp\\005forders\" RENAME COLUMN U&\"n\\006fte\" TO n2",
        "ALTER TABLE U&\"bp!005forders\" UESCAPE '!' RENAME note TO n2",
        "ALTER TABLE IF EXISTS ONLY public.bp_orders RENAME note TO n2",
        "SELECT $$ ; $$; ALTER TABLE bp_orders RENAME note TO n2",
        "SELECT $a$ $b$ ; ' $a$, 'it''s', E'\\' ;'; ALTER TABLE bp_orders RENAME note TO n2",
        "SELECT 1; SELECT 2; ALTER TABLE bp_orders RENAME note TO n2",
        // With standard_conforming_strings on (the default), the backslash is an ordinary
        // character: the string ends at the second quote and the rename is a statement.
        "SELECT 'a\\'; ALTER TABLE bp_orders RENAME note TO n2; --'",
        // Written out in a DO block, it is held to the same rule.
        "DO $$ BEGIN ALTER TABLE bp_orders RENAME note TO n2; END $$",
        "DO $outer$ BEGIN IF true THEN DO $inner$ BEGIN ALTER TABLE bp_orders RENAME note TO n2; END $inner$; END IF; END $outer$",
        // EXECUTE of SQL known before it runs: a constant, a concatenation, format() of
        // constants, a variable given only a constant.
        "DO $$ BEGIN EXECUTE 'ALTER TABLE bp_orders RENAME COLUMN note TO n2'; END $$",
        "DO $$ BEGIN EXECUTE 'ALTER TABLE ' || 'bp_orders' || ' RENAME note TO n2'; END $$",
        "DO $$ BEGIN EXECUTE format('ALTER TABLE %I RENAME COLUMN %I TO %I', 'bp_orders', 'note', 'n2'); END $$",
        "DO $$ DECLARE s text := 'ALTER TABLE bp_orders RENAME note TO n2'; BEGIN EXECUTE s; END $$",
        "DO $$ DECLARE s text; BEGIN s := format('ALTER TABLE %I RENAME note TO n2', 'bp_orders'); EXECUTE s; END $$",
    ];
    for sql in attempts {
        // One record per statement: the refused one names the rename.
        let record = assert_refused(&client, &log, sql, "rename-column").await;
        assert!(
            record["sql"]
                .as_str()
                .is_some_and(|s| s.to_lowercase().contains("rename")),
            "{sql}: {record}"
        );
        assert_eq!(record["outcome"]["sqlstate"], "ZD001", "{sql}");
    }
    assert_eq!(columns(pg, "bp_orders").await, ["id", "note"]);

    // Look-alikes that are not renames run: a string holding the text, and the same string
    // in a session with standard_conforming_strings off, where the backslash escapes.
    let row = client
        .query_one("SELECT 'x; ALTER TABLE bp_orders RENAME note TO n2'", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "x; ALTER TABLE bp_orders RENAME note TO n2"
    );
    client
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let rows = client
        .simple_query("SELECT 'a\\'; ALTER TABLE bp_orders RENAME note TO n2; --'")
        .await
        .unwrap();
    assert!(
        rows.iter().any(|m| matches!(m,
            tokio_postgres::SimpleQueryMessage::Row(r)
                if r.get(0) == Some("a'; ALTER TABLE bp_orders RENAME note TO n2; --"))),
        "the string came back whole"
    );
    assert_eq!(columns(pg, "bp_orders").await, ["id", "note"]);
}

/// A statement sent together with DDL cannot loosen the timeouts ddlgate applied
/// (`timeout-override`), however it does it; a stricter value, or a SET sent on its own, is
/// fine: ddlgate applies its timeouts again before the DDL.
#[tokio::test]
async fn loosening_the_timeouts_in_the_same_request_is_refused() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_timeouts; CREATE TABLE bp_timeouts (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let attempts = [
        "SET lock_timeout = 0; ALTER TABLE bp_timeouts ADD COLUMN a int",
        "SET statement_timeout TO '1h'; ALTER TABLE bp_timeouts ADD COLUMN a int",
        "RESET lock_timeout; ALTER TABLE bp_timeouts ADD COLUMN a int",
        "RESET ALL; ALTER TABLE bp_timeouts ADD COLUMN a int",
        "SELECT set_config('lock_timeout', '0', false); ALTER TABLE bp_timeouts ADD COLUMN a int",
        "UPDATE pg_settings SET setting = '0' WHERE name = 'lock_timeout'; ALTER TABLE bp_timeouts ADD COLUMN a int",
        "BEGIN; SET LOCAL lock_timeout = 0; ALTER TABLE bp_timeouts ADD COLUMN a int; COMMIT",
        "DO $$ BEGIN PERFORM set_config('lock_timeout', '0', true); ALTER TABLE bp_timeouts ADD COLUMN a int; END $$",
    ];
    for sql in attempts {
        assert_refused(&client, &log, sql, "timeout-override").await;
        // The session is usable and its settings are what they were.
        client.batch_execute("ROLLBACK").await.ok();
        let lock: String = client
            .query_one("SHOW lock_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(lock, "0", "{sql}");
    }
    assert_eq!(columns(pg, "bp_timeouts").await, ["id"]);

    // Stricter is fine; and a loosening SET on its own is overridden for the next DDL.
    client
        .batch_execute("SET lock_timeout = '100ms'; ALTER TABLE bp_timeouts ADD COLUMN b int")
        .await
        .unwrap();
    client.batch_execute("SET lock_timeout = 0").await.unwrap();
    client
        .batch_execute("ALTER TABLE bp_timeouts ADD COLUMN c int")
        .await
        .unwrap();
    let records = audited(&log, "ALTER TABLE bp_timeouts ADD COLUMN c int");
    assert_eq!(records[0]["timeouts"]["lock_timeout"], "200ms");
    assert_eq!(columns(pg, "bp_timeouts").await, ["id", "b", "c"]);
}

/// Tables that only look new are not treated as new: `CREATE TABLE IF NOT EXISTS` of a table
/// that exists, and an unqualified name after the search_path changed.
#[tokio::test]
async fn tables_that_only_look_new_are_governed() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_live; CREATE TABLE bp_live (id int, note text); \
         INSERT INTO bp_live SELECT g, 'n' FROM generate_series(1, 100) g; \
         DROP SCHEMA IF EXISTS bp_side CASCADE; CREATE SCHEMA bp_side",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for sql in [
        "CREATE TABLE IF NOT EXISTS bp_live (id int, note text); CREATE INDEX bp_live_note ON bp_live (note)",
        "CREATE TABLE bp_side.bp_live (id int, note text); CREATE INDEX bp_live_note ON bp_live (note)",
        "SET search_path = bp_side, public; CREATE TABLE bp_live (id int, note text); SET search_path = public; CREATE INDEX bp_live_note ON bp_live (note)",
    ] {
        assert_refused(&client, &log, sql, "create-index-nonconcurrent").await;
        client.batch_execute("RESET search_path").await.unwrap();
    }
    assert!(indexes(pg, "bp_live").await.is_empty());
    let refused = refused_by(&log, "create-index-nonconcurrent");
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r["sql"] == "CREATE INDEX bp_live_note ON bp_live (note)"),
        "{refused:?}"
    );
    // A table created in the same request really is new: its index needs no CONCURRENTLY.
    client
        .batch_execute(
            "CREATE TABLE bp_side.bp_fresh (id int); CREATE INDEX bp_fresh_id ON bp_side.bp_fresh (id)",
        )
        .await
        .unwrap();
}

/// The rename sent in the extended protocol: unnamed and named statements, prepared in one
/// run and executed in a later one, in a pipeline after other statements, with Describe
/// before Execute. Every form is refused and audited; the pipeline's earlier statement runs.
#[tokio::test]
async fn renames_in_the_extended_protocol_are_refused() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_ext; CREATE TABLE bp_ext (id int, note text); \
         GRANT ALL ON bp_ext TO PUBLIC",
    )
    .await;
    let rename = "ALTER TABLE bp_ext RENAME COLUMN note TO n2";
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let runs: Vec<Vec<Vec<u8>>> = vec![
        // Unnamed statement and portal.
        vec![
            wire::parse("", rename),
            wire::bind("", ""),
            wire::execute(""),
            wire::sync(),
        ],
        // Describe before Execute.
        vec![
            wire::parse("", rename),
            wire::bind("p", ""),
            wire::describe_portal("p"),
            wire::execute("p"),
            wire::sync(),
        ],
        // After another statement in the same pipeline.
        vec![
            wire::parse("", "SELECT 41 + 1"),
            wire::bind("", ""),
            wire::execute(""),
            wire::parse("", rename),
            wire::bind("", ""),
            wire::execute(""),
            wire::sync(),
        ],
    ];
    for (n, run) in runs.iter().enumerate() {
        w.send(&run.concat()).await;
        let msgs = w.until_ready().await;
        assert_refusal_by(&msgs, "rename-column", &format!("run {n}"));
        if n == 2 {
            assert!(
                msgs.iter().any(|m| m.tag == b'D'),
                "the SELECT before the rename ran"
            );
        }
    }
    // Prepared by name in one run, executed in later ones.
    w.send(&[wire::parse("bp_named", rename), wire::sync()].concat())
        .await;
    let msgs = w.until_ready().await;
    assert!(
        refusal(&msgs).is_none(),
        "preparing alone runs nothing: {msgs:?}"
    );
    for _ in 0..2 {
        w.send(&[wire::bind("", "bp_named"), wire::execute(""), wire::sync()].concat())
            .await;
        assert_refusal_by(&w.until_ready().await, "rename-column", "executing it");
    }
    assert_eq!(columns(pg, "bp_ext").await, ["id", "note"]);
    let refused = audited(&log, rename)
        .into_iter()
        .filter(|r| r["action"] == "reject")
        .count();
    assert_eq!(refused, 5, "every attempt is audited");

    // A SET in the same extended-protocol run cannot loosen the timeouts either.
    w.send(&extended_run(&[
        "SET lock_timeout = 0",
        "ALTER TABLE bp_ext ADD COLUMN extra int",
    ]))
    .await;
    assert_refusal_by(&w.until_ready().await, "timeout-override", "SET in the run");
    assert_eq!(columns(pg, "bp_ext").await, ["id", "note"]);

    // SQL-level PREPARE cannot hold DDL at all: the server refuses it with its own error.
    w.send(&wire::query(&format!("PREPARE bp_p AS {rename}")))
        .await;
    let msgs = w.until_ready().await;
    assert_eq!(refusal(&msgs).unwrap().0, "42601");
}

/// Code that runs DDL out of ddlgate's sight is governed by `dynamic-ddl` (a warning by
/// default) and audited: DO with EXECUTE, functions and procedures that run DDL, CALL, and
/// COPY … PROGRAM. Data that looks like SQL inside COPY FROM STDIN is only data.
#[tokio::test]
async fn hidden_ddl_is_flagged_and_audited() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_dyn; CREATE TABLE bp_dyn (id int, note text)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for sql in [
        "DO $$ BEGIN EXECUTE format('ALTER TABLE bp_dyn ADD COLUMN %I int', lower('D1')); END $$",
        "CREATE OR REPLACE FUNCTION bp_f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER TABLE bp_dyn ADD COLUMN d2 int'; END $$",
        "CREATE OR REPLACE PROCEDURE bp_p() LANGUAGE sql AS $$ ALTER TABLE bp_dyn ADD COLUMN d3 int $$",
        "CALL bp_p()",
        "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'",
    ] {
        let messages = client.simple_query(sql).await;
        assert!(messages.is_ok(), "{sql}: {messages:?}");
        let records = audited(&log, sql);
        assert_eq!(records.len(), 1, "{sql}: {records:?}");
        if sql == "CALL bp_p()" {
            // ddlgate read the procedure's body: its ADD COLUMN was judged (and allowed).
            assert_eq!(records[0]["action"], "allow", "{sql}");
            continue;
        }
        assert_eq!(records[0]["action"], "warn", "{sql}");
        assert_eq!(records[0]["rules"][0]["rule"], "dynamic-ddl", "{sql}");
    }

    // COPY data is never taken for SQL.
    let sink = client
        .copy_in("COPY bp_dyn (id, note) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from_static(
        b"1\tALTER TABLE bp_dyn RENAME COLUMN note TO n2;\n2\tDROP TABLE bp_dyn;\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(
        columns(pg, "bp_dyn").await,
        ["id", "note", "d1", "d3"],
        "DO ran (warned); the procedure ran when called; COPY data stayed data"
    );
}

/// The strict policy refuses what nobody can see: `EXECUTE` of SQL built at run time
/// (`dynamic-ddl`), which the default policy lets through with a warning.
#[tokio::test]
async fn strict_refuses_sql_built_at_run_time() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_strict; CREATE TABLE bp_strict (id int)",
    )
    .await;
    let strict = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/strict.toml");
    let proxy = TestProxy::start_with(pg, |o| o.policy = Some(strict)).await;
    let client = proxy.connect(SUPERUSER).await;
    let err = client
        .batch_execute("DO $$ BEGIN EXECUTE format('ALTER TABLE bp_strict ADD COLUMN %I int', lower('X')); END $$")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "ZD001");
    assert!(db.message().starts_with("ddlgate: dynamic-ddl: "), "{db:?}");
    assert_eq!(columns(pg, "bp_strict").await, ["id"]);
}

/// Changing who the session is (`SET ROLE`, `SET SESSION AUTHORIZATION`) or throwing its
/// settings away (`DISCARD ALL`) before DDL — in the same request, inside a transaction, or in
/// a request of its own — changes nothing about how the DDL is governed: a rename is still
/// refused, a DISCARD ALL that would drop the applied timeouts is refused (`timeout-override`),
/// and DDL after a role change still runs with the policy's timeouts.
#[tokio::test]
async fn role_changes_and_discard_do_not_escape_the_policy() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    let trust = TRUST.name;
    setup(
        pg,
        &format!(
            "DROP TABLE IF EXISTS bp_roles; CREATE TABLE bp_roles (id int, note text); \
             ALTER TABLE bp_roles OWNER TO {trust}"
        ),
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let rename = "ALTER TABLE bp_roles RENAME note TO n2";
    for sql in [
        format!("SET ROLE {trust}; {rename}"),
        format!("SET SESSION AUTHORIZATION {trust}; {rename}"),
        format!("BEGIN; SET LOCAL ROLE {trust}; {rename}; COMMIT"),
        format!("RESET ROLE; SET ROLE NONE; {rename}"),
    ] {
        assert_refused(&client, &log, &sql, "rename-column").await;
        client
            .batch_execute("ROLLBACK; RESET SESSION AUTHORIZATION")
            .await
            .unwrap();
    }
    // The same changes sent as requests of their own first.
    for change in [
        format!("SET ROLE {trust}"),
        format!("SET SESSION AUTHORIZATION {trust}"),
        "DISCARD ALL".to_owned(),
    ] {
        client.batch_execute(&change).await.unwrap();
        assert_refused(&client, &log, rename, "rename-column").await;
        client
            .batch_execute("RESET SESSION AUTHORIZATION; RESET ROLE")
            .await
            .unwrap();
    }
    assert_eq!(columns(pg, "bp_roles").await, ["id", "note"]);

    // DISCARD ALL resets the timeouts ddlgate applied before the request. In one query string
    // with DDL, PostgreSQL itself refuses it (the string is one implicit transaction) and the
    // DDL never runs, which the audit trail says; in an extended-protocol run, where it can
    // run first, ddlgate refuses the run (`timeout-override`).
    let err = client
        .batch_execute("DISCARD ALL; ALTER TABLE bp_roles ADD COLUMN a int")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25001"), "{err:?}");
    let records = audited(&log, "ALTER TABLE bp_roles ADD COLUMN a int");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"]["status"], "not_run", "{records:?}");
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), trust, "app").await;
    w.send(&extended_run(&[
        "DISCARD ALL",
        "ALTER TABLE bp_roles ADD COLUMN a int",
    ]))
    .await;
    assert_refusal_by(
        &w.until_ready().await,
        "timeout-override",
        "DISCARD ALL in the run",
    );
    assert_eq!(columns(pg, "bp_roles").await, ["id", "note"]);

    // After a role change, in the same request or before it, DDL runs under the policy's
    // timeouts, as the role it changed to.
    client.batch_execute("SET lock_timeout = 0").await.unwrap();
    for (sql, column) in [
        (
            format!("SET ROLE {trust}; ALTER TABLE bp_roles ADD COLUMN b int"),
            "b",
        ),
        (
            format!("SET SESSION AUTHORIZATION {trust}; ALTER TABLE bp_roles ADD COLUMN c int"),
            "c",
        ),
    ] {
        client.batch_execute(&sql).await.unwrap();
        let ddl = format!("ALTER TABLE bp_roles ADD COLUMN {column} int");
        let records = audited(&log, &ddl);
        assert_eq!(records.len(), 1, "{sql}: {records:?}");
        assert_eq!(records[0]["timeouts"]["lock_timeout"], "200ms", "{sql}");
        assert_eq!(records[0]["outcome"]["status"], "ok", "{sql}");
        assert_eq!(records[0]["user"], SUPERUSER.name, "{sql}");
        if sql.contains("SESSION AUTHORIZATION") {
            assert_eq!(records[0]["session_authorization"], trust, "{sql}");
        } else {
            assert!(records[0].get("session_authorization").is_none(), "{sql}");
        }
        let lock: String = client
            .query_one("SHOW lock_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(lock, "0", "{sql}: the client's own setting is back");
        client
            .batch_execute("RESET SESSION AUTHORIZATION; RESET ROLE")
            .await
            .unwrap();
    }
    assert_eq!(columns(pg, "bp_roles").await, ["id", "note", "b", "c"]);
}

/// DDL that runs later, out of ddlgate's sight, through a trigger, an event trigger or a rule:
/// the function that holds it is flagged by `dynamic-ddl` when it is created, attaching it is
/// governed and audited as DDL, and all of it is in the audit trail.
#[tokio::test]
async fn triggers_and_rules_that_run_ddl_later_are_flagged_and_audited() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_src, bp_target CASCADE; \
         DROP EVENT TRIGGER IF EXISTS bp_on_ddl; \
         CREATE TABLE bp_src (id int); CREATE TABLE bp_target (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let functions = [
        "CREATE OR REPLACE FUNCTION bp_trigger_ddl() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE format('ALTER TABLE bp_target ADD COLUMN c%s int', NEW.id); RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION bp_event_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
         BEGIN ALTER TABLE bp_target ADD COLUMN IF NOT EXISTS from_event int; END $$",
        "CREATE OR REPLACE FUNCTION bp_rule_ddl() RETURNS void LANGUAGE plpgsql AS $$ \
         BEGIN ALTER TABLE bp_target ADD COLUMN IF NOT EXISTS from_rule int; END $$",
    ];
    for sql in functions {
        client.batch_execute(sql).await.unwrap();
        let records = audited(&log, sql);
        assert_eq!(records.len(), 1, "{sql}: {records:?}");
        if sql == "CALL bp_p()" {
            // ddlgate read the procedure's body: its ADD COLUMN was judged (and allowed).
            assert_eq!(records[0]["action"], "allow", "{sql}");
            continue;
        }
        assert_eq!(records[0]["action"], "warn", "{sql}");
        assert_eq!(records[0]["rules"][0]["rule"], "dynamic-ddl", "{sql}");
    }
    let attach = [
        (
            "CREATE TRIGGER bp_tr AFTER INSERT ON bp_src FOR EACH ROW EXECUTE FUNCTION bp_trigger_ddl()",
            "CREATE TRIGGER",
        ),
        (
            "CREATE EVENT TRIGGER bp_on_ddl ON ddl_command_end WHEN TAG IN ('CREATE CONVERSION') \
             EXECUTE FUNCTION bp_event_ddl()",
            "CREATE EVENT TRIGGER",
        ),
        (
            "CREATE RULE bp_rule AS ON UPDATE TO bp_src DO ALSO SELECT bp_rule_ddl()",
            "CREATE RULE",
        ),
    ];
    for (sql, kind) in attach {
        client.batch_execute(sql).await.unwrap();
        let records = audited(&log, sql);
        assert_eq!(records.len(), 1, "{sql}: {records:?}");
        assert_eq!(records[0]["kind"], kind, "{sql}");
        assert_eq!(records[0]["outcome"]["status"], "ok", "{sql}");
    }
    assert_eq!(
        audited(&log, attach[0].0)[0]["rules"][0]["rule"],
        "create-trigger"
    );
    assert_eq!(
        audited(&log, attach[2].0)[0]["lock"],
        "ACCESS EXCLUSIVE",
        "a rule takes its table's strongest lock"
    );
    // The event trigger belongs to the whole shared cluster: drop it.
    setup(
        pg,
        "DROP EVENT TRIGGER IF EXISTS bp_on_ddl; DROP TABLE IF EXISTS bp_src, bp_target CASCADE",
    )
    .await;
}

/// Bind with one text parameter of `len` bytes (`x` repeated).
fn bind_big(len: usize) -> Vec<u8> {
    let mut body = vec![0, 0]; // unnamed portal, unnamed statement
    body.extend_from_slice(&0u16.to_be_bytes()); // parameter formats: all text
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    body.extend(std::iter::repeat_n(b'x', len));
    body.extend_from_slice(&0u16.to_be_bytes()); // result formats: all text
    wire::raw_frame(b'B', &body)
}

/// An extended-protocol run too large for ddlgate to hold whole (more than 256 KiB before its
/// Sync) is forwarded in parts; a part that holds DDL cannot be decided without the rest and
/// must not pass unreviewed, so the session ends with ddlgate's FATAL refusal before the DDL
/// is sent, and the attempt is audited. DDL that arrives with the run's Sync is governed as
/// usual, and a large run without DDL runs.
#[tokio::test]
async fn ddl_in_a_run_too_large_to_hold_is_refused() {
    let pg = PgServer::shared();
    let (proxy, _dir, log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_big; CREATE TABLE bp_big (id int, note text); \
         GRANT ALL ON bp_big TO PUBLIC",
    )
    .await;
    let addr = proxy.addr.to_string();
    let rename = "ALTER TABLE bp_big RENAME COLUMN note TO n2";
    let big_select = || {
        [
            wire::parse("", "SELECT length($1)"),
            bind_big(300 * 1024),
            wire::execute(""),
        ]
        .concat()
    };
    let rename_run = || {
        [
            wire::parse("", rename),
            wire::bind("", ""),
            wire::execute(""),
        ]
        .concat()
    };
    let fatal_refusal = |msgs: &[Msg]| {
        let fatal = msgs
            .iter()
            .find(|m| m.tag == b'E' && m.field(b'S').as_deref() == Some("FATAL"))
            .unwrap_or_else(|| panic!("no FATAL: {msgs:?}"));
        assert_eq!(fatal.code().as_deref(), Some("ZD001"));
        assert!(
            fatal
                .field(b'M')
                .unwrap_or_default()
                .starts_with("ddlgate: an extended-protocol run of more than 256 KiB"),
            "{:?}",
            fatal.field(b'M')
        );
    };

    // The DDL in the first part, with more of the run behind it.
    let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
    w.send(&[rename_run(), big_select()].concat()).await;
    let msgs = w.until_ready().await;
    fatal_refusal(&msgs);
    assert!(w.recv().await.is_none(), "the session is closed");

    // The DDL in a later part, after a part that went up already.
    let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
    w.send(&big_select()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    w.send(&[rename_run(), big_select()].concat()).await;
    let msgs = w.until_ready().await;
    fatal_refusal(&msgs);
    assert!(w.recv().await.is_none(), "the session is closed");

    assert_eq!(columns(pg, "bp_big").await, ["id", "note"]);
    let refused: Vec<Value> = audited(&log, rename)
        .into_iter()
        .filter(|r| r["action"] == "reject")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["outcome"]["sqlstate"], "ZD001");

    // A large run whose DDL comes with its Sync is governed as usual: refused, session kept.
    let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
    w.send(&big_select()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    w.send(&[rename_run(), wire::sync()].concat()).await;
    assert_refusal_by(&w.until_ready().await, "rename-column", "DDL with the Sync");
    // And a large run without DDL runs.
    w.send(&[big_select(), wire::sync()].concat()).await;
    let msgs = w.until_ready().await;
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
    assert!(
        String::from_utf8_lossy(&row.body).contains(&(300 * 1024).to_string()),
        "{}",
        row.summary()
    );
    assert_eq!(columns(pg, "bp_big").await, ["id", "note"]);
}

/// A Query (F) message holding `sql` as raw bytes (not UTF-8).
fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut body = sql.to_vec();
    body.push(0);
    wire::raw_frame(b'Q', &body)
}

/// ddlgate reads a query the way the server does whatever the client's encoding: characters
/// that are not UTF-8 stay distinct (LATIN1 `$é$` and `$è$` are different dollar-quote tags),
/// and in a client-only encoding an ASCII byte inside a character is part of it (SJIS
/// `0x83 0x5C` is no backslash). DDL hidden that way is refused; governed statements keep the
/// client's bytes, and a rewrite goes up in the client's encoding.
#[tokio::test]
async fn ddl_hidden_by_the_client_encoding_is_refused() {
    let pg = PgServer::shared();
    let (proxy, _dir, _log) = proxy_with_audit(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS bp_enc; CREATE TABLE bp_enc (id int, note text); \
         INSERT INTO bp_enc SELECT g, 'n' FROM generate_series(1, 100) g; \
         ALTER TABLE bp_enc OWNER TO ddlgate_trust",
    )
    .await;
    let addr = proxy.addr.to_string();
    let refused_rename = |msgs: &[Msg], what: &str| assert_refusal_by(msgs, "rename-column", what);

    // LATIN1: é (0xE9) and è (0xE8) are different tags, so the server reads the rename as a
    // statement between two strings.
    let (mut w, _) = Wire::startup_with(
        &addr,
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("client_encoding", "LATIN1"),
        ],
    )
    .await;
    w.send(&query_bytes(
        b"SELECT $\xE9$ x $\xE8$ y $\xE9$; ALTER TABLE bp_enc RENAME note TO n2; SELECT $\xE8$ z $\xE0$ w $\xE8$",
    ))
    .await;
    refused_rename(&w.until_ready().await, "LATIN1 dollar tags");
    // Governed statements keep the client's bytes; a rewrite goes up in LATIN1.
    w.send(&query_bytes(b"COMMENT ON TABLE bp_enc IS 'caf\xE9'"))
        .await;
    let msgs = w.until_ready().await;
    assert!(refusal(&msgs).is_none(), "{msgs:?}");
    w.send(&query_bytes(b"CREATE INDEX bp_enc_\xE9 ON bp_enc (note)"))
        .await;
    let msgs = w.until_ready().await;
    assert!(refusal(&msgs).is_none(), "{msgs:?}");
    let admin = pg.connect(SUPERUSER).await;
    let comment: String = admin
        .query_one("SELECT obj_description('bp_enc'::regclass)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "café");
    assert_eq!(indexes(pg, "bp_enc").await, ["\"bp_enc_é\""]);
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'bp_enc_é'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid, "built CONCURRENTLY");

    // SJIS: 0x83 0x5C is one character, so the E'' string ends at the next quote.
    let (mut w, _) = Wire::startup_with(
        &addr,
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("client_encoding", "SJIS"),
        ],
    )
    .await;
    w.send(&query_bytes(
        b"SELECT E'\x83\x5C'; ALTER TABLE bp_enc RENAME note TO n2; --'",
    ))
    .await;
    refused_rename(&w.until_ready().await, "SJIS trail byte");

    // The encoding changed by a request still running when the next one arrives: the next is
    // read in the encoding the server will use.
    let sjis_rename: &[u8] = b"SELECT E'\x83\x5C'; ALTER TABLE bp_enc RENAME note TO n2; --'";
    for change in [
        &b"SET client_encoding = 'SJIS'"[..],
        b"SET NAMES 'SJIS'",
        b"SELECT pg_sleep(0.2), set_config('client_encoding', 'SJIS', false)",
    ] {
        let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
        w.send(&[query_bytes(change), query_bytes(sjis_rename)].concat())
            .await;
        let first = w.until_ready().await;
        assert!(refusal(&first).is_none(), "{first:?}");
        let what = String::from_utf8_lossy(change).into_owned();
        refused_rename(&w.until_ready().await, &what);
    }
    // Within one extended-protocol run ddlgate cannot know the new encoding before the server
    // reads the next statement: the session ends before that statement is sent.
    let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
    let mut parse_sjis = vec![0u8];
    parse_sjis.extend_from_slice(b"ALTER TABLE bp_enc ALTER COLUMN note SET DEFAULT E'\x83\x5C', ALTER COLUMN id TYPE bigint --'");
    parse_sjis.extend_from_slice(&[0, 0, 0]);
    w.send(
        &[
            wire::parse("", "SET client_encoding = 'SJIS'"),
            wire::bind("", ""),
            wire::execute(""),
            wire::raw_frame(b'P', &parse_sjis),
            wire::bind("", ""),
            wire::execute(""),
            wire::sync(),
        ]
        .concat(),
    )
    .await;
    let msgs = w.until_ready().await;
    let fatal = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("{msgs:?}"));
    assert_eq!(fatal.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(fatal.code().as_deref(), Some("ZD001"));
    assert!(w.recv().await.is_none(), "the session is closed");
    assert_eq!(columns(pg, "bp_enc").await, ["id", "note"]);
    let id_type: String = pg
        .connect(SUPERUSER)
        .await
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'bp_enc'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id_type, "integer");
}
