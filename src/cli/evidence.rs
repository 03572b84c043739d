//! Evidence of use for `check --database` and `explain --database`: ddlgate's samples of
//! `pg_stat_statements` kept in that database ([`crate::evidence`]), judged for every table
//! and column the SQL drops, renames or retypes, with the policy's window. The engine then
//! decides the contract rules with it, as the proxy does.

use std::collections::HashSet;
use std::time::Duration;

use crate::analysis::classify::RelationName;
use crate::analysis::parse::{NodeEnum, Options, parse_script};
use crate::analysis::usage::{self, Evidence, Evidences, Found};
use crate::config::policy::EvidenceSettings;
use crate::evidence::EvidenceError;
use crate::evidence::judge::{Window, judge};
use crate::evidence::store::Store;
use crate::pgclient::Database;

/// How long reading the evidence may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to `--database` and its runtime.
pub(crate) struct EvidenceReader {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    store: Store,
}

impl EvidenceReader {
    /// Connects (`application_name` unless the string sets one).
    pub(crate) fn open(dsn: &str, schema: &str, application_name: &str) -> anyhow::Result<Self> {
        let database = Database::parse(dsn, application_name)
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        let store = Store::new(schema).map_err(|e| anyhow::anyhow!("--evidence-schema: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime
            .block_on(async { tokio::time::timeout(READ_TIMEOUT, database.connect()).await })
            .map_err(|_| timed_out())?
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        Ok(Self {
            runtime,
            client,
            store,
        })
    }

    /// Whether ddlgate keeps samples in this database.
    pub(crate) fn has_samples(&mut self) -> anyhow::Result<bool> {
        self.runtime
            .block_on(async {
                tokio::time::timeout(READ_TIMEOUT, self.store.exists(&self.client)).await
            })
            .map_err(|_| timed_out())?
            .map_err(|e| anyhow::anyhow!("--database: {e}"))
    }

    /// The evidence about every table and column the statements of `texts` drop, rename or
    /// retype.
    pub(crate) fn read<'a>(
        &mut self,
        texts: impl Iterator<Item = &'a str>,
        settings: &EvidenceSettings,
    ) -> anyhow::Result<Evidences> {
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for text in texts {
            for statement in parse_script(text, Options::default()) {
                let Ok(node) = &statement.tree else {
                    continue;
                };
                for (name, column) in usage::targets(node) {
                    if !seen.insert((name.clone(), column.clone())) {
                        continue;
                    }
                    let (target, evidence) = self.judge(&name, column.as_deref(), settings)?;
                    found.push(Found {
                        name,
                        column,
                        target,
                        evidence,
                    });
                }
            }
        }
        Ok(Evidences {
            rules: EvidenceSettings::RULES
                .iter()
                .copied()
                .filter(|r| settings.decides(*r))
                .collect(),
            found,
        })
    }

    fn judge(
        &mut self,
        name: &RelationName,
        column: Option<&str>,
        settings: &EvidenceSettings,
    ) -> anyhow::Result<(Option<usage::Target>, Evidence)> {
        let window = Window {
            window: settings.window,
            min_observation: settings.min_observation,
        };
        let found = self
            .runtime
            .block_on(async {
                tokio::time::timeout(
                    READ_TIMEOUT,
                    judge(&mut self.client, &self.store, name, column, window),
                )
                .await
            })
            .map_err(|_| timed_out())?;
        match found {
            Ok(found) => Ok(found),
            Err(EvidenceError::NoExtension(why)) => Ok((None, Evidence::Unavailable(why))),
            Err(e) => Err(anyhow::anyhow!("--database: {e}")),
        }
    }
}

fn timed_out() -> anyhow::Error {
    anyhow::anyhow!("--database: no answer within {} s", READ_TIMEOUT.as_secs())
}

/// The one statement of `text`, parsed.
pub(crate) fn statement_tree(text: &str) -> Result<NodeEnum, ()> {
    let mut parsed = parse_script(text, Options::default());
    match (parsed.pop(), parsed.is_empty()) {
        (Some(p), true) => p.tree.map_err(|_| ()),
        _ => Err(()),
    }
}
