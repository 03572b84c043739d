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
use crate::analysis::{Engine, Report, RuleId, Violation};
use crate::config::policy::{Action, Overrides, Policy, Settings};
use crate::enforce::{self, Plan, Situation, StatementDecision};

use super::database;
use super::evidence::EvidenceReader;
use super::report::{Diagnostic, Format, Level, SourceText, Summary, render};
use super::tools::{self, Tool};

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

    /// Schema of ddlgate's evidence tables in --database: where they exist, dropping or
    /// renaming a table or column is judged by the statements that used it (see `serve
    /// --evidence-dsn`)
    #[arg(long, value_name = "NAME", default_value = "ddlgate")]
    pub evidence_schema: String,

    /// How the migration tool sends each file: `statement` (each statement alone, in
    /// autocommit unless the file says BEGIN: psql -f, Sqitch), `file` (the whole file as one
    /// query string: sqlx, dbmate, diesel, golang-migrate), `transaction` (the file inside one
    /// transaction: Rails, Django, knex, Flyway, Alembic, Prisma). What runs inside a
    /// transaction or a multi-statement string cannot be rewritten to CONCURRENTLY, so the
    /// verdicts differ [default: as --tool says, else transaction, the strictest]
    #[arg(long, value_enum)]
    pub send: Option<Send>,

    /// The migration tool that runs the files: which files and sections run when migrating
    /// up, and how each is sent (its markers, such as sqlx's `-- no-transaction` and dbmate's
    /// `transaction:false`, are read)
    #[arg(long, value_enum, value_name = "NAME")]
    pub tool: Option<Tool>,

    /// Judge with this profile of the policy (as the proxy does for the connections it
    /// matches) instead of the policy's top-level settings
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Files or directories of `*.sql` files; `-` reads standard input
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// How a migration tool sends a file (see `--send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Send {
    /// Each statement alone.
    Statement,
    /// The whole file as one simple-protocol query string (one implicit transaction).
    File,
    /// The file inside one transaction block.
    Transaction,
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
    let settings = settings_of(&policy, args)?;
    let engine = Engine::new(settings.enabled_rules());

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
        let facts = database::read(dsn, &lookups_in(&inputs, ctx.server_major))
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        ctx = Context::for_server(args.pg_version.unwrap_or(facts.server_major));
        ctx.catalog = facts.catalog;
        ctx.routines = facts.routines;
        ctx.evidence = evidence_in(dsn, args, &inputs, &settings);
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
        if args.tool.is_some_and(|t| !t.runs(&input.name)) {
            summary.files -= 1;
            continue;
        }
        ctx.next_script();
        let source = SourceText::new(text);
        let (checked, send) = match args.tool {
            Some(tool) => {
                let delivery = tool.delivery(text);
                (
                    std::borrow::Cow::Owned(tools::only(text, &delivery.part)),
                    args.send.unwrap_or(delivery.send),
                )
            }
            None => (
                std::borrow::Cow::Borrowed(text.as_str()),
                args.send.unwrap_or(Send::Transaction),
            ),
        };
        for (report, decision) in judge(&engine, &settings, &checked, &mut ctx, send) {
            diagnose(
                &input.name,
                &source,
                &report,
                &decision,
                &settings,
                &mut diagnostics,
            );
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

/// The proxy's settings for the checked files: the policy's top level or the named profile,
/// with the rules `--enable-all` adds at their catalog default action.
fn settings_of(policy: &Policy, args: &CheckArgs) -> anyhow::Result<Settings> {
    let mut settings = match &args.profile {
        None => policy.base.clone(),
        Some(name) => policy
            .profiles
            .iter()
            .find(|p| p.name == *name)
            .map(|p| p.settings.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the policy has no profile named {name:?} (it has: {})",
                    policy
                        .profiles
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
    };
    if args.enable_all {
        for rule in RuleId::ALL {
            if settings.action(*rule) == Action::Allow {
                settings.set_action(*rule, rule.meta().default_action.into());
            }
        }
    }
    Ok(settings)
}

/// Each statement's findings and the proxy's decision about it, the file sent as `send` says:
/// the decision is the proxy's own code ([`crate::enforce`]), so `check` reports what the proxy
/// would do — an override the policy does not honour stays in force, a rewrite that is not
/// valid where the statement runs falls back as the policy says.
fn judge(
    engine: &Engine,
    settings: &Settings,
    text: &str,
    ctx: &mut Context,
    send: Send,
) -> Vec<(Report, StatementDecision)> {
    let parsed = parse_script(
        text,
        Options {
            standard_conforming_strings: ctx.standard_conforming_strings,
        },
    );
    let alone = parsed.len() == 1;
    match send {
        Send::Statement => {
            ctx.query_string = false;
            ctx.in_multi_statement_query = false;
        }
        Send::File => ctx.query_string = true,
        Send::Transaction => {
            ctx.query_string = false;
            ctx.in_transaction = true;
        }
    }
    let situation = |single: bool| Situation {
        single_statement: single,
    };
    let mut out = Vec::with_capacity(parsed.len());
    match send {
        Send::Statement => {
            let mut decided = Vec::with_capacity(parsed.len());
            let reports = engine.analyze_one_by_one(text, parsed, ctx, |reports, ctx| {
                decided.extend(enforce::decisions(
                    settings,
                    text,
                    reports,
                    ctx,
                    situation(true),
                ));
            });
            out.extend(reports.into_iter().zip(decided));
        }
        Send::File | Send::Transaction => {
            let reports = engine.analyze_parsed(text, parsed, ctx);
            let single = alone && send == Send::File;
            let decisions = enforce::decisions(settings, text, &reports, ctx, situation(single));
            out.extend(reports.into_iter().zip(decisions));
        }
    }
    if send == Send::Transaction {
        ctx.end_transaction(true);
    }
    ctx.query_string = false;
    ctx.in_multi_statement_query = false;
    out
}

/// The diagnostics of one statement's report, at the level the proxy's decision gives each
/// finding: refused → error; rewritten or warned → warning; an override the policy honours →
/// note (one it does not honour is an error of its own beside the finding).
fn diagnose(
    file: &str,
    source: &SourceText<'_>,
    report: &Report,
    decision: &StatementDecision,
    settings: &Settings,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let whole = |level: Level, message: String| {
        Diagnostic::at(file, source, report.span.clone(), None, level, message)
    };
    for problem in &report.problems {
        diagnostics.push(whole(Level::Error, problem.clone()));
    }
    let finding = match &report.result {
        Err(syntax) => {
            diagnostics.push(Diagnostic::syntax(file, source, &report.span, syntax));
            return;
        }
        Ok(finding) => finding,
    };
    for summary in &finding.evidence {
        diagnostics.push(whole(Level::Note, format!("evidence: {summary}")));
    }
    if let Some(why) = &finding.noop {
        diagnostics.push(whole(
            Level::Note,
            format!("changes nothing in the --database catalog ({why}): no rule applies"),
        ));
    }
    let refused = matches!(decision.plan, Plan::Reject(_));
    let acted = |rule: RuleId| {
        decision
            .rules
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, a)| *a)
    };
    let level_of = |action: Action| match action {
        Action::Reject => Level::Error,
        // A rewrite that is not valid here falls back to the refusal the decision holds.
        Action::Rewrite if refused => Level::Error,
        _ => Level::Warning,
    };
    let honoured = |v: &Violation| decision.overrides.iter().any(|(r, _)| *r == v.rule);
    for v in &finding.violations {
        let Some(action) = acted(v.rule) else {
            // A finding of the whole script (known at its end), after the statement was
            // decided: at the policy's action.
            let action = settings.action(v.rule);
            if action != Action::Allow {
                diagnostics.push(Diagnostic::violation(file, source, v, action, None));
            }
            continue;
        };
        let mut d = Diagnostic::violation(file, source, v, action, None);
        d.level = level_of(action);
        diagnostics.push(d);
    }
    for (v, o) in &finding.overridden {
        if honoured(v) {
            let reason = o
                .reason
                .clone()
                .unwrap_or_else(|| "no reason given".to_owned());
            let mut d =
                Diagnostic::violation(file, source, v, settings_action(decision, v), Some(reason));
            d.level = Level::Note;
            diagnostics.push(d);
            continue;
        }
        // Not honoured: the finding stands, and says why.
        if let Some(action) = acted(v.rule) {
            let mut d = Diagnostic::violation(file, source, v, action, None);
            d.level = level_of(action);
            diagnostics.push(d);
        }
        let why = match settings.overrides {
            Overrides::Off => "this policy does not honour inline overrides",
            _ => "this policy requires a reason=\"…\"",
        };
        diagnostics.push(Diagnostic::at(
            file,
            source,
            report.span.clone(),
            Some(v.rule.to_string()),
            Level::Warning,
            format!("override of {} ignored: {why}", v.rule),
        ));
    }
}

