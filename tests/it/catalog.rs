//! Catalog truth: before a governed request is planned, ddlgate reads what the relations it
//! names really are on the session's own connection, and decides by the operation PostgreSQL
//! will perform — a table renamed through `ALTER INDEX`, no-ops proven by the catalog,
//! not-null checks that exist already, partitioned tables, tables the transaction created
//! where the statements did not show it — against committed tables that hold data.

use std::path::PathBuf;

use crate::support::pg::{PgServer, SUPERUSER, run_direct as setup};
use crate::support::proxy::TestProxy;

fn strict() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/strict.toml")
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

async fn exists(pg: &PgServer, relation: &str) -> bool {
    pg.connect(SUPERUSER)
        .await
        .query_one(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[&relation],
        )
        .await
        .unwrap()
        .get(0)
}

/// `ALTER INDEX victim RENAME …` on a table renames the table: it is judged as the table's
/// rename (refused by the default and the strict policy), and so is `ALTER VIEW … RENAME
/// COLUMN` on a table. A real index renamed through `ALTER INDEX` stays allowed.
#[tokio::test]
async fn the_operation_decides_not_the_keyword() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_victim, cat_victim_old CASCADE; \
         CREATE TABLE cat_victim (a int); INSERT INTO cat_victim SELECT generate_series(1, 100); \
         CREATE INDEX cat_victim_a ON cat_victim (a)",
    )
    .await;
    for policy in [None, Some(strict())] {
        let proxy = TestProxy::start_with(pg, |o| o.policy = policy.clone()).await;
        let client = proxy.connect(SUPERUSER).await;
        let err = client
            .batch_execute("ALTER INDEX cat_victim RENAME TO cat_victim_old")
            .await
            .unwrap_err();
        assert_eq!(code(&err), "ZD001", "{err:?}");
        assert!(message(&err).contains("rename-table"), "{err:?}");
        assert!(exists(pg, "cat_victim").await, "not renamed");

        let err = client
            .batch_execute("ALTER VIEW cat_victim RENAME COLUMN a TO a2")
            .await
            .unwrap_err();
        assert!(message(&err).contains("rename-column"), "{err:?}");

        client
            .batch_execute("ALTER INDEX cat_victim_a RENAME TO cat_victim_a2")
            .await
            .unwrap();
        client
            .batch_execute("ALTER INDEX cat_victim_a2 RENAME TO cat_victim_a")
            .await
            .unwrap();
    }
}

/// Statements the catalog proves change nothing run, and the trail says why: `DROP … IF
/// EXISTS` of absent tables, `ADD COLUMN IF NOT EXISTS` of an existing column, `SET NOT NULL`
/// on a column already `NOT NULL`, `CREATE INDEX IF NOT EXISTS` of an existing name. The same
/// statements where they would change something are still judged.
#[tokio::test]
async fn proven_no_ops_are_allowed_and_audited() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_noop CASCADE; \
         CREATE TABLE cat_noop (id bigint NOT NULL, a int); \
         INSERT INTO cat_noop SELECT g, g FROM generate_series(1, 100) g; \
         CREATE INDEX cat_noop_a ON cat_noop (a)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| {
        o.policy = Some(strict());
        o.audit_log = Some(log.clone());
    })
    .await;
    let client = proxy.connect(SUPERUSER).await;
    for noop in [
        "DROP TABLE IF EXISTS cat_absent_1, cat_absent_2",
        "ALTER TABLE cat_noop ADD COLUMN IF NOT EXISTS a bigserial",
        "ALTER TABLE cat_noop ALTER COLUMN id SET NOT NULL",
        "CREATE INDEX IF NOT EXISTS cat_noop_a ON cat_noop (a)",
        "ALTER TABLE IF EXISTS cat_absent_1 RENAME COLUMN a TO b",
    ] {
        client
            .batch_execute(noop)
            .await
            .unwrap_or_else(|e| panic!("{noop}: {e:?}"));
    }
    // Not no-ops: judged as usual (strict refuses each).
    for judged in [
        "DROP TABLE IF EXISTS cat_absent_1, cat_noop",
        "ALTER TABLE cat_noop ADD COLUMN IF NOT EXISTS b bigserial",
        "ALTER TABLE cat_noop ALTER COLUMN a SET NOT NULL",
        "CREATE INDEX IF NOT EXISTS cat_noop_a2 ON cat_noop (a)",
    ] {
        let err = client.batch_execute(judged).await.unwrap_err();
        assert_eq!(code(&err), "ZD001", "{judged}: {err:?}");
    }
    assert!(exists(pg, "cat_noop").await);
    let records = crate::support::audit_records(&log);
    let noop_of = |sql: &str| {
        records
            .iter()
            .find(|r| r["sql"] == sql)
            .unwrap_or_else(|| panic!("no record of {sql}: {records:#?}"))["noop"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        noop_of("DROP TABLE IF EXISTS cat_absent_1, cat_absent_2").as_deref(),
        Some("none of cat_absent_1, cat_absent_2 exists")
    );
    assert!(
        noop_of("ALTER TABLE cat_noop ALTER COLUMN id SET NOT NULL")
            .unwrap()
            .contains("already NOT NULL")
    );
    assert_eq!(noop_of("DROP TABLE IF EXISTS cat_absent_1, cat_noop"), None);
}

