//! Policy enforcement through ddlgate against a real cluster that logs every statement:
//! timeouts before DDL (set and restored, or SET LOCAL), refusals, rewrites checked in the
//! catalog and in the server's log, cleanup after a failed concurrent build, and the hot path
//! (plain queries reach the server exactly once, with nothing added).

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::pg::{PgServer, SUPERUSER, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// A cluster of this module's own that logs every statement it runs.
fn logged() -> &'static PgServer {
    static LOGGED: OnceLock<PgServer> = OnceLock::new();
    LOGGED.get_or_init(|| PgServer::start_with(&["log_statement = 'all'"]))
}

/// The test policy: the default one with short brief-lock timeouts, so lock waits end fast,
/// and no waiting for blockers before the attempt (tests/it/lock_wait.rs tests that): these
/// tests are about what happens when an attempt meets a held lock.
const POLICY: &str = r#"
[lock_wait]
max_wait = "0"

[timeouts.brief]
lock_timeout = "300ms"
statement_timeout = "5s"

[timeouts.online]
lock_timeout = "10s"
statement_timeout = "0"

[retry]
attempts = 2
initial_backoff = "100ms"
max_backoff = "1s"
"#;

/// Waits until the server's log holds `needle` at least `n` times: progress observed, not
/// assumed from a fixed sleep.
async fn until_logged(pg: &PgServer, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "the server never logged {needle:?} {n} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn proxy(pg: &PgServer, policy: &str) -> (TestProxy, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(policy.as_bytes()).unwrap();
    let path = file.path().to_owned();
    let proxy = TestProxy::start_with(pg, |o| o.policy = Some(path)).await;
    (proxy, file)
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

use crate::support::pg::run_direct as setup;

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

/// A DDL statement queued behind a lock fails after the policy's lock_timeout with 55P03
/// instead of waiting (and making every later query on the table wait behind it); it was
/// tried 1 + `retry.attempts` times, and the error names the session holding the lock.
#[tokio::test]
async fn lock_timeout_turns_a_lock_wait_into_55p03_naming_the_blocker() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS lt_wait; CREATE TABLE lt_wait (id int)",
    )
    .await;
    let direct = crate::support::pg::connect(&format!(
        "{} application_name=blocker_app",
        pg.conn_str(SUPERUSER)
    ))
    .await;
    direct
        .batch_execute("BEGIN; LOCK TABLE lt_wait IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    let started = Instant::now();
    let err = client
        .batch_execute("ALTER TABLE lt_wait ADD COLUMN note text")
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55P03", "{err:?}");
    let detail = db.detail().unwrap_or_default();
    assert!(detail.contains("Blocked by: pid "), "{detail}");
    assert!(detail.contains("blocker_app"), "{detail}");
    assert!(detail.contains("idle in transaction"), "{detail}");
    // Three attempts of 300 ms and two pauses: at least 0.9 s, far less than a lock wait.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(
        pg.log()
            .matches("statement: ALTER TABLE lt_wait ADD COLUMN note text")
            .count(),
        3,
        "the first attempt and two retries"
    );
    direct.batch_execute("ROLLBACK").await.unwrap();
    // The session is fine, and its own timeout is what it was.
    assert_eq!(show(&client, "lock_timeout").await, "0");
}

/// A retry succeeds once the lock is released within the retry budget; the client sees only
/// the success.
#[tokio::test]
async fn retry_succeeds_when_the_lock_goes_away() {
    let pg = logged();
    let policy = POLICY.replace("attempts = 2", "attempts = 6");
    let (proxy, _policy) = proxy(pg, &policy).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS lt_retry; CREATE TABLE lt_retry (id int)",
    )
    .await;
    let direct = pg.connect(SUPERUSER).await;
    direct
        .batch_execute("BEGIN; LOCK TABLE lt_retry IN ACCESS SHARE MODE")
        .await
        .unwrap();
    // Released once the first attempt has timed out and a retry is under way.
    let release = tokio::spawn(async move {
        until_logged(
            logged(),
            "statement: ALTER TABLE lt_retry ADD COLUMN note text",
            2,
        )
        .await;
        direct.batch_execute("ROLLBACK").await.unwrap();
    });
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("ALTER TABLE lt_retry ADD COLUMN note text")
        .await
        .unwrap();
    release.await.unwrap();
    let columns: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'lt_retry'::regclass AND attname = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 1);
    assert!(
        pg.log()
            .matches("statement: ALTER TABLE lt_retry ADD COLUMN note text")
            .count()
            >= 2
    );
}

/// Outside a transaction block the timeouts are set and restored: SHOW returns the same before
/// and after; a value the client set itself that is stricter is kept while the DDL runs.
#[tokio::test]
async fn timeouts_are_restored_after_autocommit_ddl_and_stricter_client_values_win() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS lt_restore; CREATE TABLE lt_restore (id int)",
    )
    .await;
    assert_eq!(show(&client, "lock_timeout").await, "0");
    assert_eq!(show(&client, "statement_timeout").await, "0");
    client
        .batch_execute("ALTER TABLE lt_restore ADD COLUMN a int")
        .await
        .unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "0");
    assert_eq!(show(&client, "statement_timeout").await, "0");

    // A stricter value of the client's own stays in force, and stays afterwards.
    client
        .batch_execute("SET lock_timeout = '100ms'")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE lt_restore ADD COLUMN b int")
        .await
        .unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "100ms");
    // A looser one is tightened for the DDL only.
    client
        .batch_execute("SET lock_timeout = '1h'")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE lt_restore ADD COLUMN c int")
        .await
        .unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "1h");

    // A stricter SET in the same query string as the DDL is the client's and is kept; a
    // looser one would undo the policy's and is refused (timeout-override).
    client
        .batch_execute("SET statement_timeout = '3s'; ALTER TABLE lt_restore ADD COLUMN d int")
        .await
        .unwrap();
    assert_eq!(show(&client, "statement_timeout").await, "3s");
    let err = client
        .batch_execute("SET statement_timeout = '7s'; ALTER TABLE lt_restore ADD COLUMN e int")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().starts_with("ddlgate: timeout-override: ")),
        "{err:?}"
    );
    assert_eq!(show(&client, "statement_timeout").await, "3s");

    // The server saw ddlgate's set_config right before the DDL, in the same backend (the
    // default log_line_prefix names the backend's pid; other tests share this server).
    let log = pg.log();
    let lines: Vec<&str> = log.lines().collect();
    let ddl = lines
        .iter()
        .position(|l| l.contains("statement: ALTER TABLE lt_restore ADD COLUMN a int"))
        .unwrap();
    let pid = |l: &str| {
        l.split(" LOG:")
            .next()
            .and_then(|p| p.rsplit('[').next())
            .map(str::to_owned)
    };
    let backend = pid(lines[ddl]).unwrap();
    let previous = lines[..ddl]
        .iter()
        .rev()
        .find(|l| l.contains("statement: ") && pid(l).as_deref() == Some(backend.as_str()))
        .unwrap();
    assert!(
        previous.contains("set_config('lock_timeout'"),
        "set_config right before the DDL: {previous}"
    );
}

