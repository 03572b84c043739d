//! The migration-tools tier: each tool applies its own migrations through ddlgate under the
//! default policy, in its own session shape (here: several migration files over one
//! connection, each file as the tool sends it), on tables an earlier migration of the same run
//! created and filled; a safe migration applies (rewritten where the policy rewrites), an
//! unsafe one is stopped with ddlgate's error, and the catalog is checked afterwards.
//!
//! The tools are installed outside the source tree by scripts/test.sh: golang-migrate from the
//! Go module proxy (`DDLGATE_GOLANG_MIGRATE`), Flyway's Maven plugin from Maven Central into a
//! local repository (`DDLGATE_MAVEN_REPO`; the project is `tests/compat/flyway/pom.xml`), and
//! a Spring Boot application that migrates with Flyway as it starts, built from the same
//! repository (`DDLGATE_SPRING_FLYWAY_JAR`; `tests/compat/spring-flyway`); Prisma's CLI and its
//! PostgreSQL driver adapter from npm (`DDLGATE_PRISMA_DIR`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{Bench, Target};

/// The first two migrations of every tool: a table created and filled, then another.
const ACCOUNTS: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);
INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 500) g;
";
const ORDERS: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, total int);
INSERT INTO orders SELECT g, g % 500 + 1, g FROM generate_series(1, 2000) g;
";

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
    write(dir, "1_accounts.up.sql", ACCOUNTS);
    write(dir, "2_orders.up.sql", ORDERS);
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

/// pgjdbc's URL for `conn` (its user and password go separately).
fn jdbc_url(conn: &crate::harness::Connection) -> String {
    format!(
        "jdbc:postgresql://{}:{}/{}?sslmode=disable",
        conn.host, conn.port, conn.database
    )
}

