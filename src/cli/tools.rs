//! `ddlgate check --tool NAME`: how each migration tool of docs/tools delivers a migration
//! file when it migrates up — which files it runs, which part of a file, and whether the
//! statements arrive one by one, as one query string, or inside a transaction — so that
//! `check` judges each file as the proxy will see it.
//!
//! Markers read: sqlx's `-- no-transaction` first line; dbmate's `-- migrate:up` /
//! `-- migrate:down` sections and `transaction:false`. Down files (golang-migrate's
//! `*.down.sql`, diesel's `down.sql`) are not run when migrating up, so they are not checked.
//! What tools decide in code (Rails' `disable_ddl_transaction!`, Django's `atomic = False`,
//! knex's `config.transaction`, Flyway's `executeInTransaction`) cannot be seen in SQL files:
//! those tools default to `transaction`; check such a file with `--send statement`.

use std::ops::Range;

use super::check::Send;

/// A migration tool (see docs/tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Tool {
    /// psql -f: each statement alone, in autocommit unless the file says BEGIN.
    Psql,
    /// Sqitch (runs psql).
    Sqitch,
    /// sqlx-cli: each file in a transaction, or as one query string after `-- no-transaction`.
    Sqlx,
    /// dbmate: the `-- migrate:up` section, in a transaction unless `transaction:false`.
    Dbmate,
    /// golang-migrate: each `*.up.sql` as one query string.
    GolangMigrate,
    /// diesel: each `up.sql` in a transaction.
    Diesel,
    /// Rails (Active Record) migrations rendered to SQL.
    Rails,
    /// Django migrations rendered with `sqlmigrate`.
    Django,
    /// knex.
    Knex,
    /// Flyway.
    Flyway,
    /// Alembic (`--sql` output).
    Alembic,
    /// Prisma Migrate.
    Prisma,
    /// Liquibase formatted SQL.
    Liquibase,
    /// node-pg-migrate.
    NodePgMigrate,
    /// Drizzle Kit.
    Drizzle,
}

/// What of a file runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The part of the file that runs when migrating up.
    pub part: Range<usize>,
    /// How it is sent.
    pub send: Send,
}

impl Tool {
    /// Whether the tool runs the file named `name` when it migrates up.
    pub(crate) fn runs(self, name: &str) -> bool {
        let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
        match self {
            Self::GolangMigrate => !file.ends_with(".down.sql"),
            Self::Diesel => file != "down.sql",
            _ => true,
        }
    }

    /// What of `text` runs and how it is sent.
    pub(crate) fn delivery(self, text: &str) -> Delivery {
        let whole = 0..text.len();
        match self {
            Self::Psql | Self::Sqitch => Delivery {
                part: whole,
                send: Send::Statement,
            },
            Self::Sqlx => Delivery {
                part: whole,
                send: if text
                    .lines()
                    .next()
                    .is_some_and(|l| l.trim() == "-- no-transaction")
                {
                    Send::File
                } else {
                    Send::Transaction
                },
            },
            Self::Dbmate => dbmate_up(text),
            Self::GolangMigrate => Delivery {
                part: whole,
                send: Send::File,
            },
            _ => Delivery {
                part: whole,
                send: Send::Transaction,
            },
        }
    }
}

/// dbmate's up section: from its marker line to the down marker (or the end).
fn dbmate_up(text: &str) -> Delivery {
    let mut offset = 0;
    let mut up: Option<(usize, bool)> = None;
    let mut end = text.len();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(options) = trimmed.strip_prefix("-- migrate:up") {
            up = Some((offset + line.len(), options.contains("transaction:false")));
        } else if trimmed.starts_with("-- migrate:down") && up.is_some() {
            end = offset;
            break;
        }
        offset += line.len();
    }
    match up {
        Some((start, no_transaction)) => Delivery {
            part: start..end.max(start),
            send: if no_transaction {
                Send::File
            } else {
                Send::Transaction
            },
        },
        // No marker: dbmate would refuse the file; check all of it.
        None => Delivery {
            part: 0..text.len(),
            send: Send::Transaction,
        },
    }
}

/// `text` with everything outside `part` blanked (newlines kept), so positions in reports stay
/// those of the file.
pub(crate) fn only(text: &str, part: &Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if part.contains(&i) || c == '\n' {
            out.push(c);
        } else {
            // As many bytes as the character had.
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_runs_what_it_runs_how_it_runs_it() {
        assert!(!Tool::GolangMigrate.runs("m/0002_x.down.sql"));
        assert!(Tool::GolangMigrate.runs("m/0002_x.up.sql"));
        assert!(!Tool::Diesel.runs("migrations/2026_x/down.sql"));
        assert_eq!(Tool::Psql.delivery("SELECT 1;").send, Send::Statement);
        assert_eq!(
            Tool::Sqlx
                .delivery("-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);")
                .send,
            Send::File
        );
        assert_eq!(
            Tool::Sqlx.delivery("CREATE INDEX i ON t (a);").send,
            Send::Transaction
        );
        let file = "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n\n-- migrate:down\nDROP INDEX i;\n";
        let d = Tool::Dbmate.delivery(file);
        assert_eq!(d.send, Send::File);
        let up = only(file, &d.part);
        assert_eq!(up.len(), file.len(), "positions kept");
        assert!(up.contains("CREATE INDEX CONCURRENTLY") && !up.contains("DROP INDEX"));
        assert_eq!(
            Tool::Dbmate
                .delivery("-- migrate:up\nALTER TABLE t ADD c int;\n")
                .send,
            Send::Transaction
        );
        assert_eq!(Tool::Flyway.delivery("x").send, Send::Transaction);
        assert_eq!(only("é;x", &(2..4)).len(), "é;x".len(), "bytes kept");
    }
}
