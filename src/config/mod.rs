//! Configuration of `ddlgate serve`.
//!
//! Every setting is defined once, in [`ServeOptions`], and can be given three ways, highest
//! precedence first: a command-line flag (`--max-connections`), an environment variable
//! (`DDLGATE_MAX_CONNECTIONS`, for containers) and a key in the TOML file named by `--config`
//! (`max_connections`). Unknown keys are refused with their line and column. The options are
//! validated once into a [`ServeConfig`] before anything listens.
//!
//! Durations are strings with a PostgreSQL unit (`"500ms"`, `"5s"`, `"2min"`), the same form
//! policy files use for `lock_timeout`; a unit is required so nobody has to guess one.

pub(crate) mod dsn;
pub(crate) mod duration;
pub(crate) mod error;
pub(crate) mod policy;

use std::fmt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use duration::{format_duration, parse_duration};
pub(crate) use error::ConfigError;

use crate::protocol::tls::{self, ClientTls, UpstreamTlsMode};
use policy::{Policy, PolicyError};

/// Default listen address: loopback only, PgBouncer's customary port.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// Default cap on concurrent client sessions (each holds one upstream connection).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Default cap on one buffered client message (a `Query`, `Parse`, `Bind`, …): 64 MiB.
/// `CopyData` is streamed and is held only to PostgreSQL's own 1 GiB limit.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default time to open a TCP connection (and TLS) to the upstream.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
/// Default time from accepting a client to its session being ready (TLS, startup packet,
/// upstream connection and authentication).
pub(crate) const DEFAULT_STARTUP_TIMEOUT: &str = "30s";
/// Default time sessions get to finish after SIGTERM before they are closed.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";
/// Default idle time before TCP keepalive probes start, on both legs.
pub(crate) const DEFAULT_TCP_KEEPALIVE: &str = "60s";

