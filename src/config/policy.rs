//! Policy files (`policies/*.toml`): what happens when a statement violates a rule.
//!
//! ```toml
//! [rules]
//! create-index-nonconcurrent = "rewrite"
//! rename-column = "reject"
//! ```
//! A rule not listed keeps its catalog default (opt-in rules stay off). Unknown keys, unknown
//! rule ids and unknown actions are refused with the file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::analysis::RuleId;
use crate::analysis::rules::DefaultAction;

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
    /// Apply the safe rewrite where it is valid; otherwise refuse.
    Rewrite,
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

/// The shipped default policy.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: BTreeMap<RuleId, Action>,
}

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
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from (`None` for the built-in default).
    pub source: Option<PathBuf>,
    rules: BTreeMap<RuleId, Action>,
}

impl Policy {
    /// The shipped default policy.
    pub fn builtin_default() -> Self {
        // The shipped file is checked by a unit test; a broken one falls back to rule defaults.
        let rules = toml::from_str::<PolicyFile>(DEFAULT_POLICY)
            .map(|f| f.rules)
            .unwrap_or_default();
        Self {
            source: None,
            rules,
        }
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
        Ok(Self {
            source: Some(path.to_owned()),
            rules: file.rules,
        })
    }

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

    /// The rules the policy turns on.
    pub fn enabled_rules(&self) -> Vec<RuleId> {
        RuleId::ALL
            .iter()
            .copied()
            .filter(|r| self.action(*r) != Action::Allow)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_policy_file_loads_and_names_every_rule() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
                for rule in RuleId::ALL {
                    assert!(
                        policy.rules.contains_key(rule),
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
    fn unlisted_rules_keep_their_default_and_allow_turns_a_rule_off() {
        let p = Policy::parse("[rules]\nrename-column = \"allow\"\n", Path::new("p.toml")).unwrap();
        assert_eq!(p.action(RuleId::RenameColumn), Action::Allow);
        assert_eq!(p.action(RuleId::DropTable), Action::Reject);
        assert!(!p.enabled_rules().contains(&RuleId::RenameColumn));
    }
}