/// The action of a rule whose override was honoured (the decision does not list it).
fn settings_action(decision: &StatementDecision, v: &Violation) -> Action {
    decision
        .rules
        .iter()
        .find(|(r, _)| *r == v.rule)
        .map_or(v.rule.meta().default_action.into(), |(_, a)| *a)
}

/// The evidence of use about what the inputs drop, rename or retype, where ddlgate keeps
/// samples in the `--database`. Unreadable (say the role may not read ddlgate's schema), the
/// files are judged without it, as the proxy does when its evidence cannot be read, and a
/// warning says so.
fn evidence_in(
    dsn: &str,
    args: &CheckArgs,
    inputs: &[Input],
    settings: &Settings,
) -> crate::analysis::usage::Evidences {
    let read =
        EvidenceReader::open(dsn, &args.evidence_schema, "ddlgate check").and_then(|mut reader| {
            if reader.has_samples()? {
                reader.read(
                    inputs.iter().filter_map(|i| i.text.as_deref().ok()),
                    &settings.evidence,
                )
            } else {
                Ok(crate::analysis::usage::Evidences::default())
            }
        });
    read.unwrap_or_else(|e| {
        #[expect(
            clippy::print_stderr,
            reason = "a warning about the run, beside the report on standard output"
        )]
        {
            eprintln!(
                "ddlgate: warning: evidence of use not read, the contract rules are judged without it: {e:#}"
            );
        }
        crate::analysis::usage::Evidences::default()
    })
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
