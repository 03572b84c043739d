//! The rule catalog: every rule's stable id, its module, and its metadata.
//!
//! Ids are public API (policy files and inline overrides name them): never rename one.

use std::fmt;
use std::str::FromStr;

use super::rules::{self, RuleMeta};

macro_rules! catalog {
    ($($variant:ident => $id:literal => $module:ident,)*) => {
        /// A rule's identity.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $(
                #[doc = concat!("`", $id, "`")]
                $variant,
            )*
        }

        impl RuleId {
            /// Every rule, in catalog order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            /// The kebab-case id.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $id,)*
                }
            }

            /// The rule's metadata, docs and check.
            pub fn meta(self) -> &'static RuleMeta {
                match self {
                    $(Self::$variant => &rules::$module::RULE,)*
                }
            }
        }
    };
}

catalog! {
    CreateIndexNonconcurrent => "create-index-nonconcurrent" => create_index_nonconcurrent,
    DropIndexNonconcurrent => "drop-index-nonconcurrent" => drop_index_nonconcurrent,
    ReindexNonconcurrent => "reindex-nonconcurrent" => reindex_nonconcurrent,
    CicInTransaction => "cic-in-transaction" => cic_in_transaction,
    PartitionedIndex => "partitioned-index" => partitioned_index,
    RefreshMatviewNonconcurrent => "refresh-matview-nonconcurrent" => refresh_matview_nonconcurrent,
    VacuumFullCluster => "vacuum-full-cluster" => vacuum_full_cluster,
    FkNotValidMissing => "fk-not-valid-missing" => fk_not_valid_missing,
    CheckNotValidMissing => "check-not-valid-missing" => check_not_valid_missing,
    ValidateSameTx => "validate-same-tx" => validate_same_tx,
    SetNotNull => "set-not-null" => set_not_null,
    AddUniqueConstraint => "add-unique-constraint" => add_unique_constraint,
    AddPrimaryKey => "add-primary-key" => add_primary_key,
    AddExclusionConstraint => "add-exclusion-constraint" => add_exclusion_constraint,
    FkMissingIndex => "fk-missing-index" => fk_missing_index,
    DomainConstraint => "domain-constraint" => domain_constraint,
    AddColumnVolatileDefault => "add-column-volatile-default" => add_column_volatile_default,
    AddRequiredColumn => "add-required-column" => add_required_column,
    AddGeneratedStoredColumn => "add-generated-stored-column" => add_generated_stored_column,
    AddSerialIdentityColumn => "add-serial-identity-column" => add_serial_identity_column,
    ChangeColumnType => "change-column-type" => change_column_type,
    DropNotNull => "drop-not-null" => drop_not_null,
    RenameColumn => "rename-column" => rename_column,
    RenameTable => "rename-table" => rename_table,
    DropColumn => "drop-column" => drop_column,
    DropTable => "drop-table" => drop_table,
    DropDatabase => "drop-database" => drop_database,
    TruncateCascade => "truncate-cascade" => truncate_cascade,
    RenameEnumValue => "rename-enum-value" => rename_enum_value,
    EnumAddValueOrder => "enum-add-value-order" => enum_add_value_order,
    DetachPartitionNonconcurrent => "detach-partition-nonconcurrent" => detach_partition_nonconcurrent,
    CreatePartitionOf => "create-partition-of" => create_partition_of,
    SetLoggedUnlogged => "set-logged-unlogged" => set_logged_unlogged,
    SetTablespace => "set-tablespace" => set_tablespace,
    SetAccessMethod => "set-access-method" => set_access_method,
    ReplicaIdentity => "replica-identity" => replica_identity,
    AutovacuumOff => "autovacuum-off" => autovacuum_off,
    CreateTrigger => "create-trigger" => create_trigger,
    DynamicDdl => "dynamic-ddl" => dynamic_ddl,
    LockTimeoutMissing => "lock-timeout-missing" => lock_timeout_missing,
    StatementTimeoutMissing => "statement-timeout-missing" => statement_timeout_missing,
    TimeoutOverride => "timeout-override" => timeout_override,
    DdlAfterAccessExclusive => "ddl-after-access-exclusive" => ddl_after_access_exclusive,
    MultipleAlterSameTable => "multiple-alter-same-table" => multiple_alter_same_table,
    TransactionHygiene => "transaction-hygiene" => transaction_hygiene,
    UnbatchedBackfill => "unbatched-backfill" => unbatched_backfill,
    IdentifierTooLong => "identifier-too-long" => identifier_too_long,
    DuplicateColumnAssignment => "duplicate-column-assignment" => duplicate_column_assignment,
    RobustStmts => "robust-stmts" => robust_stmts,
    TableWithoutSchema => "table-without-schema" => table_without_schema,
    CharType => "char-type" => char_type,
    VarcharLimit => "varchar-limit" => varchar_limit,
    TimestampWithoutTz => "timestamp-without-tz" => timestamp_without_tz,
    PreferBigint => "prefer-bigint" => prefer_bigint,
    PreferIdentity => "prefer-identity" => prefer_identity,
    JsonColumn => "json-column" => json_column,
    CreateEnum => "create-enum" => create_enum,
}

