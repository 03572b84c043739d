//! Client libraries: tokio-postgres (in process), psycopg 3, node-postgres and pgjdbc (the
//! programs in `drivers/`), each in every protocol mode it offers.

use serde_json::{Value, json};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::harness::{Bench, Connection, Expect, Step, run_driver, scenario};
use crate::support::pg;

fn driver_path(file: &str) -> String {
    format!("{}/tests/compat/drivers/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn error_json(e: &tokio_postgres::Error) -> Value {
    match e.as_db_error() {
        Some(db) => json!({"error": {"sqlstate": db.code().code(), "message": db.message()}}),
        None => json!({"error": {"sqlstate": null, "message": e.to_string()}}),
    }
}

/// One value of an extended-protocol (binary) row as text, for the types the scenario uses.
fn cell(row: &tokio_postgres::Row, i: usize) -> Value {
    let ty = row.columns()[i].type_().clone();
    let text = match ty {
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => row.get::<_, Option<String>>(i),
        other => Some(format!("<{other}>")),
    };
    text.map_or(Value::Null, Value::String)
}

async fn tokio_postgres_statement(client: &tokio_postgres::Client, mode: &str, sql: &str) -> Value {
    if mode == "simple" {
        match client.simple_query(sql).await {
            Ok(messages) => {
                let mut rows = Vec::new();
                let mut tag = None;
                for m in messages {
                    match m {
                        SimpleQueryMessage::Row(r) => rows.push(
                            (0..r.len())
                                .map(|i| r.get(i).map_or(Value::Null, |v| Value::String(v.into())))
                                .collect::<Vec<_>>(),
                        ),
                        SimpleQueryMessage::CommandComplete(n) => tag = Some(n),
                        _ => {}
                    }
                }
                json!({"count": tag, "rows": rows})
            }
            Err(e) => error_json(&e),
        }
    } else {
        // Prepared (tokio-postgres names every statement it prepares), then executed.
        let statement = match client.prepare(sql).await {
            Ok(s) => s,
            Err(e) => return error_json(&e),
        };
        if statement.columns().is_empty() {
            match client.execute(&statement, &[]).await {
                Ok(n) => json!({"count": n}),
                Err(e) => error_json(&e),
            }
        } else {
            match client.query(&statement, &[]).await {
                Ok(rows) => json!({"rows": rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| cell(r, i)).collect::<Vec<_>>())
                    .collect::<Vec<_>>()}),
                Err(e) => error_json(&e),
            }
        }
    }
}

pub(crate) async fn run_tokio_postgres(conn: Connection, mode: &str, steps: &[Step]) -> Value {
    let client = pg::connect(&format!(
        "{} application_name=compat-tokio-postgres",
        conn.keywords()
    ))
    .await;
    let mut out = Vec::new();
    for step in steps {
        let mut results = Vec::new();
        if step.transaction {
            client.batch_execute("BEGIN").await.unwrap();
        }
        let mut failed = false;
        for sql in &step.sql {
            let result = tokio_postgres_statement(&client, mode, sql).await;
            failed = result.get("error").is_some();
            results.push(result);
            if failed && step.transaction {
                break;
            }
        }
        if step.transaction {
            client
                .batch_execute(if failed { "ROLLBACK" } else { "COMMIT" })
                .await
                .unwrap();
        }
        out.push(json!({"name": step.name, "results": results}));
    }
    Value::Array(out)
}

#[tokio::test]
async fn tokio_postgres_simple_protocol() {
    let bench = Bench::start().await;
    let steps = scenario();
    bench
        .check("tokio_postgres_simple", &steps, |c| {
            run_tokio_postgres(c, "simple", &steps)
        })
        .await;
}

#[tokio::test]
async fn tokio_postgres_prepared_statements() {
    let bench = Bench::start().await;
    let steps = scenario();
    bench
        .check("tokio_postgres_prepared", &steps, |c| {
            run_tokio_postgres(c, "prepared", &steps)
        })
        .await;
}