/// Settings of `ddlgate serve` as given, before defaults and validation.
#[derive(Debug, Default, Clone, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// Address to accept client connections on [default: 127.0.0.1:6432]
    #[arg(long, env = "DDLGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Upstream PostgreSQL server as HOST:PORT (port 5432 when omitted) or a
    /// postgres://host:port URL (only host and port are used) [default: PGHOST:PGPORT when
    /// PGHOST names a TCP host; otherwise required]
    #[arg(long, env = "DDLGATE_UPSTREAM", value_name = "HOST:PORT")]
    pub upstream: Option<String>,

    /// PEM certificate chain presented to clients that ask for TLS
    #[arg(
        long,
        env = "DDLGATE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "DDLGATE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Refuse clients that do not use TLS (cancel requests excepted) [default: false]
    #[arg(long, env = "DDLGATE_REQUIRE_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_tls: Option<bool>,

    /// TLS towards the upstream, as libpq's sslmode [default: disable]
    #[arg(long, env = "DDLGATE_UPSTREAM_TLS", value_name = "MODE")]
    pub upstream_tls: Option<UpstreamTlsMode>,

    /// PEM CA certificates for --upstream-tls verify-ca or verify-full
    #[arg(long, env = "DDLGATE_UPSTREAM_TLS_CA", value_name = "FILE")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// Concurrent client sessions; more get SQLSTATE 53300 [default: 1000]
    #[arg(long, env = "DDLGATE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Largest client message ddlgate buffers, in bytes; larger ones end the session with
    /// 08P01 [default: 67108864]
    #[arg(long, env = "DDLGATE_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Time allowed to connect to the upstream [default: 5s]
    #[arg(long, env = "DDLGATE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Time allowed from accept to a ready session (TLS, startup, authentication) [default: 30s]
    #[arg(long, env = "DDLGATE_STARTUP_TIMEOUT", value_name = "DURATION")]
    pub startup_timeout: Option<String>,

    /// Drain deadline after SIGTERM/SIGINT before open sessions are closed [default: 30s]
    #[arg(long, env = "DDLGATE_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// Idle time before TCP keepalive probes, on both legs; "0" turns them off [default: 60s]
    #[arg(long, env = "DDLGATE_TCP_KEEPALIVE", value_name = "DURATION")]
    pub tcp_keepalive: Option<String>,

    /// Worker threads serving sessions [default: half the CPU cores, at least 1]
    #[arg(long, env = "DDLGATE_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,

    /// Run the threads serving sessions under Linux's SCHED_BATCH: woken by a client or the
    /// server, they do not preempt it just before it blocks [default: true]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_SCHED_BATCH", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub sched_batch: Option<bool>,

    /// Policy file (TOML); SIGHUP reloads it [default: the built-in policy, same as
    /// policies/default.toml]
    #[arg(long, env = "DDLGATE_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) here
    /// [default: none]
    #[arg(long, env = "DDLGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Audit trail: a file of JSON lines, or "-" for standard output [default: none]
    #[arg(long, env = "DDLGATE_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<PathBuf>,

    /// When audit lines are forced to disk: always (before the client is answered),
    /// interval (about once a second), never [default: always]
    #[arg(long, env = "DDLGATE_AUDIT_FSYNC", value_name = "WHEN")]
    pub audit_fsync: Option<crate::audit::Fsync>,

    /// Start a new audit file when the current one would exceed this many bytes [default: no
    /// size limit]
    #[arg(long, env = "DDLGATE_AUDIT_ROTATE_BYTES", value_name = "BYTES")]
    pub audit_rotate_bytes: Option<u64>,

    /// Start a new audit file when the current one is this old, e.g. "1d" [default: never]
    #[arg(long, env = "DDLGATE_AUDIT_ROTATE_INTERVAL", value_name = "DURATION")]
    pub audit_rotate_interval: Option<String>,

    /// Also write the audit trail to a Postgres table, through this libpq-style connection
    /// string (a separate role) [default: none]
    #[arg(long, env = "DDLGATE_AUDIT_TABLE_DSN", value_name = "DSN")]
    pub audit_table_dsn: Option<String>,

    /// The audit table, created if missing [default: ddlgate_audit]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_AUDIT_TABLE", value_name = "NAME")]
    pub audit_table: Option<String>,

    /// This instance's name in the audit table's `instance` column (each instance keeps its
    /// own chain) [default: host name and listen port]
    #[arg(long, env = "DDLGATE_AUDIT_INSTANCE", value_name = "NAME")]
    pub audit_instance: Option<String>,

    /// Records that may wait for the audit table before writes count as failed
    /// [default: 10000]
    #[arg(long, env = "DDLGATE_AUDIT_TABLE_QUEUE", value_name = "N")]
    pub audit_table_queue: Option<usize>,

    /// Append the audit chain's head (seq and hash) to this file after each sync, for
    /// `ddlgate audit verify --anchor` (keep it where the trail's writer cannot rewrite it:
    /// another volume, append-only)
    #[arg(long, env = "DDLGATE_AUDIT_ANCHOR", value_name = "PATH")]
    pub audit_anchor: Option<PathBuf>,

    /// Sample pg_stat_statements through this libpq-style connection string (a role with
    /// pg_read_all_stats that may create the evidence schema), as evidence of which tables and
    /// columns queries use [default: none]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_EVIDENCE_DSN", value_name = "DSN")]
    pub evidence_dsn: Option<String>,

    /// Schema of the evidence tables, in the database evidence_dsn names, created if missing
    /// [default: ddlgate]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_EVIDENCE_SCHEMA", value_name = "NAME")]
    pub evidence_schema: Option<String>,

    /// Time between two samples of pg_stat_statements [default: 5min]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_EVIDENCE_INTERVAL", value_name = "DURATION")]
    pub evidence_interval: Option<String>,

    /// Also count the statements clients run through ddlgate, as evidence of use beside
    /// pg_stat_statements (a cost on every request; see README "Evidence of use")
    /// [default: false]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_EVIDENCE_OBSERVE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub evidence_observe: Option<bool>,

    /// How long samples are kept; at least the policy's evidence window [default: 7d]
    #[allow(
        clippy::doc_markdown,
        reason = "clap shows this text in --help as it is"
    )]
    #[arg(long, env = "DDLGATE_EVIDENCE_RETENTION", value_name = "DURATION")]
    pub evidence_retention: Option<String>,

    /// Refuse DDL when its audit record cannot be written [default: false]
    #[arg(long, env = "DDLGATE_AUDIT_FAIL_CLOSED", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub audit_fail_closed: Option<bool>,
}