impl RuleId {
    /// Whether the rule can only be decided by the proxy (it needs the policy's timeouts);
    /// `ddlgate check` never reports it, and its examples are judged as through the proxy.
    pub fn proxy_only(self) -> bool {
        matches!(self, Self::TimeoutOverride)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule id that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule id {0:?} (`ddlgate rules` lists them)")]
pub struct UnknownRule(pub String);

impl FromStr for RuleId {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl serde::Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RuleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::context::Context;
    use crate::analysis::engine::Engine;

    const HEADINGS: [&str; 7] = [
        "## What it does",
        "## Why is this bad?",
        "## Example",
        "## Use instead",
        "## Proxy behaviour",
        "## Options",
        "## References",
    ];

    #[test]
    fn every_rule_is_registered_under_its_own_id_and_roundtrips() {
        for rule in RuleId::ALL {
            assert_eq!(
                rule.meta().id,
                *rule,
                "{rule}: the module's RULE has another id"
            );
            assert_eq!(rule.as_str().parse::<RuleId>(), Ok(*rule));
            assert!(
                rule.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{rule}: ids are kebab-case"
            );
        }
        assert_eq!(
            "nope".parse::<RuleId>().unwrap_err().to_string(),
            "unknown rule id \"nope\" (`ddlgate rules` lists them)"
        );
    }

    #[test]
    fn every_rule_has_complete_docs() {
        for rule in RuleId::ALL {
            let docs = rule.meta().docs;
            assert!(
                docs.starts_with(&format!("# {rule}\n")),
                "{rule}: docs must open with its id"
            );
            let mut at = 0;
            for heading in HEADINGS {
                let found = docs[at..]
                    .find(heading)
                    .unwrap_or_else(|| panic!("{rule}: missing or misplaced {heading:?}"));
                at += found + heading.len();
            }
            assert!(docs.contains("```sql"), "{rule}: docs need SQL examples");
            assert!(
                !rule.meta().summary.ends_with('.'),
                "{rule}: summaries have no trailing period"
            );
        }
    }

    #[test]
    fn every_rule_flags_its_flagged_examples_and_not_its_safe_ones() {
        for rule in RuleId::ALL {
            let meta = rule.meta();
            assert!(
                !meta.examples.flagged.is_empty() && !meta.examples.safe.is_empty(),
                "{rule}: needs examples"
            );
            for sql in meta.examples.flagged {
                let found = flagged_by(*rule, meta.examples.setup, sql);
                assert!(found > 0, "{rule} does not flag its example {sql:?}");
            }
            for sql in meta.examples.safe {
                assert_eq!(
                    flagged_by(*rule, meta.examples.setup, sql),
                    0,
                    "{rule} flags its safe example {sql:?}"
                );
            }
        }
    }

    /// Violations of `rule` in `sql`, analysed as a migration that runs after `setup` (an
    /// earlier migration: its tables exist and are not new).
    fn flagged_by(rule: RuleId, setup: &str, sql: &str) -> usize {
        let engine = Engine::new([rule]);
        let mut ctx = Context::default();
        engine.analyze(setup, &mut ctx);
        ctx.next_script();
        if rule.proxy_only() {
            ctx.timeouts_managed = true;
            ctx.query_string = true;
            ctx.managed_timeouts = crate::analysis::context::ManagedTimeouts {
                brief_ms: (2_000, 5_000),
                online_ms: (300_000, 0),
            };
        }
        engine
            .analyze(sql, &mut ctx)
            .iter()
            .map(|r| r.result.as_ref().map_or(0, |f| f.violations.len()))
            .sum()
    }
}
