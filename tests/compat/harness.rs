//! The scenario every client runs, the three targets it runs against, and the comparisons.

use std::future::Future;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::support::pg::{self, PgServer, Role, SCRAM, SUPERUSER};
use crate::support::proxy::TestProxy;

/// The role every client connects as: a migration role with a SCRAM password, owning its
/// database (not a superuser).
pub const MIGRATOR: Role = SCRAM;

/// One step of a scenario: statements sent one by one, in autocommit mode or inside one
/// transaction block that the client opens and commits (rolls back after an error) its way.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub transaction: bool,
    pub sql: Vec<&'static str>,
    /// What the default policy does with the step.
    #[serde(skip)]
    pub under_default: Expect,
}

/// What the default policy does with a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The step's results are exactly a direct connection's (rewritten DDL included).
    SameAsDirect,
    /// The first statement is refused with SQLSTATE ZD001 and `ddlgate: <rule>: …`.
    Refused(&'static str),
    /// The first statement is refused with SQLSTATE ZD001 and this message.
    RefusedWith(&'static str),
    /// Not compared: it depends on what an earlier refusal left undone.
    Unchecked,
}

fn step(name: &'static str, sql: &[&'static str]) -> Step {
    Step {
        name,
        transaction: false,
        sql: sql.to_vec(),
        under_default: Expect::SameAsDirect,
    }
}

fn tx(name: &'static str, sql: &[&'static str]) -> Step {
    Step {
        transaction: true,
        ..step(name, sql)
    }
}

fn refused(step: Step, rule: &'static str) -> Step {
    Step {
        under_default: Expect::Refused(rule),
        ..step
    }
}

/// Ordinary application traffic: no DDL. `items` (ids 1–100) is created by [`fresh_database`].
pub fn ordinary() -> Vec<Step> {
    vec![
        step(
            "types",
            &[
                "SELECT 1 AS one, 'text'::text AS t, NULL::int AS n, 1.5::numeric AS x, true AS b, 2.5::float8 AS f, 'a b'::varchar AS v",
            ],
        ),
        step(
            "dml",
            &[
                "INSERT INTO items (id, v) VALUES (1001, 'x') RETURNING id",
                "UPDATE items SET v = 'y' WHERE id <= 10",
                "DELETE FROM items WHERE id = 100",
                "SELECT count(*)::int, sum(id)::int FROM items",
            ],
        ),
        step(
            "errors keep the connection usable",
            &[
                "SELECT 1/0",
                "SELECT * FROM no_such_table",
                "SELECT 'still usable'::text",
            ],
        ),
        step(
            "session advisory lock",
            &["SELECT pg_advisory_lock(4242)::text"],
        ),
        tx(
            "transaction with a savepoint",
            &[
                "INSERT INTO items (id, v) VALUES (2000, 't')",
                "SAVEPOINT s1",
                "UPDATE items SET v = 'u' WHERE id = 2000",
                "ROLLBACK TO SAVEPOINT s1",
                "SELECT v FROM items WHERE id = 2000",
            ],
        ),
        tx(
            "failed transaction",
            &[
                "INSERT INTO items (id, v) VALUES (3000, 't')",
                "SELECT 1/0",
                "SELECT 'not reached'::text",
            ],
        ),
        step(
            "after the transactions",
            &[
                "SELECT count(*)::int FROM items WHERE id IN (2000, 3000)",
                "SELECT pg_advisory_unlock(4242)",
                "SHOW lock_timeout",
                "SHOW statement_timeout",
            ],
        ),
        step(
            "larger result",
            &["SELECT g, repeat('x', 50) FROM generate_series(1, 500) g"],
        ),
    ]
}

/// The safe migration: creates and fills the tables, adds a nullable column, builds an index
/// concurrently and adds a foreign key NOT VALID, then validates it.
pub fn safe_migration() -> Vec<Step> {
    vec![
        step(
            "create table",
            &["CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL)"],
        ),
        tx(
            "create and fill in one transaction",
            &[
                "CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, total int)",
                "INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 500) g",
                "INSERT INTO orders SELECT g, g % 500 + 1, g FROM generate_series(1, 2000) g",
            ],
        ),
        step(
            "add a nullable column",
            &["ALTER TABLE orders ADD COLUMN note text"],
        ),
        step(
            "create index concurrently",
            &["CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id)"],
        ),
        step(
            "foreign key not valid, then validate",
            &[
                "ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID",
                "ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk",
            ],
        ),
        step(
            "timeouts are the client's again",
            &["SHOW lock_timeout", "SHOW statement_timeout"],
        ),
    ]
}