/// Flyway's history: `version:success` of each versioned migration, in order.
async fn applied(direct: &tokio_postgres::Client) -> Vec<String> {
    direct
        .query(
            "SELECT version || ':' || success FROM flyway_schema_history \
             WHERE version IS NOT NULL ORDER BY installed_rank",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `mvn flyway:<goal>` offline, with the plugin and its PostgreSQL modules from the local
/// repository scripts/test.sh filled.
async fn flyway(dir: &Path, jdbc: &str, user: &str, password: &str, goal: &str) -> Output {
    flyway_with_lock(dir, jdbc, user, password, goal, false).await
}

/// [`flyway`] with Flyway's `postgresql.transactional.lock` as given (its default is true).
async fn flyway_with_lock(
    dir: &Path,
    jdbc: &str,
    user: &str,
    password: &str,
    goal: &str,
    transactional_lock: bool,
) -> Output {
    let repo = tool("DDLGATE_MAVEN_REPO", "/var/tmp/ddlgate-tools/m2");
    let pom = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/flyway/pom.xml");
    tokio::process::Command::new("mvn")
        .args(["-B", "-o", "-f", pom])
        .arg(format!("-Dmaven.repo.local={}", repo.display()))
        .arg(format!("flyway:{goal}"))
        .arg(format!("-Dflyway.url={jdbc}"))
        .arg(format!("-Dflyway.user={user}"))
        .arg(format!("-Dflyway.password={password}"))
        .arg(format!("-Dflyway.locations=filesystem:{}", dir.display()))
        // Flyway's default lock is a transaction-level advisory lock held on a second
        // connection: a CONCURRENTLY build waits for that transaction to end, i.e. forever
        // (docs/tools/flyway.md).
        .arg(format!(
            "-Dflyway.postgresql.transactional.lock={transactional_lock}"
        ))
        // The database already holds the harness's table: adopt it below version 1.
        .args([
            "-Dflyway.baselineOnMigrate=true",
            "-Dflyway.baselineVersion=0",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run mvn ({e}): scripts/test.sh installs Maven's Flyway plugin")
        })
}

/// The walk-through of docs/tools/flyway.md, with `migrate` one `flyway migrate` (or one start
/// of an application that migrates) and `after_refusal` what the user runs once a migration is
/// refused. Flyway runs each versioned migration in a transaction, and a `CREATE INDEX
/// CONCURRENTLY` alone in its file outside one. Through ddlgate: two migrations create and fill
/// tables, the concurrent build is valid; a plain `CREATE INDEX` in the next migration is
/// refused inside Flyway's transaction (no rewrite is valid there), rolled back, and not
/// recorded; marked `executeInTransaction=false` (a script config file), it is built
/// `CONCURRENTLY` by ddlgate and recorded.
async fn flyway_walkthrough(
    bench: &Bench,
    database: &str,
    dir: &Path,
    migrate: impl AsyncFn() -> Output,
    after_refusal: impl AsyncFn(),
) {
    write(dir, "V1__accounts.sql", ACCOUNTS);
    write(dir, "V2__orders.sql", ORDERS);
    write(
        dir,
        "V3__orders_account_idx.sql",
        "CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id);\n",
    );
    write(
        dir,
        "V4__orders_total_idx.sql",
        "CREATE INDEX orders_total_idx ON orders (total);\n",
    );
    let refused = migrate().await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ddlgate: create-index-nonconcurrent"),
        "{}",
        text(&refused)
    );
    let direct =
        crate::support::pg::connect(&bench.connection(database, Target::Direct).keywords()).await;
    // Version 0 is the baseline.
    assert_eq!(
        applied(&direct).await,
        ["0:true", "1:true", "2:true", "3:true"]
    );
    let schema = bench.schema(database).await;
    assert!(
        schema.iter().any(|l| l
            == "index orders_account_idx on orders valid=t: CREATE INDEX orders_account_idx ON public.orders USING btree (account_id)"),
        "{schema:#?}"
    );
    assert!(
        !schema.iter().any(|l| l.contains("orders_total_idx")),
        "{schema:#?}"
    );
    after_refusal().await;

    // Outside Flyway's transaction ddlgate may build it CONCURRENTLY.
    write(
        dir,
        "V4__orders_total_idx.sql.conf",
        "executeInTransaction=false\n",
    );
    let fixed = migrate().await;
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert_eq!(
        applied(&direct).await,
        ["0:true", "1:true", "2:true", "3:true", "4:true"]
    );
    let schema = bench.schema(database).await;
    assert!(
        schema.iter().any(|l| l
            == "index orders_total_idx on orders valid=t: CREATE INDEX orders_total_idx ON public.orders USING btree (total)"),
        "{schema:#?}"
    );
}

/// Flyway's Maven plugin (13.12.2): the walk-through, with `flyway:info` after the refusal;
/// then a non-transactional migration refused part-way, and `flyway:repair`.
#[tokio::test]
async fn flyway_applies_safe_migrations_and_is_stopped_by_an_unsafe_one() {
    let bench = Bench::start().await;
    let conn = bench.fresh_database("flyway", Target::Default).await;
    let jdbc = jdbc_url(&conn);
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let run = async |goal: &str| flyway(dir, &jdbc, &conn.user, &conn.password, goal).await;
    flyway_walkthrough(
        &bench,
        &conn.database,
        dir,
        async || run("migrate").await,
        async || {
            let info = run("info").await;
            assert!(info.status.success(), "{}", text(&info));
            assert!(text(&info).contains("Pending"), "{}", text(&info));
        },
    )
    .await;

    // A refusal outside Flyway's transaction leaves what ran before it, and a failed entry
    // that stops later runs until `repair` removes it.
    write(
        dir,
        "V5__accounts_contract.sql",
        "ALTER TABLE accounts ADD COLUMN email_address text;\nALTER TABLE accounts DROP COLUMN email;\n",
    );
    write(
        dir,
        "V5__accounts_contract.sql.conf",
        "executeInTransaction=false\n",
    );
    let refused = run("migrate").await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ddlgate: drop-column"),
        "{}",
        text(&refused)
    );
    let direct =
        crate::support::pg::connect(&bench.connection(&conn.database, Target::Direct).keywords())
            .await;
    assert_eq!(
        applied(&direct).await,
        ["0:true", "1:true", "2:true", "3:true", "4:true", "5:false"]
    );
    let schema = bench.schema(&conn.database).await;
    for column in [
        "column accounts.email text not null",
        "column accounts.email_address text",
    ] {
        assert!(schema.iter().any(|l| l == column), "{column}\n{schema:#?}");
    }
    let blocked = run("migrate").await;
    assert!(!blocked.status.success(), "{}", text(&blocked));
    let repaired = run("repair").await;
    assert!(repaired.status.success(), "{}", text(&repaired));
    // The contract step waits for a later release; this one keeps the expand step, written to
    // run again over what the failed attempt left.
    write(
        dir,
        "V5__accounts_contract.sql",
        "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS email_address text;\n",
    );
    let fixed = run("migrate").await;
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert_eq!(
        applied(&direct).await,
        ["0:true", "1:true", "2:true", "3:true", "4:true", "5:true"]
    );
}

