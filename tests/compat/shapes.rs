//! Session shapes: migrations the way real runners send them — five over **one connection**,
//! on tables the first of them created and filled — under the default and the strict policy,
//! for every client. Shapes: each migration in its own `BEGIN … COMMIT`; the same with a
//! `SAVEPOINT` around each statement; all pending migrations in one transaction; autocommit
//! statements; and (through the drivers that do it) `BEGIN` pipelined with the first
//! statement under one `Sync` (pgjdbc, psycopg's pipeline mode). psql also runs the files
//! with `-f` (one connection, a transaction per file) and with `-1`.
//!
//! The safe sequence applies with no refusal and no rule firing in the audit trail (no warning
//! about another transaction); each unsafe statement is governed exactly as in a fresh
//! session; in the all-in-one transaction every statement on the tables it created passes,
//! except a `VALIDATE` whose referenced table is visible to other sessions. The catalog is
//! checked each time, not only the answers.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{Bench, Connection, Expect, Step, Target, policy_path, run_driver};
use crate::support::audit_records;
use crate::support::pg::PgServer;
use crate::support::proxy::TestProxy;

const CREATE_AND_FILL: &[&str] = &[
    "CREATE TABLE sh_accounts (id bigint PRIMARY KEY, email text NOT NULL)",
    "INSERT INTO sh_accounts SELECT g, 'a' || g FROM generate_series(1, 1000) g",
    "CREATE TABLE sh_orders (id bigint PRIMARY KEY, account_id bigint NOT NULL, amount int NOT NULL, note text)",
    "INSERT INTO sh_orders SELECT g, g, g, 'n' || g FROM generate_series(1, 1000) g",
];
const ADD_COLUMN: &str = "ALTER TABLE sh_orders ADD COLUMN memo text";
const INDEX_CONCURRENTLY: &str =
    "CREATE INDEX CONCURRENTLY sh_orders_account_idx ON sh_orders (account_id)";
const FK_NOT_VALID: &str = "ALTER TABLE sh_orders ADD CONSTRAINT sh_orders_account_fk FOREIGN KEY (account_id) REFERENCES sh_accounts (id) NOT VALID";
const VALIDATE: &str = "ALTER TABLE sh_orders VALIDATE CONSTRAINT sh_orders_account_fk";
const UNSAFE: &[(&str, &str)] = &[
    (
        "CREATE INDEX sh_orders_note_idx ON sh_orders (note)",
        "create-index-nonconcurrent",
    ),
    (
        "ALTER TABLE sh_orders ADD CONSTRAINT sh_orders_account_fk2 FOREIGN KEY (account_id) REFERENCES sh_accounts (id)",
        "fk-not-valid-missing",
    ),
    (
        "ALTER TABLE sh_orders ALTER COLUMN amount TYPE bigint",
        "change-column-type",
    ),
    (
        "ALTER TABLE sh_orders RENAME COLUMN note TO remark",
        "rename-column",
    ),
];

/// How a shape wraps the statements of one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `BEGIN` … `COMMIT` per migration (the client's own way of opening it).
    Transactions,
    /// The same, with `SAVEPOINT` / `RELEASE SAVEPOINT` around every statement.
    Savepoints,
    /// Every statement on its own, no transaction block.
    Autocommit,
    /// All migrations in one transaction.
    AllInOne,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Transactions => "tx",
            Self::Savepoints => "sp",
            Self::Autocommit => "ac",
            Self::AllInOne => "one",
        }
    }
}

/// One migration as a step of the shape.
fn migration(shape: Shape, name: &'static str, sql: &[&'static str], in_tx: bool) -> Step {
    let transaction = in_tx && shape != Shape::Autocommit;
    let sql = if shape == Shape::Savepoints && transaction {
        sql.iter()
            .flat_map(|s| {
                [
                    "SAVEPOINT ddlgate_shape",
                    *s,
                    "RELEASE SAVEPOINT ddlgate_shape",
                ]
            })
            .collect()
    } else {
        sql.to_vec()
    };
    Step {
        name,
        transaction,
        sql,
        under_default: Expect::SameAsDirect,
    }
}

