//! The command line: configuration errors are one sentence and exit code 2; `--check-config`
//! validates without serving; flags, environment and config file combine.

use std::process::Output;

fn ddlgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DDLGATE_") || k.starts_with("PG"))
    {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No upstream: exit 2 with one line saying how to give one.
#[test]
fn missing_upstream_is_one_sentence_and_exit_2() {
    let o = ddlgate(&["serve"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "ddlgate: error: missing upstream: pass --upstream HOST:PORT (or a postgres:// URL), set DDLGATE_UPSTREAM or PGHOST, or set upstream in the config file\n"
    );
}

/// The upstream may be a libpq URL, or come from PGHOST/PGPORT like libpq's defaults.
#[test]
fn upstream_from_a_url_or_pghost() {
    let o = ddlgate(
        &[
            "serve",
            "--upstream",
            "postgres://migrator:secret@db.internal:7000/app?sslmode=disable",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("upstream = \"db.internal:7000\""), "{out}");
    assert!(out.contains("# configuration is valid"), "{out}");
    assert!(!out.contains("secret"), "{out}");

    let o = ddlgate(
        &["serve", "--check-config"],
        &[("PGHOST", "pg.internal"), ("PGPORT", "6543")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("upstream = \"pg.internal:6543\""), "{out}");

    let o = ddlgate(
        &[
            "serve",
            "--upstream",
            "postgres://a:1,b:2/app",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("one upstream"), "{}", stderr(&o));
}

/// An unknown key in the config file is refused with the file, line and key.
#[test]
fn unknown_config_key_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ddlgate.toml");
    std::fs::write(&path, "upstream = \"db:5432\"\nmax_conections = 10\n").unwrap();
    let o = ddlgate(
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--check-config",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("ddlgate.toml"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("max_conections"), "{err}");
}

/// Environment variables configure the proxy, and a flag beats both environment and file.
#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ddlgate.toml");
    std::fs::write(
        &path,
        "upstream = \"file-host:1\"\nmax_connections = 11\nconnect_timeout = \"9s\"\n",
    )
    .unwrap();
    let o = ddlgate(
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--check-config",
            "--max-connections",
            "33",
        ],
        &[
            ("DDLGATE_UPSTREAM", "env-host:2"),
            ("DDLGATE_MAX_CONNECTIONS", "22"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("upstream = \"env-host:2\""), "{out}");
    assert!(out.contains("max_connections = 33"), "{out}");
    assert!(out.contains("connect_timeout = \"9s\""), "{out}");
}

/// A bad duration and a certificate file that does not exist are each one clear sentence.
#[test]
fn bad_values_are_named() {
    let o = ddlgate(
        &[
            "serve",
            "--upstream",
            "h",
            "--connect-timeout",
            "5",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("ddlgate: error: invalid connect_timeout \"5\": invalid duration")
    );
    let o = ddlgate(
        &[
            "serve",
            "--upstream",
            "h",
            "--tls-cert",
            "/nonexistent.crt",
            "--tls-key",
            "/nonexistent.key",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot load certificates from /nonexistent.crt"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
}

/// A port already in use is reported, not panicked about.
#[test]
fn listen_address_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = ddlgate(&["serve", "--upstream", "h", "--listen", &addr], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("ddlgate: error: cannot listen on {addr}")),
        "{}",
        stderr(&o)
    );
}

/// Arguments, environment and the expected exit code of one run.
type Run<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32);

/// No command prints a password: `serve --check-config` (upstream URL, audit table DSN as a
/// URL and as key=value, from flags and from the environment) and its errors. An `sslmode` in
/// the upstream URL is honoured, or refused with the reason — never dropped.
#[test]
fn no_password_is_printed_and_the_url_sslmode_is_honoured() {
    let runs: [Run<'_>; 6] = [
        (
            &[
                "serve",
                "--check-config",
                "--upstream",
                "postgres://migrator:hunter2@db.internal:5432/app?sslmode=require",
                "--audit-table-dsn",
                "postgres://auditor:hunter2@audit.internal/trail",
            ],
            &[],
            0,
        ),
        (
            &["serve", "--check-config", "--upstream", "db.internal"],
            &[(
                "DDLGATE_AUDIT_TABLE_DSN",
                "host=audit.internal user=auditor password='hunter2' dbname=trail",
            )],
            0,
        ),
        (
            &[
                "serve",
                "--check-config",
                "--upstream",
                "postgres://migrator:hunter2@:5432/app",
            ],
            &[],
            2,
        ),
        (
            &[
                "serve",
                "--check-config",
                "--upstream",
                "postgres://migrator:hunter2@db/app?sslmode=prefer",
            ],
            &[],
            2,
        ),
        (
            &[
                "serve",
                "--check-config",
                "--upstream",
                "postgres://migrator:hunter2@db/app?sslmode=verify-full",
                "--upstream-tls",
                "require",
            ],
            &[],
            2,
        ),
        (
            &[
                "check",
                "--database",
                "postgres://migrator:hunter2@127.0.0.1:1/app?sslmode=disable",
                "-",
            ],
            &[],
            2,
        ),
    ];
    for (args, env, code) in runs {
        let o = ddlgate(args, env);
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert_eq!(o.status.code(), Some(code), "{args:?}: {out}");
        assert!(!out.contains("hunter2"), "{args:?}: {out}");
    }
    let o = ddlgate(runs[0].0, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("upstream_tls = \"require\""),
        "sslmode honoured: {out}"
    );
    let o = ddlgate(runs[3].0, &[]);
    assert!(
        stderr(&o).contains("sslmode=prefer may fall back to plaintext"),
        "{}",
        stderr(&o)
    );
    let o = ddlgate(runs[4].0, &[]);
    assert!(
        stderr(&o).contains("the upstream URL says sslmode=verify-full"),
        "{}",
        stderr(&o)
    );
}

/// `--check-config` checks that the audit log can be written: a directory that does not exist
/// is one sentence and exit code 2, and nothing is created where it can be.
#[test]
fn check_config_checks_that_the_audit_log_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/audit.jsonl");
    let o = ddlgate(
        &[
            "serve",
            "--check-config",
            "--upstream",
            "db",
            "--audit-log",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be created"), "{}", stderr(&o));
    let fine = dir.path().join("audit.jsonl");
    let o = ddlgate(
        &[
            "serve",
            "--check-config",
            "--upstream",
            "db",
            "--audit-log",
            fine.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!fine.exists(), "nothing is created by a check");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `sched_batch` is on unless the file, the environment or the flag turns it off.
#[test]
fn sched_batch_is_on_by_default_and_each_source_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ddlgate.toml");
    std::fs::write(&path, "upstream = \"db:5432\"\nsched_batch = false\n").unwrap();
    let file = path.to_str().unwrap();
    for (args, env, want) in [
        (
            &["serve", "--upstream", "db:5432", "--check-config"][..],
            &[][..],
            "true",
        ),
        (
            &["serve", "--config", file, "--check-config"][..],
            &[][..],
            "false",
        ),
        (
            &["serve", "--upstream", "db:5432", "--check-config"][..],
            &[("DDLGATE_SCHED_BATCH", "false")][..],
            "false",
        ),
        (
            &[
                "serve",
                "--upstream",
                "db:5432",
                "--sched-batch",
                "false",
                "--check-config",
            ][..],
            &[][..],
            "false",
        ),
    ] {
        let o = ddlgate(args, env);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("sched_batch = {want}\n")),
            "{args:?} {env:?}: {out}"
        );
    }
}