impl ServeOptions {
    /// Reads options from a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Fills every setting not given here from `lower` (the config file).
    #[must_use]
    pub fn or(self, lower: Self) -> Self {
        Self {
            listen: self.listen.or(lower.listen),
            upstream: self.upstream.or(lower.upstream),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            require_tls: self.require_tls.or(lower.require_tls),
            upstream_tls: self.upstream_tls.or(lower.upstream_tls),
            upstream_tls_ca: self.upstream_tls_ca.or(lower.upstream_tls_ca),
            max_connections: self.max_connections.or(lower.max_connections),
            max_message_bytes: self.max_message_bytes.or(lower.max_message_bytes),
            connect_timeout: self.connect_timeout.or(lower.connect_timeout),
            startup_timeout: self.startup_timeout.or(lower.startup_timeout),
            shutdown_timeout: self.shutdown_timeout.or(lower.shutdown_timeout),
            tcp_keepalive: self.tcp_keepalive.or(lower.tcp_keepalive),
            worker_threads: self.worker_threads.or(lower.worker_threads),
            sched_batch: self.sched_batch.or(lower.sched_batch),
            policy: self.policy.or(lower.policy),
            audit_log: self.audit_log.or(lower.audit_log),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            audit_fsync: self.audit_fsync.or(lower.audit_fsync),
            audit_rotate_bytes: self.audit_rotate_bytes.or(lower.audit_rotate_bytes),
            audit_rotate_interval: self.audit_rotate_interval.or(lower.audit_rotate_interval),
            audit_fail_closed: self.audit_fail_closed.or(lower.audit_fail_closed),
            audit_anchor: self.audit_anchor.or(lower.audit_anchor),
            audit_table_dsn: self.audit_table_dsn.or(lower.audit_table_dsn),
            audit_table: self.audit_table.or(lower.audit_table),
            audit_instance: self.audit_instance.or(lower.audit_instance),
            audit_table_queue: self.audit_table_queue.or(lower.audit_table_queue),
            evidence_dsn: self.evidence_dsn.or(lower.evidence_dsn),
            evidence_schema: self.evidence_schema.or(lower.evidence_schema),
            evidence_interval: self.evidence_interval.or(lower.evidence_interval),
            evidence_retention: self.evidence_retention.or(lower.evidence_retention),
            evidence_observe: self.evidence_observe.or(lower.evidence_observe),
        }
    }
}

/// Where the upstream PostgreSQL server is. The host is resolved at every connection, so a DNS
/// change (a failover, a Kubernetes service) is followed without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Upstream {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: "upstream",
            value: dsn::redact(s),
            reason: reason.to_owned(),
        };
        let s = s.trim();
        // A libpq URL: only its host and port matter here (the client authenticates itself,
        // and picks its own database and options).
        let s = match s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            None => s,
            Some(rest) => {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if hosts.contains(',') {
                    return Err(invalid(
                        "ddlgate connects to one upstream; give one host, not a list",
                    ));
                }
                if hosts.is_empty() {
                    return Err(invalid(
                        "the URL names no host (Unix sockets are not supported)",
                    ));
                }
                hosts
            }
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in an IPv6 address"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| invalid("expected ':' after ']'"))?,
                    ),
                ),
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(invalid("write an IPv6 address in brackets: [::1]:5432"));
                }
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        let port = match port {
            None => 5432,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// The upstream TLS: `--upstream-tls`/`--upstream-tls-ca`, or what the upstream URL says;
/// both given and different is refused.
fn upstream_tls_setting(
    opts: &ServeOptions,
    upstream: &str,
) -> Result<
    (
        UpstreamTlsMode,
        Option<std::sync::Arc<rustls::ClientConfig>>,
    ),
    ConfigError,
> {
    let (url_tls, url_ca) = upstream_url_tls(upstream)?;
    let mode = match (opts.upstream_tls, url_tls) {
        (Some(given), Some(url)) if given != url => {
            return Err(invalid(
                "upstream_tls",
                &given.to_string(),
                &format!(
                    "the upstream URL says sslmode={url}: give one of them, or the same in both"
                ),
            ));
        }
        (Some(mode), _) | (None, Some(mode)) => mode,
        (None, None) => UpstreamTlsMode::default(),
    };
    let ca = opts.upstream_tls_ca.clone().or(url_ca);
    Ok((mode, tls::upstream(mode, ca.as_deref())?))
}

/// The TLS an upstream URL asks for (`?sslmode=…&sslrootcert=…`): honoured, or refused with
/// the reason — never dropped. `allow` and `prefer` are refused: ddlgate does not fall back
/// to plaintext.
fn upstream_url_tls(
    upstream: &str,
) -> Result<(Option<UpstreamTlsMode>, Option<PathBuf>), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "upstream",
        value: dsn::redact(upstream),
        reason,
    };
    let mut mode = None;
    let mut ca = None;
    for (key, value) in dsn::url_parameters(upstream).map_err(invalid)? {
        match key.as_str() {
            "sslmode" => {
                mode = Some(match value.as_str() {
                    "disable" => UpstreamTlsMode::Disable,
                    "require" => UpstreamTlsMode::Require,
                    "verify-ca" => UpstreamTlsMode::VerifyCa,
                    "verify-full" => UpstreamTlsMode::VerifyFull,
                    "allow" | "prefer" => {
                        return Err(invalid(format!(
                            "sslmode={value} may fall back to plaintext, which ddlgate does not do: say disable or require"
                        )));
                    }
                    other => {
                        return Err(invalid(format!(
                            "sslmode={other:?} is not one of disable, require, verify-ca, verify-full"
                        )));
                    }
                });
            }
            "sslrootcert" => ca = Some(PathBuf::from(value)),
            _ => {}
        }
    }
    Ok((mode, ca))
}

