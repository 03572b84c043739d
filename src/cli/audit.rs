//! `ddlgate audit verify PATH...`: checks the hash chain of audit files.
//!
//! Files are checked in the order given. Given one path, its rotated files
//! (`<path>.<timestamp>`) are checked first, oldest first. Exit 0 when the chain is intact,
//! 1 when it is broken (the first bad line is named), 2 when a file cannot be read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::audit::verify;

/// `ddlgate audit …`
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit 1 and name the first bad line when it is broken
    Verify {
        /// Audit files in chain order (one file: its rotated files are checked first)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

/// Runs `ddlgate audit`.
pub(crate) fn run(args: &AuditArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let AuditCommand::Verify { paths } = &args.command;
    let files = match paths.as_slice() {
        [one] => verify::expand(one),
        many => many.to_vec(),
    };
    if files.is_empty() {
        anyhow::bail!("no audit file at {}", paths[0].display());
    }
    let result = verify::verify(&files).context("cannot read the audit trail")?;
    match result {
        Ok(summary) => {
            let range = match (summary.first_seq, summary.last_seq) {
                (Some(a), Some(b)) => format!(", seq {a}..{b}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "ok: {} records in {} file(s){range}, chain intact",
                summary.records, summary.files
            )?;
            Ok(0)
        }
        Err(broken) => {
            writeln!(out, "broken: {broken}")?;
            Ok(1)
        }
    }
}
