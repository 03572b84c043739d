//! Policy files (`policies/*.toml`): what happens when a statement violates a rule, the
//! timeouts DDL runs under, retries, and per-connection profiles.
//!
//! ```toml
//! unparsable = "reject"          # statements ddlgate cannot parse: allow | warn | reject
//! rewrite_fallback = "reject"    # a rule says rewrite, but no valid rewrite exists here
//! overrides = "with-reason"      # inline `-- ddlgate:allow …`: off | on | with-reason
//! audit_redact_literals = false  # audit records show string constants as '…'?
//!
//! [timeouts.brief]               # DDL whose locks block reads or writes
//! lock_timeout = "200ms"         # the application's worst stall behind it
//! statement_timeout = "5s"
//! [timeouts.online]              # CONCURRENTLY, VALIDATE: locks that block neither
//! lock_timeout = "5min"
//! statement_timeout = "0"        # 0: none
//!
//! [retry]                        # DDL outside a transaction block that fails with 55P03
//! attempts = 3                   # further attempts; 0 turns retries off
//! initial_backoff = "500ms"      # doubled each time, with jitter, up to max_backoff
//! max_backoff = "10s"
//!
//! [lock_wait]                    # before DDL whose lock blocks reads or writes
//! max_wait = "30s"               # wait without queueing, this long in all, while a
//!                                # transaction older than timeouts.brief.lock_timeout holds
//!                                # a conflicting lock ("0": attempt at once)
//! notice_interval = "5s"         # a NOTICE naming the blockers at most this often
//! end_idle_in_transaction_after = "0"  # end (pg_terminate_backend) blockers idle in
//!                                # transaction longer than this ("0": never, the default)
//! end_application_names = []    # end blockers whose application_name matches (globs)
//!
//! [evidence]                     # pg_stat_statements samples (serve's evidence_dsn) decide
//! window = "24h"                 # drop/rename of tables and columns, column type changes:
//! min_observation = "24h"        # used within the window → refused; unused → allowed
//! ignore_for = []                # rules that ignore the evidence
//!
//! [rules]
//! create-index-nonconcurrent = "rewrite"
//! rename-column = "reject"
//!
//! [[profiles]]                   # the first profile whose selectors all match is used
//! name = "app"
//! users = ["app", "web_*"]       # globs; a selector left out matches everything
//! databases = ["*"]
//! application_names = ["*"]
//! clients = ["10.0.0.0/8"]       # CIDR blocks
//! overrides = "off"              # any setting above may be given; the rest are inherited
//! rules = { rename-column = "warn" }   # merged over the top-level [rules]
//! ```
//!
//! A rule not listed keeps its catalog default (opt-in rules stay off). Unknown keys, unknown
//! rule ids, unknown actions, bad durations and bad address blocks are refused with the file,
//! line and column.

pub(crate) mod matching;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::analysis::RuleId;
use crate::analysis::rules::DefaultAction;

pub(crate) use matching::{Cidr, Glob};

/// What the policy does with a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The rule is off.
    Allow,
    /// Let the statement run; tell the client and the audit trail.
    Warn,
    /// Refuse the statement.
    Reject,
    /// Apply the safe rewrite where it is valid; otherwise the `rewrite_fallback`.
    Rewrite,
}

impl Action {
    /// The action's name as policy files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn => "warn",
            Self::Reject => "reject",
            Self::Rewrite => "rewrite",
        }
    }
}

impl From<DefaultAction> for Action {
    fn from(a: DefaultAction) -> Self {
        match a {
            DefaultAction::Reject => Self::Reject,
            DefaultAction::Rewrite => Self::Rewrite,
            DefaultAction::Warn => Self::Warn,
        }
    }
}

/// What happens when a rule's action is `rewrite` but no valid rewrite exists where the
/// statement runs (inside a transaction block, in a multi-statement query string, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Run the statement as sent, with a warning.
    Warn,
    /// Refuse it.
    Reject,
}

impl From<Fallback> for Action {
    fn from(f: Fallback) -> Self {
        match f {
            Fallback::Warn => Self::Warn,
            Fallback::Reject => Self::Reject,
        }
    }
}

