//! Command-line clients: psql (`-f`, `-1 -f`, `-c` with several statements, `\copy` both ways)
//! and pgbench (`-i`, and runs in each `-M` mode).

use std::path::PathBuf;
use std::process::Output;

use crate::harness::{Bench, Connection, DEFAULT_POLICY_SCHEMA, Target};

const SAFE_SQL: &str = "\
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);
BEGIN;
CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, total int);
INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 500) g;
INSERT INTO orders SELECT g, g % 500 + 1, g FROM generate_series(1, 2000) g;
COMMIT;
ALTER TABLE orders ADD COLUMN note text;
CREATE INDEX CONCURRENTLY orders_account_idx ON orders (account_id);
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk;
SHOW lock_timeout;
";

const UNSAFE_SQL: &str = "\
CREATE INDEX orders_total_idx ON orders (total);
ALTER TABLE orders ADD CONSTRAINT orders_account_fk2 FOREIGN KEY (account_id) REFERENCES accounts (id);
ALTER TABLE orders ALTER COLUMN total TYPE bigint;
ALTER TABLE orders RENAME COLUMN note TO comment;
";

pub(crate) fn program(bench: &Bench, name: &str) -> PathBuf {
    let local = bench.pg.bin.join(name);
    if local.is_file() { local } else { name.into() }
}

