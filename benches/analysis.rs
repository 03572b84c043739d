//! Analysis engine benchmarks: nanoseconds per statement for the pre-filter, the parse and the
//! whole evaluation (parse, classify, every default rule), on OLTP statements and on DDL; and
//! `ddlgate check` on a generated 10,000-statement migration file against squawk, in the same
//! run.
//!
//! ```text
//! cargo bench --bench analysis
//! SQUAWK=/path/to/squawk cargo bench --bench analysis -- check_10k
//! ```
//!
//! `squawk` (the Python package `squawk-cli`) is looked up in `$SQUAWK`, then on `PATH`; `scripts/bench-analysis.sh`
//! installs it into a virtualenv and runs this file. Without it, the squawk half is skipped
//! with a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddlgate::internals::analysis::prefilter;
use ddlgate::internals::analysis::{Context, Engine};
use ddlgate::internals::analysis::{Options, parse_script};

/// Statements an application sends all day.
const OLTP: &[(&str, &str)] = &[
    (
        "select_pk",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    ),
    (
        "update",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    ),
    (
        "insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    ),
    (
        "select_join",
        "SELECT o.id, o.total, c.name, count(*) OVER (PARTITION BY c.id) FROM orders o \
         JOIN customers c ON c.id = o.customer_id LEFT JOIN LATERAL (SELECT max(created_at) \
         FROM payments p WHERE p.order_id = o.id) last ON true WHERE o.status = 'open' \
         AND o.created_at > now() - interval '7 days' ORDER BY o.created_at DESC LIMIT 50",
    ),
];

/// Statements a migration sends.
const DDL: &[(&str, &str)] = &[
    (
        "create_table",
        "CREATE TABLE public.invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         customer_id bigint NOT NULL REFERENCES customers (id), total numeric(12,2) NOT NULL, \
         created_at timestamptz NOT NULL DEFAULT now())",
    ),
    (
        "add_column",
        "ALTER TABLE orders ADD COLUMN shipped_at timestamptz",
    ),
    (
        "create_index",
        "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
    ),
    (
        "add_fk",
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
         REFERENCES customers (id)",
    ),
];

fn engine_benches(c: &mut Criterion) {
    let engine = Engine::with_default_rules();
    for (set, statements) in [("oltp", OLTP), ("ddl", DDL)] {
        let mut group = c.benchmark_group(format!("analysis/{set}"));
        group.throughput(Throughput::Elements(1));
        for (name, sql) in statements {
            group.bench_function(format!("prefilter/{name}"), |b| {
                b.iter(|| prefilter(black_box(sql)));
            });
            group.bench_function(format!("parse/{name}"), |b| {
                b.iter(|| parse_script(black_box(sql), Options::default()));
            });
            group.bench_function(format!("evaluate/{name}"), |b| {
                b.iter(|| {
                    let mut ctx = Context::for_server(15);
                    engine.analyze(black_box(sql), &mut ctx)
                });
            });
        }
        group.finish();
    }
}

/// A migration file of `statements` statements shaped like real ones: new tables, added
/// columns, indexes, constraints, data fixes and comments.
fn generated_migration(statements: usize) -> String {
    let mut sql = String::from("SET lock_timeout = '2s';\nSET statement_timeout = '5min';\n");
    let mut n = 2;
    let mut table = 0;
    while n < statements {
        table += 1;
        let t = format!("public.t{table}");
        let parts = [
            format!(
                "-- table {table}\nCREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 account_id bigint NOT NULL, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
            ),
            format!("ALTER TABLE {t} ADD COLUMN note text;"),
            format!("CREATE INDEX CONCURRENTLY t{table}_account_idx ON {t} (account_id);"),
            format!("ALTER TABLE {t} ADD COLUMN status text DEFAULT 'new';"),
            format!(
                "ALTER TABLE {t} ADD CONSTRAINT t{table}_status_check CHECK (status IN ('new', 'done')) NOT VALID;"
            ),
            format!("ALTER TABLE {t} VALIDATE CONSTRAINT t{table}_status_check;"),
            format!("UPDATE {t} SET status = 'done' WHERE id < 1000 AND status IS NULL;"),
            format!("CREATE INDEX t{table}_created_idx ON {t} (created_at);"),
            format!("INSERT INTO {t} (account_id, name) VALUES (1, 'seed');"),
            format!("COMMENT ON TABLE {t} IS 'generated table {table}';"),
        ];
        for part in parts {
            if n == statements {
                break;
            }
            sql.push_str(&part);
            sql.push('\n');
            n += 1;
        }
    }
    sql
}

fn find_squawk() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SQUAWK") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("squawk"))
            .find(|p| p.is_file())
    })
}

/// Runs a linter to completion; violations make both exit non-zero, which is expected.
fn run(program: &Path, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("linter runs");
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "{} {args:?} failed: {status}",
        program.display()
    );
}

fn check_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_generated.sql");
    std::fs::write(&file, generated_migration(10_000)).unwrap();
    let file = file.to_str().unwrap();
    let ddlgate = Path::new(env!("CARGO_BIN_EXE_ddlgate"));

    let mut group = c.benchmark_group("check_10k_statements");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("ddlgate", |b| {
        b.iter(|| run(ddlgate, &["check", "--pg-version", "15", file]));
    });
    group.bench_function("ddlgate_all_rules", |b| {
        b.iter(|| {
            run(
                ddlgate,
                &["check", "--pg-version", "15", "--enable-all", file],
            );
        });
    });
    match find_squawk() {
        Some(squawk) => {
            group.bench_function("squawk", |b| {
                b.iter(|| run(&squawk, &["--pg-version", "15", file]));
            });
        }
        None => eprintln!(
            "squawk not found (set SQUAWK or put it on PATH; pip install squawk-cli): skipping the comparison"
        ),
    }
    group.finish();
}

criterion_group!(benches, engine_benches, check_benches);
criterion_main!(benches);