/// Flyway's default lock is a transaction-level advisory lock, held open on a second
/// connection while the migrations run; a `CREATE INDEX CONCURRENTLY` waits for that
/// transaction, which Flyway ends only after the build: directly, the run hangs. Through
/// ddlgate the build is refused at once, naming Flyway's lock transaction, and nothing of it is
/// recorded; with the lock set to session level the same migration runs.
#[tokio::test]
async fn flyway_default_lock_and_a_concurrent_build_fail_at_once_instead_of_hanging() {
    let bench = Bench::start().await;
    let conn = bench.fresh_database("flyway_lock", Target::Default).await;
    let jdbc = jdbc_url(&conn);
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    write(dir, "V1__accounts.sql", ACCOUNTS);
    write(
        dir,
        "V2__accounts_email_idx.sql",
        "CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);\n",
    );
    let run =
        |lock: bool| flyway_with_lock(dir, &jdbc, &conn.user, &conn.password, "migrate", lock);
    // Bounded well below the 5-minute online lock_timeout a waiting build would reach.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(120), run(true))
        .await
        .expect("the build waited for Flyway's lock transaction instead of being refused");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("would wait for a transaction of its own client"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("transactional.lock=false"),
        "{}",
        text(&refused)
    );
    let direct =
        crate::support::pg::connect(&bench.connection(&conn.database, Target::Direct).keywords())
            .await;
    assert_eq!(applied(&direct).await, ["0:true", "1:true"]);
    let schema = bench.schema(&conn.database).await;
    assert!(
        !schema.iter().any(|l| l.contains("accounts_email_idx")),
        "{schema:#?}"
    );
    let fixed = run(false).await;
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert_eq!(applied(&direct).await, ["0:true", "1:true", "2:true"]);
    let schema = bench.schema(&conn.database).await;
    assert!(
        schema.iter().any(|l| l
            == "index accounts_email_idx on accounts valid=t: CREATE INDEX accounts_email_idx ON public.accounts USING btree (email)"),
        "{schema:#?}"
    );
}