/// Inside a transaction block the timeouts are SET LOCAL: in force for the rest of the block,
/// gone after COMMIT.
#[tokio::test]
async fn timeouts_inside_a_transaction_block_are_local() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS lt_local; CREATE TABLE lt_local (id int)",
    )
    .await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("ALTER TABLE lt_local ADD COLUMN a int")
        .await
        .unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "300ms");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "0");

    // BEGIN and DDL in one query string: set-and-restore around the whole string, the restore
    // waits for the block to end.
    client
        .batch_execute("BEGIN; ALTER TABLE lt_local ADD COLUMN b int")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "0");
}

/// A refused statement gets ddlgate's error (rule id, DETAIL with the lock, HINT with the safe
/// SQL, SQLSTATE ZD001); nothing runs; the connection stays usable.
#[tokio::test]
async fn rejected_statement_gets_ddlgates_error_and_the_session_goes_on() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS rj_users; CREATE TABLE rj_users (id int, name text)",
    )
    .await;
    let err = client
        .batch_execute("ALTER TABLE rj_users RENAME COLUMN name TO full_name")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "ZD001");
    assert!(
        db.message().starts_with("ddlgate: rename-column: "),
        "{}",
        db.message()
    );
    assert!(
        db.detail().unwrap_or_default().contains("rj_users"),
        "{db:?}"
    );
    assert!(db.hint().is_some(), "{db:?}");
    assert!(db.where_().is_none(), "no PL/pgSQL context: {db:?}");
    let columns: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'rj_users'::regclass AND attname = 'name'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 1, "the column was not renamed");

    // Extended protocol: the same error, and the session goes on.
    let err = client
        .execute("ALTER TABLE rj_users RENAME COLUMN name TO full_name", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001", "{err:?}");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // Inside a transaction block the server's transaction is aborted too.
    client.batch_execute("BEGIN").await.unwrap();
    let err = client
        .batch_execute("ALTER TABLE rj_users RENAME COLUMN name TO full_name")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001");
    let err = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), "25P02", "the transaction is aborted: {err:?}");
    client.batch_execute("ROLLBACK").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
}

/// The messages a client gets for a refused statement in a pipeline are those PostgreSQL sends
/// for a statement that fails there: the rest is skipped until Sync.
#[tokio::test]
async fn rejection_in_a_pipeline_skips_to_sync_like_postgres() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let setup = pg.connect(SUPERUSER).await;
    setup
        .batch_execute("DROP TABLE IF EXISTS rj_pipe; CREATE TABLE rj_pipe (id int, name text); GRANT ALL ON rj_pipe TO PUBLIC")
        .await
        .unwrap();
    let run = |failing: &'static str| {
        let mut bytes = Vec::new();
        bytes.extend(wire::parse("", "SELECT 1"));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::parse("", failing));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::parse("", "SELECT 2"));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::sync());
        bytes.extend(wire::query("SELECT 3"));
        bytes
    };
    let (mut direct, _) = Wire::startup(&pg.addr(), TRUST.name, "app").await;
    direct.send(&run("SELECT 1 / (random() * 0)::int")).await;
    let mut expected: Vec<String> = direct
        .until_ready()
        .await
        .iter()
        .map(|m| m.summary())
        .collect();
    expected.extend(direct.until_ready().await.iter().map(|m| m.summary()));

    let (mut through, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    through
        .send(&run("ALTER TABLE rj_pipe RENAME COLUMN name TO full_name"))
        .await;
    let first = through.until_ready().await;
    let mut got: Vec<String> = first.iter().map(|m| m.summary()).collect();
    got.extend(through.until_ready().await.iter().map(|m| m.summary()));
    let expected: Vec<String> = expected
        .into_iter()
        .map(|s| {
            if s == "E:22012" {
                "E:ZD001".to_owned()
            } else {
                s
            }
        })
        .collect();
    assert_eq!(got, expected);
}

/// CREATE INDEX outside a transaction block runs as CREATE INDEX CONCURRENTLY; the client sees
/// the tag of what it sent, and the index is valid.
#[tokio::test]
async fn create_index_is_rewritten_to_concurrently() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let setup = pg.connect(SUPERUSER).await;
    setup
        .batch_execute("DROP TABLE IF EXISTS rw_orders; CREATE TABLE rw_orders AS SELECT g AS id, g % 100 AS customer_id FROM generate_series(1, 10000) g; GRANT ALL ON rw_orders TO PUBLIC; ALTER TABLE rw_orders OWNER TO ddlgate_trust")
        .await
        .unwrap();
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query(
        "CREATE INDEX rw_orders_customer_idx ON rw_orders (customer_id)",
    ))
    .await;
    let msgs: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
    assert_eq!(msgs, ["C:CREATE INDEX", "Z:I"]);
    let valid: bool = setup
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'rw_orders_customer_idx'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    assert!(
        pg.log().contains(
            "CREATE INDEX CONCURRENTLY rw_orders_customer_idx ON rw_orders (customer_id)"
        )
    );

    // Inside a transaction block no rewrite is valid: the default fallback refuses it.
    w.send(&wire::query(
        "BEGIN; CREATE INDEX rw_orders_id_idx ON rw_orders (id); COMMIT",
    ))
    .await;
    let msgs = w.until_ready().await;
    let error = msgs.iter().find(|m| m.tag == b'E').unwrap();
    assert_eq!(error.code().as_deref(), Some("ZD001"));
    assert!(
        error
            .field(b'M')
            .unwrap()
            .contains("no automatic rewrite is valid here")
    );
}