/// The migrations of a shape, with what `policy` must do with each.
fn migrations(shape: Shape, policy: &str) -> Vec<(Step, Expect)> {
    if shape == Shape::AllInOne {
        let mut all: Vec<&'static str> = CREATE_AND_FILL.to_vec();
        all.extend([
            ADD_COLUMN,
            "CREATE INDEX sh_orders_account_idx ON sh_orders (account_id)",
            FK_NOT_VALID,
            VALIDATE,
        ]);
        all.extend(UNSAFE.iter().map(|(sql, _)| *sql));
        let visible = [
            "CREATE TABLE sh_lines (id bigint PRIMARY KEY, item_id int NOT NULL)",
            "INSERT INTO sh_lines SELECT g, g % 100 + 1 FROM generate_series(1, 1000) g",
            "ALTER TABLE sh_lines ADD CONSTRAINT sh_lines_item_fk FOREIGN KEY (item_id) REFERENCES items (id) NOT VALID",
            "ALTER TABLE sh_lines VALIDATE CONSTRAINT sh_lines_item_fk",
        ];
        return vec![
            (
                migration(shape, "everything in one transaction", &all, true),
                Expect::SameAsDirect,
            ),
            (
                migration(shape, "validate against a visible table", &visible, true),
                Expect::Refused("validate-same-tx"),
            ),
        ];
    }
    let mut out = vec![
        (
            migration(shape, "create and fill", CREATE_AND_FILL, true),
            Expect::SameAsDirect,
        ),
        (
            migration(shape, "nullable column", &[ADD_COLUMN], true),
            Expect::SameAsDirect,
        ),
        (
            migration(shape, "index concurrently", &[INDEX_CONCURRENTLY], false),
            Expect::SameAsDirect,
        ),
        (
            migration(shape, "foreign key not valid", &[FK_NOT_VALID], true),
            Expect::SameAsDirect,
        ),
        (
            migration(shape, "validate", &[VALIDATE], true),
            Expect::SameAsDirect,
        ),
    ];
    for (sql, rule) in UNSAFE {
        // Outside a transaction block the default policy rewrites what it can (the client
        // sees the direct answer); everything else is refused, as in a fresh session.
        let rewritable = matches!(*rule, "create-index-nonconcurrent" | "fk-not-valid-missing");
        let expect = if shape == Shape::Autocommit && policy == "default" && rewritable {
            Expect::SameAsDirect
        } else {
            Expect::Refused(rule)
        };
        out.push((migration(shape, rule, &[sql], true), expect));
    }
    out
}

/// The answer a step got: the first error among its results, if any.
fn first_error(step: &Value) -> Option<&Value> {
    step["results"]
        .as_array()?
        .iter()
        .find_map(|r| r.get("error"))
}

