//! The migration-tools tier: each tool applies its own migrations through ddlgate under the
//! default policy, in its own session shape (here: several migration files over one
//! connection, each file as the tool sends it), on tables an earlier migration of the same run
//! created and filled; a safe migration applies (rewritten where the policy rewrites), an
//! unsafe one is stopped with ddlgate's error, and the catalog is checked afterwards.
//!
//! The tools are installed outside the source tree by scripts/test.sh (golang-migrate from the
//! Go module proxy: `DDLGATE_GOLANG_MIGRATE`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{Bench, Target};

fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| default.into(), PathBuf::from)
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

async fn golang_migrate(dir: &Path, url: &str, args: &[&str]) -> Output {
    let bin = tool(
        "DDLGATE_GOLANG_MIGRATE",
        "/var/tmp/ddlgate-tools/golang-migrate-v4.20.1/migrate",
    );
    tokio::process::Command::new(&bin)
        .arg("-path")
        .arg(dir)
        .args(["-database", url])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): scripts/test.sh installs golang-migrate, or set DDLGATE_GOLANG_MIGRATE",
                bin.display()
            )
        })
}

/// golang-migrate's `schema_migrations`: the version and whether it is dirty.
async fn version(direct: &tokio_postgres::Client) -> (i64, bool) {
    let row = direct
        .query_one("SELECT version, dirty FROM schema_migrations", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// golang-migrate sends each file as one query string over one connection. A run of four
/// files creates and fills two tables and indexes one of them (a lone `CREATE INDEX`, which
/// ddlgate builds `CONCURRENTLY`) and adds a foreign key (rewritten to `NOT VALID` +
/// `VALIDATE`); the next run's rename is refused, the version is left dirty, and nothing of it
/// is applied; after the file is fixed and the version forced back, the run completes.
#[tokio::test]
async fn golang_migrate_applies_safe_migrations_and_is_stopped_by_an_unsafe_one() {
    let bench = Bench::start().await;
    let conn = bench
        .fresh_database("golang_migrate", Target::Default)
        .await;
    let url = conn.url();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    write(
        dir,
        "1_accounts.up.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n\
         INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 500) g;\n",
    );
    write(
        dir,
        "2_orders.up.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, total int);\n\
         INSERT INTO orders SELECT g, g % 500 + 1, g FROM generate_series(1, 2000) g;\n",
    );
    write(
        dir,
        "3_orders_account_idx.up.sql",
        "CREATE INDEX orders_account_idx ON orders (account_id);\n",
    );
    write(
        dir,
        "4_orders_account_fk.up.sql",
        "ALTER TABLE orders ADD CONSTRAINT orders_account_fk \
         FOREIGN KEY (account_id) REFERENCES accounts (id);\n",
    );
    let up = golang_migrate(dir, &url, &["up"]).await;
    assert!(up.status.success(), "{}", text(&up));

    // Under the default policy a plain CREATE INDEX or FOREIGN KEY on a table of an earlier
    // migration is either rewritten or refused: the run succeeded, so both were rewritten.
    let database = "golang_migrate_default";
    let schema = bench.schema(database).await;
    for line in [
        "index orders_account_idx on orders valid=t: CREATE INDEX orders_account_idx ON public.orders USING btree (account_id)",
        "constraint orders_account_fk on orders validated=t: FOREIGN KEY (account_id) REFERENCES accounts(id)",
    ] {
        assert!(schema.iter().any(|l| l == line), "{line}: {schema:#?}");
    }
    let direct =
        crate::support::pg::connect(&bench.connection(database, Target::Direct).keywords()).await;
    assert_eq!(version(&direct).await, (4, false));

    // An unsafe migration: renaming a column the running application reads.
    write(
        dir,
        "5_rename_email.up.sql",
        "ALTER TABLE accounts RENAME COLUMN email TO email_address;\n",
    );
    let refused = golang_migrate(dir, &url, &["up"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ddlgate: rename-column"),
        "{}",
        text(&refused)
    );
    assert_eq!(version(&direct).await, (5, true));
    let schema = bench.schema(database).await;
    assert!(
        schema
            .iter()
            .any(|l| l == "column accounts.email text not null"),
        "{schema:#?}"
    );

    // The expand step instead, after telling the tool the last good version.
    write(
        dir,
        "5_rename_email.up.sql",
        "ALTER TABLE accounts ADD COLUMN email_address text;\n",
    );
    let forced = golang_migrate(dir, &url, &["force", "4"]).await;
    assert!(forced.status.success(), "{}", text(&forced));
    let fixed = golang_migrate(dir, &url, &["up"]).await;
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert_eq!(version(&direct).await, (5, false));
    let schema = bench.schema(database).await;
    assert!(
        schema
            .iter()
            .any(|l| l == "column accounts.email_address text"),
        "{schema:#?}"
    );
}
