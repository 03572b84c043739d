//! Session truth: what ddlgate believes about a session's transactions is what the server
//! says. Migrations run the way tools run them — many over one connection, each in its own
//! transaction, on tables an earlier migration of the same session created and filled — under
//! the default policy, and each statement that starts a transaction gets the decision a fresh
//! session would get.

use std::time::{Duration, Instant};

use crate::support::audit_records;
use crate::support::pg::{PgServer, SUPERUSER, TRUST, run_direct as setup};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// The error is ddlgate's refusal by `rule`.
fn assert_refused(e: &tokio_postgres::Error, rule: &str) {
    assert_eq!(code(e), "ZD001", "{}", message(e));
    assert!(
        message(e).starts_with(&format!("ddlgate: {rule}: ")),
        "{}",
        message(e)
    );
}

async fn one(client: &tokio_postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The canonical safe sequence over one connection, each migration in its own transaction:
/// the foreign key added `NOT VALID` in one and validated in the next is not refused as
/// "validated in the transaction that added it".
#[tokio::test]
async fn validate_in_the_next_transaction_is_not_refused() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS st_o, st_u; \
         CREATE TABLE st_u (id bigint PRIMARY KEY); INSERT INTO st_u SELECT g FROM generate_series(1, 1000) g; \
         CREATE TABLE st_o (id bigint PRIMARY KEY, uid bigint); INSERT INTO st_o SELECT g, g FROM generate_series(1, 1000) g",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute("BEGIN; ALTER TABLE st_o ADD CONSTRAINT st_o_fk FOREIGN KEY (uid) REFERENCES st_u (id) NOT VALID; COMMIT")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; ALTER TABLE st_o VALIDATE CONSTRAINT st_o_fk; COMMIT")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "VALIDATE in its own transaction was refused: {}",
                message(&e)
            )
        });
    assert_eq!(
        one(
            &client,
            "SELECT convalidated::text FROM pg_constraint WHERE conname = 'st_o_fk'"
        )
        .await,
        "true"
    );
    // The same with BEGIN and COMMIT sent as requests of their own (most drivers).
    client
        .batch_execute("ALTER TABLE st_o DROP CONSTRAINT st_o_fk")
        .await
        .unwrap();
    for sql in [
        "BEGIN",
        "ALTER TABLE st_o ADD CONSTRAINT st_o_fk FOREIGN KEY (uid) REFERENCES st_u (id) NOT VALID",
        "COMMIT",
        "BEGIN",
        "ALTER TABLE st_o VALIDATE CONSTRAINT st_o_fk",
        "COMMIT",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)));
    }
    // In the transaction that added it, on a table others can see, it is still refused.
    client
        .batch_execute("ALTER TABLE st_o DROP CONSTRAINT st_o_fk")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("ALTER TABLE st_o ADD CONSTRAINT st_o_fk FOREIGN KEY (uid) REFERENCES st_u (id) NOT VALID")
        .await
        .unwrap();
    let e = client
        .batch_execute("ALTER TABLE st_o VALIDATE CONSTRAINT st_o_fk")
        .await
        .unwrap_err();
    assert_refused(&e, "validate-same-tx");
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// A table created and filled in one transaction and committed is visible to every session:
/// in the next transactions of the same session it gets every rule. Under the default policy
/// a plain CREATE INDEX inside a transaction block cannot become CONCURRENTLY and is refused,
/// int → bigint and RENAME COLUMN are refused; the catalog shows none of them happened.
#[tokio::test]
async fn a_table_committed_earlier_in_the_session_is_not_new() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(pg, "DROP TABLE IF EXISTS st_t").await;
    let client = proxy.connect(SUPERUSER).await;
    client
        .batch_execute(
            "BEGIN; CREATE TABLE st_t (id bigserial PRIMARY KEY, email text NOT NULL, amount int NOT NULL); \
             INSERT INTO st_t (email, amount) SELECT 'u' || g, g FROM generate_series(1, 1000) g; COMMIT",
        )
        .await
        .unwrap();
    for (sql, rule) in [
        (
            "BEGIN; CREATE INDEX st_t_amount_idx ON st_t (amount); COMMIT",
            "create-index-nonconcurrent",
        ),
        (
            "BEGIN; ALTER TABLE st_t ALTER COLUMN amount TYPE bigint; COMMIT",
            "change-column-type",
        ),
        (
            "BEGIN; ALTER TABLE st_t RENAME COLUMN email TO email_address; COMMIT",
            "rename-column",
        ),
    ] {
        let e = client.batch_execute(sql).await.unwrap_err();
        assert_refused(&e, rule);
        // As on a direct connection, the error skipped the COMMIT: the block is failed
        // until the client ends it, and then the session is usable.
        client.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(one(&client, "SELECT 'ok'").await, "ok");
    }
    assert_eq!(
        one(
            &client,
            "SELECT format('%s %s %s', \
                (SELECT count(*) FROM pg_indexes WHERE tablename = 'st_t'), \
                (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'st_t'::regclass AND attname = 'amount'), \
                (SELECT count(*) FROM pg_attribute WHERE attrelid = 'st_t'::regclass AND attname = 'email'))"
        )
        .await,
        "1 integer 1",
        "only the primary key's index, amount still integer, email not renamed"
    );
    // Inside the creating transaction the exemption stays: nobody else can see the table.
    client
        .batch_execute(
            "BEGIN; CREATE TABLE st_t2 (id int, v int); INSERT INTO st_t2 SELECT g, g FROM generate_series(1, 1000) g",
        )
        .await
        .unwrap();
    client
        .batch_execute("CREATE INDEX st_t2_v_idx ON st_t2 (v)")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE st_t2 ALTER COLUMN v TYPE bigint")
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// Transactions that end without an idle ReadyForQuery in between (`COMMIT; BEGIN` in one
/// query string, `COMMIT AND CHAIN`, an extended-protocol run with `COMMIT` and `BEGIN`
/// pipelined under one Sync) still end every fact of the transaction.
#[tokio::test]
async fn transactions_that_end_without_an_idle_ready_for_query_still_end() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(pg, "DROP TABLE IF EXISTS st_c1, st_c2, st_c3").await;
    let client = proxy.connect(SUPERUSER).await;
    let refused = |e: tokio_postgres::Error| {
        assert_refused(&e, "create-index-nonconcurrent");
    };
    // BEGIN on its own, so that the CREATE TABLE runs inside the block (SET LOCAL: nothing
    // for ddlgate to restore later) and what follows takes the fast path.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("CREATE TABLE st_c1 (v int)")
        .await
        .unwrap();
    // COMMIT; BEGIN in one query string.
    client.batch_execute("COMMIT; BEGIN").await.unwrap();
    refused(
        client
            .batch_execute("CREATE INDEX st_c1_v ON st_c1 (v)")
            .await
            .unwrap_err(),
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    // COMMIT AND CHAIN.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("CREATE TABLE st_c2 (v int)")
        .await
        .unwrap();
    client.batch_execute("COMMIT AND CHAIN").await.unwrap();
    refused(
        client
            .batch_execute("CREATE INDEX st_c2_v ON st_c2 (v)")
            .await
            .unwrap_err(),
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    // Extended protocol: COMMIT and BEGIN pipelined under one Sync.
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    for sql in ["BEGIN", "CREATE TABLE st_c3 (v int)"] {
        let mut run = wire::parse("", sql);
        run.extend(wire::bind("", ""));
        run.extend(wire::execute(""));
        run.extend(wire::sync());
        w.send(&run).await;
        let answer = w.until_ready().await;
        assert!(!answer.iter().any(|m| m.tag == b'E'), "{answer:?}");
    }
    let mut run = Vec::new();
    for sql in ["COMMIT", "BEGIN"] {
        run.extend(wire::parse("", sql));
        run.extend(wire::bind("", ""));
        run.extend(wire::execute(""));
    }
    run.extend(wire::sync());
    w.send(&run).await;
    let answer = w.until_ready().await;
    assert!(!answer.iter().any(|m| m.tag == b'E'), "{answer:?}");
    w.send(&wire::query("CREATE INDEX st_c3_v ON st_c3 (v)"))
        .await;
    let answer = w.until_ready().await;
    let error = answer
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("the CREATE INDEX was not refused: {answer:?}"));
    assert!(
        error
            .field(b'M')
            .unwrap_or_default()
            .starts_with("ddlgate: create-index-nonconcurrent: "),
        "{}",
        error.summary()
    );
}

