//! `ddlgate check`: lint migration files offline with the same engine the proxy uses.
//!
//! Files are analysed in order (directories recursively, `*.sql`, sorted by path, as migration
//! tools order them) with one context: a table created in an earlier file is not new in a later
//! one, but its column types are known there. `-` reads standard input. A file that cannot be
//! read or is not UTF-8 is reported and the others are still checked.
//!
//! Without a database, `check` assumes what it cannot see conservatively (a table it did not
//! see created may hold data, a name may be any kind of relation). With `--database URL` it
//! reads the facts the proxy would read, once, before the first file ([`super::database`]).

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::analysis::catalog::{self, Lookup};
use crate::analysis::classify::{ClassifyOptions, classify};
use crate::analysis::parse::{Options, parse_script};

use crate::analysis::context::Context;
use crate::analysis::{Engine, Report, RuleId};
use crate::config::policy::{Action, Policy};

use super::database;
use super::report::{Diagnostic, Format, Level, SourceText, Summary, render};

/// Options of `ddlgate check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Policy file deciding which rules apply and which violations are errors
    /// [default: the built-in default policy]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Run every rule, opt-in ones included
    #[arg(long)]
    pub enable_all: bool,

    /// PostgreSQL major version the migrations will run on [default: the --database server's,
    /// else 17]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(9..=99))]
    pub pg_version: Option<u32>,

    /// Judge with the catalog of this database (libpq URL or `key=value` string; read-only:
    /// catalog queries in a transaction that is rolled back), as the proxy judges: what each
    /// name is, proven no-ops, partitioned tables, column types, routines that run DDL.
    /// Point it at a copy in the state the migrations will run on.
    #[arg(
        long,
        value_name = "URL",
        env = "DDLGATE_CHECK_DATABASE",
        hide_env_values = true
    )]
    pub database: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Files or directories of `*.sql` files; `-` reads standard input
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// One input to check.
struct Input {
    /// As shown in diagnostics.
    name: String,
    /// The text, or why it could not be read.
    text: Result<String, String>,
}

/// Runs the check; returns the exit code (0 clean, 1 rejected, 2 usage, I/O or config error).
pub(crate) fn run(args: &CheckArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::builtin_default(),
    };
    let rules: Vec<RuleId> = if args.enable_all {
        RuleId::ALL.to_vec()
    } else {
        policy.enabled_rules()
    };
    let engine = Engine::new(rules);
    let action = |rule: RuleId| match policy.action(rule) {
        Action::Allow => rule.meta().default_action.into(),
        a => a,
    };

    let mut inputs = Vec::new();
    let mut walk_errors = Vec::new();
    for path in &args.paths {
        gather(path, &mut inputs, &mut walk_errors);
    }
    let mut diagnostics = Vec::new();
    let mut summary = Summary::default();
    let mut ctx = Context::for_server(
        args.pg_version
            .unwrap_or(crate::analysis::context::DEFAULT_SERVER_MAJOR),
    );
    if let Some(dsn) = &args.database {
        let facts = database::read(dsn, &lookups_in(&inputs, ctx.server_major))?;
        ctx = Context::for_server(args.pg_version.unwrap_or(facts.server_major));
        ctx.catalog = facts.catalog;
        ctx.routines = facts.routines;
    }
    for input in &inputs {
        summary.files += 1;
        let text = match &input.text {
            Ok(t) => t,
            Err(e) => {
                summary.io_errors += 1;
                diagnostics.push(Diagnostic::file_error(&input.name, e.clone()));
                continue;
            }
        };
        ctx.next_script();
        let source = SourceText::new(text);
        for report in engine.analyze(text, &mut ctx) {
            diagnose(&input.name, &source, &report, &action, &mut diagnostics);
        }
    }
    for e in walk_errors {
        summary.io_errors += 1;
        diagnostics.push(e);
    }
    for d in &diagnostics {
        match d.level {
            Level::Error => summary.errors += 1,
            Level::Warning => summary.warnings += 1,
            Level::Note => {}
        }
    }
    render(args.format, &diagnostics, &summary, out)?;
    Ok(if summary.io_errors > 0 {
        2
    } else {
        u8::from(summary.errors > 0)
    })
}

/// The diagnostics of one statement's report.
fn diagnose(
    file: &str,
    source: &SourceText<'_>,
    report: &Report,
    action: &dyn Fn(RuleId) -> Action,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for problem in &report.problems {
        diagnostics.push(Diagnostic::at(
            file,
            source,
            report.span.clone(),
            None,
            Level::Error,
            problem.clone(),
        ));
    }
    let finding = match &report.result {
        Err(syntax) => {
            diagnostics.push(Diagnostic::syntax(file, source, &report.span, syntax));
            return;
        }
        Ok(finding) => finding,
    };
    if let Some(why) = &finding.noop {
        diagnostics.push(Diagnostic::at(
            file,
            source,
            report.span.clone(),
            None,
            Level::Note,
            format!("changes nothing in the --database catalog ({why}): no rule applies"),
        ));
    }
    for v in &finding.violations {
        diagnostics.push(Diagnostic::violation(file, source, v, action(v.rule), None));
    }
    for (v, o) in &finding.overridden {
        let reason = o
            .reason
            .clone()
            .unwrap_or_else(|| "no reason given".to_owned());
        diagnostics.push(Diagnostic::violation(
            file,
            source,
            v,
            action(v.rule),
            Some(reason),
        ));
    }
}

/// The relations the governed statements of the inputs name, for `--database`.
fn lookups_in(inputs: &[Input], server_major: u32) -> Vec<Lookup> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for text in inputs.iter().filter_map(|i| i.text.as_ref().ok()) {
        for statement in parse_script(text, Options::default()) {
            let Ok(node) = &statement.tree else {
                continue;
            };
            let facts = classify(node, ClassifyOptions { server_major });
            if !facts.governed() {
                continue;
            }
            for lookup in catalog::lookups(node, &facts) {
                if seen.insert(lookup.clone()) {
                    out.push(lookup);
                }
            }
        }
    }
    out
}

/// Collects the files under `path`.
fn gather(path: &Path, inputs: &mut Vec<Input>, errors: &mut Vec<Diagnostic>) {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        let text = std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read standard input: {e}"))
            .and_then(|_| decode(bytes));
        inputs.push(Input {
            name: "<stdin>".to_owned(),
            text,
        });
        return;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(Diagnostic::file_error(
                &path.display().to_string(),
                format!("cannot read: {e}"),
            ));
            return;
        }
    };
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files, errors);
        files.sort();
        for file in files {
            inputs.push(read(&file));
        }
    } else {
        inputs.push(read(path));
    }
}

/// Recursively lists `*.sql` files, not following symbolic links to directories (no loops).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(Diagnostic::file_error(
                &dir.display().to_string(),
                format!("cannot list directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, errors),
            Ok(_)
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("sql")) =>
            {
                files.push(path);
            }
            _ => {}
        }
    }
}

fn read(path: &Path) -> Input {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(decode);
    Input {
        name: path.display().to_string(),
        text,
    }
}

fn decode(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not valid UTF-8 (first invalid byte at offset {}); convert it to UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}