/// A concurrent unique build that fails on duplicates leaves no INVALID index behind, and the
/// client gets PostgreSQL's own error.
#[tokio::test]
async fn failed_concurrent_build_leaves_no_invalid_index() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_dupes; CREATE TABLE rw_dupes (a int); INSERT INTO rw_dupes SELECT g % 10 FROM generate_series(1, 1000) g").await;
    // A table created earlier (another request) is not new, so the rule fires.
    let err = client
        .batch_execute("CREATE UNIQUE INDEX rw_dupes_a_key ON rw_dupes (a)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505", "{err:?}");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'rw_dupes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no index left behind");
    assert!(
        pg.log()
            .contains("DROP INDEX CONCURRENTLY IF EXISTS rw_dupes_a_key")
    );
    assert_eq!(show(&client, "lock_timeout").await, "0");
}

/// A `CREATE UNIQUE INDEX CONCURRENTLY` the client sends itself and that fails for its data
/// (duplicates, not a lock) is not retried, and its INVALID index is left as a direct
/// connection leaves it: the client's own statement, the client's own leftover to drop
/// (ddlgate drops only what its rewrites leave, or an attempt of the client's own before
/// ddlgate retries it).
#[tokio::test]
async fn a_clients_own_concurrent_build_that_fails_for_its_data_keeps_its_invalid_index() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS own_dupes; CREATE TABLE own_dupes (a int); INSERT INTO own_dupes SELECT g % 10 FROM generate_series(1, 1000) g").await;
    let err = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY own_dupes_a_key ON own_dupes (a)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505", "{err:?}");
    let left: Vec<(String, bool)> = client
        .query(
            "SELECT indexrelid::regclass::text, indisvalid FROM pg_index WHERE indrelid = 'own_dupes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(left, [("own_dupes_a_key".to_owned(), false)]);
    assert!(
        !pg.log()
            .contains("DROP INDEX CONCURRENTLY IF EXISTS own_dupes_a_key"),
        "ddlgate dropped the client's own leftover"
    );
    assert_eq!(
        pg.log()
            .matches("statement: CREATE UNIQUE INDEX CONCURRENTLY own_dupes_a_key")
            .count(),
        1,
        "sent once: a data error is not retried"
    );
    assert_eq!(show(&client, "lock_timeout").await, "0");
}

/// ADD CONSTRAINT … CHECK runs as NOT VALID, then VALIDATE: the constraint ends up validated;
/// when validation fails the client gets the server's error and no constraint is left.
#[tokio::test]
async fn check_constraint_is_added_not_valid_then_validated() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_checks; CREATE TABLE rw_checks (a int); INSERT INTO rw_checks SELECT g FROM generate_series(1, 1000) g").await;
    client
        .batch_execute("ALTER TABLE rw_checks ADD CONSTRAINT rw_checks_positive CHECK (a > 0)")
        .await
        .unwrap();
    let validated: bool = client
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'rw_checks_positive'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(validated);
    let log = pg.log();
    let added = log
        .find("ADD CONSTRAINT rw_checks_positive CHECK (a > 0) NOT VALID")
        .unwrap();
    let validate = log
        .find("ALTER TABLE rw_checks VALIDATE CONSTRAINT rw_checks_positive")
        .unwrap();
    assert!(added < validate);

    let err = client
        .batch_execute("ALTER TABLE rw_checks ADD CONSTRAINT rw_checks_small CHECK (a < 10)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23514", "{err:?}");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'rw_checks_small'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the NOT VALID constraint was taken back");
}

/// ADD PRIMARY KEY runs as a concurrent unique build, then ADD CONSTRAINT … USING INDEX; when
/// attaching fails (a NULL in the key), the client gets PostgreSQL's error and the index built
/// for it is dropped again, so the same migration can run once more after the data is fixed.
#[tokio::test]
async fn primary_key_whose_attach_fails_leaves_no_index() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_keys; CREATE TABLE rw_keys (a int); INSERT INTO rw_keys SELECT g FROM generate_series(1, 1000) g; INSERT INTO rw_keys VALUES (NULL)").await;
    let add = "ALTER TABLE rw_keys ADD CONSTRAINT rw_keys_pkey PRIMARY KEY (a)";
    let err = client.batch_execute(add).await.unwrap_err();
    assert_eq!(code(&err), "23502", "{err:?}");
    let indexes = || async {
        client
            .query_one(
                "SELECT count(*) FROM pg_index WHERE indrelid = 'rw_keys'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(indexes().await, 0, "the unique index was dropped again");
    let log = pg.log();
    assert!(log.contains("CREATE UNIQUE INDEX CONCURRENTLY rw_keys_pkey ON rw_keys (a)"));
    assert!(log.contains("DROP INDEX CONCURRENTLY IF EXISTS rw_keys_pkey"));

    client
        .batch_execute("DELETE FROM rw_keys WHERE a IS NULL")
        .await
        .unwrap();
    client.batch_execute(add).await.unwrap();
    let primary: bool = client
        .query_one(
            "SELECT indisprimary FROM pg_index WHERE indexrelid = 'rw_keys_pkey'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(primary);
}

/// A warned rule (dynamic DDL) reaches the client as a WARNING notice and the statement runs.
#[tokio::test]
async fn dynamic_ddl_runs_with_a_warning() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query(
        "DO $$ BEGIN EXECUTE format('CREATE TABLE IF NOT EXISTS %I (id int)', lower('DYN_MADE')); END $$",
    ))
    .await;
    let msgs = w.until_ready().await;
    let notice = msgs.iter().find(|m| m.tag == b'N').unwrap();
    assert!(
        notice
            .field(b'M')
            .unwrap()
            .starts_with("ddlgate: dynamic-ddl: ")
    );
    assert_eq!(notice.field(b'S').as_deref(), Some("WARNING"));
    assert!(msgs.iter().any(|m| m.summary() == "C:DO"));
}

/// Plain queries keep the hot path: 1,000 SELECTs reach the server as exactly 1,000 statements,
/// with nothing of ddlgate's in between — apart from its read of the database's routines that
/// run DDL, once as the session starts (and again only after 30 s).
#[tokio::test]
async fn plain_queries_reach_the_server_unchanged_and_alone() {
    // A cluster of its own: no other test's statements in its log.
    let pg = &PgServer::start_with(&["log_statement = 'all'"]);
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    let marker = "hot_path_marker_7d1f";
    let before = pg.log().len();
    for i in 0..1000 {
        client
            .simple_query(&format!("SELECT {i} AS {marker}"))
            .await
            .unwrap();
    }
    let log = pg.log();
    let new = &log[before..];
    let statements = new.matches("LOG:  statement: ").count();
    let routine_reads = new.matches("pg_catalog.pg_get_functiondef").count();
    assert_eq!(new.matches(marker).count(), 1000);
    // Read as the session starts: before the first query, or before the log was measured.
    assert!(routine_reads <= 1, "{routine_reads}");
    assert!(
        new.find("pg_catalog.pg_get_functiondef") < new.find(marker),
        "the routines are read first"
    );
    assert_eq!(
        statements,
        1000 + routine_reads,
        "nothing but the client's statements"
    );
}