pub(crate) async fn run(bench: &Bench, name: &str, conn: &Connection, args: &[&str]) -> Output {
    tokio::process::Command::new(program(bench, name))
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", format!("compat-{name}"))
        .arg(conn.keywords())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// psql's output with ddlgate's notices (observe mode warns) taken out.
fn without_ddlgate_notices(stderr: &[u8]) -> String {
    let mut kept = String::new();
    let mut in_notice = false;
    for line in String::from_utf8_lossy(stderr).lines() {
        if line.contains("WARNING:  ddlgate: ") || line.contains("NOTICE:  ddlgate: ") {
            in_notice = true;
            continue;
        }
        if in_notice
            && (line.starts_with("DETAIL:") || line.starts_with("HINT:") || line.starts_with(' '))
        {
            continue;
        }
        in_notice = false;
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// What a psql run printed, comparable between targets.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn printed(output: &Output) -> Printed {
    Printed {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: without_ddlgate_notices(&output.stderr),
    }
}

/// psql as operators and deploy scripts run it: a migration file, a multi-statement `-c`,
/// `\copy` in and out, and a file in one transaction (`-1`). Through ddlgate in observe mode
/// everything prints what a direct connection prints; with the default policy the unsafe file
/// stops at ddlgate's error, with nothing of it applied under `-1`.
#[tokio::test]
async fn psql() {
    let bench = Bench::start().await;
    let dir = tempfile::tempdir().unwrap();
    let safe = dir.path().join("safe.sql");
    let unsafe_file = dir.path().join("unsafe.sql");
    let csv = dir.path().join("items.csv");
    std::fs::write(&safe, SAFE_SQL).unwrap();
    std::fs::write(&unsafe_file, UNSAFE_SQL).unwrap();
    std::fs::write(&csv, "501,from csv\n502,\"quoted, comma\"\n").unwrap();
    let safe = safe.to_str().unwrap();
    let unsafe_file = unsafe_file.to_str().unwrap();
    let copy_in = format!(
        "\\copy items (id, v) FROM '{}' WITH (FORMAT csv)",
        csv.display()
    );
    let copy_out =
        "\\copy (SELECT * FROM items WHERE id > 90 ORDER BY id) TO STDOUT WITH (FORMAT csv)";
    let multi = "SELECT count(*) FROM orders; UPDATE items SET v = 'c' WHERE id = 1; SELECT v FROM items WHERE id = 1";
    let stop = ["-X", "-v", "ON_ERROR_STOP=1"];

    let mut transcripts = Vec::new();
    for target in [Target::Direct, Target::Observe, Target::Default] {
        let conn = bench.fresh_database("psql", target).await;
        let mut transcript = Vec::new();
        for args in [
            [&stop[..], &["-f", safe]].concat(),
            vec!["-X", "-c", multi],
            vec!["-X", "-c", &copy_in],
            vec!["-X", "-c", copy_out],
            [&stop[..], &["-1", "-f", unsafe_file]].concat(),
        ] {
            transcript.push(printed(&run(&bench, "psql", &conn, &args).await));
        }
        transcripts.push(transcript);
    }
    let [direct, observe, default] = [&transcripts[0], &transcripts[1], &transcripts[2]];
    assert_eq!(observe, direct, "psql through ddlgate in observe mode");
    assert_eq!(direct[4].code, Some(0), "the unsafe file applies directly");
    // Default policy: the first four runs are unchanged; `-1` makes no rewrite valid.
    assert_eq!(&default[..4], &direct[..4], "psql with the default policy");
    assert_eq!(default[4].code, Some(3), "{:?}", default[4]);
    assert!(
        default[4]
            .stderr
            .contains("ERROR:  ddlgate: create-index-nonconcurrent:"),
        "{}",
        default[4].stderr
    );
    assert!(default[4].stderr.contains("HINT:  "));
    let schema = bench.schema("psql_default").await;
    assert!(!schema.iter().any(|l| l.contains("orders_total_idx")));
    // Without `-1`: the index is built concurrently, the foreign key added NOT VALID and
    // validated, and the type change stops the file.
    let conn = bench.connection("psql_default", Target::Default);
    let out = run(
        &bench,
        "psql",
        &conn,
        &[&stop[..], &["-f", unsafe_file]].concat(),
    )
    .await;
    let out = printed(&out);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "CREATE INDEX\nALTER TABLE\n");
    assert!(
        out.stderr.contains("ERROR:  ddlgate: change-column-type:"),
        "{}",
        out.stderr
    );
    let schema = bench.schema("psql_default").await;
    for line in DEFAULT_POLICY_SCHEMA {
        assert!(schema.iter().any(|l| l == line), "{line}: {schema:#?}");
    }
}

/// pgbench: `-i` initialises the same schema through ddlgate (observe mode, and the default
/// policy: its `DROP TABLE IF EXISTS` of tables that do not exist is a proven no-op) as
/// directly; run again on the filled database, the default policy refuses its `DROP TABLE`;
/// its runs in each protocol mode complete every transaction through both policies.
#[tokio::test]
async fn pgbench() {
    let bench = Bench::start().await;
    let mut inits = Vec::new();
    for target in [Target::Direct, Target::Observe, Target::Default] {
        let conn = bench.fresh_database("pgbench", target).await;
        inits.push(run(&bench, "pgbench", &conn, &["-i", "-s", "1", "-q"]).await);
    }
    for init in &inits {
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let direct_schema = bench.schema("pgbench_direct").await;
    assert_eq!(bench.schema("pgbench_observe").await, direct_schema);
    assert_eq!(bench.schema("pgbench_default").await, direct_schema);
    // Again, on tables that exist and hold data: the DROP is refused.
    let conn = bench.connection("pgbench_default", Target::Default);
    let again = run(&bench, "pgbench", &conn, &["-i", "-s", "1", "-q"]).await;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("ERROR:  ddlgate: drop-table:"), "{stderr}");
    for target in [Target::Observe, Target::Default] {
        let database = format!("pgbench_{}", target.name());
        let conn = bench.connection(&database, target);
        for mode in ["simple", "extended", "prepared"] {
            let out = run(
                &bench,
                "pgbench",
                &conn,
                &["-n", "-c", "2", "-j", "1", "-t", "50", "-M", mode],
            )
            .await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "pgbench -M {mode} through {database}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("number of transactions actually processed: 100/100"),
                "{stdout}"
            );
        }
        let history: i64 =
            crate::support::pg::connect(&bench.connection(&database, Target::Direct).keywords())
                .await
                .query_one("SELECT count(*) FROM pgbench_history", &[])
                .await
                .unwrap()
                .get(0);
        assert_eq!(history, 300, "{database}");
    }
}