/// ROLLBACK TO SAVEPOINT keeps restrictions (a constraint added NOT VALID before it is still
/// remembered), and what is new is what the catalog says the transaction created: a table
/// created before the savepoint survives the rollback to it, and stays new.
#[tokio::test]
async fn rollback_to_savepoint_keeps_restrictions_and_the_catalog_says_what_is_new() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(
        pg,
        "DROP TABLE IF EXISTS st_s, st_sv; CREATE TABLE st_sv (id int PRIMARY KEY, n int); \
         INSERT INTO st_sv SELECT g, g FROM generate_series(1, 100) g",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    // Each on its own: BEGIN, SAVEPOINT and ROLLBACK TO take the fast path.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("CREATE TABLE st_s (v int)")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE st_sv ADD CONSTRAINT st_sv_n CHECK (n > 0) NOT VALID")
        .await
        .unwrap();
    client.batch_execute("SAVEPOINT a").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
    client
        .batch_execute("ROLLBACK TO SAVEPOINT a")
        .await
        .unwrap();
    client
        .batch_execute("CREATE INDEX st_s_v ON st_s (v)")
        .await
        .unwrap();
    client
        .batch_execute("ROLLBACK TO SAVEPOINT a")
        .await
        .unwrap();
    let e = client
        .batch_execute("ALTER TABLE st_sv VALIDATE CONSTRAINT st_sv_n")
        .await
        .unwrap_err();
    assert_refused(&e, "validate-same-tx");
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// The invariant: for a statement that starts a transaction, the decision is the one a fresh
/// session gets. One session runs migrations that create, fill, index and constrain tables
/// (each in its own transaction, some of them failing), then each probe statement in its own
/// transaction; a fresh session runs the same probes; every probe gets the same answer.
#[tokio::test]
async fn a_statement_starting_a_transaction_is_decided_as_in_a_fresh_session() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    setup(pg, "DROP TABLE IF EXISTS st_fa, st_fb").await;
    let busy = proxy.connect(SUPERUSER).await;
    for migration in [
        "BEGIN; CREATE TABLE st_fa (id bigint PRIMARY KEY, b bigint, n int, note text); \
         INSERT INTO st_fa SELECT g, g, g, 'x' FROM generate_series(1, 1000) g; \
         CREATE INDEX st_fa_n ON st_fa (n); COMMIT",
        "BEGIN; CREATE TABLE st_fb (id bigint PRIMARY KEY); INSERT INTO st_fb SELECT g FROM generate_series(1, 1000) g; \
         ALTER TABLE st_fa ADD CONSTRAINT st_fa_chk CHECK (n IS NOT NULL) NOT VALID; COMMIT",
        // Fails half-way: what it did is rolled back, and must not be remembered either.
        "BEGIN; CREATE TABLE st_fgone (v int); ALTER TABLE st_fa ADD CONSTRAINT st_fa_fk FOREIGN KEY (b) REFERENCES st_fb (id) NOT VALID; SELECT 1/0; COMMIT",
    ] {
        let _ = busy.batch_execute(migration).await;
        let _ = busy.batch_execute("ROLLBACK").await;
    }
    let probes = [
        "CREATE INDEX st_fa_note ON st_fa (note)",
        "ALTER TABLE st_fa ADD CONSTRAINT st_fa_fk FOREIGN KEY (b) REFERENCES st_fb (id)",
        "ALTER TABLE st_fa ALTER COLUMN n TYPE bigint",
        "ALTER TABLE st_fa RENAME COLUMN note TO remark",
        "ALTER TABLE st_fa ALTER COLUMN n SET NOT NULL",
        "ALTER TABLE st_fa VALIDATE CONSTRAINT st_fa_chk",
        "CREATE INDEX st_fgone_v ON st_fgone (v)",
        "LOCK TABLE st_fb IN SHARE MODE",
    ];
    async fn answer(client: &tokio_postgres::Client, sql: String) -> String {
        let r = client.batch_execute(&sql).await;
        let _ = client.batch_execute("ROLLBACK").await;
        match r {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("{} {}", code(&e), message(&e)),
        }
    }
    let fresh = proxy.connect(SUPERUSER).await;
    for probe in probes {
        let sql = format!("BEGIN; {probe}");
        let after_migrations = answer(&busy, sql.clone()).await;
        let in_fresh_session = answer(&fresh, sql.clone()).await;
        assert_eq!(
            after_migrations, in_fresh_session,
            "{probe}: the session that ran the migrations decided differently from a fresh one"
        );
    }
}