/// DDL sent through the extended protocol (tokio-postgres prepares a named statement in one
/// run and executes it in the next) runs under the timeouts too.
#[tokio::test]
async fn extended_protocol_ddl_gets_the_timeouts() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS lt_extended; CREATE TABLE lt_extended (id int)",
    )
    .await;
    let direct = pg.connect(SUPERUSER).await;
    direct
        .batch_execute("BEGIN; LOCK TABLE lt_extended IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    let statement = client
        .prepare("ALTER TABLE lt_extended ADD COLUMN note text")
        .await
        .unwrap();
    let started = Instant::now();
    let err = client.execute(&statement, &[]).await.unwrap_err();
    assert_eq!(code(&err), "55P03", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    direct.batch_execute("ROLLBACK").await.unwrap();
    client.execute(&statement, &[]).await.unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "0");
}

/// SET NOT NULL runs as CHECK (…) NOT VALID, VALIDATE, SET NOT NULL (which then needs no
/// scan) and drops the helper CHECK; with NULLs present the client gets the server's error
/// and no helper constraint is left.
#[tokio::test]
async fn set_not_null_goes_through_a_validated_check() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_nn; CREATE TABLE rw_nn (a int, b int); INSERT INTO rw_nn SELECT g, CASE WHEN g = 5 THEN NULL ELSE g END FROM generate_series(1, 100) g").await;
    client
        .batch_execute("ALTER TABLE rw_nn ALTER COLUMN a SET NOT NULL")
        .await
        .unwrap();
    let not_null: bool = client
        .query_one(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'rw_nn'::regclass AND attname = 'a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(not_null);
    let helpers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'rw_nn'::regclass AND contype = 'c'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(helpers, 0, "the helper CHECK was dropped");
    let log = pg.log();
    let steps: &[&str] = if pg.major >= 18 {
        &[
            "ALTER TABLE rw_nn ADD CONSTRAINT rw_nn_a_not_null NOT NULL a NOT VALID",
            "ALTER TABLE rw_nn VALIDATE CONSTRAINT rw_nn_a_not_null",
        ]
    } else {
        &[
            "ALTER TABLE rw_nn ADD CONSTRAINT rw_nn_a_not_null CHECK (a IS NOT NULL) NOT VALID",
            "ALTER TABLE rw_nn VALIDATE CONSTRAINT rw_nn_a_not_null",
            "ALTER TABLE rw_nn ALTER COLUMN a SET NOT NULL",
            "ALTER TABLE rw_nn DROP CONSTRAINT rw_nn_a_not_null",
        ]
    };
    let positions: Vec<usize> = steps.iter().map(|s| log.find(s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    let err = client
        .batch_execute("ALTER TABLE rw_nn ALTER COLUMN b SET NOT NULL")
        .await
        .unwrap_err();
    let expected = if pg.major >= 18 { "23502" } else { "23514" };
    assert_eq!(code(&err), expected, "{err:?}");
    let helpers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'rw_nn_b_not_null'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(helpers, 0, "no helper constraint left after the failure");
}

/// ADD UNIQUE builds its index concurrently and attaches it; on duplicates the client gets
/// 23505 and neither index nor constraint is left.
#[tokio::test]
async fn unique_constraint_is_built_concurrently_and_attached() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_uq; CREATE TABLE rw_uq (a int, b int); INSERT INTO rw_uq SELECT g, g % 3 FROM generate_series(1, 100) g").await;
    client
        .batch_execute("ALTER TABLE rw_uq ADD CONSTRAINT rw_uq_a_key UNIQUE (a)")
        .await
        .unwrap();
    let kind: i8 = client
        .query_one(
            "SELECT contype::\"char\"::text::\"char\" AS k FROM pg_constraint WHERE conname = 'rw_uq_a_key'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind as u8, b'u');
    assert!(
        pg.log()
            .contains("CREATE UNIQUE INDEX CONCURRENTLY rw_uq_a_key ON rw_uq (a)")
    );

    let err = client
        .batch_execute("ALTER TABLE rw_uq ADD CONSTRAINT rw_uq_b_key UNIQUE (b)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23505", "{err:?}");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'rw_uq_b_key'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no INVALID index left");
}

/// DROP INDEX and REINDEX outside a transaction block run CONCURRENTLY.
#[tokio::test]
async fn drop_index_and_reindex_run_concurrently() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_idx; CREATE TABLE rw_idx (a int); CREATE INDEX rw_idx_a ON rw_idx (a); CREATE INDEX rw_idx_a2 ON rw_idx (a)").await;
    client.batch_execute("REINDEX TABLE rw_idx").await.unwrap();
    client.batch_execute("DROP INDEX rw_idx_a2").await.unwrap();
    let log = pg.log();
    assert!(log.contains("REINDEX TABLE CONCURRENTLY rw_idx"), "reindex");
    assert!(log.contains("DROP INDEX CONCURRENTLY rw_idx_a2"), "drop");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'rw_idx'::regclass AND indisvalid",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}

/// Profiles pick the settings per connection: here the application `observer*` only gets
/// warnings while everyone else gets the default refusals.
#[tokio::test]
async fn profiles_choose_the_settings_per_connection() {
    let pg = logged();
    let policy = format!(
        "{POLICY}\n[[profiles]]\nname = \"observers\"\napplication_names = [\"observer*\"]\n[profiles.rules]\nrename-column = \"warn\"\n"
    );
    let (proxy, _policy) = proxy(pg, &policy).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS pf_users; CREATE TABLE pf_users (id int, name text)",
    )
    .await;
    let strict = proxy.connect(SUPERUSER).await;
    let err = strict
        .batch_execute("ALTER TABLE pf_users RENAME COLUMN name TO full_name")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001");

    let (mut observer, _) = Wire::startup_with(
        &proxy.addr.to_string(),
        &[
            ("user", TRUST.name),
            ("database", "app"),
            ("application_name", "observer-7"),
        ],
    )
    .await;
    setup(pg, "ALTER TABLE pf_users OWNER TO ddlgate_trust").await;
    observer
        .send(&wire::query(
            "ALTER TABLE pf_users RENAME COLUMN name TO full_name",
        ))
        .await;
    let msgs = observer.until_ready().await;
    let summary: Vec<String> = msgs.iter().map(|m| m.summary()).collect();
    assert_eq!(summary, ["N:01000", "C:ALTER TABLE", "Z:I"]);
    assert!(
        msgs[0]
            .field(b'M')
            .unwrap()
            .starts_with("ddlgate: rename-column: ")
    );
}

/// Allowed DDL gets the same messages as on a direct connection, in a multi-statement query
/// and in an extended-protocol pipeline: ddlgate's own statements are invisible.
#[tokio::test]
async fn allowed_ddl_gets_the_same_messages_as_direct() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(pg, "DROP TABLE IF EXISTS sq_direct, sq_proxied").await;
    let script = |table: &str| {
        let mut bytes = wire::query(&format!(
            "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2); ALTER TABLE {table} ADD COLUMN note text; SELECT count(*) FROM {table}"
        ));
        bytes.extend(wire::parse(
            "",
            &format!("SELECT id FROM {table} ORDER BY id"),
        ));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::describe_portal(""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::parse(
            "",
            &format!("ALTER TABLE {table} ADD COLUMN more int"),
        ));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::describe_portal(""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::sync());
        bytes
    };
    let mut sequences = Vec::new();
    for (addr, table) in [
        (pg.addr(), "sq_direct"),
        (proxy.addr.to_string(), "sq_proxied"),
    ] {
        let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
        w.send(&script(table)).await;
        let mut got: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
        got.extend(w.until_ready().await.iter().map(|m| m.summary()));
        sequences.push(got);
    }
    assert!(sequences[0].contains(&"C:ALTER TABLE".to_owned()));
    assert_eq!(sequences[1], sequences[0]);
}

