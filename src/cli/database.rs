//! `ddlgate check --database URL`: the catalog facts the proxy reads on a live connection, read
//! once from a database before the files are linted, so that `check`'s verdicts equal the
//! proxy's: what each named relation is, whether it exists, whether it is partitioned, its
//! columns, types and `NOT NULL`s, validated not-null checks, and the user-defined routines
//! that run DDL. The server's major version is the database's too, unless `--pg-version` is
//! given.
//!
//! Decisions, and why:
//! - **Read-only, one connection, catalog queries only**: everything runs in one `READ ONLY`
//!   transaction that is rolled back, under a `statement_timeout`; the queries are the proxy's
//!   own ([`crate::proxy::sql`]), read by the proxy's readers, so the two cannot drift apart.
//! - **One read, before the first file**: the database is taken to be in the state the
//!   migrations will run on (a staging copy without the pending migrations). What a statement
//!   of the files changes is forgotten as the statement is judged, as the proxy forgets it
//!   within a request: a later statement on that relation is judged from the files' own
//!   history, with `check`'s conservative assumptions.
//! - **The connection string is libpq's** (URL or `key=value`), with libpq's `sslmode`
//!   (`disable`, `allow`, `prefer` — the default —, `require`, `verify-ca`, `verify-full`) and
//!   `sslrootcert`; `PGPASSWORD` is used when the string has no password. The password is
//!   never printed.

use std::sync::Arc;
use std::time::Duration;

use crate::analysis::catalog::{Catalog, Lookup};
use crate::analysis::routines::Routines;
use crate::pgclient::{Database, DatabaseError, describe};
use crate::proxy::{catalog, routines, sql};

/// How many names one catalog query asks about.
const LOOKUPS_PER_QUERY: usize = 200;
/// How long the whole read may take (the server also stops each query after
/// [`STATEMENT_TIMEOUT`]).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const STATEMENT_TIMEOUT: &str = "60s";

/// What the database says.
#[derive(Debug, Default)]
pub(crate) struct DatabaseFacts {
    /// `server_version_num / 10000`.
    pub server_major: u32,
    /// The relations the files name.
    pub catalog: Catalog,
    /// Its routines that run DDL.
    pub routines: Arc<Routines>,
}

/// Reads the facts for `lookups` from the database `dsn` names.
pub(crate) fn read(dsn: &str, lookups: &[Lookup]) -> Result<DatabaseFacts, DatabaseError> {
    let database = Database::parse(dsn, "ddlgate check")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DatabaseError::Connect(e.to_string()))?;
    runtime.block_on(async {
        tokio::time::timeout(READ_TIMEOUT, read_facts(&database, lookups))
            .await
            .unwrap_or_else(|_| {
                Err(DatabaseError::Read(format!(
                    "no answer within {} s",
                    READ_TIMEOUT.as_secs()
                )))
            })
    })
}

async fn read_facts(
    database: &Database,
    lookups: &[Lookup],
) -> Result<DatabaseFacts, DatabaseError> {
    let client = database.connect().await?;
    let read_error = |e: tokio_postgres::Error| DatabaseError::Read(describe(&e));
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'; \
             SET LOCAL lock_timeout = '10s'"
        ))
        .await
        .map_err(read_error)?;
    let version: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(read_error)?
        .get(0);
    let server_major = version
        .trim()
        .parse::<u32>()
        .map(|n| n / 10_000)
        .map_err(|_| DatabaseError::Read(format!("unexpected server_version_num {version:?}")))?;
    let definitions = text_answer(&client, sql::routine_definitions())
        .await
        .map_err(read_error)?;
    let routines = routines::read(&definitions, server_major);
    let mut facts = Catalog::default();
    for chunk in lookups.chunks(LOOKUPS_PER_QUERY) {
        let answer = text_answer(&client, &catalog::query(chunk))
            .await
            .map_err(read_error)?;
        facts.merge(catalog::read(&answer, chunk));
    }
    // Nothing was written; ending the transaction is only courtesy.
    let _ = client.batch_execute("ROLLBACK").await;
    Ok(DatabaseFacts {
        server_major,
        catalog: facts,
        routines: Arc::new(routines),
    })
}

/// The one text value a query answers (the empty string for NULL), sent as a simple query so
/// that nothing is prepared.
async fn text_answer(
    client: &tokio_postgres::Client,
    query: &str,
) -> Result<String, tokio_postgres::Error> {
    for message in client.simple_query(query).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            return Ok(row.get(0).unwrap_or_default().to_owned());
        }
    }
    Ok(String::new())
}