/// Two proxies with their own audit trails, one per policy.
struct ShapeBench {
    bench: Bench,
    proxies: Vec<(&'static str, TestProxy, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl ShapeBench {
    async fn start() -> Self {
        let bench = Bench::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut proxies = Vec::new();
        for policy in ["default", "strict"] {
            let log = dir.path().join(format!("{policy}.jsonl"));
            let proxy = TestProxy::start_with(PgServer::shared(), |o| {
                o.policy = Some(policy_path(policy));
                o.audit_log = Some(log.clone());
            })
            .await;
            proxies.push((policy, proxy, log));
        }
        Self {
            bench,
            proxies,
            _dir: dir,
        }
    }

    /// Runs every shape with `run` directly and through each policy, and checks answers,
    /// audit trail and catalog.
    async fn check<F, Fut>(&self, client: &str, shapes: &[Shape], run: F)
    where
        F: Fn(Connection, Vec<Step>) -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        for &shape in shapes {
            let label = format!("{client}_{}", shape.name());
            let direct_conn = self.bench.fresh_database(&label, Target::Direct).await;
            let direct_steps: Vec<Step> = migrations(shape, "default")
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            let direct = run(direct_conn, direct_steps).await;
            let direct_schema = self.bench.schema(&format!("{label}_direct")).await;
            for (policy, proxy, log) in &self.proxies {
                let plan = migrations(shape, policy);
                let steps: Vec<Step> = plan.iter().map(|(s, _)| s.clone()).collect();
                let database = format!("{label}_{policy}");
                self.bench.create_fresh(&database).await;
                let conn = Connection {
                    port: proxy.addr.port(),
                    database: database.clone(),
                    ..self.bench.connection(&database, Target::Direct)
                };
                let records_before = audit_records(log).len();
                let out = run(conn, steps).await;
                let what = format!("{client}, shape {}, {policy} policy", shape.name());
                for (i, (step, expect)) in plan.iter().enumerate() {
                    match expect {
                        Expect::SameAsDirect => assert_eq!(
                            out[i], direct[i],
                            "{what}: migration {:?} differs from a direct connection",
                            step.name
                        ),
                        Expect::Refused(rule) => {
                            let error = first_error(&out[i]).unwrap_or_else(|| {
                                panic!(
                                    "{what}: migration {:?} was not refused: {}",
                                    step.name, out[i]
                                )
                            });
                            assert_eq!(error["sqlstate"], "ZD001", "{what}: {}", out[i]);
                            let message = error["message"].as_str().unwrap_or_default();
                            assert!(
                                message.starts_with(&format!("ddlgate: {rule}: ")),
                                "{what}: migration {:?}: {message}",
                                step.name
                            );
                        }
                        _ => {}
                    }
                }
                // The safe sequence fired no rule: no refusal, no warning about another
                // transaction.
                let records = audit_records(log);
                for r in &records[records_before..] {
                    let sql = r["sql"].as_str().unwrap_or_default();
                    let safe = [ADD_COLUMN, INDEX_CONCURRENTLY, FK_NOT_VALID, VALIDATE]
                        .contains(&sql)
                        || CREATE_AND_FILL.contains(&sql);
                    if safe && shape != Shape::AllInOne {
                        assert_eq!(
                            r["rules"],
                            serde_json::json!([]),
                            "{what}: a rule fired on the safe statement {sql}: {r}"
                        );
                    }
                }
                let schema = self.bench.schema(&database).await;
                Self::check_catalog(&what, shape, policy, &schema, &direct_schema);
            }
        }
    }

    fn check_catalog(what: &str, shape: Shape, policy: &str, schema: &[String], direct: &[String]) {
        let has = |line: &str| schema.iter().any(|l| l.starts_with(line));
        let shown = schema.join("\n");
        if shape == Shape::AllInOne {
            // Everything on the new tables applied as on a direct connection; the second
            // transaction was refused and left nothing.
            let expected: Vec<&String> =
                direct.iter().filter(|l| !l.contains("sh_lines")).collect();
            let got: Vec<&String> = schema.iter().collect();
            assert_eq!(got, expected, "{what}: catalog");
            return;
        }
        for line in [
            "column sh_orders.memo text",
            "column sh_orders.amount integer",
            "column sh_orders.note text",
            "index sh_orders_account_idx on sh_orders valid=t",
            "constraint sh_orders_account_fk on sh_orders validated=t",
        ] {
            assert!(has(line), "{what}: catalog lacks {line:?}:\n{shown}");
        }
        assert!(!has("column sh_orders.remark"), "{what}:\n{shown}");
        let rewritten = shape == Shape::Autocommit && policy == "default";
        assert_eq!(
            has("index sh_orders_note_idx on sh_orders valid=t"),
            rewritten,
            "{what}: the plain CREATE INDEX ran (as CONCURRENTLY) only where it could be rewritten:\n{shown}"
        );
        assert_eq!(
            has("constraint sh_orders_account_fk2 on sh_orders validated=t"),
            rewritten,
            "{what}: the foreign key ran (NOT VALID, then VALIDATE) only where it could be rewritten:\n{shown}"
        );
        assert!(
            !shown.contains("valid=f"),
            "{what}: INVALID index:\n{shown}"
        );
    }
}

const ALL_SHAPES: &[Shape] = &[
    Shape::Transactions,
    Shape::Savepoints,
    Shape::AllInOne,
    Shape::Autocommit,
];