/// SIGHUP reloads the policy file; a broken file leaves the policy in force and says why.
#[tokio::test]
async fn sighup_reloads_the_policy_and_a_broken_file_keeps_the_old_one() {
    let pg = logged();
    setup(
        pg,
        "DROP TABLE IF EXISTS hup_users; CREATE TABLE hup_users (id int, a text, b text, c text)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("{POLICY}\n[rules]\nrename-column = \"warn\"\n"),
    )
    .unwrap();
    let gate =
        crate::support::binary::Binary::serve(pg, &["--policy", policy.to_str().unwrap()]).await;
    let port = gate.port;
    let rename =
        |column: &str| format!("ALTER TABLE hup_users RENAME COLUMN {column} TO {column}_x");
    let client = crate::support::pg::connect(&crate::support::pg::conn_str(port, SUPERUSER)).await;
    client.batch_execute(&rename("a")).await.unwrap();

    std::fs::write(
        &policy,
        format!("{POLICY}\n[rules]\nrename-column = \"reject\"\n"),
    )
    .unwrap();
    gate.signal("HUP");
    let started = Instant::now();
    loop {
        match client.batch_execute(&rename("b")).await {
            Err(e) if code(&e) == "ZD001" => break,
            Err(e) => panic!("{e:?}"),
            Ok(()) => {
                // Not reloaded yet: undo and try again.
                client
                    .batch_execute("-- ddlgate:allow rename-column reason=\"test\"\nALTER TABLE hup_users RENAME COLUMN b_x TO b")
                    .await
                    .unwrap();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(&policy, "[rules]\nrename-column = \"sometimes\"\n").unwrap();
    gate.signal("HUP");
    // Once ddlgate says the reload failed, the old policy must still be in force.
    gate.until_logged("policy reload failed").await;
    let err = client.batch_execute(&rename("c")).await.unwrap_err();
    assert_eq!(code(&err), "ZD001", "the old policy is still in force");

    gate.signal("TERM");
    drop(client);
    let (_, stderr, _) = gate.exit().await;
    assert!(stderr.contains("policy reloaded"), "{stderr}");
    assert!(stderr.contains("policy reload failed"), "{stderr}");
    assert!(
        stderr.contains("line 2"),
        "the error names the line: {stderr}"
    );
}

/// psycopg 3, a real driver with its own habits (extended protocol for everything, implicit
/// transaction blocks, pipeline mode, named prepared statements), through ddlgate.
#[tokio::test]
async fn psycopg_through_ddlgate() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let python = std::env::var("DDLGATE_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/ddlgate-py/bin/python".to_owned());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psycopg_enforce.py"
    );
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("DDLGATE_DSN", proxy.conn_str(SUPERUSER))
        .env("DIRECT_DSN", pg.conn_str(SUPERUSER))
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): scripts/test.sh installs psycopg into /var/tmp/ddlgate-py, or set DDLGATE_PYTHON")
        });
    assert!(
        output.status.success(),
        "psycopg script failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// ADD FOREIGN KEY (named) runs as NOT VALID, then VALIDATE; ADD PRIMARY KEY builds its index
/// concurrently and attaches it; DETACH PARTITION runs CONCURRENTLY (PostgreSQL 14+).
#[tokio::test]
async fn foreign_key_primary_key_and_detach_are_rewritten() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    let client = proxy.connect(SUPERUSER).await;
    setup(pg, "DROP TABLE IF EXISTS rw_items, rw_parents, rw_keyed, rw_parts; CREATE TABLE rw_parents (id int PRIMARY KEY); INSERT INTO rw_parents SELECT generate_series(1, 10); CREATE TABLE rw_items (parent_id int); INSERT INTO rw_items SELECT g % 10 + 1 FROM generate_series(1, 100) g; CREATE TABLE rw_keyed (id int NOT NULL); INSERT INTO rw_keyed SELECT generate_series(1, 100)").await;
    client
        .batch_execute("ALTER TABLE rw_items ADD CONSTRAINT rw_items_parent_fk FOREIGN KEY (parent_id) REFERENCES rw_parents (id)")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE rw_keyed ADD CONSTRAINT rw_keyed_pkey PRIMARY KEY (id)")
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT conname::text, convalidated, contype::text FROM pg_constraint WHERE conname IN ('rw_items_parent_fk', 'rw_keyed_pkey') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, bool, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("rw_items_parent_fk".to_owned(), true, "f".to_owned()),
            ("rw_keyed_pkey".to_owned(), true, "p".to_owned())
        ]
    );
    let log = pg.log();
    assert!(log.contains("REFERENCES rw_parents (id) NOT VALID"));
    assert!(log.contains("ALTER TABLE rw_items VALIDATE CONSTRAINT rw_items_parent_fk"));
    assert!(log.contains("CREATE UNIQUE INDEX CONCURRENTLY rw_keyed_pkey ON rw_keyed (id)"));
    assert!(log.contains("ADD CONSTRAINT rw_keyed_pkey PRIMARY KEY USING INDEX rw_keyed_pkey"));

    if pg.major >= 14 {
        setup(pg, "CREATE TABLE rw_parts (id int) PARTITION BY RANGE (id); CREATE TABLE rw_parts_1 PARTITION OF rw_parts FOR VALUES FROM (0) TO (100)").await;
        client
            .batch_execute("ALTER TABLE rw_parts DETACH PARTITION rw_parts_1")
            .await
            .unwrap();
        assert!(
            pg.log()
                .contains("DETACH PARTITION rw_parts_1 CONCURRENTLY")
        );
        setup(pg, "DROP TABLE rw_parts, rw_parts_1").await;
    }
}

