//! The command line: `serve`, `check`, `explain`, `rules`, `audit verify`.
//!
//! Exit codes: 0 success (and a clean shutdown), 1 when `check` finds something the policy
//! rejects, 2 on usage, I/O or configuration errors, which print one sentence on stderr.

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod database;
pub(crate) mod evidence;
pub(crate) mod explain;
pub(crate) mod report;
pub(crate) mod rules;
pub(crate) mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{ServeConfig, ServeOptions};
use crate::proxy::{Server, Shutdown};

/// ddlgate: a PostgreSQL wire-protocol proxy that makes schema changes safe in production.
#[derive(Debug, Parser)]
#[command(name = "ddlgate", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log line format on stderr
    #[arg(
        long,
        global = true,
        env = "DDLGATE_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy. Every option is also an environment variable (shown) and a key of the
    /// --config file (the option's name with underscores).
    Serve(Box<ServeArgs>),
    /// Lint migration files; exit 1 when something is rejected by the policy
    Check(check::CheckArgs),
    /// Show what ddlgate sees in SQL: kind, locks, rewrite or scan, rules, rewrite
    Explain(explain::ExplainArgs),
    /// List the rule catalog
    Rules(rules::RulesArgs),
    /// Check the audit trail: `ddlgate audit verify PATH...`
    Audit(audit::AuditArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment variables win)
    #[arg(long, env = "DDLGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Validate the configuration (files, certificates, addresses), print it, and exit
    #[arg(long)]
    check_config: bool,

    #[command(flatten)]
    options: ServeOptions,
}

/// Runs the command line and returns the process exit code.
///
/// Everything runs on a thread with the stack the analysis needs for deeply nested statements
/// ([`crate::analysis::STACK_SIZE`]); the main thread's 8 MiB is not enough.
pub fn main() -> ExitCode {
    let spawned = std::thread::Builder::new()
        .name("ddlgate".into())
        .stack_size(crate::analysis::STACK_SIZE)
        .spawn(run);
    match spawned.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        // A panic has already been reported by the panic hook.
        Ok(Err(_)) => ExitCode::from(2),
        Err(e) => {
            #[expect(clippy::print_stderr, reason = "the binary's edge reports its failure")]
            {
                eprintln!("ddlgate: error: cannot start the main thread: {e}");
            }
            ExitCode::from(2)
        }
    }
}

fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // `serve` must not hold the stdout lock: its audit trail may be written there.
    let result = match cli.command {
        Command::Serve(args) => serve(*args).map(|()| 0),
        Command::Check(args) => check::run(&args, &mut std::io::stdout().lock()),
        Command::Explain(args) => explain::run(&args, &mut std::io::stdout().lock()),
        Command::Rules(args) => rules::run(&args, &mut std::io::stdout().lock()),
        Command::Audit(args) => audit::run(&args, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`ddlgate rules | head`) is not an error.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            #[expect(clippy::print_stderr, reason = "the binary's edge reports its failure")]
            {
                eprintln!("ddlgate: error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("DDLGATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: in a container or a log file they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether ddlgate can append to the audit log at `path` (standard output always): the file
/// opened for appending when it exists (nothing written), else a file created and removed
/// beside it.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("the audit log {} is not writable", path.display()))?;
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".ddlgate-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| {
            format!(
                "the audit log {} cannot be created: its directory {} is not writable",
                path.display(),
                dir.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let from_file = match &args.config {
        Some(path) => ServeOptions::from_file(path)?,
        None => ServeOptions::default(),
    };
    let config = ServeConfig::from_options(&args.options.or(from_file))?;
    if args.check_config {
        #[expect(
            clippy::print_stdout,
            reason = "--check-config prints the configuration"
        )]
        {
            print!("{}", config.effective());
        }
        if let Some(path) = config.audit.as_ref().and_then(|a| a.path.as_ref()) {
            check_writable(path)?;
        }
        #[expect(
            clippy::print_stdout,
            reason = "--check-config prints the configuration"
        )]
        {
            println!("# configuration is valid");
        }
        return Ok(());
    }
    // This runtime only accepts connections and handles signals; sessions run on the worker
    // threads (see proxy::workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let policy = std::sync::Arc::clone(&config.policy);
    let worker_threads = config.worker_threads;
    info!(policy = %policy.describe(), "policy loaded");
    runtime.block_on(async {
        tokio::spawn(reload_on_sighup(policy));
        let server = Server::bind(config).await?;
        let shutdown = Shutdown::default();
        tokio::spawn(forward_signals(
            shutdown.drain.clone(),
            shutdown.terminate.clone(),
        ));
        server.run(shutdown).await.with_context(|| {
            format!("cannot start {worker_threads} worker thread(s) to serve sessions")
        })
    })
}

/// SIGHUP: reload the policy file; a file that does not load leaves the old policy in force.
async fn reload_on_sighup(policy: std::sync::Arc<crate::config::PolicyStore>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; policy reloads need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        match policy.reload() {
            Ok(Some(path)) => info!(policy = %path.display(), "policy reloaded"),
            Ok(None) => info!("SIGHUP: the built-in policy is in force, nothing to reload"),
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
            }
        }
    }
}

/// First SIGTERM or SIGINT: drain. Second: close every session now.
async fn forward_signals(drain: CancellationToken, terminate: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop ddlgate with SIGKILL");
        return;
    };
    for token in [drain, terminate] {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutdown requested");
        token.cancel();
    }
}