/// `PGHOST[:PGPORT]`, libpq's defaults, when PGHOST names a TCP host (not a socket directory).
fn pg_env_upstream() -> Option<String> {
    let host = std::env::var("PGHOST")
        .ok()
        .filter(|h| !h.is_empty() && !h.starts_with('/'))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Some(
        match std::env::var("PGPORT").ok().filter(|p| !p.is_empty()) {
            Some(port) => format!("{host}:{port}"),
            None => host,
        },
    )
}

/// The validated configuration of a running proxy.
#[derive(Clone)]
pub struct ServeConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The PostgreSQL server behind ddlgate.
    pub upstream: Upstream,
    /// TLS offered to clients; `None` answers every `SSLRequest` with `N`.
    pub client_tls: Option<ClientTls>,
    /// Whether plaintext sessions are refused.
    pub require_tls: bool,
    /// The upstream `sslmode`.
    pub upstream_tls_mode: UpstreamTlsMode,
    /// The rustls client configuration for the upstream leg, unless `disable`.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// Cap on concurrent sessions.
    pub max_connections: usize,
    /// Cap on one buffered client message, in bytes.
    pub max_message_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Accept-to-ready timeout.
    pub startup_timeout: Duration,
    /// Drain deadline at shutdown.
    pub shutdown_timeout: Duration,
    /// TCP keepalive idle time, or `None` for off.
    pub tcp_keepalive: Option<Duration>,
    /// Worker threads (each a single-threaded runtime owning its sessions).
    pub worker_threads: usize,
    /// Whether the serving threads run under `SCHED_BATCH` (`proxy::sched`).
    pub sched_batch: bool,
    /// The policy in force, reloadable.
    pub policy: Arc<PolicyStore>,
    /// The audit trail, if any.
    pub audit: Option<AuditConfig>,
    /// Where metrics and health checks are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Sampling of `pg_stat_statements` for the contract rules, if configured.
    pub(crate) evidence: Option<crate::evidence::collect::Sampling>,
}

/// Where and how the audit trail is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// A file, or `-` for standard output; none when only the table is written.
    pub path: Option<PathBuf>,
    /// The Postgres table sink.
    pub table: Option<crate::audit::table::TableTarget>,
    /// When lines are forced to disk.
    pub fsync: crate::audit::Fsync,
    /// Rotate before a file exceeds this size.
    pub rotate_bytes: Option<u64>,
    /// Rotate when a file is this old.
    pub rotate_after: Option<Duration>,
    /// Refuse DDL when its record cannot be written.
    pub fail_closed: bool,
    /// Where the chain's head is appended after each sync.
    pub anchor: Option<PathBuf>,
}