/// Builds `index` on a new table `table` through ddlgate with `sql` while a writer's open
/// transaction makes each attempt time out; the writer commits once ddlgate drops the INVALID
/// index the first attempt left. The retry that then succeeds must leave exactly one valid
/// index, and the build must have been sent at least twice.
async fn concurrent_build_retried_past_a_writer(table: &str, index: &str, sql: &str, sent: &str) {
    let pg = logged();
    let policy = POLICY
        .replace("lock_timeout = \"10s\"", "lock_timeout = \"300ms\"")
        .replace("attempts = 2", "attempts = 8");
    let (proxy, _policy) = proxy(pg, &policy).await;
    setup(pg, &format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int); INSERT INTO {table} SELECT generate_series(1, 1000)")).await;
    let writer = pg.connect(SUPERUSER).await;
    writer
        .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (0)"))
        .await
        .unwrap();
    // Committed once the first build has timed out and ddlgate is cleaning up the INVALID
    // index it left (the cleanup itself waits for the writer, and is retried).
    let dropping = format!("statement: DROP INDEX CONCURRENTLY IF EXISTS {index}");
    let release = tokio::spawn(async move {
        until_logged(logged(), &dropping, 1).await;
        writer.batch_execute("COMMIT").await.unwrap();
    });
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute(sql).await.unwrap();
    release.await.unwrap();
    let indexes = client
        .query(
            "SELECT indexrelid::regclass::text, indisvalid FROM pg_index WHERE indrelid = $1::text::regclass",
            &[&table],
        )
        .await
        .unwrap();
    let got: Vec<(String, bool)> = indexes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(index.to_owned(), true)]);
    assert!(
        pg.log().matches(&format!("statement: {sent}")).count() >= 2,
        "retried"
    );
}

/// A concurrent build that times out waiting for a writer leaves an INVALID index; ddlgate
/// drops it before each retry, and the retry that succeeds leaves exactly one valid index.
#[tokio::test]
async fn concurrent_build_retries_clean_up_their_invalid_index() {
    concurrent_build_retried_past_a_writer(
        "rw_busy",
        "rw_busy_a",
        "CREATE INDEX rw_busy_a ON rw_busy (a)",
        "CREATE INDEX CONCURRENTLY rw_busy_a ON rw_busy (a)",
    )
    .await;
}

/// The same for a `CREATE INDEX CONCURRENTLY` the client sends itself (no rule fires, the
/// statement runs as sent): the INVALID index a timed-out attempt leaves is dropped before the
/// retry, which otherwise failed with "relation … already exists" and left the INVALID index
/// behind (found with Flyway, whose own open transaction keeps a concurrent build waiting).
#[tokio::test]
async fn a_clients_own_concurrent_build_is_retried_without_its_invalid_index() {
    let sql = "CREATE INDEX CONCURRENTLY rw_own_a ON rw_own (a)";
    concurrent_build_retried_past_a_writer("rw_own", "rw_own_a", sql, sql).await;
}

/// tokio-postgres pipelines requests issued concurrently on one connection: DDL in the middle
/// of queries is held until the earlier ones are answered, and every answer reaches its caller.
#[tokio::test]
async fn pipelined_requests_around_ddl_each_get_their_answer() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS pl_orders; CREATE TABLE pl_orders (id int)",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    // Prepared first, one at a time: tokio-postgres sends a prepared statement's Bind/Execute
    // on the future's first poll, so the five requests below leave in this order. (Unprepared,
    // each request is a Parse round trip and then a Bind/Execute whose send order depends on
    // which future `join!` polls first — the client, not ddlgate, would reorder them.)
    let before = client.prepare("SELECT $1::int + 1").await.unwrap();
    let ddl = client
        .prepare("ALTER TABLE pl_orders ADD COLUMN note text")
        .await
        .unwrap();
    let after = client
        .prepare("SELECT count(*) FROM pg_attribute WHERE attrelid = 'pl_orders'::regclass AND attname = 'note'")
        .await
        .unwrap();
    let refused = client
        .prepare("ALTER TABLE pl_orders RENAME COLUMN note TO comment")
        .await
        .unwrap();
    let last = client.prepare("SELECT 'still here'::text").await.unwrap();
    let (before, ddl, after, refused, last) = tokio::join!(
        client.query_one(&before, &[&1i32]),
        client.execute(&ddl, &[]),
        client.query_one(&after, &[]),
        client.execute(&refused, &[]),
        client.query_one(&last, &[]),
    );
    assert_eq!(before.unwrap().get::<_, i32>(0), 2);
    assert_eq!(ddl.unwrap(), 0);
    assert_eq!(
        after.unwrap().get::<_, i64>(0),
        1,
        "the DDL ran before the next query"
    );
    assert_eq!(code(&refused.unwrap_err()), "ZD001");
    assert_eq!(last.unwrap().get::<_, String>(0), "still here");
}