/// What happens to a statement ddlgate cannot parse (newer syntax than its grammar, or a
/// syntax error PostgreSQL would report too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unparsable {
    /// Forward it; the server decides.
    Allow,
    /// Forward it with a warning.
    Warn,
    /// Refuse it.
    Reject,
}

/// Whether inline `-- ddlgate:allow <rule> reason="…"` comments are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overrides {
    /// Ignored: the policy decides alone.
    Off,
    /// Honoured, with or without a reason.
    On,
    /// Honoured only with a non-empty `reason="…"`.
    WithReason,
}

/// A duration setting (`"2s"`, `"5min"`, `"0"` for none), checked while the file is parsed so
/// a bad value is reported with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(DurationValue)
            .map_err(serde::de::Error::custom)
    }
}

/// `lock_timeout` and `statement_timeout` for one class of DDL; zero means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPair {
    /// How long the statement may wait for its locks.
    pub lock_timeout: Duration,
    /// How long the statement may run in all.
    pub statement_timeout: Duration,
}

impl TimeoutPair {
    /// Both are "0": ddlgate leaves the client's values alone, there is nothing to set.
    pub fn sets_nothing(&self) -> bool {
        self.lock_timeout.is_zero() && self.statement_timeout.is_zero()
    }
}

/// Timeouts by class of DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// DDL that takes a lock blocking reads or writes: it must get it quickly or give up.
    pub brief: TimeoutPair,
    /// DDL that only takes locks blocking neither (`CREATE INDEX CONCURRENTLY`, `VALIDATE
    /// CONSTRAINT`, …): it may wait and run long. A short `lock_timeout` here would cancel a
    /// concurrent build while it waits for old transactions.
    pub online: TimeoutPair,
}

/// Retries of DDL that failed with `lock_not_available` (55P03) outside a transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Further attempts after the first; 0 turns retries off.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one, with jitter.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

/// Looking before queueing: before DDL whose lock blocks application reads or writes, ddlgate
/// waits — polling, never holding a place in the lock queue — while a transaction older than
/// the brief class's `lock_timeout` holds (or waits for) a conflicting lock on its tables; then
/// the statement is sent under that short `lock_timeout`, so a transaction that starts in
/// between stalls the application at most that long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWait {
    /// How long a request may wait for blockers in all; zero turns looking off (the statement
    /// is sent at once under `timeouts.brief`).
    pub max_wait: Duration,
    /// The shortest time between two NOTICEs naming the blockers.
    pub notice_interval: Duration,
    /// Blockers idle in a transaction for longer than this are ended; zero: never.
    pub end_idle_in_transaction_after: Duration,
    /// Blockers whose `application_name` matches one of these are ended.
    pub(crate) end_application_names: Vec<Glob>,
}

impl LockWait {
    /// Whether ddlgate looks before queueing.
    pub fn enabled(&self) -> bool {
        !self.max_wait.is_zero()
    }

    /// Why a blocker is ended, if the policy names it expendable: idle in its transaction for
    /// `idle_ms` (when known), or from `application_name`.
    pub fn expendable(&self, idle_ms: Option<u64>, application_name: &str) -> Option<String> {
        let after = self.end_idle_in_transaction_after;
        if let Some(ms) = idle_ms
            && !after.is_zero()
            && u128::from(ms) >= after.as_millis()
        {
            return Some(format!(
                "idle in transaction for more than {} (lock_wait.end_idle_in_transaction_after)",
                humantime::format_duration(after)
            ));
        }
        self.end_application_names
            .iter()
            .find(|g| g.matches(application_name))
            .map(|g| {
                format!(
                    "application_name matches {:?} (lock_wait.end_application_names)",
                    g.as_str()
                )
            })
    }
}

/// Evidence of use for the contract rules (`drop-column`, `rename-column`, `drop-table`,
/// `rename-table`, `change-column-type`): where ddlgate has samples of `pg_stat_statements`
/// (serve's `evidence_dsn`), those rules are decided by them — refused when a statement used
/// the object within `window`, allowed and audited with the evidence when none did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSettings {
    /// How far back a use counts.
    pub window: Duration,
    /// Samples spanning at least this long are enough to decide on (over what they span)
    /// before a whole window exists; until then the rules act as without evidence. At most
    /// `window`.
    pub min_observation: Duration,
    /// Rules that ignore the evidence.
    pub ignore_for: Vec<RuleId>,
}