impl ServeConfig {
    /// The effective configuration, one `key = value` per line with the config file's keys
    /// (passwords shown as `***`): what `serve --check-config` prints.
    pub fn effective(&self) -> String {
        let d = |d: Duration| format!("\"{}\"", duration::format_duration(d));
        let q = |s: &str| format!("{s:?}");
        let mut lines = vec![
            ("listen", q(&self.listen.to_string())),
            ("upstream", q(&self.upstream.to_string())),
            ("upstream_tls", q(&self.upstream_tls_mode.to_string())),
            (
                "client_tls",
                q(if self.client_tls.is_some() {
                    "offered (tls_cert, tls_key)"
                } else {
                    "off"
                }),
            ),
            ("require_tls", self.require_tls.to_string()),
            ("max_connections", self.max_connections.to_string()),
            ("max_message_bytes", self.max_message_bytes.to_string()),
            ("connect_timeout", d(self.connect_timeout)),
            ("startup_timeout", d(self.startup_timeout)),
            ("shutdown_timeout", d(self.shutdown_timeout)),
            (
                "tcp_keepalive",
                d(self.tcp_keepalive.unwrap_or(Duration::ZERO)),
            ),
            ("worker_threads", self.worker_threads.to_string()),
            ("sched_batch", self.sched_batch.to_string()),
            ("policy", q(&self.policy.describe())),
            (
                "metrics_listen",
                self.metrics_listen
                    .map_or_else(|| q("off"), |a| q(&a.to_string())),
            ),
        ];
        match &self.audit {
            None => lines.push(("audit_log", q("off"))),
            Some(a) => {
                if let Some(path) = &a.path {
                    lines.push(("audit_log", q(&path.display().to_string())));
                }
                lines.push(("audit_fsync", q(&format!("{:?}", a.fsync).to_lowercase())));
                if let Some(bytes) = a.rotate_bytes {
                    lines.push(("audit_rotate_bytes", bytes.to_string()));
                }
                if let Some(after) = a.rotate_after {
                    lines.push(("audit_rotate_interval", d(after)));
                }
                if let Some(t) = &a.table {
                    lines.push(("audit_table_dsn", q(&dsn::redact(&t.dsn))));
                    lines.push(("audit_table", q(&t.table)));
                    lines.push(("audit_instance", q(&t.instance)));
                    lines.push(("audit_table_queue", t.queue.to_string()));
                }
                if let Some(anchor) = &a.anchor {
                    lines.push(("audit_anchor", q(&anchor.display().to_string())));
                }
                lines.push(("audit_fail_closed", a.fail_closed.to_string()));
            }
        }
        if let Some(e) = &self.evidence {
            lines.push(("evidence_dsn", q(&dsn::redact(&e.dsn))));
            lines.push(("evidence_schema", q(e.store.schema())));
            lines.push(("evidence_interval", d(e.interval)));
            lines.push(("evidence_retention", d(e.retention)));
            lines.push(("evidence_observe", e.observer.is_some().to_string()));
        }
        let mut out = String::new();
        for (key, value) in lines {
            let _ = writeln!(out, "{key} = {value}");
        }
        out
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("client_tls", &self.client_tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("upstream_tls_mode", &self.upstream_tls_mode)
            .field("max_connections", &self.max_connections)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("worker_threads", &self.worker_threads)
            .field("sched_batch", &self.sched_batch)
            .field("policy", &self.policy.describe())
            .field("audit", &self.audit)
            .field("metrics_listen", &self.metrics_listen)
            .field("evidence", &self.evidence.is_some())
            .finish_non_exhaustive()
    }
}

/// Half the cores, at least one. ddlgate usually shares its machine with the application or
/// the database; each worker wakes on its own, so on a busy two-core machine one worker serves
/// as many queries as two with less CPU per query (see benches/pgbench.py).
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn duration_setting(
    key: &'static str,
    given: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let value = given.unwrap_or(default);
    parse_duration(value).map_err(|e| ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

impl ServeConfig {
    /// Applies defaults, checks every setting and loads TLS material.
    pub fn from_options(opts: &ServeOptions) -> Result<Self, ConfigError> {
        let listen_str = opts.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_str.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            value: listen_str.to_owned(),
            reason: "expected IP:PORT, e.g. 0.0.0.0:6432 or [::]:6432".into(),
        })?;
        let from_pg_env = pg_env_upstream();
        let upstream_text = opts.upstream.as_deref().or(from_pg_env.as_deref()).ok_or(
            ConfigError::Missing {
                key: "upstream",
                hint: "pass --upstream HOST:PORT (or a postgres:// URL), set DDLGATE_UPSTREAM or PGHOST, or set upstream in the config file",
            },
        )?;
        let upstream = Upstream::parse(upstream_text)?;
        let client_tls = client_tls_setting(opts)?;
        let require_tls = opts.require_tls.unwrap_or(false);
        if require_tls && client_tls.is_none() {
            return Err(ConfigError::Missing {
                key: "tls_cert",
                hint: "require_tls needs tls_cert and tls_key",
            });
        }
        let (upstream_tls_mode, upstream_tls) = upstream_tls_setting(opts, upstream_text)?;
        let max_connections = opts.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid(
                "max_connections",
                "0",
                "at least one connection must be allowed",
            ));
        }
        let max_message_bytes = opts.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(1024..=crate::protocol::frame::POSTGRES_MESSAGE_LIMIT).contains(&max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                &max_message_bytes.to_string(),
                "must be between 1024 and 1073741823 (PostgreSQL's own limit)",
            ));
        }
        let policy = Arc::new(PolicyStore::load(opts.policy.clone())?);
        let audit = audit_setting(opts)?;
        let metrics_listen = match opts.metrics_listen.as_deref() {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| ConfigError::Invalid {
                key: "metrics_listen",
                value: text.to_owned(),
                reason: "expected IP:PORT, e.g. 0.0.0.0:9187".into(),
            })?),
        };
        let evidence = evidence_setting(opts, &policy.current())?;
        let keepalive = duration_setting(
            "tcp_keepalive",
            opts.tcp_keepalive.as_deref(),
            DEFAULT_TCP_KEEPALIVE,
        )?;
        Ok(Self {
            listen,
            upstream,
            client_tls,
            require_tls,
            upstream_tls_mode,
            upstream_tls,
            max_connections,
            max_message_bytes,
            connect_timeout: positive(duration_setting(
                "connect_timeout",
                opts.connect_timeout.as_deref(),
                DEFAULT_CONNECT_TIMEOUT,
            )?)
            .map_err(|()| invalid("connect_timeout", "0", "must be greater than zero"))?,
            startup_timeout: positive(duration_setting(
                "startup_timeout",
                opts.startup_timeout.as_deref(),
                DEFAULT_STARTUP_TIMEOUT,
            )?)
            .map_err(|()| invalid("startup_timeout", "0", "must be greater than zero"))?,
            shutdown_timeout: duration_setting(
                "shutdown_timeout",
                opts.shutdown_timeout.as_deref(),
                DEFAULT_SHUTDOWN_TIMEOUT,
            )?,
            tcp_keepalive: (!keepalive.is_zero()).then_some(keepalive),
            worker_threads: match opts.worker_threads {
                Some(0) => {
                    return Err(invalid(
                        "worker_threads",
                        "0",
                        "at least one worker thread is needed",
                    ));
                }
                Some(n) => n,
                None => default_worker_threads(),
            },
            sched_batch: opts.sched_batch.unwrap_or(true),
            policy,
            audit,
            metrics_listen,
            evidence,
        })
    }
}

