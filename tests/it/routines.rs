//! Function bodies are governed where they run: a statement that calls a user-defined
//! function or procedure whose body runs DDL (`SELECT f()`, `CALL p()`, `PERFORM f()` in a
//! `DO` block) is held to the rules of that DDL, with the routine named — whoever created the
//! routine, and whenever. Calls of routines without DDL, and plain DML, are not touched.

use std::path::PathBuf;

use crate::support::pg::{PgServer, SUPERUSER, columns, run_direct as setup};
use crate::support::proxy::TestProxy;

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