/// One start of the Spring Boot application in tests/compat/spring-flyway, built by
/// scripts/test.sh: `spring-boot-starter-flyway` migrates while the context starts.
async fn spring_boot_start(dir: &Path, jdbc: &str, user: &str, password: &str) -> Output {
    let jar = tool(
        "DDLGATE_SPRING_FLYWAY_JAR",
        "/var/tmp/ddlgate-tools/spring-flyway/app.jar",
    );
    assert!(
        jar.is_file(),
        "no Spring Boot application at {}: scripts/test.sh builds it (into a directory named after its sources), or set DDLGATE_SPRING_FLYWAY_JAR",
        jar.display()
    );
    tokio::process::Command::new("java")
        .arg("-jar")
        .arg(&jar)
        .arg(format!("--spring.datasource.url={jdbc}"))
        .arg(format!("--spring.datasource.username={user}"))
        .arg(format!("--spring.datasource.password={password}"))
        .arg(format!(
            "--spring.flyway.locations=filesystem:{}",
            dir.display()
        ))
        // As for the Maven plugin: Flyway's transactional lock would make the concurrent build
        // wait for Flyway's own transaction.
        .arg("--spring.flyway.postgresql.transactional-lock=false")
        .args([
            "--spring.flyway.baseline-on-migrate=true",
            "--spring.flyway.baseline-version=0",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run java -jar {} ({e}): scripts/test.sh builds it, or set DDLGATE_SPRING_FLYWAY_JAR",
                jar.display()
            )
        })
}

/// Spring Boot (4.0.7, with the Flyway it manages, 11.14.1): each start of the application is
/// a deploy that migrates; the start with the refused migration fails, and the application does
/// not come up.
#[tokio::test]
async fn spring_boot_startup_migration_is_stopped_by_an_unsafe_one() {
    let bench = Bench::start().await;
    let conn = bench.fresh_database("spring_flyway", Target::Default).await;
    let jdbc = jdbc_url(&conn);
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    flyway_walkthrough(
        &bench,
        &conn.database,
        dir,
        async || spring_boot_start(dir, &jdbc, &conn.user, &conn.password).await,
        async || {},
    )
    .await;
}

/// A Prisma project in `dir` whose `prisma migrate deploy` runs on the WebAssembly schema
/// engine bundled with the CLI, through `@prisma/adapter-pg` (docs/tools/prisma.md): the
/// packages scripts/test.sh installed, linked in as `node_modules`.
fn prisma_project(dir: &Path) {
    let packages = tool("DDLGATE_PRISMA_DIR", "/var/tmp/ddlgate-tools/prisma-6.19.3");
    std::os::unix::fs::symlink(packages.join("node_modules"), dir.join("node_modules")).unwrap();
    std::fs::create_dir_all(dir.join("prisma/migrations")).unwrap();
    write(
        dir,
        "prisma/schema.prisma",
        "datasource db {\n  provider = \"postgresql\"\n  url      = env(\"DATABASE_URL\")\n}\n",
    );
    write(
        dir,
        "prisma/migrations/migration_lock.toml",
        "provider = \"postgresql\"\n",
    );
    write(
        dir,
        "prisma.config.ts",
        r#"import { defineConfig } from "prisma/config";
import { PrismaPg } from "@prisma/adapter-pg";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "prisma/schema.prisma",
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL! }),
});
"#,
    );
}

fn prisma_migration(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir.join("prisma/migrations").join(name)).unwrap();
    write(dir, &format!("prisma/migrations/{name}/migration.sql"), sql);
}

/// `prisma <args>` in the project in `dir`. The CLI checks for its native engines before any
/// command and downloads what is missing; with `engine: "js"` it loads neither, so both
/// variables name an empty file, which ends the check without a download.
async fn prisma(dir: &Path, url: &str, args: &[&str]) -> Output {
    let none = dir.join("no-native-engine");
    std::fs::write(&none, b"").unwrap();
    tokio::process::Command::new("node")
        .arg(dir.join("node_modules/prisma/build/index.js"))
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("PRISMA_QUERY_ENGINE_LIBRARY", &none)
        .env("PRISMA_SCHEMA_ENGINE_BINARY", &none)
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run node ({e}): scripts/test.sh installs Prisma"))
}

/// `prisma migrate resolve --applied <migration>`, which must succeed.
async fn resolve_applied(dir: &Path, url: &str, migration: &str) {
    let resolved = prisma(dir, url, &["migrate", "resolve", "--applied", migration]).await;
    assert!(resolved.status.success(), "{}", text(&resolved));
}