/// Default time between two samples of `pg_stat_statements`.
const DEFAULT_EVIDENCE_INTERVAL: &str = "5min";
/// Default time samples are kept.
const DEFAULT_EVIDENCE_RETENTION: &str = "7d";

/// The evidence sampler's settings, when `evidence_dsn` is given.
fn evidence_setting(
    opts: &ServeOptions,
    policy: &Policy,
) -> Result<Option<crate::evidence::collect::Sampling>, ConfigError> {
    let given = opts.evidence_schema.is_some()
        || opts.evidence_interval.is_some()
        || opts.evidence_retention.is_some()
        || opts.evidence_observe == Some(true);
    let Some(text) = opts.evidence_dsn.as_deref() else {
        if given {
            return Err(ConfigError::Missing {
                key: "evidence_dsn",
                hint: "evidence_schema, evidence_interval, evidence_retention and evidence_observe need evidence_dsn",
            });
        }
        return Ok(None);
    };
    let database = crate::pgclient::Database::parse(text, "ddlgate evidence")
        .map_err(|e| invalid("evidence_dsn", &dsn::redact(text), &e.to_string()))?;
    let schema = opts.evidence_schema.as_deref().unwrap_or("ddlgate");
    let store = crate::evidence::store::Store::new(schema)
        .map_err(|e| invalid("evidence_schema", schema, &e.to_string()))?;
    let interval = positive(duration_setting(
        "evidence_interval",
        opts.evidence_interval.as_deref(),
        DEFAULT_EVIDENCE_INTERVAL,
    )?)
    .map_err(|()| invalid("evidence_interval", "0", "must be greater than zero"))?;
    let retention = duration_setting(
        "evidence_retention",
        opts.evidence_retention.as_deref(),
        DEFAULT_EVIDENCE_RETENTION,
    )?;
    if retention < interval {
        return Err(invalid(
            "evidence_retention",
            &duration::format_duration(retention),
            "must be at least evidence_interval",
        ));
    }
    let longest = std::iter::once(&policy.base)
        .chain(policy.profiles.iter().map(|p| &p.settings))
        .map(|s| s.evidence.window)
        .max()
        .unwrap_or_default();
    if retention < longest {
        return Err(invalid(
            "evidence_retention",
            &duration::format_duration(retention),
            &format!(
                "shorter than the policy's evidence window ({}): samples would be deleted before they could decide",
                duration::format_duration(longest)
            ),
        ));
    }
    Ok(Some(crate::evidence::collect::Sampling {
        dsn: text.to_owned(),
        database,
        store,
        interval,
        retention,
        observer: (opts.evidence_observe == Some(true)).then(Arc::default),
    }))
}