/// psql, as operators run migrations: a file where a rewrite applies and a refusal stops the
/// script (ON_ERROR_STOP), and the same file with `-1` (one transaction: no rewrite is valid).
#[tokio::test]
async fn psql_runs_a_migration_file_through_ddlgate() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(pg, "DROP TABLE IF EXISTS ps_orders; CREATE TABLE ps_orders AS SELECT g AS id, g % 7 AS c, 'n' AS note FROM generate_series(1, 1000) g").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001.sql");
    std::fs::write(
        &file,
        "CREATE INDEX ps_orders_c ON ps_orders (c);\nALTER TABLE ps_orders RENAME COLUMN note TO comment;\nALTER TABLE ps_orders ADD COLUMN after_refusal int;\n",
    )
    .unwrap();
    let local = pg.bin.join("psql");
    let psql = if local.is_file() {
        local
    } else {
        "psql".into()
    };
    let run = |extra: &'static [&'static str]| {
        tokio::process::Command::new(&psql)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(proxy.conn_str(SUPERUSER))
            .args(extra)
            .arg("-f")
            .arg(&file)
            .env("PGPASSWORD", SUPERUSER.password)
            .output()
    };
    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped by the refusal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR:  ddlgate: rename-column:"),
        "{stderr}"
    );
    assert!(stderr.contains("HINT:"), "{stderr}");
    let check = pg.connect(SUPERUSER).await;
    let row = check
        .query_one(
            "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = 'ps_orders_c'::regclass), \
             (SELECT count(*) FROM pg_attribute WHERE attrelid = 'ps_orders'::regclass AND attname IN ('comment', 'after_refusal'))",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the index was built concurrently");
    assert_eq!(row.get::<_, i64>(1), 0, "nothing after the refusal ran");

    setup(pg, "DROP INDEX ps_orders_c").await;
    let out = run(&["-1"]).await.unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ddlgate: create-index-nonconcurrent:")
            && stderr.contains("no automatic rewrite is valid here"),
        "{stderr}"
    );
    let left: i64 = check
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'ps_orders_c'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// The shipped observe policy only warns (the statement runs as sent); the strict one refuses
/// what the default would rewrite.
#[tokio::test]
async fn shipped_observe_and_strict_policies() {
    let pg = logged();
    let shipped = |name: &str| {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/").to_owned() + name)
            .unwrap()
    };
    setup(pg, "DROP TABLE IF EXISTS sp_orders; CREATE TABLE sp_orders AS SELECT g AS id FROM generate_series(1, 100) g").await;

    let (observe, _file) = proxy(pg, &shipped("observe.toml")).await;
    let (mut w, _) = Wire::startup(&observe.addr.to_string(), TRUST.name, "app").await;
    setup(pg, "ALTER TABLE sp_orders OWNER TO ddlgate_trust").await;
    w.send(&wire::query(
        "CREATE INDEX sp_orders_observed ON sp_orders (id)",
    ))
    .await;
    let msgs = w.until_ready().await;
    let summary: Vec<String> = msgs.iter().map(|m| m.summary()).collect();
    assert_eq!(summary, ["N:01000", "C:CREATE INDEX", "Z:I"]);
    assert!(
        pg.log()
            .contains("statement: CREATE INDEX sp_orders_observed ON sp_orders (id)"),
        "sent as it was"
    );

    let (strict, _file) = proxy(pg, &shipped("strict.toml")).await;
    let (mut w, _) = Wire::startup(&strict.addr.to_string(), TRUST.name, "app").await;
    w.send(&wire::query(
        "CREATE INDEX sp_orders_strict ON sp_orders (id)",
    ))
    .await;
    let msgs = w.until_ready().await;
    let error = msgs.iter().find(|m| m.tag == b'E').unwrap();
    assert_eq!(error.code().as_deref(), Some("ZD001"));
    assert!(
        error
            .field(b'M')
            .unwrap()
            .starts_with("ddlgate: create-index-nonconcurrent:")
    );
}

/// pgjdbc (Debian's libpostgresql-jdbc-java), the driver under Flyway and Liquibase: autocommit
/// rewrites, its BEGIN pipelined with the first statement, prepared statements.
#[tokio::test]
async fn pgjdbc_through_ddlgate() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(pg, "DROP TABLE IF EXISTS jd_orders; CREATE TABLE jd_orders AS SELECT g AS id, g % 10 AS c, 'x' AS note FROM generate_series(1, 5000) g").await;
    let jar = std::env::var("DDLGATE_JDBC_JAR")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".to_owned());
    assert!(
        std::path::Path::new(&jar).is_file(),
        "no pgjdbc at {jar}: scripts/test.sh installs libpostgresql-jdbc-java, or set DDLGATE_JDBC_JAR"
    );
    let dir = tempfile::tempdir().unwrap();
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/JdbcEnforce.java"
    );
    let javac = tokio::process::Command::new("javac")
        .args(["-cp", &jar, "-d"])
        .arg(dir.path())
        .arg(source)
        .output()
        .await
        .expect("javac runs (a JDK is needed)");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let classpath = format!("{jar}:{}", dir.path().display());
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/app?sslmode=disable",
        proxy.addr.port()
    );
    let run = tokio::process::Command::new("java")
        .args([
            "-cp",
            &classpath,
            "JdbcEnforce",
            &url,
            SUPERUSER.name,
            SUPERUSER.password,
        ])
        .output()
        .await
        .expect("java runs");
    assert!(
        run.status.success(),
        "pgjdbc checks failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A pipeline whose runs end with Flush (libpq's `PQsendFlushRequest`, drivers that pipeline
/// without a Sync per statement): DDL in the run that opens the pipeline, and DDL in a run
/// inside it, both wait no longer than the policy's lock_timeout. The client sees exactly the
/// messages PostgreSQL sends for its own messages, and after the Sync its settings are its own.
#[tokio::test]
async fn ddl_in_a_flushed_pipeline_gets_the_timeouts() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS fp_orders; CREATE TABLE fp_orders (id int); ALTER TABLE fp_orders OWNER TO ddlgate_trust",
    )
    .await;
    let blocker = pg.connect(SUPERUSER).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE fp_orders IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let statement = |sql: &str| {
        let mut bytes = wire::parse("", sql);
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::execute(""));
        bytes.extend(wire::flush());
        bytes
    };
    // The run that opens the pipeline: timeouts applied before it, as usual.
    w.send(&statement("ALTER TABLE fp_orders ADD COLUMN a int"))
        .await;
    assert_eq!(next_messages(&mut w, 3).await, ["1", "2", "E:55P03"]);
    w.send(&wire::sync()).await;
    let ready: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
    assert_eq!(ready, ["Z:I"]);
    w.send(&wire::query("SHOW lock_timeout")).await;
    let shown = w.until_ready().await;
    assert_eq!(
        shown[1].body[6..shown[1].body.len()].to_vec(),
        b"0".to_vec()
    );
    // Inside an open pipeline: ddlgate's timeouts travel in the run, unseen by the client.
    w.send(&statement("SELECT 1")).await;
    assert_eq!(
        next_messages(&mut w, 4).await,
        ["1", "2", "D", "C:SELECT 1"]
    );
    w.send(&statement("ALTER TABLE fp_orders ADD COLUMN b int"))
        .await;
    assert_eq!(next_messages(&mut w, 3).await, ["1", "2", "E:55P03"]);
    w.send(&wire::sync()).await;
    let ready: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
    assert_eq!(ready, ["Z:I"]);
    w.send(&wire::query("SHOW lock_timeout")).await;
    let shown = w.until_ready().await;
    assert_eq!(
        shown[1].body[6..shown[1].body.len()].to_vec(),
        b"0".to_vec()
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    // Without the lock both apply, in one pipeline.
    w.send(&statement("SELECT 1")).await;
    w.send(&statement("ALTER TABLE fp_orders ADD COLUMN c int"))
        .await;
    w.send(&wire::sync()).await;
    let all: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
    assert_eq!(
        all,
        [
            "1",
            "2",
            "D",
            "C:SELECT 1",
            "1",
            "2",
            "C:ALTER TABLE",
            "Z:I"
        ],
        "no warning either: the ALTERs of the earlier pipelines are not in this transaction"
    );
    let log = pg.log();
    assert!(log.contains("pg_catalog.set_config('lock_timeout'"));
}

