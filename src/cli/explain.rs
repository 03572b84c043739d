//! `ddlgate explain`: what ddlgate sees in SQL — per statement its kind, the locks it takes,
//! whether it rewrites or scans, the rules it breaks, and the rewrite.

use std::io::Write;
use std::path::PathBuf;

use crate::analysis::classify::RelationName;
use crate::analysis::context::Context;
use crate::analysis::parse::{Options, parse_script};
use crate::analysis::usage::{self, Evidence, Target};
use crate::analysis::{Engine, RuleId};
use crate::config::policy::{Action, EvidenceSettings, Policy};
use crate::evidence::EvidenceError;
use crate::evidence::judge::{Window, judge};
use crate::evidence::store::Store;
use crate::pgclient::Database;

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
    let mut evidence = args
        .database
        .as_deref()
        .map(|dsn| EvidenceReader::open(dsn, &args.evidence_schema))
        .transpose()?;
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
        if let (Some(evidence), Ok(tree)) = (evidence.as_mut(), parsed_tree(text)) {
            for (name, column) in usage::targets(&tree) {
                let (target, found) =
                    evidence.judge(&name, column.as_deref(), &policy.base.evidence)?;
                let shown = match (&target, &found) {
                    (Some(t), _) => found.summary(t),
                    (None, Evidence::Unavailable(why)) => {
                        format!("no evidence of use for {name}: {why}")
                    }
                    (None, Evidence::Observed { .. }) => String::new(),
                };
                writeln!(out, "  evidence:    {shown}")?;
                if let Evidence::Observed { uses, .. } = &found {
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

/// The one statement of `text`, parsed.
fn parsed_tree(text: &str) -> Result<crate::analysis::parse::NodeEnum, ()> {
    let mut parsed = parse_script(text, Options::default());
    match (parsed.pop(), parsed.is_empty()) {
        (Some(p), true) => p.tree.map_err(|_| ()),
        _ => Err(()),
    }
}

/// A connection to `--database` and its runtime, for the evidence.
struct EvidenceReader {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    store: Store,
}

impl EvidenceReader {
    fn open(dsn: &str, schema: &str) -> anyhow::Result<Self> {
        let database = Database::parse(dsn, "ddlgate explain")
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        let store = Store::new(schema).map_err(|e| anyhow::anyhow!("--evidence-schema: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime
            .block_on(async { tokio::time::timeout(READ_TIMEOUT, database.connect()).await })
            .map_err(|_| {
                anyhow::anyhow!("--database: no answer within {} s", READ_TIMEOUT.as_secs())
            })?
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        Ok(Self {
            runtime,
            client,
            store,
        })
    }

    /// The evidence about one target: the target as the catalog names it (when it exists),
    /// and what the samples say.
    fn judge(
        &mut self,
        name: &RelationName,
        column: Option<&str>,
        settings: &EvidenceSettings,
    ) -> anyhow::Result<(Option<Target>, Evidence)> {
        let window = Window {
            window: settings.window,
            min_observation: settings.min_observation,
        };
        let found = self
            .runtime
            .block_on(async {
                tokio::time::timeout(
                    READ_TIMEOUT,
                    judge(&mut self.client, &self.store, name, column, window),
                )
                .await
            })
            .map_err(|_| {
                anyhow::anyhow!("--database: no answer within {} s", READ_TIMEOUT.as_secs())
            })?;
        let found = match found {
            Ok(found) => found,
            Err(EvidenceError::NoExtension(why)) => (None, Evidence::Unavailable(why)),
            Err(e) => return Err(anyhow::anyhow!("--database: {e}")),
        };
        Ok(found)
    }
}

/// How long reading the evidence may take.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

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
