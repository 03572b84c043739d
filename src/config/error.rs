//! Configuration errors: each names the file, key or flag at fault.

use std::path::PathBuf;

use crate::protocol::tls::TlsError;

/// A configuration that ddlgate refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key; the message has line and column.
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A setting has a value ddlgate cannot use.
    #[error("invalid {key} {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    /// A required setting is missing.
    #[error("missing {key}: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    /// The TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
}
