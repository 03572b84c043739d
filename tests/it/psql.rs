//! psql, the client every operator reaches for, through ddlgate: commands, files, single
//! transactions, `\copy`, and TLS with certificate verification.

use std::path::PathBuf;
use std::process::Output;

use crate::support::pg::{DATABASE, PgServer, Role, SCRAM};
use crate::support::proxy::TestProxy;

fn psql_binary(pg: &PgServer) -> PathBuf {
    let local = pg.bin.join("psql");
    if local.is_file() {
        local
    } else {
        PathBuf::from("psql")
    }
}

/// Runs psql with a connection string (password in PGPASSWORD) and extra arguments.
async fn psql(pg: &PgServer, conninfo: &str, role: Role, args: &[&str]) -> Output {
    tokio::process::Command::new(psql_binary(pg))
        .arg("-X")
        .arg("--no-psqlrc")
        .args(["-v", "ON_ERROR_STOP=1", "-A", "-t"])
        .arg("-d")
        .arg(conninfo)
        .args(args)
        .env("PGPASSWORD", role.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSSLMODE")
        .output()
        .await
        .expect("psql runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn conninfo(port: u16, role: Role, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user={} dbname={DATABASE} {extra}",
        role.name
    )
}

/// `-c` commands and a multi-statement `-f` file (with a DO block) give the same output as a
/// direct connection; `-1` wraps the file in one transaction.
#[tokio::test]
async fn psql_commands_and_files_match_direct() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sql");
    std::fs::write(
        &file,
        "CREATE TEMP TABLE s (id int PRIMARY KEY, note text);\n\
         INSERT INTO s SELECT g, 'n' || g FROM generate_series(1, 5) g;\n\
         DO $$ BEGIN RAISE NOTICE 'inside %', (SELECT count(*) FROM s); END $$;\n\
         SELECT txid_current() = txid_current(), count(*), string_agg(note, ',' ORDER BY id) FROM s;\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let mut outputs = Vec::new();
    for port in [pg.port, proxy.addr.port()] {
        let info = conninfo(port, SCRAM, "sslmode=disable");
        let o = psql(
            pg,
            &info,
            SCRAM,
            &["-c", "SELECT 40 + 2", "-c", "SHOW search_path"],
        )
        .await;
        let mut text = stdout(&o);
        let o = psql(pg, &info, SCRAM, &["-1", "-f", file]).await;
        text.push_str(&stdout(&o));
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        outputs.push(text);
    }
    assert!(outputs[0].contains("42\n"), "{}", outputs[0]);
    assert!(outputs[0].contains("t|5|n1,n2,n3,n4,n5"), "{}", outputs[0]);
    assert!(outputs[0].contains("NOTICE:  inside 5"), "{}", outputs[0]);
    assert_eq!(outputs[1], outputs[0]);
}

/// `\copy` in both directions round-trips a file through ddlgate.
#[tokio::test]
async fn psql_copy_round_trip() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let rows: String = (1..=2000).map(|i| format!("{i},\"name, {i}\"\n")).collect();
    std::fs::write(&input, &rows).unwrap();
    let info = conninfo(proxy.addr.port(), SCRAM, "sslmode=disable");
    let script = format!(
        "CREATE TEMP TABLE c (id int, name text);\n\
         \\copy c FROM '{}' WITH (FORMAT csv)\n\
         \\copy (SELECT * FROM c ORDER BY id) TO '{}' WITH (FORMAT csv)\n",
        input.display(),
        output.display()
    );
    let script_file = dir.path().join("copy.sql");
    std::fs::write(&script_file, &script).unwrap();
    let o = psql(pg, &info, SCRAM, &["-f", script_file.to_str().unwrap()]).await;
    stdout(&o);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), rows);
}

/// psql with `sslmode=require` and with `sslmode=verify-full` (host name checked against the
/// certificate, root from the test CA) connects through ddlgate.
#[tokio::test]
async fn psql_tls_require_and_verify_full() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start_with(pg, |o| {
        o.tls_cert = Some(pg.certs.proxy_cert.clone());
        o.tls_key = Some(pg.certs.proxy_key.clone());
        o.require_tls = Some(true);
    })
    .await;
    let port = proxy.addr.port();
    let o = psql(
        pg,
        &conninfo(port, SCRAM, "sslmode=require"),
        SCRAM,
        &["-c", "SELECT 'over tls'"],
    )
    .await;
    assert_eq!(stdout(&o).trim(), "over tls");
    let verify = format!("sslmode=verify-full sslrootcert={}", pg.certs.ca.display());
    let info = conninfo(port, SCRAM, &verify).replace("host=127.0.0.1", "host=localhost");
    let o = psql(pg, &info, SCRAM, &["-c", "SELECT 'verified'"]).await;
    assert_eq!(stdout(&o).trim(), "verified");
    // The same verification against a CA that did not sign ddlgate's certificate fails.
    let wrong = format!(
        "sslmode=verify-full sslrootcert={}",
        pg.certs.wrong_name_cert.display()
    );
    let info = conninfo(port, SCRAM, &wrong).replace("host=127.0.0.1", "host=localhost");
    let o = psql(pg, &info, SCRAM, &["-c", "SELECT 1"]).await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("certificate verify failed"));
}

/// A wrong password through ddlgate fails like it does directly.
#[tokio::test]
async fn psql_wrong_password() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let wrong = Role {
        password: "nope",
        ..SCRAM
    };
    let o = psql(
        pg,
        &conninfo(proxy.addr.port(), wrong, "sslmode=disable"),
        wrong,
        &["-c", "SELECT 1"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("password authentication failed for user \"ddlgate_scram\""),
        "{err}"
    );
}