impl EvidenceSettings {
    /// The rules evidence can decide.
    pub const RULES: [RuleId; 5] = [
        RuleId::DropColumn,
        RuleId::RenameColumn,
        RuleId::DropTable,
        RuleId::RenameTable,
        RuleId::ChangeColumnType,
    ];

    /// Whether evidence decides `rule`.
    pub fn decides(&self, rule: RuleId) -> bool {
        Self::RULES.contains(&rule) && !self.ignore_for.contains(&rule)
    }
}

/// Everything a policy decides for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    rules: BTreeMap<RuleId, Action>,
    /// Timeouts by class of DDL.
    pub timeouts: Timeouts,
    /// Retries after `lock_not_available`.
    pub retry: Retry,
    /// Waiting for blockers without queueing.
    pub lock_wait: LockWait,
    /// When a rewrite is not valid where the statement runs.
    pub rewrite_fallback: Fallback,
    /// Statements that cannot be parsed.
    pub unparsable: Unparsable,
    /// Inline overrides.
    pub overrides: Overrides,
    /// Whether audit records show string constants as `'…'` (DDL can carry secrets in
    /// defaults, comments, passwords and function bodies).
    pub audit_redact_literals: bool,
    /// Evidence of use for the contract rules.
    pub evidence: EvidenceSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rules: BTreeMap::new(),
            timeouts: Timeouts {
                brief: TimeoutPair {
                    lock_timeout: Duration::from_millis(200),
                    statement_timeout: Duration::from_secs(5),
                },
                online: TimeoutPair {
                    lock_timeout: Duration::from_secs(300),
                    statement_timeout: Duration::ZERO,
                },
            },
            retry: Retry {
                attempts: 3,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(10),
            },
            lock_wait: LockWait {
                max_wait: Duration::from_secs(30),
                notice_interval: Duration::from_secs(5),
                end_idle_in_transaction_after: Duration::ZERO,
                end_application_names: Vec::new(),
            },
            rewrite_fallback: Fallback::Reject,
            unparsable: Unparsable::Reject,
            overrides: Overrides::WithReason,
            audit_redact_literals: false,
            evidence: EvidenceSettings {
                window: Duration::from_secs(24 * 3600),
                min_observation: Duration::from_secs(24 * 3600),
                ignore_for: Vec::new(),
            },
        }
    }
}

impl Settings {
    /// The action for a rule: the policy's, or the catalog default (opt-in rules: off).
    pub fn action(&self, rule: RuleId) -> Action {
        self.rules.get(&rule).copied().unwrap_or_else(|| {
            let meta = rule.meta();
            if meta.opt_in {
                Action::Allow
            } else {
                meta.default_action.into()
            }
        })
    }

    /// Sets a rule's action.
    pub fn set_action(&mut self, rule: RuleId, action: Action) {
        self.rules.insert(rule, action);
    }

    /// The rules these settings turn on.
    pub fn enabled_rules(&self) -> Vec<RuleId> {
        RuleId::ALL
            .iter()
            .copied()
            .filter(|r| self.action(*r) != Action::Allow)
            .collect()
    }