/// `SET NOT NULL` where a validated `CHECK (c IS NOT NULL)` exists (added earlier, by anyone)
/// skips its scan on PostgreSQL 12+: allowed as sent, even by the strict policy. Without the
/// check, or with one not yet validated, it is judged.
#[tokio::test]
async fn an_existing_validated_not_null_check_lets_set_not_null_through() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_nn; CREATE TABLE cat_nn (c int, d int); \
         INSERT INTO cat_nn SELECT g, g FROM generate_series(1, 100) g; \
         ALTER TABLE cat_nn ADD CONSTRAINT cat_nn_c CHECK (c IS NOT NULL); \
         ALTER TABLE cat_nn ADD CONSTRAINT cat_nn_d CHECK (d IS NOT NULL) NOT VALID",
    )
    .await;
    let proxy = TestProxy::start_with(pg, |o| o.policy = Some(strict())).await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("ALTER TABLE cat_nn ALTER COLUMN c SET NOT NULL")
        .await
        .unwrap();
    let err = client
        .batch_execute("ALTER TABLE cat_nn ALTER COLUMN d SET NOT NULL")
        .await
        .unwrap_err();
    assert!(message(&err).contains("set-not-null"), "{err:?}");
}

/// A partitioned table cannot build an index concurrently: `CREATE INDEX` on one is refused
/// by the default policy with the per-partition procedure as the hint — never rewritten into
/// the `CONCURRENTLY` that PostgreSQL would refuse — and so is `CREATE INDEX CONCURRENTLY`.
#[tokio::test]
async fn an_index_on_a_partitioned_table_gets_the_per_partition_procedure() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_parted; \
         CREATE TABLE cat_parted (a int, at date) PARTITION BY RANGE (at); \
         CREATE TABLE cat_parted_2026 PARTITION OF cat_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
         INSERT INTO cat_parted SELECT g, '2026-06-01' FROM generate_series(1, 100) g",
    )
    .await;
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SUPERUSER).await;
    for sql in [
        "CREATE INDEX cat_parted_a ON cat_parted (a)",
        "CREATE INDEX CONCURRENTLY cat_parted_a ON cat_parted (a)",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), "ZD001", "{sql}: {err:?}");
        let db = err.as_db_error().unwrap();
        assert!(db.message().contains("partitioned-index"), "{sql}: {db:?}");
        assert!(
            db.hint().unwrap_or_default().contains("ON ONLY cat_parted"),
            "{sql}: {db:?}"
        );
    }
    assert!(!exists(pg, "cat_parted_a").await);
}

/// "New" is what the current transaction created, as the catalog says: a table a `DO` block
/// created earlier in the transaction is new (its column may be renamed); a table the
/// transaction only altered is not.
#[tokio::test]
async fn new_means_created_by_this_transaction() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_old, cat_fresh; CREATE TABLE cat_old (a int); \
         INSERT INTO cat_old SELECT generate_series(1, 100)",
    )
    .await;
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("DO $$ BEGIN EXECUTE 'CREATE TABLE cat_fresh (a int)'; END $$")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE cat_fresh RENAME COLUMN a TO b")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE cat_old ADD COLUMN z int")
        .await
        .unwrap();
    let err = client
        .batch_execute("ALTER TABLE cat_old RENAME COLUMN a TO b")
        .await
        .unwrap_err();
    assert!(message(&err).contains("rename-column"), "{err:?}");
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// `REINDEX TABLE pg_class` (a system catalog, named without its schema) has no concurrent
/// form: it is not rewritten into one, which PostgreSQL would refuse.
#[tokio::test]
async fn system_catalogs_are_not_rewritten_to_concurrent_rebuilds() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("REINDEX TABLE pg_am").await.unwrap();
}
