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
    // A key on it is not rewritten into a concurrent build either.
    let err = client
        .batch_execute("ALTER TABLE cat_parted ADD CONSTRAINT cat_parted_pkey PRIMARY KEY (a, at)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001", "{err:?}");
    assert!(!exists(pg, "cat_parted_pkey").await);
    // Nor is dropping a partitioned index rewritten into DROP INDEX CONCURRENTLY.
    setup(pg, "CREATE INDEX cat_parted_at ON cat_parted (at)").await;
    let err = client
        .batch_execute("DROP INDEX cat_parted_at")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001", "{err:?}");
    assert!(
        err.as_db_error()
            .unwrap()
            .hint()
            .unwrap_or_default()
            .contains("partitioned index cannot be dropped concurrently"),
        "{err:?}"
    );
    assert!(exists(pg, "cat_parted_at").await);
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

/// `REINDEX TABLE pg_am` (a system catalog, named without its schema) and `REINDEX INDEX` of an
/// exclusion constraint's index have no concurrent form: they are not rewritten into one,
/// which PostgreSQL would refuse.
#[tokio::test]
async fn system_catalogs_are_not_rewritten_to_concurrent_rebuilds() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("REINDEX TABLE pg_am").await.unwrap();
    // Nor is an exclusion constraint's index: with nothing safer to offer, it runs as sent
    // (under the brief timeouts) instead of as a CONCURRENTLY PostgreSQL refuses.
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_excl; CREATE TABLE cat_excl (c circle, EXCLUDE USING gist (c WITH &&))",
    )
    .await;
    let err = client.batch_execute("REINDEX INDEX cat_excl_c_excl").await;
    assert!(err.is_ok(), "{err:?}");
}

/// Type changes PostgreSQL makes without rewriting the table — a longer `varchar`, `varchar`
/// to `text`, a wider `numeric` precision with the same scale, dropping a modifier — are
/// allowed once the catalog shows the column's current type (even by the strict policy), and
/// the server confirms each: the table's file is the same afterwards. A change that rewrites
/// (or whose old type makes it one) is still refused.
#[tokio::test]
async fn type_changes_without_a_rewrite_are_allowed_by_the_column_type_in_the_catalog() {
    let pg = PgServer::shared();
    setup(
        pg,
        "DROP TABLE IF EXISTS cat_types; \
         CREATE TABLE cat_types (v varchar(10), w varchar(20), n numeric(10, 2), m numeric(10, 2), i int, t timestamp(3), \
           c cidr, x text, b varbit(4), tz timestamptz(2), tm time(2), tt timetz(2), iv interval(2)); \
         INSERT INTO cat_types SELECT 'x', 'y', 1.5, 2.5, g, now(), '10.0.0.0/8', 'z', B'101', now(), now(), now(), '1 day' \
           FROM generate_series(1, 100) g",
    )
    .await;
    let proxy = TestProxy::start_with(pg, |o| o.policy = Some(strict())).await;
    let client = proxy.connect(SUPERUSER).await;
    let direct = pg.connect(SUPERUSER).await;
    let file = || async {
        direct
            .query_one(
                "SELECT relfilenode::bigint FROM pg_class WHERE oid = 'cat_types'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    for change in [
        "ALTER TABLE cat_types ALTER COLUMN v TYPE varchar(30)",
        "ALTER TABLE cat_types ALTER COLUMN w TYPE text",
        "ALTER TABLE cat_types ALTER COLUMN n TYPE numeric(12, 2)",
        "ALTER TABLE cat_types ALTER COLUMN m TYPE numeric",
        "ALTER TABLE cat_types ALTER COLUMN t TYPE timestamp(6)",
        "ALTER TABLE cat_types ALTER COLUMN c TYPE inet",
        "ALTER TABLE cat_types ALTER COLUMN x TYPE varchar",
        "ALTER TABLE cat_types ALTER COLUMN b TYPE varbit(8)",
        "ALTER TABLE cat_types ALTER COLUMN tz TYPE timestamptz(5)",
        "ALTER TABLE cat_types ALTER COLUMN tm TYPE time(4)",
        "ALTER TABLE cat_types ALTER COLUMN tt TYPE timetz(4)",
        "ALTER TABLE cat_types ALTER COLUMN iv TYPE interval(5)",
        "ALTER TABLE cat_types ALTER COLUMN iv TYPE interval",
    ] {
        let before = file().await;
        client
            .batch_execute(change)
            .await
            .unwrap_or_else(|e| panic!("{change}: {e:?}"));
        assert_eq!(file().await, before, "{change} rewrote the table");
    }
    for change in [
        "ALTER TABLE cat_types ALTER COLUMN v TYPE varchar(5)",
        "ALTER TABLE cat_types ALTER COLUMN i TYPE bigint",
        "ALTER TABLE cat_types ALTER COLUMN n TYPE numeric(14, 4)",
        "ALTER TABLE cat_types ALTER COLUMN iv TYPE interval(1)",
        "ALTER TABLE cat_types ALTER COLUMN tm TYPE time(1)",
    ] {
        let err = client.batch_execute(change).await.unwrap_err();
        assert!(
            message(&err).contains("change-column-type"),
            "{change}: {err:?}"
        );
    }
}
