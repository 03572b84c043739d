//! Function bodies are governed where they run: a statement that calls a user-defined
//! function or procedure whose body runs DDL (`SELECT f()`, `CALL p()`, `PERFORM f()` in a
//! `DO` block) is held to the rules of that DDL, with the routine named — whoever created the
//! routine, and whenever. Calls of routines without DDL, and plain DML, are not touched.

use std::path::PathBuf;

use crate::support::pg::{PgServer, SUPERUSER, TRUST, columns, run_direct as setup};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

/// Routines created directly on the server, before ddlgate's session started: calling one
/// that renames a column is refused (default and strict) with the routine named; calling one
/// without DDL runs; the column keeps its name.
#[tokio::test]
async fn calls_of_routines_that_run_ddl_are_held_to_its_rules() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS rt_victim; CREATE TABLE rt_victim (a int); \
         INSERT INTO rt_victim SELECT generate_series(1, 100); \
         CREATE OR REPLACE FUNCTION rt_rename() RETURNS void LANGUAGE sql AS $$ ALTER TABLE rt_victim RENAME COLUMN a TO a2 $$; \
         CREATE OR REPLACE PROCEDURE rt_proc() LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE rt_victim RENAME COLUMN a TO a3; END $$; \
         CREATE OR REPLACE FUNCTION rt_ok() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM rt_victim $$",
    )
    .await;
    let strict = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/strict.toml");
    for policy in [None, Some(strict)] {
        let proxy = TestProxy::start_with(pg, |o| o.policy = policy.clone()).await;
        let client = proxy.connect(SUPERUSER).await;
        for call in [
            "SELECT rt_rename()",
            "SELECT 1 FROM rt_victim WHERE rt_rename() IS NULL LIMIT 1",
            "CALL rt_proc()",
            "DO $$ BEGIN PERFORM rt_rename(); END $$",
        ] {
            let err = client.batch_execute(call).await.unwrap_err();
            let m = message(&err);
            assert!(m.contains("rename-column"), "{call}: {m}");
            assert!(m.contains("called here"), "{call}: {m}");
        }
        // The same through the extended protocol (a prepared statement).
        let err = client.query("SELECT rt_rename()", &[]).await.unwrap_err();
        assert!(message(&err).contains("rename-column"), "{err:?}");
        let n: i32 = client
            .query_one("SELECT rt_ok()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 100);
        assert_eq!(columns(pg, "rt_victim").await, ["a"]);
    }
}

/// A routine created through ddlgate in one session is governed when another session calls
/// it right after: the creation marks every session's copy of the routines stale.
#[tokio::test]
async fn a_routine_created_in_one_session_is_governed_in_another() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS rt_later_t; CREATE TABLE rt_later_t (a int); \
         INSERT INTO rt_later_t SELECT generate_series(1, 100); \
         DROP FUNCTION IF EXISTS rt_later()",
    )
    .await;
    let proxy = TestProxy::start(pg).await;
    let caller = proxy.connect(SUPERUSER).await;
    // The caller has read the routines already (none of them yet).
    caller.batch_execute("SELECT 1").await.unwrap();
    let creator = proxy.connect(SUPERUSER).await;
    creator
        .batch_execute(
            "CREATE FUNCTION rt_later() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('ALTER TABLE %I RENAME COLUMN a TO b', 'rt_later_t'); END $$",
        )
        .await
        .unwrap();
    let err = caller.batch_execute("SELECT rt_later()").await.unwrap_err();
    let m = message(&err);
    assert!(m.contains("rename-column") && m.contains("rt_later"), "{m}");
    assert_eq!(columns(pg, "rt_later_t").await, ["a"]);
}

/// A trigger whose function runs DDL runs it inside the DML that fires it: an `INSERT` (simple
/// or prepared, or a `COPY … FROM`) into the table is held to the rules of that DDL with the
/// trigger named, and refused; a `SELECT`, and an `UPDATE` the trigger does not fire on, run.
/// The trigger was created through ddlgate in another session just before.
#[tokio::test]
async fn dml_that_fires_a_trigger_running_ddl_is_held_to_its_rules() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS rt_trg, rt_trg_victim; \
         CREATE TABLE rt_trg_victim (a int); INSERT INTO rt_trg_victim SELECT generate_series(1, 100); \
         CREATE TABLE rt_trg (id int); INSERT INTO rt_trg SELECT generate_series(1, 10); \
         CREATE OR REPLACE FUNCTION rt_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN ALTER TABLE rt_trg_victim RENAME COLUMN a TO a2; RETURN NEW; END $$",
    )
    .await;
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("SELECT 1").await.unwrap();
    proxy
        .connect(SUPERUSER)
        .await
        .batch_execute(
            "CREATE TRIGGER rt_trg_ins BEFORE INSERT ON rt_trg FOR EACH ROW EXECUTE FUNCTION rt_trg_fn()",
        )
        .await
        .unwrap();
    let err = client
        .batch_execute("INSERT INTO rt_trg VALUES (11)")
        .await
        .unwrap_err();
    let m = message(&err);
    assert!(m.contains("rename-column"), "{m}");
    assert!(
        m.contains("in trigger function public.rt_trg_fn on public.rt_trg, fired here"),
        "{m}"
    );
    let err = client
        .execute("INSERT INTO rt_trg VALUES ($1)", &[&12_i32])
        .await
        .unwrap_err();
    assert!(message(&err).contains("rename-column"), "{err:?}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM rt_trg", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    client
        .batch_execute("UPDATE rt_trg SET id = id WHERE id = 1")
        .await
        .unwrap();
    // Parsed, bound with a parameter and executed in one run (psycopg, pgjdbc), then bound
    // again in a later run: refused each time with ddlgate's message, not a protocol error
    // about the parameters the refusal does not take.
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let mut run = wire::parse("ins", "INSERT INTO rt_trg VALUES ($1)");
    for attempt in 0..2 {
        run.extend(wire::bind_text("", "ins", &["14"]));
        run.extend(wire::execute(""));
        run.extend(wire::sync());
        w.send(&run).await;
        let answer = w.until_ready().await;
        let error = answer
            .iter()
            .find(|m| m.tag == b'E')
            .unwrap_or_else(|| panic!("{answer:?}"));
        assert_eq!(
            error.code().as_deref(),
            Some("ZD001"),
            "run {attempt}: {:?}",
            error.field(b'M')
        );
        run = Vec::new();
    }
    // Last: tokio-postgres cannot use a connection after a failed COPY (directly either).
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY rt_trg FROM STDIN")
        .await;
    let err = match sink {
        Err(e) => e,
        Ok(sink) => {
            use futures_util::SinkExt as _;
            let mut sink = std::pin::pin!(sink);
            let _ = sink.send(bytes::Bytes::from_static(b"13\n")).await;
            sink.finish().await.unwrap_err()
        }
    };
    assert!(message(&err).contains("rename-column"), "{err:?}");
    let n: i64 = pg
        .connect(SUPERUSER)
        .await
        .query_one("SELECT count(*) FROM rt_trg", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    assert_eq!(columns(pg, "rt_trg_victim").await, ["a"]);
}
