//! ddlgate's own connections to PostgreSQL through tokio-postgres (`check --database`,
//! `explain --database`, the evidence collector of `serve`): libpq connection strings (URL or
//! `key=value`) with libpq's `sslmode` (`disable`, `allow`, `prefer` — the default —,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert`; `PGPASSWORD` is used when the
//! string has no password. The password is never printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::tls::{self, TlsError, UpstreamTlsMode};

/// How long reaching the server may take, unless the string says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection string cannot be used, or the database could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    /// The connection string is not one libpq would accept, or asks for what is not supported.
    #[error("invalid connection string: {0}")]
    Invalid(String),
    /// The TLS settings cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to the server: {0}")]
    Connect(String),
    /// A query failed.
    #[error("cannot read from the server: {0}")]
    Read(String),
}

/// A parsed connection string, ready to connect.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Database {
    /// Parses `dsn`; `application_name` is used unless the string sets one.
    pub(crate) fn parse(dsn: &str, application_name: &str) -> Result<Self, DatabaseError> {
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
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self { config, tls })
    }

    /// Opens a connection (TLS as the string asks); its I/O runs on a spawned task.
    pub(crate) async fn connect(&self) -> Result<tokio_postgres::Client, DatabaseError> {
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
        Ok(client)
    }
}

/// The server's own message where there is one (tokio-postgres's display of a server error
/// is only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
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
        let err = |dsn: &str| Database::parse(dsn, "t").err().unwrap().to_string();
        assert!(err("postgres://db/app?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("host=db sslmode=bogus").contains("sslmode=\"bogus\""));
        assert!(err("host=db sslmode=verify-ca sslrootcert=system").contains("system"));
        assert!(
            Database::parse("postgres://db/app?sslmode=disable", "t")
                .unwrap()
                .tls
                .is_none()
        );
        assert!(
            Database::parse("postgres://db/app", "t")
                .unwrap()
                .tls
                .is_some(),
            "prefer"
        );
    }
}