/// The policy in force and where it came from. Sessions read it once per decision; `SIGHUP`
/// swaps in a new one, and a file that does not load leaves the old one in force.
#[derive(Debug)]
pub struct PolicyStore {
    path: Option<PathBuf>,
    current: std::sync::RwLock<Arc<Policy>>,
}

impl PolicyStore {
    /// Loads the file at `path`, or the built-in policy.
    pub fn load(path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let policy = match &path {
            Some(p) => Policy::load(p)?,
            None => Policy::builtin_default(),
        };
        Ok(Self {
            path,
            current: std::sync::RwLock::new(Arc::new(policy)),
        })
    }

    /// A store holding `policy`, with no file to reload from.
    pub fn fixed(policy: Policy) -> Self {
        Self {
            path: None,
            current: std::sync::RwLock::new(Arc::new(policy)),
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the file again; on error the policy in force stays.
    pub fn reload(&self) -> Result<Option<&Path>, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let policy = Arc::new(Policy::load(path)?);
        match self.current.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
        Ok(Some(path))
    }

    /// The file, or "built-in default".
    pub fn describe(&self) -> String {
        self.path.as_ref().map_or_else(
            || "built-in default".to_owned(),
            |p| p.display().to_string(),
        )
    }
}

fn audit_setting(opts: &ServeOptions) -> Result<Option<AuditConfig>, ConfigError> {
    let table = match &opts.audit_table_dsn {
        None => None,
        Some(dsn) => {
            let queue = opts.audit_table_queue.unwrap_or(10_000);
            if queue == 0 {
                return Err(invalid(
                    "audit_table_queue",
                    "0",
                    "at least one record must be able to wait",
                ));
            }
            Some(crate::audit::table::TableTarget {
                dsn: dsn.clone(),
                table: opts
                    .audit_table
                    .clone()
                    .unwrap_or_else(|| "ddlgate_audit".to_owned()),
                instance: opts.audit_instance.clone().unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map_or_else(|_| "ddlgate".to_owned(), |h| h.trim().to_owned());
                    let port = opts
                        .listen
                        .as_deref()
                        .and_then(|l| l.rsplit(':').next())
                        .unwrap_or("6432");
                    format!("{host}:{port}")
                }),
                queue,
            })
        }
    };
    let Some(path) = opts
        .audit_log
        .clone()
        .or_else(|| table.as_ref().map(|_| PathBuf::new()))
    else {
        if opts.audit_fail_closed == Some(true) {
            return Err(ConfigError::Missing {
                key: "audit_log",
                hint: "audit_fail_closed needs an audit_log or audit_table_dsn to write to",
            });
        }
        return Ok(None);
    };
    let rotate_after = match opts.audit_rotate_interval.as_deref() {
        None => None,
        Some(text) => {
            let d = parse_duration(text).map_err(|e| ConfigError::Invalid {
                key: "audit_rotate_interval",
                value: text.to_owned(),
                reason: e.to_string(),
            })?;
            (!d.is_zero()).then_some(d)
        }
    };
    if opts.audit_rotate_bytes == Some(0) {
        return Err(invalid(
            "audit_rotate_bytes",
            "0",
            "a file must be allowed at least one record",
        ));
    }
    Ok(Some(AuditConfig {
        path: (!path.as_os_str().is_empty()).then_some(path),
        table,
        fsync: opts.audit_fsync.unwrap_or_default(),
        rotate_bytes: opts.audit_rotate_bytes,
        rotate_after,
        fail_closed: opts.audit_fail_closed.unwrap_or(false),
        anchor: opts.audit_anchor.clone(),
    }))
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn positive(d: Duration) -> Result<Duration, ()> {
    if d.is_zero() { Err(()) } else { Ok(d) }
}