pub(crate) fn python() -> tokio::process::Command {
    let python = std::env::var("DDLGATE_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/ddlgate-py/bin/python".to_owned());
    let mut command = tokio::process::Command::new(python);
    command.arg(driver_path("psycopg_driver.py"));
    command
}

async fn psycopg(mode: &str) {
    let bench = Bench::start().await;
    let steps = scenario();
    bench
        .check(&format!("psycopg_{mode}"), &steps, |c| {
            let steps = &steps;
            async move { run_driver(python(), &c, mode, steps).await }
        })
        .await;
}

#[tokio::test]
async fn psycopg_simple_protocol() {
    psycopg("simple").await;
}

#[tokio::test]
async fn psycopg_prepared_statements() {
    psycopg("prepared").await;
}

/// Pipeline mode: each step's statements in one pipeline, which PostgreSQL runs as one
/// (implicit) transaction. So the default policy refuses the VALIDATE that follows its
/// `NOT VALID` in the same pipeline: the scan would run under the lock NOT VALID avoided.
#[tokio::test]
async fn psycopg_pipeline_mode() {
    let bench = Bench::start().await;
    let steps = scenario();
    let client = "psycopg_pipeline";
    bench
        .check_with(
            client,
            &steps,
            |c| {
                let steps = &steps;
                async move { run_driver(python(), &c, "pipeline", steps).await }
            },
            |step| match step.name {
                "foreign key not valid, then validate" => Expect::Refused("validate-same-tx"),
                _ => step.under_default,
            },
        )
        .await;
    bench.check_default_schema(client).await;
}

pub(crate) fn node() -> tokio::process::Command {
    let modules = std::env::var("DDLGATE_NODE_PATH")
        .unwrap_or_else(|_| "/var/tmp/ddlgate-node/node_modules".to_owned());
    assert!(
        std::path::Path::new(&modules).join("pg").is_dir(),
        "no node-postgres in {modules}: scripts/test.sh installs it, or set DDLGATE_NODE_PATH"
    );
    let mut command = tokio::process::Command::new("node");
    command
        .env("NODE_PATH", modules)
        .arg(driver_path("node_pg_driver.js"));
    command
}

async fn node_pg(mode: &str) {
    let bench = Bench::start().await;
    let steps = scenario();
    bench
        .check(&format!("node_pg_{mode}"), &steps, |c| {
            let steps = &steps;
            async move { run_driver(node(), &c, mode, steps).await }
        })
        .await;
}

#[tokio::test]
async fn node_postgres_simple_protocol() {
    node_pg("simple").await;
}

#[tokio::test]
async fn node_postgres_extended_protocol() {
    node_pg("extended").await;
}

#[tokio::test]
async fn node_postgres_prepared_statements() {
    node_pg("prepared").await;
}

pub(crate) fn java() -> tokio::process::Command {
    let jar = std::env::var("DDLGATE_JDBC_JAR")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".to_owned());
    assert!(
        std::path::Path::new(&jar).is_file(),
        "no pgjdbc at {jar}: scripts/test.sh installs libpostgresql-jdbc-java, or set DDLGATE_JDBC_JAR"
    );
    let mut command = tokio::process::Command::new("java");
    command
        .args(["-cp", &jar])
        .arg(driver_path("PgjdbcDriver.java"));
    command
}

async fn pgjdbc(mode: &str) {
    let bench = Bench::start().await;
    let steps = scenario();
    bench
        .check(&format!("pgjdbc_{mode}"), &steps, |c| {
            let steps = &steps;
            async move { run_driver(java(), &c, mode, steps).await }
        })
        .await;
}

#[tokio::test]
async fn pgjdbc_default_mode() {
    pgjdbc("default").await;
}

#[tokio::test]
async fn pgjdbc_prepared_statements() {
    pgjdbc("prepared").await;
}

#[tokio::test]
async fn pgjdbc_simple_query_mode() {
    pgjdbc("simple").await;
}