#[tokio::test]
async fn session_shapes_tokio_postgres() {
    let bench = ShapeBench::start().await;
    for mode in ["simple", "prepared"] {
        bench
            .check(
                &format!("shape_tokio_{mode}"),
                ALL_SHAPES,
                |c, steps| async move { crate::drivers::run_tokio_postgres(c, mode, &steps).await },
            )
            .await;
    }
}

#[tokio::test]
async fn session_shapes_psycopg() {
    let bench = ShapeBench::start().await;
    // Pipeline mode sends BEGIN with the first statement under one Sync.
    for mode in ["simple", "prepared", "pipeline"] {
        bench
            .check(&format!("shape_psycopg_{mode}"), ALL_SHAPES, |c, steps| async move {
                run_driver(crate::drivers::python(), &c, mode, &steps).await
            })
            .await;
    }
}

#[tokio::test]
async fn session_shapes_node_postgres() {
    let bench = ShapeBench::start().await;
    for mode in ["simple", "extended"] {
        bench
            .check(&format!("shape_node_{mode}"), ALL_SHAPES, |c, steps| async move {
                run_driver(crate::drivers::node(), &c, mode, &steps).await
            })
            .await;
    }
}

#[tokio::test]
async fn session_shapes_pgjdbc() {
    let bench = ShapeBench::start().await;
    // pgjdbc pipelines BEGIN with the first statement of a transaction under one Sync.
    bench
        .check("shape_pgjdbc", ALL_SHAPES, |c, steps| async move {
            run_driver(crate::drivers::java(), &c, "default", &steps).await
        })
        .await;
}

/// psql as deploy scripts run it. One file of all migrations over one connection (each in
/// its own `BEGIN … COMMIT`, with savepoints, or autocommit), and for the all-in-one shape
/// `psql -1 -f` per batch. After each statement psql prints its SQLSTATE and last error
/// message (`\echo`), so the answers compare statement by statement like a driver's.
async fn run_psql(
    bench: &Bench,
    conn: Connection,
    steps: Vec<Step>,
    one_transaction: bool,
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut runs: Vec<Vec<&Step>> = Vec::new();
    if one_transaction {
        runs.extend(steps.iter().map(|s| vec![s]));
    } else {
        runs.push(steps.iter().collect());
    }
    let mut out = Vec::new();
    for (n, run) in runs.into_iter().enumerate() {
        let mut script = String::new();
        for step in &run {
            script.push_str("\\echo @@step\n");
            let wrapped = step.transaction && !one_transaction;
            if wrapped {
                script.push_str("BEGIN;\n");
            }
            for sql in &step.sql {
                script.push_str(sql);
                script.push_str(";\n\\echo @@ :SQLSTATE :LAST_ERROR_MESSAGE\n");
            }
            if wrapped {
                // Ends a failed block with ROLLBACK, as psql-driven runners do.
                script.push_str("COMMIT;\n");
            }
        }
        let file = dir.path().join(format!("migrations_{n}.sql"));
        std::fs::write(&file, script).unwrap();
        let file = file.to_str().unwrap();
        let mut args = vec!["-X", "-q", "-f", file];
        if one_transaction {
            args.insert(0, "-1");
        }
        let output = crate::tools::run(bench, "psql", &conn, &args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        for (step, text) in run.iter().zip(stdout.split("@@step\n").skip(1)) {
            let results: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("@@ "))
                .map(|l| {
                    let (sqlstate, message) = l.split_once(' ').unwrap_or((l, ""));
                    if sqlstate == "00000" {
                        serde_json::json!({"ok": true})
                    } else {
                        serde_json::json!({"error": {"sqlstate": sqlstate, "message": message}})
                    }
                })
                .collect();
            out.push(serde_json::json!({"name": step.name, "results": results}));
        }
    }
    Value::Array(out)
}

#[tokio::test]
async fn session_shapes_psql() {
    let bench = ShapeBench::start().await;
    bench
        .check(
            "shape_psql",
            &[Shape::Transactions, Shape::Savepoints, Shape::Autocommit],
            |c, steps| run_psql(&bench.bench, c, steps, false),
        )
        .await;
    bench
        .check("shape_psql_1", &[Shape::AllInOne], |c, steps| {
            run_psql(&bench.bench, c, steps, true)
        })
        .await;
}