/// The unsafe migration, run on the tables of the safe one.
pub fn unsafe_migration() -> Vec<Step> {
    vec![
        refused(
            tx(
                "create index in a transaction",
                &["CREATE INDEX orders_total_tx_idx ON orders (total)"],
            ),
            "create-index-nonconcurrent",
        ),
        refused(
            tx(
                "foreign key in a transaction",
                &[
                    "ALTER TABLE orders ADD CONSTRAINT orders_account_tx_fk FOREIGN KEY (account_id) REFERENCES accounts (id)",
                ],
            ),
            "fk-not-valid-missing",
        ),
        // Outside a transaction block the default policy rewrites these two.
        step(
            "create index",
            &["CREATE INDEX orders_total_idx ON orders (total)"],
        ),
        step(
            "foreign key",
            &[
                "ALTER TABLE orders ADD CONSTRAINT orders_account_fk2 FOREIGN KEY (account_id) REFERENCES accounts (id)",
            ],
        ),
        refused(
            step(
                "int to bigint",
                &["ALTER TABLE orders ALTER COLUMN total TYPE bigint"],
            ),
            "change-column-type",
        ),
        refused(
            step(
                "rename column",
                &["ALTER TABLE orders RENAME COLUMN note TO comment"],
            ),
            "rename-column",
        ),
        step(
            "after the migration",
            &[
                "SELECT count(*)::int FROM orders",
                "SHOW lock_timeout",
                "SHOW statement_timeout",
            ],
        ),
    ]
}

/// The whole scenario, in order.
pub fn scenario() -> Vec<Step> {
    let mut steps = ordinary();
    steps.extend(safe_migration());
    steps.extend(unsafe_migration());
    steps
}

/// What the schema of the default-policy database must show after the scenario: the
/// rewritten index and foreign key in place and valid, the refused changes not made.
pub const DEFAULT_POLICY_SCHEMA: &[&str] = &[
    "column orders.total integer",
    "column orders.note text",
    "index orders_total_idx on orders valid=t: CREATE INDEX orders_total_idx ON public.orders USING btree (total)",
    "constraint orders_account_fk2 on orders validated=t: FOREIGN KEY (account_id) REFERENCES accounts(id)",
];

/// Where a client connects.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Connection {
    /// libpq keyword/value form.
    pub fn keywords(&self) -> String {
        format!(
            "host={} port={} user={} password={} dbname={} sslmode=disable",
            self.host, self.port, self.user, self.password, self.database
        )
    }

    /// libpq URL form.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}?sslmode=disable",
            self.user, self.password, self.host, self.port, self.database
        )
    }
}

/// The scenario file the drivers read.
#[derive(Debug, Serialize)]
pub struct ScenarioFile<'a> {
    pub connection: &'a Connection,
    pub mode: &'a str,
    pub steps: &'a [Step],
}

/// The three places a client runs the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct,
    Observe,
    Default,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Observe => "observe",
            Self::Default => "default",
        }
    }
}

/// The cluster and two proxies in front of it, one per shipped policy.
#[derive(Debug)]
pub struct Bench {
    pub pg: &'static PgServer,
    pub observe: TestProxy,
    pub default: TestProxy,
}

pub fn policy_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(format!("{name}.toml"))
}

impl Bench {
    pub async fn start() -> Self {
        let pg = PgServer::shared();
        let observe = TestProxy::start_with(pg, |o| o.policy = Some(policy_path("observe"))).await;
        let default = TestProxy::start_with(pg, |o| o.policy = Some(policy_path("default"))).await;
        Self {
            pg,
            observe,
            default,
        }
    }

    /// A fresh database `<client>_<target>` owned by [`MIGRATOR`], holding `items` (ids
    /// 1–100), and how to reach it through `target`.
    pub async fn fresh_database(&self, client: &str, target: Target) -> Connection {
        let database = format!("{client}_{}", target.name());
        self.create_fresh(&database).await;
        self.connection(&database, target)
    }

    /// Creates `database` afresh, owned by [`MIGRATOR`], holding `items` (ids 1–100).
    pub async fn create_fresh(&self, database: &str) {
        let admin = self.pg.connect(SUPERUSER).await;
        admin
            .simple_query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .simple_query(&format!(
                "CREATE DATABASE {database} OWNER {}",
                MIGRATOR.name
            ))
            .await
            .unwrap();
        let direct = self.connection(database, Target::Direct);
        pg::connect(&direct.keywords())
            .await
            .batch_execute(
                "CREATE TABLE items (id int PRIMARY KEY, v text); \
                 INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g",
            )
            .await
            .unwrap();
    }

    pub fn connection(&self, database: &str, target: Target) -> Connection {
        let port = match target {
            Target::Direct => self.pg.port,
            Target::Observe => self.observe.addr.port(),
            Target::Default => self.default.addr.port(),
        };
        Connection {
            host: "127.0.0.1".into(),
            port,
            user: MIGRATOR.name.into(),
            password: MIGRATOR.password.into(),
            database: database.into(),
        }
    }