/// `LOCK TABLE` in a mode that blocks writes is governed like the DDL it precedes: it runs
/// under the brief lock_timeout (so it gives up instead of queueing every writer behind it),
/// and it is audited.
#[tokio::test]
async fn lock_table_gets_the_brief_timeouts_and_an_audit_record() {
    let pg = PgServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[lock_wait]\nmax_wait = \"0\"\n[timeouts.brief]\nlock_timeout = \"300ms\"\nstatement_timeout = \"5s\"\n",
    )
    .unwrap();
    let proxy = TestProxy::start_with(pg, |o| {
        o.audit_log = Some(log.clone());
        o.policy = Some(policy.clone());
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS st_lock; CREATE TABLE st_lock (id int)",
    )
    .await;
    let blocker = pg.connect(SUPERUSER).await;
    blocker
        .batch_execute("BEGIN; SELECT * FROM st_lock")
        .await
        .unwrap();
    let client = proxy.connect(SUPERUSER).await;
    client.batch_execute("BEGIN").await.unwrap();
    let started = Instant::now();
    let e = client
        .batch_execute("LOCK TABLE st_lock IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "55P03", "{}", message(&e));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    // The lock_timeout was SET LOCAL: the session's own value is back.
    assert_eq!(one(&client, "SHOW lock_timeout").await, "0");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    // A mode that blocks no writer is not governed.
    client
        .batch_execute("BEGIN; LOCK TABLE st_lock IN ROW EXCLUSIVE MODE; COMMIT")
        .await
        .unwrap();
    let records = audit_records(&log);
    let locks: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "LOCK TABLE")
        .collect();
    assert_eq!(locks.len(), 1, "{records:#?}");
    assert_eq!(locks[0]["lock"], "ACCESS EXCLUSIVE");
    assert_eq!(locks[0]["timeouts"]["class"], "brief");
    assert_eq!(locks[0]["outcome"]["sqlstate"], "55P03");
}

