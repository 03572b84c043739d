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
        /// The seq the trail must start at [default: 1, with prev = 64 zeros]: say where it
        /// starts when older files were removed on purpose
        #[arg(long, value_name = "SEQ")]
        from_seq: Option<u64>,

        /// The prev (hash of the last record before the trail) its first record must have
        #[arg(long, value_name = "HASH")]
        after: Option<String>,

        /// An anchor file written by `serve --audit-anchor`: the trail must reach the head it
        /// recorded last, with the same hash (records cut from the end are found)
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,

        /// Audit files in chain order (one file: its rotated files are checked first)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

/// Runs `ddlgate audit`.
pub(crate) fn run(args: &AuditArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let AuditCommand::Verify {
        from_seq,
        after,
        anchor,
        paths,
    } = &args.command;
    let expect = verify::Expect {
        from_seq: *from_seq,
        after: after.clone(),
        anchor: match anchor {
            Some(path) => Some(verify::read_anchor(path).map_err(anyhow::Error::msg)?),
            None => None,
        },
    };
    let files = match paths.as_slice() {
        [one] => verify::expand(one),
        many => many.to_vec(),
    };
    if files.is_empty() {
        anyhow::bail!("no audit file at {}", paths[0].display());
    }
    let result =
        verify::verify_expecting(&files, &expect).context("cannot read the audit trail")?;
    match result {
        Ok(summary) => {
            let range = match (summary.first_seq, summary.last_seq) {
                (Some(a), Some(b)) => format!(", seq {a}..{b}"),
                _ => String::new(),
            };
            let runs = if summary.runs > 1 {
                format!(", {} runs (each its own chain)", summary.runs)
            } else {
                String::new()
            };
            let anchored = if summary.anchored {
                ", the anchor's head reached"
            } else {
                ""
            };
            writeln!(
                out,
                "ok: {} records in {} file(s){range}{runs}, chain intact{anchored}",
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