    /// The rules listed explicitly.
    pub fn listed_rules(&self) -> impl Iterator<Item = (RuleId, Action)> + '_ {
        self.rules.iter().map(|(r, a)| (*r, *a))
    }

    fn merged(&self, layer: &SettingsLayer) -> Self {
        let mut out = self.clone();
        out.rules.extend(layer.rules.iter().map(|(r, a)| (*r, *a)));
        if let Some(t) = &layer.timeouts {
            for (pair, given) in [
                (&mut out.timeouts.brief, &t.brief),
                (&mut out.timeouts.online, &t.online),
            ] {
                if let Some(g) = given {
                    if let Some(v) = g.lock_timeout {
                        pair.lock_timeout = v.0;
                    }
                    if let Some(v) = g.statement_timeout {
                        pair.statement_timeout = v.0;
                    }
                }
            }
        }
        if let Some(r) = &layer.retry {
            if let Some(a) = r.attempts {
                out.retry.attempts = a;
            }
            if let Some(v) = r.initial_backoff {
                out.retry.initial_backoff = v.0;
            }
            if let Some(v) = r.max_backoff {
                out.retry.max_backoff = v.0;
            }
        }
        if let Some(w) = &layer.lock_wait {
            if let Some(v) = w.max_wait {
                out.lock_wait.max_wait = v.0;
            }
            if let Some(v) = w.notice_interval {
                out.lock_wait.notice_interval = v.0;
            }
            if let Some(v) = w.end_idle_in_transaction_after {
                out.lock_wait.end_idle_in_transaction_after = v.0;
            }
            if let Some(v) = &w.end_application_names {
                out.lock_wait.end_application_names.clone_from(v);
            }
        }
        if let Some(f) = layer.rewrite_fallback {
            out.rewrite_fallback = f;
        }
        if let Some(u) = layer.unparsable {
            out.unparsable = u;
        }
        if let Some(r) = layer.audit_redact_literals {
            out.audit_redact_literals = r;
        }
        if let Some(o) = layer.overrides {
            out.overrides = o;
        }
        if let Some(e) = &layer.evidence {
            if let Some(v) = e.window {
                out.evidence.window = v.0;
            }
            if let Some(v) = e.min_observation {
                out.evidence.min_observation = v.0;
            }
            if let Some(v) = &e.ignore_for {
                out.evidence.ignore_for.clone_from(v);
            }
        }
        out
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutPairFile {
    lock_timeout: Option<DurationValue>,
    statement_timeout: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    brief: Option<TimeoutPairFile>,
    online: Option<TimeoutPairFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    attempts: Option<u32>,
    initial_backoff: Option<DurationValue>,
    max_backoff: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockWaitFile {
    max_wait: Option<DurationValue>,
    notice_interval: Option<DurationValue>,
    end_idle_in_transaction_after: Option<DurationValue>,
    end_application_names: Option<Vec<Glob>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceFile {
    window: Option<DurationValue>,
    min_observation: Option<DurationValue>,
    ignore_for: Option<Vec<RuleId>>,
}

/// The settings a file (or a profile in it) gives; what it leaves out is inherited.
#[derive(Debug, Default)]
struct SettingsLayer {
    rules: BTreeMap<RuleId, Action>,
    timeouts: Option<TimeoutsFile>,
    retry: Option<RetryFile>,
    lock_wait: Option<LockWaitFile>,
    evidence: Option<EvidenceFile>,
    rewrite_fallback: Option<Fallback>,
    unparsable: Option<Unparsable>,
    overrides: Option<Overrides>,
    audit_redact_literals: Option<bool>,
}

// serde's `flatten` does not combine with `deny_unknown_fields`, so the settings keys are
// spelled out in both the file and its profiles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: BTreeMap<RuleId, Action>,
    timeouts: Option<TimeoutsFile>,
    retry: Option<RetryFile>,
    lock_wait: Option<LockWaitFile>,
    evidence: Option<EvidenceFile>,
    rewrite_fallback: Option<Fallback>,
    unparsable: Option<Unparsable>,
    overrides: Option<Overrides>,
    audit_redact_literals: Option<bool>,
    #[serde(default)]
    profiles: Vec<ProfileFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    users: Option<Vec<Glob>>,
    databases: Option<Vec<Glob>>,
    application_names: Option<Vec<Glob>>,
    clients: Option<Vec<Cidr>>,
    #[serde(default)]
    rules: BTreeMap<RuleId, Action>,
    timeouts: Option<TimeoutsFile>,
    retry: Option<RetryFile>,
    lock_wait: Option<LockWaitFile>,
    evidence: Option<EvidenceFile>,
    rewrite_fallback: Option<Fallback>,
    unparsable: Option<Unparsable>,
    overrides: Option<Overrides>,
    audit_redact_literals: Option<bool>,
}

/// A connection, as profiles see it.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The role.
    pub user: &'a str,
    /// The database.
    pub database: &'a str,
    /// `application_name` from the startup packet.
    pub application_name: &'a str,
    /// The client's address.
    pub client: IpAddr,
}

/// Settings for the connections a profile's selectors match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (audit records and logs name it).
    pub name: String,
    users: Option<Vec<Glob>>,
    databases: Option<Vec<Glob>>,
    application_names: Option<Vec<Glob>>,
    clients: Option<Vec<Cidr>>,
    /// The effective settings: the file's, with the profile's on top.
    pub settings: Settings,
}