    /// The schema of `database`, one sorted line per column, index and constraint of `public`.
    pub async fn schema(&self, database: &str) -> Vec<String> {
        let conn = self.connection(database, Target::Direct);
        let client = pg::connect(&conn.keywords()).await;
        let rows = client
            .query(
                "SELECT format('column %s.%s %s%s', c.relname, a.attname, \
                        format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END) \
                   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
                    AND a.attnum > 0 AND NOT a.attisdropped \
                 UNION ALL \
                 SELECT format('index %s on %s valid=%s: %s', i.indexrelid::regclass, i.indrelid::regclass, \
                        i.indisvalid, pg_get_indexdef(i.indexrelid)) \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                  WHERE c.relnamespace = 'public'::regnamespace \
                 UNION ALL \
                 SELECT format('constraint %s on %s validated=%s: %s', conname, conrelid::regclass, \
                        convalidated, pg_get_constraintdef(oid)) \
                   FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
                 ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Runs `scenario` with `run` against each target and checks the results: observe equals
    /// direct statement by statement and in the resulting schema; under the default policy
    /// each step gets the result its [`Expect`] names.
    pub async fn check<F, Fut>(&self, client: &str, steps: &[Step], run: F)
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Value>,
    {
        self.check_with(client, steps, run, |s| s.under_default)
            .await;
        self.check_default_schema(client).await;
    }

    /// The schema the default policy must leave after the scenario (see
    /// [`DEFAULT_POLICY_SCHEMA`]), and no INVALID index.
    pub async fn check_default_schema(&self, client: &str) {
        let default_schema = self
            .schema(&format!("{client}_{}", Target::Default.name()))
            .await;
        for line in DEFAULT_POLICY_SCHEMA {
            assert!(
                default_schema.iter().any(|l| l == line),
                "{client}: default-policy schema lacks {line:?}:\n{}",
                default_schema.join("\n")
            );
        }
        assert!(
            !default_schema.iter().any(|l| l.contains("valid=f:")),
            "{client}: an INVALID index was left behind:\n{}",
            default_schema.join("\n")
        );
    }

    /// [`Bench::check`] with the default policy's expectation per step given by `expect`, and
    /// without [`Bench::check_default_schema`].
    pub async fn check_with<F, Fut>(
        &self,
        client: &str,
        steps: &[Step],
        run: F,
        expect: impl Fn(&Step) -> Expect,
    ) where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Value>,
    {
        let mut results = Vec::new();
        for target in [Target::Direct, Target::Observe, Target::Default] {
            let conn = self.fresh_database(client, target).await;
            let out = run(conn).await;
            let out = out
                .as_array()
                .unwrap_or_else(|| panic!("{client} printed no list of results: {out}"))
                .clone();
            assert_eq!(
                out.len(),
                steps.len(),
                "{client} ({}) printed a result for each step: {out:?}",
                target.name()
            );
            results.push(out);
        }
        let [direct, observe, default] = [&results[0], &results[1], &results[2]];
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(
                observe[i], direct[i],
                "{client}: step {:?} through ddlgate in observe mode differs from a direct connection",
                step.name
            );
            let refusal = |prefix: String| {
                let first = &default[i]["results"][0]["error"];
                assert_eq!(
                    first["sqlstate"], "ZD001",
                    "{client}: step {:?} refused by the default policy: {}",
                    step.name, default[i]
                );
                let message = first["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with(&prefix),
                    "{client}: step {:?}: {message}",
                    step.name
                );
                assert_eq!(
                    default[i]["results"].as_array().map(Vec::len),
                    Some(1),
                    "{client}: nothing after the refusal in step {:?} ran",
                    step.name
                );
            };
            match expect(step) {
                Expect::SameAsDirect => assert_eq!(
                    default[i], direct[i],
                    "{client}: step {:?} through ddlgate with the default policy differs from a direct connection",
                    step.name
                ),
                Expect::Refused(rule) => refusal(format!("ddlgate: {rule}: ")),
                Expect::RefusedWith(message) => refusal(message.to_owned()),
                Expect::Unchecked => {}
            }
        }
        let direct_schema = self
            .schema(&format!("{client}_{}", Target::Direct.name()))
            .await;
        let observe_schema = self
            .schema(&format!("{client}_{}", Target::Observe.name()))
            .await;
        assert_eq!(
            observe_schema, direct_schema,
            "{client}: observe-mode schema"
        );
    }
}

/// Runs a driver program with the scenario file as its last argument; returns its JSON.
pub async fn run_driver(
    mut command: tokio::process::Command,
    connection: &Connection,
    mode: &str,
    steps: &[Step],
) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    let scenario = ScenarioFile {
        connection,
        mode,
        steps,
    };
    std::fs::write(file.path(), serde_json::to_vec(&scenario).unwrap()).unwrap();
    let output = command
        .arg(file.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{command:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