/// What outlives a transaction is kept only when the transaction is proven to have
/// committed: a `CHECK (n IS NOT NULL)` added `NOT VALID` and committed with a lone `COMMIT`,
/// validated in the next migration, lets `SET NOT NULL` skip its scan there — allowed even by
/// the strict policy, which refuses `SET NOT NULL` without such a check.
#[tokio::test]
async fn a_not_null_check_committed_earlier_lets_set_not_null_through() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.policy =
            Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/strict.toml"));
    })
    .await;
    setup(
        pg,
        "DROP TABLE IF EXISTS st_nn; CREATE TABLE st_nn (id int PRIMARY KEY, n int); \
         INSERT INTO st_nn SELECT g, g FROM generate_series(1, 1000) g",
    )
    .await;
    let client = proxy.connect(SUPERUSER).await;
    let e = client
        .batch_execute("ALTER TABLE st_nn ALTER COLUMN n SET NOT NULL")
        .await
        .unwrap_err();
    assert_refused(&e, "set-not-null");
    for sql in [
        "BEGIN",
        "ALTER TABLE st_nn ADD CONSTRAINT st_nn_n CHECK (n IS NOT NULL) NOT VALID",
        "COMMIT",
        "BEGIN",
        "ALTER TABLE st_nn VALIDATE CONSTRAINT st_nn_n",
        "ALTER TABLE st_nn ALTER COLUMN n SET NOT NULL",
        "ALTER TABLE st_nn DROP CONSTRAINT st_nn_n",
        "COMMIT",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)));
    }
    assert_eq!(
        one(
            &client,
            "SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'st_nn'::regclass AND attname = 'n'"
        )
        .await,
        "true"
    );
}