impl Profile {
    /// Whether every selector the profile gives matches the connection.
    pub fn matches(&self, c: &Connection<'_>) -> bool {
        let any = |globs: &Option<Vec<Glob>>, value: &str| {
            globs
                .as_ref()
                .is_none_or(|g| g.iter().any(|g| g.matches(value)))
        };
        any(&self.users, c.user)
            && any(&self.databases, c.database)
            && any(&self.application_names, c.application_name)
            && self
                .clients
                .as_ref()
                .is_none_or(|blocks| blocks.iter().any(|b| b.contains(c.client)))
    }
}

/// The shipped default policy.
pub(crate) const DEFAULT_POLICY: &str = include_str!("../../../policies/default.toml");

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid policy; the message names line, column and key.
    #[error("invalid policy file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// Two profiles share a name.
    #[error("invalid policy file {}: two profiles are named {name:?}", path.display())]
    DuplicateProfile { path: PathBuf, name: String },
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from (`None` for the built-in default).
    pub source: Option<PathBuf>,
    /// Settings for connections no profile matches.
    pub base: Settings,
    /// Profiles, in file order.
    pub profiles: Vec<Profile>,
}

impl Policy {
    /// The shipped default policy.
    pub fn builtin_default() -> Self {
        // The shipped file is checked by a unit test; a broken one falls back to the defaults.
        Self::parse(DEFAULT_POLICY, Path::new("policies/default.toml"))
            .unwrap_or_else(|_| Self {
                source: None,
                base: Settings::default(),
                profiles: Vec::new(),
            })
            .without_source()
    }

    fn without_source(mut self) -> Self {
        self.source = None;
        self
    }