/// The certificate and key for clients: both or neither.
fn client_tls_setting(opts: &ServeOptions) -> Result<Option<ClientTls>, ConfigError> {
    match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::client_facing(cert, key)?)),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing {
            key: "tls_key",
            hint: "tls_cert is set, so tls_key must name its private key",
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            key: "tls_cert",
            hint: "tls_key is set, so tls_cert must name its certificate",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(upstream: &str) -> ServeOptions {
        ServeOptions {
            upstream: Some(upstream.into()),
            ..ServeOptions::default()
        }
    }

    #[test]
    fn defaults_apply_when_only_upstream_is_given() {
        let cfg = ServeConfig::from_options(&opts("db.internal")).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:6432".parse().unwrap());
        assert_eq!(
            cfg.upstream,
            Upstream {
                host: "db.internal".into(),
                port: 5432
            }
        );
        assert_eq!(cfg.max_connections, 1000);
        assert_eq!(cfg.max_message_bytes, 64 << 20);
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.tcp_keepalive, Some(Duration::from_secs(60)));
        assert!(cfg.upstream_tls.is_none() && cfg.client_tls.is_none());
    }

    #[test]
    fn evidence_settings_are_validated_and_shown_without_the_password() {
        let mut o = opts("db.internal");
        o.evidence_dsn = Some("postgres://ddlgate_evidence:secret@db.internal/app".into());
        let cfg = ServeConfig::from_options(&o).unwrap();
        let sampling = cfg.evidence.as_ref().unwrap();
        assert_eq!(sampling.interval, Duration::from_secs(300));
        assert_eq!(sampling.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(sampling.store.schema(), "ddlgate");
        let shown = cfg.effective();
        assert!(
            shown.contains("evidence_dsn = \"postgres://ddlgate_evidence:***@db.internal/app\""),
            "{shown}"
        );
        assert!(!shown.contains("secret"));

        let err = |o: &ServeOptions| ServeConfig::from_options(o).err().unwrap().to_string();
        let mut short = o.clone();
        short.evidence_retention = Some("12h".into());
        assert!(
            err(&short).contains("shorter than the policy's evidence window (1d)"),
            "{}",
            err(&short)
        );
        let mut under = o.clone();
        under.evidence_interval = Some("1h".into());
        under.evidence_retention = Some("30min".into());
        assert!(
            err(&under).contains("at least evidence_interval"),
            "{}",
            err(&under)
        );
        let mut alone = opts("db.internal");
        alone.evidence_schema = Some("x".into());
        assert!(err(&alone).contains("evidence_dsn"), "{}", err(&alone));
        let mut bad = o.clone();
        bad.evidence_dsn = Some("host=db sslmode=bogus".into());
        assert!(err(&bad).contains("evidence_dsn"), "{}", err(&bad));
    }

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("postgres://migrator:secret@db.internal:6000/app?sslmode=require")
            .unwrap();
        assert_eq!((u.host.as_str(), u.port), ("db.internal", 6000));
        let u = Upstream::parse("postgresql://[::1]/app").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5432));
        assert_eq!(Upstream::parse("postgres://h").unwrap().port, 5432);
        assert!(Upstream::parse("postgres://a:1,b:2/app").is_err());
        assert!(Upstream::parse("postgresql:///app?host=/tmp").is_err());
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(Upstream::parse("h:6000").unwrap().port, 6000);
        assert_eq!(Upstream::parse("[::1]:6000").unwrap().host, "::1");
        assert_eq!(Upstream::parse("[::1]").unwrap().port, 5432);
        assert_eq!(
            Upstream::parse("[::1]:6000").unwrap().to_string(),
            "[::1]:6000"
        );
        for bad in ["::1:5432", "h:0", "h:x", ":5432", "[::1"] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_upstream_says_how_to_set_it() {
        // PGHOST would stand in for the upstream.
        if std::env::var_os("PGHOST").is_some() {
            return;
        }
        let err = ServeConfig::from_options(&ServeOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing upstream: pass --upstream HOST:PORT (or a postgres:// URL), set DDLGATE_UPSTREAM or PGHOST, or set upstream in the config file"
        );
    }

    #[test]
    fn bad_duration_names_the_key() {
        let mut o = opts("h");
        o.connect_timeout = Some("5".into());
        let err = ServeConfig::from_options(&o).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid connect_timeout \"5\": invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn require_tls_without_a_certificate_is_refused() {
        let mut o = opts("h");
        o.require_tls = Some(true);
        assert!(
            ServeConfig::from_options(&o)
                .unwrap_err()
                .to_string()
                .contains("require_tls needs tls_cert")
        );
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let file: ServeOptions =
            toml::from_str("upstream = \"file-host:1\"\nlisten = \"0.0.0.0:7000\"\n").unwrap();
        let merged = opts("flag-host:2").or(file);
        assert_eq!(merged.upstream.as_deref(), Some("flag-host:2"));
        assert_eq!(merged.listen.as_deref(), Some("0.0.0.0:7000"));
    }

    #[test]
    fn unknown_config_key_is_refused_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ddlgate.toml");
        std::fs::write(&path, "upstream = \"h\"\nlisen = \"x\"\n").unwrap();
        let err = ServeOptions::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("ddlgate.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }
}
