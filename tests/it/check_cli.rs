//! `ddlgate check`, `explain` and `rules` as a user runs them: output formats, exit codes,
//! bad input. The text output is compared with a golden file
//! (`DDLGATE_UPDATE_GOLDEN=1 cargo test` rewrites it; review the diff like code).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn ddlgate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddlgate"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name);
    if std::env::var_os("DDLGATE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "output differs from {}; rerun with DDLGATE_UPDATE_GOLDEN=1 and review the diff.\n--- actual ---\n{actual}",
        path.display()
    );
}

/// A directory of migrations: text report matches the golden file, exit code 1 because the
/// default policy rejects something.
#[test]
fn check_directory_text_report_and_exit_1() {
    let o = ddlgate(&["check", "tests/fixtures/migrations"], None);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    golden("check_migrations.txt", &stdout(&o));
}

/// The JSON report carries the same findings, with positions, actions and rewrites.
#[test]
fn check_json_report() {
    let o = ddlgate(
        &[
            "check",
            "--send",
            "statement",
            "--format",
            "json",
            "tests/fixtures/migrations",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["summary"]["files"], 3);
    assert_eq!(doc["summary"]["errors"], 2);
    let diags = doc["diagnostics"].as_array().unwrap();
    let index = diags
        .iter()
        .find(|d| d["rule"] == "create-index-nonconcurrent")
        .unwrap();
    assert_eq!(index["file"], "tests/fixtures/migrations/0002_unsafe.sql");
    assert_eq!(
        (index["line"].as_u64(), index["column"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(index["level"], "warning");
    assert_eq!(index["action"], "rewrite");
    assert_eq!(index["fix"]["applicability"], "safe");
    assert_eq!(
        index["fix"]["sql"],
        "CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)"
    );
    let overridden = diags.iter().find(|d| d["level"] == "note").unwrap();
    assert_eq!(overridden["overridden"], "expand done in #812");
}

/// GitHub workflow commands annotate the right lines.
#[test]
fn check_github_annotations() {
    let o = ddlgate(
        &[
            "check",
            "--send",
            "statement",
            "--format",
            "github",
            "tests/fixtures/migrations/0002_unsafe.sql",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("::error file=tests/fixtures/migrations/0002_unsafe.sql,line=10,col=1,endLine=10,endColumn=50,title=ddlgate rename-column::RENAME COLUMN email"),
        "{out}"
    );
    assert!(
        out.contains("::warning file=tests/fixtures/migrations/0002_unsafe.sql,line=4,"),
        "{out}"
    );
}

/// A clean file exits 0; standard input is read with `-`.
#[test]
fn clean_input_from_stdin_exits_0() {
    let o = ddlgate(&["check", "--send", "statement", "-"], Some(b"SET lock_timeout = '1s'; SET statement_timeout = '5s';\nCREATE INDEX CONCURRENTLY i ON t (a);\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o), "0 errors, 0 warnings in 1 file checked\n");
}

/// SQL a `DO` block `EXECUTE`s is checked when it is known before it runs (a constant, a
/// concatenation, `format()` of constants): the inner `CREATE INDEX` is reported.
#[test]
fn constant_execute_in_a_do_block_is_checked() {
    let o = ddlgate(
        &["check", "-"],
        Some(
            b"SET lock_timeout = '1s'; SET statement_timeout = '5s';
DO $$ BEGIN EXECUTE 'CREATE INDEX events_ts ON events (ts)'; END $$;
",
        ),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("create-index-nonconcurrent"),
        "{}",
        stdout(&o)
    );
}

/// A statement PostgreSQL cannot parse is reported with line and column; exit 1.
#[test]
fn syntax_errors_have_line_and_column() {
    let o = ddlgate(&["check", "tests/fixtures/broken.sql"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(
            "tests/fixtures/broken.sql:2:46: error: syntax error at or near \"garbage\""
        ),
        "{}",
        stdout(&o)
    );
}

/// A non-UTF-8 file and a missing path are reported, the other files still checked, exit 2.
#[test]
fn unreadable_inputs_exit_2_and_the_rest_is_checked() {
    let o = ddlgate(
        &[
            "check",
            "tests/fixtures/latin1.sql",
            "tests/fixtures/no-such-dir",
            "tests/fixtures/migrations/0002_unsafe.sql",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(out.contains("tests/fixtures/latin1.sql: error: is not valid UTF-8 (first invalid byte at offset 7); convert it to UTF-8"), "{out}");
    assert!(
        out.contains("tests/fixtures/no-such-dir: error: cannot read: No such file or directory"),
        "{out}"
    );
    assert!(
        out.contains("error[rename-column]"),
        "the readable file is still checked: {out}"
    );
}

/// Huge and deeply nested statements get a result or a precise error, never a crash, and the
/// other files are still checked.
#[test]
fn huge_and_deeply_nested_statements_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: String| std::fs::write(dir.path().join(name), sql).unwrap();
    // A 10 MB statement on one line, which a rule flags.
    write(
        "1_huge.sql",
        format!(
            "CREATE INDEX big ON t (a) WHERE b <> '{}';\n",
            "x".repeat(10_000_000)
        ),
    );
    // Ordinary generated SQL nests deeper than protobuf decoders allow by default (100).
    write(
        "2_concat.sql",
        format!(
            "CREATE VIEW v AS SELECT {} AS s;\nDROP TABLE t;\n",
            vec!["'x'"; 300].join(" || ")
        ),
    );
    // At libpg_query's own nesting limit: analysed (release) or refused with a message, but
    // never a stack overflow.
    write(
        "3_limit.sql",
        format!(
            "CREATE VIEW w AS SELECT {} AS s;\n",
            vec!["'x'"; 4990].join(" || ")
        ),
    );
    // Beyond what PostgreSQL's grammar accepts.
    write(
        "4_parens.sql",
        format!("SELECT {}1{};\n", "(".repeat(100_000), ")".repeat(100_000)),
    );
    write(
        "5_after.sql",
        "ALTER TABLE t RENAME COLUMN a TO b;\n".into(),
    );
    let o = ddlgate(
        &["check", "--send", "statement", dir.path().to_str().unwrap()],
        None,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("5 files checked"), "{out}");
    assert!(
        out.lines().count() < 200 && out.len() < 20_000,
        "a 10 MB line is not echoed whole: {} bytes",
        out.len()
    );
    assert!(
        out.contains("1_huge.sql:1:1: warning[create-index-nonconcurrent]"),
        "{out}"
    );
    assert!(out.contains("2_concat.sql:2:1: error[drop-table]"), "{out}");
    assert!(!out.contains("2_concat.sql:1:"), "{out}");
    assert!(
        out.contains("4_parens.sql:1:") && out.contains("error: memory exhausted"),
        "{out}"
    );
    assert!(
        out.contains("5_after.sql:1:1: error[rename-column]"),
        "{out}"
    );
}

/// A directory tree of thousands of files is checked in path order, every file counted.
#[test]
fn thousands_of_files() {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let sub = dir.path().join(format!("d{d:02}"));
        std::fs::create_dir(&sub).unwrap();
        for f in 0..150 {
            let sql = if d == 13 && f == 77 {
                "DROP TABLE public.orders;\n".to_owned()
            } else {
                format!("CREATE TABLE public.t_{d}_{f} (id bigint PRIMARY KEY);\n")
            };
            std::fs::write(sub.join(format!("{f:04}.sql")), sql).unwrap();
        }
        std::fs::write(sub.join("notes.txt"), "not SQL").unwrap();
    }
    let o = ddlgate(
        &["check", "--format", "json", dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["summary"]["files"], 3000);
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert!(!diagnostics.is_empty());
    for d in diagnostics {
        assert!(d["file"].as_str().unwrap().ends_with("d13/0077.sql"), "{d}");
    }
    assert!(diagnostics.iter().any(|d| d["rule"] == "drop-table"));
}

/// A policy decides: all rules allowed means exit 0; a broken policy is one sentence, exit 2.
#[test]
fn policy_files_decide_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lenient = dir.path().join("lenient.toml");
    let mut rules = String::from("[rules]\n");
    for rule in ddlgate::internals::analysis::RuleId::ALL {
        rules.push_str(&format!("{rule} = \"allow\"\n"));
    }
    std::fs::write(&lenient, rules).unwrap();
    let o = ddlgate(
        &[
            "check",
            "--policy",
            lenient.to_str().unwrap(),
            "tests/fixtures/migrations",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[rules]\ncreate-index-nonconcurent = \"reject\"\n").unwrap();
    let o = ddlgate(
        &[
            "check",
            "--policy",
            broken.to_str().unwrap(),
            "tests/fixtures/migrations",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("ddlgate: error: invalid policy file"),
        "{err}"
    );
    assert!(
        err.contains("line 2") && err.contains("create-index-nonconcurent"),
        "{err}"
    );
}

/// `--pg-version` changes version-dependent verdicts.
#[test]
fn pg_version_matters() {
    let sql = b"SET lock_timeout = '1s'; SET statement_timeout = '1s';\nALTER TABLE t ADD COLUMN c int DEFAULT 0;\n";
    assert_eq!(ddlgate(&["check", "-"], Some(sql)).status.code(), Some(0));
    let o = ddlgate(&["check", "--pg-version", "10", "-"], Some(sql));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("add-column-volatile-default"));
}

/// `explain` shows kind, locks and the rewrite.
#[test]
fn explain_shows_locks_rules_and_rewrite() {
    let o = ddlgate(&["explain", "CREATE INDEX i ON orders (customer_id)"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for expected in [
        "kind:        CREATE INDEX (DDL)",
        "lock:        SHARE on orders (blocks writes)",
        "rule:        create-index-nonconcurrent [rewrite]",
        "rewrite:     Add `CONCURRENTLY` (Safe): CREATE INDEX CONCURRENTLY i ON orders (customer_id)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let o = ddlgate(
        &[
            "explain",
            "--in-transaction",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
        ],
        None,
    );
    assert!(
        stdout(&o).contains("cic-in-transaction [reject]"),
        "{}",
        stdout(&o)
    );
}

/// `rules` lists the whole catalog; JSON carries the docs.
#[test]
fn rules_catalog() {
    let o = ddlgate(&["rules"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).lines().count(),
        ddlgate::internals::analysis::RuleId::ALL.len()
    );
    let o = ddlgate(&["rules", "--format", "json"], None);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &doc[0];
    assert_eq!(first["id"], "create-index-nonconcurrent");
    assert!(
        first["docs"]
            .as_str()
            .unwrap()
            .contains("## Why is this bad?")
    );
}

/// Usage errors are clap's, exit 2.
#[test]
fn usage_errors_exit_2() {
    assert_eq!(ddlgate(&["check"], None).status.code(), Some(2));
    assert_eq!(
        ddlgate(&["check", "--format", "xml", "x.sql"], None)
            .status
            .code(),
        Some(2)
    );
}

/// SARIF output validates against the official SARIF 2.1.0 schema (from the npm package
/// `@microsoft/jest-sarif`; `scripts/test.sh` fetches it and sets `DDLGATE_SARIF_SCHEMA`).
#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let cached = std::path::PathBuf::from("/var/tmp/ddlgate-sarif/sarif-2.1.0-rtm.5.json");
    let schema_path = std::env::var_os("DDLGATE_SARIF_SCHEMA")
        .map(std::path::PathBuf::from)
        .or_else(|| cached.exists().then_some(cached))
        .unwrap_or_else(|| {
            panic!(
                "the SARIF 2.1.0 schema is missing: run the tests with `bash scripts/test.sh`, \
                 which downloads it, or set DDLGATE_SARIF_SCHEMA to sarif-2.1.0-rtm.5.json"
            )
        });
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
    // The published schema's pattern for `language` properties has a stray `]` that the
    // validator's meta-schema check refuses as a regex. ddlgate never emits `language`, so that
    // pattern is dropped wherever it appears; everything else is validated as published.
    let mut dropped = Vec::new();
    for def in ["run", "toolComponent"] {
        let language = schema
            .pointer_mut(&format!("/definitions/{def}/properties/language"))
            .and_then(|l| l.as_object_mut())
            .unwrap();
        dropped.push(language.remove("pattern"));
    }
    assert!(
        dropped.iter().all(Option::is_some),
        "the schema changed; revisit this adjustment"
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        !validator.is_valid(&serde_json::json!({ "version": "2.1.0", "runs": [{ "results": [{ "level": "fatal" }] }] })),
        "the validator must reject invalid SARIF"
    );
    let o = ddlgate(
        &[
            "check",
            "--send",
            "statement",
            "--format",
            "sarif",
            "tests/fixtures/migrations",
            "tests/fixtures/broken.sql",
            "tests/fixtures/latin1.sql",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "invalid SARIF:\n{}", errors.join("\n"));
    let run = &log["runs"][0];
    assert_eq!(
        run["tool"]["driver"]["rules"].as_array().unwrap().len(),
        ddlgate::internals::analysis::RuleId::ALL.len()
    );
    let results = run["results"].as_array().unwrap();
    let rename = results
        .iter()
        .find(|r| r["ruleId"] == "rename-column" && r["suppressions"].is_array())
        .unwrap();
    assert_eq!(
        rename["suppressions"][0]["justification"],
        "expand done in #812"
    );
    assert!(results.iter().any(
        |r| r["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"]
            == "CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)"
    ));
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
}

/// `--tool` reads what the tool runs and how: dbmate's up section and `transaction:false`,
/// golang-migrate's up files as query strings (down files are not run), sqlx's
/// `-- no-transaction`; `--profile` judges with a profile of the policy.
#[test]
fn tools_and_profiles_decide_what_is_checked_and_how() {
    let dir = tempfile::tempdir().unwrap();
    let write = |sub: &str, name: &str, text: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), text).unwrap();
        d.to_str().unwrap().to_owned()
    };
    let dbmate = write(
        "dbmate",
        "1_index.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY i;\nDROP TABLE t;\n",
    );
    let golang = write("golang", "1_index.up.sql", "CREATE INDEX i ON t (a);\n");
    write("golang", "1_index.down.sql", "DROP TABLE t;\n");
    let sqlx = write(
        "sqlx",
        "1_index.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    );
    let code = |args: &[&str]| ddlgate(args, None).status.code();
    assert_eq!(code(&["check", "--tool", "dbmate", &dbmate]), Some(0));
    assert_eq!(
        code(&["check", &dbmate]),
        Some(1),
        "CONCURRENTLY in a transaction"
    );
    let o = ddlgate(&["check", "--tool", "golang-migrate", &golang], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("in 1 file checked"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("warning[create-index-nonconcurrent]"),
        "rewritten alone"
    );
    assert_eq!(code(&["check", "--tool", "sqlx", &sqlx]), Some(0));
    assert_eq!(code(&["check", &sqlx]), Some(1));

    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[profiles]]\nname = \"observers\"\nusers = [\"observer\"]\n[profiles.rules]\nrename-column = \"warn\"\n",
    )
    .unwrap();
    let rename = write("rename", "1.sql", "ALTER TABLE t RENAME COLUMN a TO b;\n");
    let policy = policy.to_str().unwrap();
    assert_eq!(code(&["check", "--policy", policy, &rename]), Some(1));
    assert_eq!(
        code(&[
            "check",
            "--policy",
            policy,
            "--profile",
            "observers",
            &rename
        ]),
        Some(0)
    );
    let o = ddlgate(
        &["check", "--policy", policy, "--profile", "nobody", &rename],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no profile named \"nobody\""));
}