    /// Loads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses policy text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let base = Settings::default().merged(&SettingsLayer {
            rules: file.rules,
            timeouts: file.timeouts,
            retry: file.retry,
            lock_wait: file.lock_wait,
            evidence: file.evidence,
            rewrite_fallback: file.rewrite_fallback,
            unparsable: file.unparsable,
            overrides: file.overrides,
            audit_redact_literals: file.audit_redact_literals,
        });
        let mut profiles: Vec<Profile> = Vec::with_capacity(file.profiles.len());
        for p in file.profiles {
            if profiles.iter().any(|q| q.name == p.name) {
                return Err(PolicyError::DuplicateProfile {
                    path: path.to_owned(),
                    name: p.name,
                });
            }
            let settings = base.merged(&SettingsLayer {
                rules: p.rules,
                timeouts: p.timeouts,
                retry: p.retry,
                lock_wait: p.lock_wait,
                evidence: p.evidence,
                rewrite_fallback: p.rewrite_fallback,
                unparsable: p.unparsable,
                overrides: p.overrides,
                audit_redact_literals: p.audit_redact_literals,
            });
            profiles.push(Profile {
                name: p.name,
                users: p.users,
                databases: p.databases,
                application_names: p.application_names,
                clients: p.clients,
                settings,
            });
        }
        Ok(Self {
            source: Some(path.to_owned()),
            base,
            profiles,
        })
    }

    /// The profile (by name; `None` for the file's top-level settings) and settings that
    /// apply to a connection.
    pub fn for_connection(&self, c: &Connection<'_>) -> (Option<&str>, &Settings) {
        self.profiles
            .iter()
            .find(|p| p.matches(c))
            .map_or((None, &self.base), |p| (Some(p.name.as_str()), &p.settings))
    }

    /// The action for a rule under the top-level settings (what `check` and `explain` use).
    pub fn action(&self, rule: RuleId) -> Action {
        self.base.action(rule)
    }

    /// The rules the top-level settings turn on.
    pub fn enabled_rules(&self) -> Vec<RuleId> {
        self.base.enabled_rules()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn evidence_keys_are_read_per_profile_and_checked() {
        let policy = Policy::parse(
            "[evidence]\nwindow = \"3d\"\nmin_observation = \"6h\"\nignore_for = [\"drop-table\"]\n\n\
             [[profiles]]\nname = \"reports\"\nusers = [\"reporter\"]\n\
             evidence = { window = \"1h\" }\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let e = &policy.base.evidence;
        assert_eq!(e.window, Duration::from_secs(3 * 86_400));
        assert_eq!(e.min_observation, Duration::from_secs(6 * 3600));
        assert!(e.decides(RuleId::DropColumn));
        assert!(!e.decides(RuleId::DropTable), "ignore_for opts a rule out");
        assert!(
            !e.decides(RuleId::CreateIndexNonconcurrent),
            "evidence decides only the contract rules"
        );
        let profile = &policy.profiles[0].settings.evidence;
        assert_eq!(profile.window, Duration::from_secs(3600));
        assert_eq!(
            profile.min_observation,
            Duration::from_secs(6 * 3600),
            "what a profile leaves out is inherited"
        );
        let default = Policy::builtin_default().base.evidence;
        assert_eq!(default.window, Duration::from_secs(86_400));
        assert!(default.ignore_for.is_empty());
        for bad in [
            "[evidence]\nwindows = \"1h\"\n",
            "[evidence]\nwindow = \"1 fortnight\"\n",
            "[evidence]\nignore_for = [\"drop-everything\"]\n",
        ] {
            assert!(Policy::parse(bad, Path::new("p.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_wait_keys_are_read_and_name_expendable_blockers() {
        let policy = Policy::parse(
            "[lock_wait]\nmax_wait = \"10s\"\nend_idle_in_transaction_after = \"1min\"\nend_application_names = [\"report*\"]\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let w = &policy.base.lock_wait;
        assert_eq!(w.max_wait, Duration::from_secs(10));
        assert!(
            w.expendable(Some(61_000), "app")
                .unwrap()
                .contains("idle in transaction")
        );
        assert!(w.expendable(Some(59_000), "app").is_none());
        assert!(
            w.expendable(None, "report_nightly")
                .unwrap()
                .contains("report*")
        );
        assert!(
            w.expendable(None, "Report").is_none(),
            "globs are case-sensitive"
        );
        let default = Policy::builtin_default();
        assert!(
            default
                .base
                .lock_wait
                .expendable(Some(u64::MAX), "x")
                .is_none(),
            "off by default"
        );
        assert!(
            Policy::parse("[lock_wait]\nend_after = \"1s\"\n", Path::new("p.toml")).is_err(),
            "unknown keys are refused"
        );
    }

    use super::*;

    #[test]
    fn every_shipped_policy_file_loads_and_names_every_rule() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let listed: Vec<RuleId> = policy.base.listed_rules().map(|(r, _)| r).collect();
                for rule in RuleId::ALL {
                    assert!(
                        listed.contains(rule),
                        "{} does not list {rule}",
                        path.display()
                    );
                }
                count += 1;
            }
        }
        assert!(count >= 1);
    }

    #[test]
    fn the_default_policy_matches_the_catalog_defaults() {
        let policy = Policy::builtin_default();
        for rule in RuleId::ALL {
            let meta = rule.meta();
            let expected = if meta.opt_in {
                Action::Allow
            } else {
                meta.default_action.into()
            };
            assert_eq!(policy.action(*rule), expected, "{rule}");
        }
    }

    #[test]
    fn unknown_rule_ids_and_keys_are_refused_with_their_position() {
        let err =
            Policy::parse("[rules]\nrename-colum = \"reject\"\n", Path::new("p.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml") && text.contains("line 2") && text.contains("rename-colum"),
            "{text}"
        );
        let err = Policy::parse("[rulez]\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rulez"), "{err}");
        let err = Policy::parse("[rules]\nrename-column = \"block\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("block") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn shipped_policies_spell_out_the_built_in_settings() {
        let default = Policy::builtin_default();
        let plain = Settings::default();
        assert_eq!(default.base.timeouts, plain.timeouts);
        assert_eq!(default.base.retry, plain.retry);
        assert_eq!(default.base.unparsable, plain.unparsable);
        assert_eq!(default.base.rewrite_fallback, plain.rewrite_fallback);
        assert_eq!(default.base.overrides, plain.overrides);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let observe = Policy::load(&dir.join("observe.toml")).unwrap();
        let strict = Policy::load(&dir.join("strict.toml")).unwrap();
        for rule in RuleId::ALL {
            let d = default.action(*rule);
            assert_eq!(
                observe.action(*rule),
                if d == Action::Allow { d } else { Action::Warn },
                "{rule}"
            );
            // Strict rewrites nothing, and refuses SQL nobody can see (dynamic-ddl).
            assert_eq!(
                strict.action(*rule),
                if d == Action::Rewrite || *rule == RuleId::DynamicDdl {
                    Action::Reject
                } else {
                    d
                },
                "{rule}"
            );
        }
        assert_eq!(observe.base.unparsable, Unparsable::Warn);
    }

    const PROFILED: &str = r#"
overrides = "on"
[timeouts.brief]
lock_timeout = "3s"
[rules]
rename-column = "reject"

[[profiles]]
name = "migrations"
users = ["migrator", "*_deploy"]
clients = ["10.0.0.0/8"]
rules = { rename-column = "warn", drop-column = "allow" }
[profiles.timeouts.brief]
statement_timeout = "1min"

[[profiles]]
name = "app"
application_names = ["web-*"]
overrides = "off"
"#;

    fn conn<'a>(user: &'a str, app: &'a str, client: &str) -> Connection<'a> {
        Connection {
            user,
            database: "app",
            application_name: app,
            client: client.parse().unwrap(),
        }
    }

    #[test]
    fn profiles_are_chosen_by_their_selectors_and_inherit_the_rest() {
        let p = Policy::parse(PROFILED, Path::new("p.toml")).unwrap();
        let (name, s) = p.for_connection(&conn("migrator", "psql", "10.1.2.3"));
        assert_eq!(name, Some("migrations"));
        assert_eq!(s.action(RuleId::RenameColumn), Action::Warn);
        assert_eq!(s.action(RuleId::DropColumn), Action::Allow);
        assert_eq!(s.action(RuleId::DropTable), Action::Reject);
        assert_eq!(s.timeouts.brief.lock_timeout, Duration::from_secs(3));
        assert_eq!(s.timeouts.brief.statement_timeout, Duration::from_secs(60));
        assert_eq!(s.overrides, Overrides::On);
        // Every selector must match: the right user from the wrong network is not the profile.
        let (name, _) = p.for_connection(&conn("ci_deploy", "psql", "192.168.0.1"));
        assert_eq!(name, None);
        let (name, s) = p.for_connection(&conn("ci_deploy", "web-api", "192.168.0.1"));
        assert_eq!(name, Some("app"));
        assert_eq!(s.overrides, Overrides::Off);
        assert_eq!(s.action(RuleId::RenameColumn), Action::Reject);
        // First match wins.
        let (name, _) = p.for_connection(&conn("migrator", "web-api", "10.0.0.1"));
        assert_eq!(name, Some("migrations"));
        let (name, s) = p.for_connection(&conn("someone", "psql", "::1"));
        assert_eq!(name, None);
        assert_eq!(s, &p.base);
    }

    #[test]
    fn bad_settings_are_refused_with_their_position() {
        let cases = [
            ("[timeouts.brief]\nlock_timeout = \"2 seconds\"\n", "line 2"),
            ("[retry]\nattempts = -1\n", "line 2"),
            ("rewrite_fallback = \"rewrite\"\n", "line 1"),
            ("unparsable = \"maybe\"\n", "line 1"),
            (
                "[[profiles]]\nname = \"a\"\nclients = [\"10.0.0.0/40\"]\n",
                "line 3",
            ),
            ("[[profiles]]\nname = \"a\"\nuser = [\"x\"]\n", "line 3"),
            ("[[profiles]]\nusers = [\"x\"]\n", "name"),
            ("[timeouts.fast]\nlock_timeout = \"1s\"\n", "fast"),
        ];
        for (text, expected) in cases {
            let err = Policy::parse(text, Path::new("p.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("p.toml") && err.contains(expected),
                "{text:?}: {err}"
            );
        }
        let dup = "[[profiles]]\nname = \"a\"\n[[profiles]]\nname = \"a\"\n";
        let err = Policy::parse(dup, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("two profiles are named \"a\""), "{err}");
    }

    #[test]
    fn unlisted_rules_keep_their_default_and_allow_turns_a_rule_off() {
        let p = Policy::parse("[rules]\nrename-column = \"allow\"\n", Path::new("p.toml")).unwrap();
        assert_eq!(p.action(RuleId::RenameColumn), Action::Allow);
        assert_eq!(p.action(RuleId::DropTable), Action::Reject);
        assert!(!p.enabled_rules().contains(&RuleId::RenameColumn));
    }
}
