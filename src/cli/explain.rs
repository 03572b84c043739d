//! `ddlgate explain`: what ddlgate sees in SQL — per statement its kind, the locks it takes,
//! whether it rewrites or scans, the rules it breaks, and the rewrite.

use std::io::Write;
use std::path::PathBuf;

use crate::analysis::context::Context;
use crate::analysis::usage::{self, Evidence};
use crate::analysis::{Engine, RuleId};
use crate::config::policy::{Action, Policy};

use super::evidence::{EvidenceReader, statement_tree};

/// Options of `ddlgate explain`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// PostgreSQL major version to assume
    #[arg(long, value_name = "N", default_value_t = crate::analysis::context::DEFAULT_SERVER_MAJOR,
          value_parser = clap::value_parser!(u32).range(9..=99))]
    pub pg_version: u32,

    /// Policy file for the actions shown [default: the built-in default policy]
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Explain as if inside a transaction block
    #[arg(long)]
    pub in_transaction: bool,

    /// Also show the evidence of use the proxy would go by for tables and columns the SQL
    /// drops, renames or retypes: connect to this database (libpq connection string) and read
    /// ddlgate's samples of pg_stat_statements kept there
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,

    /// Schema of ddlgate's evidence tables in --database
    #[arg(long, value_name = "NAME", default_value = "ddlgate")]
    pub evidence_schema: String,

    /// The SQL (one or more statements); `-` reads standard input
    #[arg(value_name = "SQL")]
    pub sql: String,
}

/// Prints the explanation.
pub(crate) fn run(args: &ExplainArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::builtin_default(),
    };
    let sql = if args.sql == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        args.sql.clone()
    };
    let mut ctx = Context::for_server(args.pg_version);
    ctx.in_transaction = args.in_transaction;
    let engine = Engine::new(RuleId::ALL.iter().copied());
    if let Some(dsn) = &args.database {
        let mut reader = EvidenceReader::open(dsn, &args.evidence_schema, "ddlgate explain")?;
        ctx.evidence = reader.read(std::iter::once(sql.as_str()), &policy.base.evidence)?;
    }
    let mut failed = false;
    for (n, report) in engine.analyze(&sql, &mut ctx).iter().enumerate() {
        let text = sql.get(report.span.clone()).unwrap_or_default();
        writeln!(out, "statement {}: {text}", n + 1)?;
        let finding = match &report.result {
            Ok(f) => f,
            Err(e) => {
                writeln!(
                    out,
                    "  syntax error: {} (at byte {})",
                    e.message, e.position
                )?;
                failed = true;
                writeln!(out)?;
                continue;
            }
        };
        write_facts(out, &finding.facts)?;
        for v in &finding.violations {
            let action = policy.action(v.rule);
            let shown = if action == Action::Allow {
                "off in this policy"
            } else {
                action.as_str()
            };
            writeln!(out, "  rule:        {} [{shown}]: {}", v.rule, v.message)?;
            if let Some(detail) = &v.detail {
                writeln!(out, "               {detail}")?;
            }
            if !v.help.is_empty() {
                writeln!(out, "               help: {}", v.help)?;
            }
            if let Some(fix) = &v.fix {
                writeln!(
                    out,
                    "  rewrite:     {} ({:?}): {}",
                    fix.title,
                    fix.applicability,
                    fix.apply(&sql, &v.span)
                )?;
            }
        }
        if finding.violations.is_empty() {
            writeln!(out, "  rules:       none broken")?;
        }
        for summary in &finding.evidence {
            writeln!(out, "  evidence:    {summary}")?;
        }
        if !finding.evidence.is_empty()
            && let Ok(tree) = statement_tree(text)
        {
            for (name, column) in usage::targets(&tree) {
                let found = ctx
                    .evidence
                    .found
                    .iter()
                    .find(|f| f.name == name && f.column == column);
                if let Some(Evidence::Observed { uses, .. }) = found.map(|f| &f.evidence) {
                    for u in uses {
                        writeln!(out, "               {}", u.describe())?;
                    }
                }
            }
        }
        writeln!(out)?;
    }
    Ok(u8::from(failed))
}

fn write_facts(
    out: &mut dyn Write,
    facts: &crate::analysis::classify::Facts,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  kind:        {}{}",
        facts.kind,
        if facts.ddl { " (DDL)" } else { "" }
    )?;
    if facts.locks.is_empty() {
        writeln!(out, "  locks:       none on tables")?;
    }
    for lock in &facts.locks {
        writeln!(
            out,
            "  lock:        {} on {} ({})",
            lock.mode,
            lock.target,
            lock.mode.impact()
        )?;
    }
    writeln!(
        out,
        "  rewrites:    {}; full scan: {}",
        if facts.rewrites {
            "yes, every row"
        } else {
            "no"
        },
        if facts.scans { "yes" } else { "no" }
    )?;
    writeln!(
        out,
        "  transaction: {}",
        if facts.allowed_in_transaction {
            "may run inside a transaction block"
        } else {
            "cannot run inside a transaction block"
        }
    )?;
    if facts.ddl {
        let class = if facts.is_online() {
            "online DDL (long timeouts)"
        } else {
            "brief-lock DDL (short timeouts)"
        };
        writeln!(out, "  timeouts:    {class}")?;
    }
    if facts.dynamic {
        writeln!(out, "  dynamic:     runs statements ddlgate cannot see")?;
    }
    Ok(())
}
