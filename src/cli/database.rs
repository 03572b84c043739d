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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::catalog::{Catalog, Lookup};
use crate::analysis::routines::Routines;
use crate::protocol::tls::{self, TlsError, UpstreamTlsMode};
use crate::proxy::{catalog, routines, sql};

/// How many names one catalog query asks about.
const LOOKUPS_PER_QUERY: usize = 200;
/// How long reaching the server may take, unless the string says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the whole read may take (the server also stops each query after
/// [`STATEMENT_TIMEOUT`]).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const STATEMENT_TIMEOUT: &str = "60s";

/// Why the facts could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    /// The connection string is not one libpq would accept, or asks for what is not supported.
    #[error("invalid --database connection string: {0}")]
    Invalid(String),
    /// The TLS settings cannot be used.
    #[error("--database TLS: {0}")]
    Tls(#[from] TlsError),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to the --database server: {0}")]
    Connect(String),
    /// A catalog query failed.
    #[error("cannot read the catalog of the --database server: {0}")]
    Read(String),
}

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
    let target = Target::parse(dsn)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DatabaseError::Connect(e.to_string()))?;
    runtime.block_on(async {
        tokio::time::timeout(READ_TIMEOUT, target.read(lookups))
            .await
            .unwrap_or_else(|_| {
                Err(DatabaseError::Read(format!(
                    "no answer within {} s",
                    READ_TIMEOUT.as_secs()
                )))
            })
    })
}

/// A parsed connection string.
struct Target {
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    fn parse(dsn: &str) -> Result<Self, DatabaseError> {
        let (rest, ssl) = take_ssl_settings(dsn)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| DatabaseError::Invalid(e.to_string()))?;
        let (mode, negotiate) = match ssl.mode.as_deref() {
            Some("disable") => (
                UpstreamTlsMode::Disable,
                tokio_postgres::config::SslMode::Disable,
            ),
            None | Some("allow" | "prefer") => (
                UpstreamTlsMode::Require,
                tokio_postgres::config::SslMode::Prefer,
            ),
            // As libpq: with a root certificate named, `require` verifies the chain.
            Some("require") if ssl.root_cert.is_some() => (
                UpstreamTlsMode::VerifyCa,
                tokio_postgres::config::SslMode::Require,
            ),
            Some("require") => (
                UpstreamTlsMode::Require,
                tokio_postgres::config::SslMode::Require,
            ),
            Some("verify-ca") => (
                UpstreamTlsMode::VerifyCa,
                tokio_postgres::config::SslMode::Require,
            ),
            Some("verify-full") => (
                UpstreamTlsMode::VerifyFull,
                tokio_postgres::config::SslMode::Require,
            ),
            Some(other) => {
                return Err(DatabaseError::Invalid(format!(
                    "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        if ssl.root_cert.as_deref() == Some("system") {
            return Err(DatabaseError::Invalid(
                "sslrootcert=system is not supported; name a CA file".to_owned(),
            ));
        }
        if matches!(
            mode,
            UpstreamTlsMode::VerifyCa | UpstreamTlsMode::VerifyFull
        ) && ssl.root_cert.is_none()
        {
            return Err(DatabaseError::Invalid(format!(
                "sslmode={} needs sslrootcert=FILE (the CA certificate that signed the server's)",
                ssl.mode.as_deref().unwrap_or_default()
            )));
        }
        let root_cert = ssl.root_cert.map(PathBuf::from);
        let tls = tls::upstream(mode, root_cert.as_deref())?;
        config.ssl_mode(negotiate);
        if config.get_password().is_none()
            && let Some(password) = std::env::var_os("PGPASSWORD")
        {
            config.password(password.as_encoded_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("ddlgate check");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self { config, tls })
    }

    async fn read(&self, lookups: &[Lookup]) -> Result<DatabaseFacts, DatabaseError> {
        let connect_error = |e: tokio_postgres::Error| DatabaseError::Connect(describe(&e));
        let client = match &self.tls {
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(connect_error)?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) = self
                    .config
                    .connect(connector)
                    .await
                    .map_err(connect_error)?;
                tokio::spawn(connection);
                client
            }
        };
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
            .map_err(|_| {
                DatabaseError::Read(format!("unexpected server_version_num {version:?}"))
            })?;
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

/// The server's own message where there is one (tokio-postgres's display of a server error
/// is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// libpq's TLS settings, which tokio-postgres does not all know.
#[derive(Debug, Default, PartialEq, Eq)]
struct SslSettings {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off a connection string (URL or `key=value`), returning
/// the rest for tokio-postgres.
fn take_ssl_settings(dsn: &str) -> Result<(String, SslSettings), DatabaseError> {
    let mut ssl = SslSettings::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            ssl.mode = Some(value);
            true
        }
        "sslrootcert" => {
            ssl.root_cert = Some(value);
            true
        }
        _ => false,
    };
    let dsn = dsn.trim();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let Some((base, query)) = dsn.split_once('?') else {
            return Ok((dsn.to_owned(), ssl));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, ssl));
    }
    let mut kept = Vec::new();
    for (key, value) in keyword_pairs(dsn)? {
        if !take(&key, value.clone()) {
            kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), ssl))
}

/// The `key=value` pairs of a libpq keyword string (values may be single-quoted, with `\`
/// escaping `'` and `\`).
fn keyword_pairs(dsn: &str) -> Result<Vec<(String, String)>, DatabaseError> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DatabaseError::Invalid(format!(
                "expected `=` after {key:?}"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(DatabaseError::Invalid(format!(
                            "unterminated quoted value of {key:?}"
                        )));
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(s: &str) -> Result<String, DatabaseError> {
    crate::config::dsn::percent_decode(s).map_err(DatabaseError::Invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_are_taken_from_urls_and_keyword_strings() {
        let (rest, ssl) = take_ssl_settings(
            "postgres://u:p@db:5433/app?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5433/app?application_name=x");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/tmp/ca.pem"));

        let (rest, ssl) =
            take_ssl_settings("host=db password='a \\'b\\\\' sslmode=require dbname=app").unwrap();
        assert_eq!(rest, "host='db' password='a \\'b\\\\' dbname='app'");
        assert_eq!(ssl.mode.as_deref(), Some("require"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a 'b\\"[..]));

        let (rest, ssl) = take_ssl_settings("postgres://db/app").unwrap();
        assert_eq!(rest, "postgres://db/app");
        assert_eq!(ssl, SslSettings::default());
        assert!(take_ssl_settings("host=db password='open").is_err());
        assert!(take_ssl_settings("host").is_err());
    }

    #[test]
    fn unsupported_tls_settings_are_refused_with_the_reason() {
        let err = |dsn: &str| Target::parse(dsn).err().unwrap().to_string();
        assert!(err("postgres://db/app?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("host=db sslmode=bogus").contains("sslmode=\"bogus\""));
        assert!(err("host=db sslmode=verify-ca sslrootcert=system").contains("system"));
        assert!(
            Target::parse("postgres://db/app?sslmode=disable")
                .unwrap()
                .tls
                .is_none()
        );
        assert!(
            Target::parse("postgres://db/app").unwrap().tls.is_some(),
            "prefer"
        );
    }
}