/// Prisma's migrations: `name:finished:rolled back`, in the order they were started.
async fn prisma_history(direct: &tokio_postgres::Client) -> Vec<String> {
    direct
        .query(
            "SELECT migration_name || ':' || (finished_at IS NOT NULL) || ':' || \
             (rolled_back_at IS NOT NULL) FROM _prisma_migrations ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Prisma Migrate (CLI 6.19.3, `engine: "js"` with `@prisma/adapter-pg` 7.10.1) sends each
/// statement of a `migration.sql` as a query of its own, outside any transaction. One deploy
/// creates and fills two tables and indexes them, once `CONCURRENTLY` as written and once
/// plainly, which ddlgate builds `CONCURRENTLY`; the next deploy's contract migration is
/// stopped at its `DROP COLUMN`, after its first statement was applied, and recorded as
/// failed; the next deploy refuses to run (P3009) until the user fixes the file and resolves
/// the migration, after which nothing is pending.
#[tokio::test]
async fn prisma_migrate_applies_safe_migrations_and_is_stopped_by_an_unsafe_one() {
    let bench = Bench::start().await;
    let conn = bench.fresh_database("prisma", Target::Default).await;
    let url = conn.url();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    prisma_project(dir);
    // The database already holds the harness's table: Prisma adopts it as a baseline
    // migration marked applied, as for any existing production database.
    prisma_migration(
        dir,
        "20261205000000_baseline",
        "CREATE TABLE items (id int PRIMARY KEY, v text);\n",
    );
    resolve_applied(dir, &url, "20261205000000_baseline").await;
    prisma_migration(dir, "20261206000000_accounts", ACCOUNTS);
    prisma_migration(dir, "20261206000001_orders", ORDERS);
    prisma_migration(
        dir,
        "20261206000002_orders_account_idx",
        "CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id);\n",
    );
    prisma_migration(
        dir,
        "20261206000003_orders_total_idx",
        "CREATE INDEX orders_total_idx ON orders (total);\n",
    );
    // Under the default policy the plain CREATE INDEX on a table of an earlier migration is
    // either rewritten or refused: the deploy succeeded, so it was rewritten.
    let deploy = prisma(dir, &url, &["migrate", "deploy"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let direct =
        crate::support::pg::connect(&bench.connection(&conn.database, Target::Direct).keywords())
            .await;
    let done = [
        "20261205000000_baseline:true:false",
        "20261206000000_accounts:true:false",
        "20261206000001_orders:true:false",
        "20261206000002_orders_account_idx:true:false",
        "20261206000003_orders_total_idx:true:false",
    ];
    assert_eq!(prisma_history(&direct).await, done);
    let schema = bench.schema(&conn.database).await;
    for index in [
        "index orders_account_idx on orders valid=t: CREATE INDEX orders_account_idx ON public.orders USING btree (account_id)",
        "index orders_total_idx on orders valid=t: CREATE INDEX orders_total_idx ON public.orders USING btree (total)",
    ] {
        assert!(schema.iter().any(|l| l == index), "{index}\n{schema:#?}");
    }

    prisma_migration(
        dir,
        "20261206000004_contract",
        "ALTER TABLE accounts ADD COLUMN email_address text;\nALTER TABLE accounts DROP COLUMN email;\n",
    );
    let refused = prisma(dir, &url, &["migrate", "deploy"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ddlgate: drop-column"),
        "{}",
        text(&refused)
    );
    let mut failed = done.to_vec();
    failed.push("20261206000004_contract:false:false");
    assert_eq!(prisma_history(&direct).await, failed);
    let schema = bench.schema(&conn.database).await;
    assert!(
        schema
            .iter()
            .any(|l| l == "column accounts.email text not null"),
        "{schema:#?}"
    );
    assert!(
        schema
            .iter()
            .any(|l| l == "column accounts.email_address text"),
        "{schema:#?}"
    );
    let blocked = prisma(dir, &url, &["migrate", "deploy"]).await;
    assert!(!blocked.status.success(), "{}", text(&blocked));
    assert!(text(&blocked).contains("P3009"), "{}", text(&blocked));

    // The contract step waits for a later release; what was applied is the expand step.
    prisma_migration(
        dir,
        "20261206000004_contract",
        "ALTER TABLE accounts ADD COLUMN email_address text;\n",
    );
    resolve_applied(dir, &url, "20261206000004_contract").await;
    let deploy = prisma(dir, &url, &["migrate", "deploy"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    assert!(
        text(&deploy).contains("No pending migrations"),
        "{}",
        text(&deploy)
    );
}

/// The contract step through a real tool, decided by evidence of use (ddlgate samples
/// `pg_stat_statements`, window 4 s): while the running application still reads `legacy`,
/// golang-migrate's `DROP COLUMN legacy` is refused with the application's statement named;
/// the application's next release stops reading it; once the window has passed over the last
/// read, the same migration applies — no override in the file.
#[tokio::test(flavor = "multi_thread")]
async fn golang_migrate_contract_step_waits_for_the_running_application_to_stop_reading() {
    use crate::support::pg::{PgServer, SUPERUSER, run_direct};
    use crate::support::proxy::TestProxy;
    let pg = PgServer::start_with(&["shared_preload_libraries = 'pg_stat_statements'"]);
    run_direct(&pg, "CREATE EXTENSION pg_stat_statements").await;
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[evidence]\nwindow = \"4s\"\nmin_observation = \"4s\"\n",
    )
    .unwrap();
    let proxy = TestProxy::start_with(&pg, |o| {
        o.policy = Some(policy.clone());
        o.evidence_dsn = Some(pg.conn_str(SUPERUSER));
        o.evidence_interval = Some("1s".into());
    })
    .await;
    let migrations = dir.join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
        SUPERUSER.name,
        SUPERUSER.password,
        proxy.addr.port(),
        crate::support::pg::DATABASE
    );
    write(
        &migrations,
        "1_accounts.up.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, legacy text);
INSERT INTO accounts SELECT g, 'user' || g, 'x' FROM generate_series(1, 500) g;
",
    );
    let up = golang_migrate(&migrations, &url, &["up"]).await;
    assert!(up.status.success(), "{}", text(&up));

    // The running application: release 1 reads legacy, release 2 (from `release` = 2) not.
    let release = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(1));
    let app = pg.connect(SUPERUSER).await;
    let running = {
        let release = std::sync::Arc::clone(&release);
        tokio::spawn(async move {
            for id in 1..i64::MAX {
                let sql = if release.load(std::sync::atomic::Ordering::Relaxed) == 1 {
                    "SELECT id, email, legacy FROM accounts WHERE id = $1"
                } else {
                    "SELECT id, email FROM accounts WHERE id = $1"
                };
                if app.query(sql, &[&(id % 500 + 1)]).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    // The samples must span the window before the evidence decides anything.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;

    write(
        &migrations,
        "2_drop_legacy.up.sql",
        "ALTER TABLE accounts DROP COLUMN legacy;\n",
    );
    let refused = golang_migrate(&migrations, &url, &["up"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ddlgate: drop-column")
            && text(&refused).contains("SELECT id, email, legacy FROM accounts WHERE id = $1"),
        "{}",
        text(&refused)
    );

    // Release 2 stops reading legacy; after the window, the contract step applies as written.
    release.store(2, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let force = golang_migrate(&migrations, &url, &["force", "1"]).await;
    assert!(force.status.success(), "{}", text(&force));
    let up = golang_migrate(&migrations, &url, &["up"]).await;
    assert!(up.status.success(), "{}", text(&up));
    let direct = pg.connect(SUPERUSER).await;
    let columns: Vec<String> = direct
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = 'accounts' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["id", "email"]);
    assert_eq!(version(&direct).await, (2, false));
    running.abort();
}
