//! `ddlgate check` where CI already lints: the GitHub Action's check step
//! (`scripts/github-action.sh`, which `action.yml` runs) on a real git repository with a base
//! commit and a change, and the pre-commit hooks (`.pre-commit-hooks.yaml`) run by pre-commit
//! itself (PyPI; scripts/test.sh installs it next to psycopg, or set `DDLGATE_PRE_COMMIT`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A migration that was already there at the base commit, unsafe by today's rules: a change
/// that does not touch it must not be blamed for it.
const OLD_UNSAFE: &str = "CREATE INDEX users_email_idx ON users (email);\n";
const SAFE: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\n";
const UNSAFE: &str = "ALTER TABLE users RENAME COLUMN email TO email_address;\n";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A repository whose base commit holds an old unsafe migration, and a head commit that adds
/// a safe and an unsafe one (and edits a file that is not SQL). Returns the base commit.
fn repository(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    write(dir, "db/migrate/001_index.sql", OLD_UNSAFE);
    write(dir, "README.md", "app\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "base"]);
    let base = git(dir, &["rev-parse", "HEAD"]);
    write(dir, "db/migrate/002_orders.sql", SAFE);
    write(dir, "db/migrate/003 rename.sql", UNSAFE);
    write(dir, "README.md", "app, with orders\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "change"]);
    base
}

struct Run {
    output: Output,
    github_output: String,
    summary: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// Runs the action's check step in `dir` with these inputs, as the action does.
fn action(dir: &Path, inputs: &[(&str, &str)]) -> Run {
    let outputs = tempfile::tempdir().unwrap();
    let github_output = outputs.path().join("output");
    let summary = outputs.path().join("summary");
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(ROOT).join("scripts/github-action.sh"))
        .current_dir(dir)
        .env("DDLGATE_BIN", env!("CARGO_BIN_EXE_ddlgate"))
        .env("GITHUB_OUTPUT", &github_output)
        .env("GITHUB_STEP_SUMMARY", &summary);
    for (k, v) in inputs {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    Run {
        output,
        github_output: std::fs::read_to_string(&github_output).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

/// Only the migrations the change added are checked; the unsafe one fails the step with an
/// annotation on its file and line, the old unsafe one is left alone, and the step reports
/// how many files it checked.
#[test]
fn the_action_checks_only_the_changed_migrations_and_annotates_the_unsafe_one() {
    let repo = tempfile::tempdir().unwrap();
    let base = repository(repo.path());
    let run = action(repo.path(), &[("INPUT_BASE", &base)]);
    let out = run.stdout();
    assert_eq!(run.output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("::error file=db/migrate/003 rename.sql,line=1,")
            && out.contains("rename-column"),
        "{out}"
    );
    assert!(!out.contains("001_index.sql"), "{out}");
    assert!(
        !out.contains("::error file=db/migrate/002_orders.sql"),
        "{out}"
    );
    assert_eq!(run.github_output.trim(), "checked=2");
    assert!(run.summary.contains("1 errors"), "{}", run.summary);
}

/// `changed-only: false` checks every matching file; a pathspec narrows them.
#[test]
fn the_action_checks_every_matching_file_when_asked() {
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let run = action(repo.path(), &[("INPUT_CHANGED_ONLY", "false")]);
    let out = run.stdout();
    assert_eq!(run.output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("::error file=db/migrate/001_index.sql,line=1,")
            && out.contains("create-index-nonconcurrent"),
        "{out}"
    );
    assert_eq!(run.github_output.trim(), "checked=3");

    let run = action(
        repo.path(),
        &[
            ("INPUT_CHANGED_ONLY", "false"),
            ("INPUT_FILES", "db/migrate/002_*.sql\n"),
        ],
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stdout());
    assert_eq!(run.github_output.trim(), "checked=1");
}

/// A change without migrations passes without running ddlgate; with no base given (a push
/// that opens a branch: all zeros) the comparison is with HEAD's parent.
#[test]
fn the_action_passes_a_change_without_migrations_and_falls_back_to_the_parent() {
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    write(repo.path(), "README.md", "app, docs only\n");
    git(repo.path(), &["commit", "-q", "-am", "docs"]);
    let run = action(
        repo.path(),
        &[("INPUT_BASE", "0000000000000000000000000000000000000000")],
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stdout());
    assert!(
        run.stdout().contains("no migration files to check"),
        "{}",
        run.stdout()
    );
    assert_eq!(run.github_output.trim(), "checked=0");
}

/// actions/checkout clones one commit deep by default: the base commit is fetched from the
/// origin before the comparison.
#[test]
fn the_action_fetches_the_base_commit_of_a_shallow_checkout() {
    let origin = tempfile::tempdir().unwrap();
    let base = repository(origin.path());
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "checkout"],
    );
    let checkout = clones.path().join("checkout");
    let missing = Command::new("git")
        .args(["cat-file", "-e", &format!("{base}^{{commit}}")])
        .current_dir(&checkout)
        .status()
        .unwrap();
    assert!(!missing.success(), "the shallow clone has no base commit");
    let run = action(&checkout, &[("INPUT_BASE", &base)]);
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stdout());
    assert_eq!(run.github_output.trim(), "checked=2");
}

/// Bad input gets a clear error and exit 2: not a git work tree, a bad `changed-only`.
#[test]
fn the_action_refuses_bad_input_with_exit_2() {
    let plain = tempfile::tempdir().unwrap();
    let run = action(plain.path(), &[]);
    assert_eq!(run.output.status.code(), Some(2));
    assert!(
        run.stdout().contains("not inside a git work tree"),
        "{}",
        run.stdout()
    );
    let repo = tempfile::tempdir().unwrap();
    repository(repo.path());
    let run = action(repo.path(), &[("INPUT_CHANGED_ONLY", "yes")]);
    assert_eq!(run.output.status.code(), Some(2));
    assert!(
        run.stdout().contains("changed-only must be true or false"),
        "{}",
        run.stdout()
    );
}

fn pre_commit() -> PathBuf {
    std::env::var_os("DDLGATE_PRE_COMMIT").map_or_else(
        || "/var/tmp/ddlgate-py/bin/pre-commit".into(),
        PathBuf::from,
    )
}

/// Runs `pre-commit try-repo <this repository> <hook>` on the staged files of `dir`.
fn try_hook(dir: &Path, hook: &str, home: &Path) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ddlgate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(pre_commit())
        .args(["try-repo", ROOT, hook, "--color", "never"])
        .current_dir(dir)
        .env("PATH", path)
        .env("PRE_COMMIT_HOME", home)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): scripts/test.sh installs pre-commit into /var/tmp/ddlgate-py, or set DDLGATE_PRE_COMMIT",
                pre_commit().display()
            )
        })
}

/// The hook that runs an installed ddlgate, through pre-commit: a commit that stages an unsafe
/// migration is stopped with the rule named; a safe one passes; files that are not SQL are
/// not passed to ddlgate.
#[test]
fn the_pre_commit_hook_stops_a_commit_with_an_unsafe_migration() {
    let repo = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    write(repo.path(), "db/002_orders.sql", SAFE);
    write(repo.path(), "notes.txt", "CREATE INDEX i ON t (a);\n");
    git(repo.path(), &["add", "."]);
    let passed = try_hook(repo.path(), "ddlgate-check-system", home.path());
    let text = String::from_utf8_lossy(&passed.stdout).into_owned();
    assert!(passed.status.success(), "{text}");
    assert!(text.contains("Passed"), "{text}");

    write(repo.path(), "db/003_rename.sql", UNSAFE);
    git(repo.path(), &["add", "."]);
    let failed = try_hook(repo.path(), "ddlgate-check-system", home.path());
    let text = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Failed") && text.contains("rename-column"),
        "{text}"
    );
    assert!(!text.contains("notes.txt"), "{text}");
}
