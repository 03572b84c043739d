//! `ddlgate check`: lint migration files offline with the same engine the proxy uses.
//!
//! Files are analysed in order (directories recursively, `*.sql`, sorted by path, as migration
//! tools order them) with one context: a table created in an earlier file is not new in a later
//! one, but its column types are known there. `-` reads standard input. A file that cannot be
//! read or is not UTF-8 is reported and the others are still checked.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::analysis::context::Context;
use crate::analysis::{Engine, RuleId};
use crate::config::policy::{Action, Policy};

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

    /// PostgreSQL major version the migrations will run on
    #[arg(long, value_name = "N", default_value_t = crate::analysis::context::DEFAULT_SERVER_MAJOR,
          value_parser = clap::value_parser!(u32).range(9..=99))]
    pub pg_version: u32,

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
    let mut ctx = Context::for_server(args.pg_version);
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
            for problem in &report.problems {
                diagnostics.push(Diagnostic::at(
                    &input.name,
                    &source,
                    report.span.clone(),
                    None,
                    Level::Error,
                    problem.clone(),
                ));
            }
            match &report.result {
                Err(syntax) => {
                    diagnostics.push(Diagnostic::syntax(
                        &input.name,
                        &source,
                        &report.span,
                        syntax,
                    ));
                }
                Ok(finding) => {
                    for v in &finding.violations {
                        diagnostics.push(Diagnostic::violation(
                            &input.name,
                            &source,
                            v,
                            action(v.rule),
                            None,
                        ));
                    }
                    for (v, o) in &finding.overridden {
                        let reason = o
                            .reason
                            .clone()
                            .unwrap_or_else(|| "no reason given".to_owned());
                        diagnostics.push(Diagnostic::violation(
                            &input.name,
                            &source,
                            v,
                            action(v.rule),
                            Some(reason),
                        ));
                    }
                }
            }
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