/// The next `n` messages' summaries.
async fn next_messages(w: &mut Wire, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(
            w.recv()
                .await
                .expect("an answer before the 10 s read timeout")
                .summary(),
        );
    }
    got
}

/// Clients that prepare first and execute later (tokio-postgres, sqlx, psycopg's
/// `prepare=True`, pgjdbc's server-prepared statements): preparing DDL is not refused (it runs
/// nothing); the policy decides when the statement is executed, as for a single statement. The
/// client sees exactly the messages PostgreSQL sends for its own messages.
#[tokio::test]
async fn prepared_ddl_is_decided_when_executed() {
    let pg = logged();
    let (proxy, _policy) = proxy(pg, POLICY).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS pd_orders; CREATE TABLE pd_orders AS SELECT g AS id, 'n' AS note FROM generate_series(1, 1000) g; ALTER TABLE pd_orders OWNER TO ddlgate_trust",
    )
    .await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let summaries = |msgs: Vec<wire::Msg>| msgs.iter().map(|m| m.summary()).collect::<Vec<_>>();
    for (name, sql) in [
        ("s_index", "CREATE INDEX pd_orders_id ON pd_orders (id)"),
        (
            "s_rename",
            "ALTER TABLE pd_orders RENAME COLUMN note TO comment",
        ),
    ] {
        let mut prepare = wire::parse(name, sql);
        prepare.extend(wire::sync());
        w.send(&prepare).await;
        assert_eq!(summaries(w.until_ready().await), ["1", "Z:I"], "{sql}");
    }
    let execute = |statement: &str| {
        let mut bytes = wire::bind("", statement);
        bytes.extend(wire::execute(""));
        bytes.extend(wire::sync());
        bytes
    };
    // Rewritten into CREATE INDEX CONCURRENTLY: the client's tag, a valid index.
    w.send(&execute("s_index")).await;
    assert_eq!(
        summaries(w.until_ready().await),
        ["2", "C:CREATE INDEX", "Z:I"]
    );
    // Refused, and the connection (and its prepared statement) stays usable.
    w.send(&execute("s_rename")).await;
    assert_eq!(summaries(w.until_ready().await), ["2", "E:ZD001", "Z:I"]);
    w.send(&execute("s_rename")).await;
    assert_eq!(summaries(w.until_ready().await), ["2", "E:ZD001", "Z:I"]);
    let client = pg.connect(SUPERUSER).await;
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'pd_orders_id'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let renamed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pd_orders'::regclass AND attname = 'comment'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(renamed, 0);
    assert!(
        pg.log()
            .contains("CREATE INDEX CONCURRENTLY pd_orders_id ON pd_orders (id)")
    );
}

/// Migration tools connect to the `postgres` database to create their own (dbmate, sqlx,
/// Rails, Django's test runner): through ddlgate that works and is audited with the database
/// the session is in, CREATE DATABASE (which cannot run in a transaction block) gets the
/// timeouts set and restored around it, and DROP DATABASE is refused by the default policy.
#[tokio::test]
async fn creating_a_database_from_the_postgres_database() {
    let pg = PgServer::shared();
    setup(pg, "DROP DATABASE IF EXISTS ddlgate_created").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let proxy = TestProxy::start_with(pg, |o| o.audit_log = Some(log.clone())).await;
    let conn = proxy
        .conn_str(SUPERUSER)
        .replace("dbname=app", "dbname=postgres");
    let client = crate::support::pg::connect(&conn).await;
    client
        .batch_execute("CREATE DATABASE ddlgate_created")
        .await
        .unwrap();
    assert_eq!(show(&client, "lock_timeout").await, "0");
    let err = client
        .batch_execute("DROP DATABASE ddlgate_created")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ZD001", "{err:?}");
    // The new database is there, and usable through ddlgate.
    let created = crate::support::pg::connect(
        &proxy
            .conn_str(SUPERUSER)
            .replace("dbname=app", "dbname=ddlgate_created"),
    )
    .await;
    created
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    drop(created);
    let records = crate::support::audit_records(&log);
    let record = |sql: &str| {
        records
            .iter()
            .find(|r| r["event"] == "statement" && r["sql"] == sql)
            .unwrap_or_else(|| panic!("no audit record of {sql}: {records:?}"))
            .clone()
    };
    let create = record("CREATE DATABASE ddlgate_created");
    assert_eq!(create["database"], "postgres");
    assert_eq!(create["kind"], "CREATE DATABASE");
    assert_eq!(create["outcome"]["status"], "ok");
    assert_eq!(create["timeouts"]["lock_timeout"], "200ms");
    let drop_db = record("DROP DATABASE ddlgate_created");
    assert_eq!(drop_db["action"], "reject");
    assert_eq!(drop_db["rules"][0]["rule"], "drop-database");
    assert_eq!(
        record("CREATE TABLE t (id int)")["database"],
        "ddlgate_created"
    );
    drop(client);
    setup(pg, "DROP DATABASE IF EXISTS ddlgate_created WITH (FORCE)").await;
}
