//! The rules. One rule, one file (`<id>.rs`, `snake_case`), with its documentation beside it
//! (`<id>.md`: what it does, why it is unsafe, the lock, the safe SQL, version nuances,
//! references) and its test cases below the check.

use std::ops::Range;

use super::classify::Facts;
use super::context::Context;
use super::parse::{NodeEnum, Token, TokenKind, tokens};
use super::registry::RuleId;
use super::violation::{Applicability, Edit, Fix, FixStep, Violation};

pub(crate) mod add_column_volatile_default;
pub(crate) mod add_exclusion_constraint;
pub(crate) mod add_generated_stored_column;
pub(crate) mod add_primary_key;
pub(crate) mod add_required_column;
pub(crate) mod add_serial_identity_column;
pub(crate) mod add_unique_constraint;
pub(crate) mod autovacuum_off;
pub(crate) mod change_column_type;
pub(crate) mod char_type;
pub(crate) mod check_not_valid_missing;
pub(crate) mod cic_in_transaction;
pub(crate) mod create_enum;
pub(crate) mod create_index_nonconcurrent;
pub(crate) mod create_partition_of;
pub(crate) mod create_trigger;
pub(crate) mod ddl_after_access_exclusive;
pub(crate) mod detach_partition_nonconcurrent;
pub(crate) mod domain_constraint;
pub(crate) mod drop_column;
pub(crate) mod drop_database;
pub(crate) mod drop_index_nonconcurrent;
pub(crate) mod drop_not_null;
pub(crate) mod drop_table;
pub(crate) mod duplicate_column_assignment;
pub(crate) mod dynamic_ddl;
pub(crate) mod enum_add_value_order;
pub(crate) mod fk_missing_index;
pub(crate) mod fk_not_valid_missing;
pub(crate) mod identifier_too_long;
pub(crate) mod json_column;
pub(crate) mod lock_timeout_missing;
pub(crate) mod multiple_alter_same_table;
pub(crate) mod partitioned_index;
pub(crate) mod prefer_bigint;
pub(crate) mod prefer_identity;
pub(crate) mod refresh_matview_nonconcurrent;
pub(crate) mod reindex_nonconcurrent;
pub(crate) mod rename_column;
pub(crate) mod rename_enum_value;
pub(crate) mod rename_table;
pub(crate) mod replica_identity;
pub(crate) mod robust_stmts;
pub(crate) mod set_access_method;
pub(crate) mod set_logged_unlogged;
pub(crate) mod set_not_null;
pub(crate) mod set_tablespace;
pub(crate) mod statement_timeout_missing;
pub(crate) mod table_without_schema;
pub(crate) mod timeout_override;
pub(crate) mod timestamp_without_tz;
pub(crate) mod transaction_hygiene;
pub(crate) mod truncate_cascade;
pub(crate) mod unbatched_backfill;
pub(crate) mod vacuum_full_cluster;
pub(crate) mod validate_same_tx;
pub(crate) mod varchar_limit;

#[cfg(test)]
pub(crate) mod test_support;

/// Where a rule belongs in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Index builds and table maintenance.
    IndexAndMaintenance,
    /// Adding and validating constraints.
    Constraints,
    /// Adding and changing columns.
    Columns,
    /// Changes that break running application code unless done as expand/contract.
    ExpandContract,
    /// Storage and partitions.
    StorageAndPartitions,
    /// Transactions and sessions.
    TransactionsAndSessions,
    /// Statements PostgreSQL would accept with surprising results.
    Correctness,
    /// Style, opt-in.
    Style,
}

impl Group {
    /// The heading in the catalog.
    pub fn title(self) -> &'static str {
        match self {
            Self::IndexAndMaintenance => "Index and maintenance",
            Self::Constraints => "Constraints",
            Self::Columns => "Columns",
            Self::ExpandContract => "Expand/contract",
            Self::StorageAndPartitions => "Table storage and partitions",
            Self::TransactionsAndSessions => "Transactions and sessions",
            Self::Correctness => "Correctness",
            Self::Style => "Style (opt-in)",
        }
    }
}

/// What the shipped default policy does with a violation of this rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Refuse the statement.
    Reject,
    /// Apply the safe rewrite where valid, else refuse.
    Rewrite,
    /// Let it run, with a notice.
    Warn,
}

/// Whether the rule can offer a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FixAvailability {
    /// Never.
    None,
    /// In some situations (e.g. only outside a transaction block).
    Sometimes,
}

/// Statements that demonstrate a rule, used by its tests, the docs and the lock-truth test.
#[derive(Debug, Clone, Copy)]
pub struct Examples {
    /// SQL that creates what the examples need (run first, on an empty database).
    pub setup: &'static str,
    /// Statements the rule reports.
    pub flagged: &'static [&'static str],
    /// Statements that do the same job safely; the rule reports none of them.
    pub safe: &'static [&'static str],
    /// The flagged statements are errors PostgreSQL itself refuses (the rule reports them
    /// before any lock is taken); the lock-truth test checks that they are refused.
    pub refused_by_postgres: bool,
    /// The oldest PostgreSQL major version that accepts the examples' syntax (0: any).
    pub min_server_major: u32,
}

/// Everything the catalog knows about a rule.
#[derive(Debug)]
pub struct RuleMeta {
    /// The stable id.
    pub id: RuleId,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// Where it belongs.
    pub group: Group,
    /// Whether it is off unless enabled (`--enable-all`, or named in the policy).
    pub opt_in: bool,
    /// The shipped default policy's action.
    pub default_action: DefaultAction,
    /// Whether a fix can be offered.
    pub fix: FixAvailability,
    /// The facts of the live catalog its decision depends on, beyond what every rule gets
    /// (the operation PostgreSQL performs; proven no-ops): see `super::catalog`.
    pub catalog: &'static [super::catalog::CatalogFact],
    /// The documentation (Markdown, fixed headings).
    pub docs: &'static str,
    /// Demonstrations.
    pub examples: Examples,
    /// The check, run on every statement.
    pub check: fn(&Input<'_>, &mut Vec<Violation>),
    /// A check run once at the end of a script (a query string or a file), for findings that
    /// depend on what came later (an index created after its foreign key, an unterminated
    /// `BEGIN`). Its violations are attached to the statement their span starts in.
    pub finish: Option<fn(&Context, &str) -> Vec<Violation>>,
}

/// What a rule sees of one statement.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The whole query string or file.
    pub source: &'a str,
    /// The statement's byte range in `source`.
    pub span: &'a Range<usize>,
    /// The statement's tree.
    pub node: &'a NodeEnum,
    /// Its classification.
    pub facts: &'a Facts,
    /// Where it runs.
    pub ctx: &'a Context,
}

impl Input<'_> {
    /// The statement's text.
    pub fn text(&self) -> &str {
        self.source.get(self.span.clone()).unwrap_or_default()
    }

    /// A violation of `rule` spanning the whole statement.
    pub fn violation(&self, rule: RuleId, message: impl Into<String>) -> Violation {
        Violation {
            rule,
            message: message.into(),
            detail: None,
            help: String::new(),
            span: self.span.clone(),
            fix: None,
        }
    }

    /// The statement's tokens, with offsets into `source`.
    pub fn tokens(&self) -> Vec<Token> {
        tokens(self.text())
            .unwrap_or_default()
            .into_iter()
            .map(|t| Token {
                span: t.span.start + self.span.start..t.span.end + self.span.start,
                kind: t.kind,
            })
            .collect()
    }

    /// Offset just after the first keyword token spelled `word` (case-insensitive).
    pub fn after_keyword(&self, word: &str) -> Option<usize> {
        self.tokens()
            .into_iter()
            .find(|t| {
                t.kind == TokenKind::Keyword
                    && self
                        .source
                        .get(t.span.clone())
                        .is_some_and(|w| w.eq_ignore_ascii_case(word))
            })
            .map(|t| t.span.end)
    }

    /// A safe fix that inserts `text` at `at`, valid only where the statement may run outside
    /// a transaction block; the statement stays one statement, doing what `step` says.
    pub fn insertion_fix(title: &str, at: usize, text: &str, step: FixStep) -> Fix {
        Fix {
            title: title.to_owned(),
            edits: vec![Edit {
                range: at..at,
                text: text.to_owned(),
            }],
            applicability: Applicability::Safe,
            steps: vec![step],
        }
    }

    /// A fix that replaces the whole statement with `sql` (several statements, separated by
    /// `;`, one per entry of `steps`), keeping any text the statement does not cover.
    pub fn replacement_fix(
        &self,
        title: &str,
        sql: String,
        applicability: Applicability,
        steps: Vec<FixStep>,
    ) -> Fix {
        Fix {
            title: title.to_owned(),
            edits: vec![Edit {
                range: self.span.clone(),
                text: sql,
            }],
            applicability,
            steps,
        }
    }
}

/// Whether the relation is new (created earlier in this transaction or script), in which case
/// nobody else can be waiting on it and it holds no rows worth worrying about.
pub(crate) fn is_new_table(input: &Input<'_>, rv: Option<&super::parse::ast::RangeVar>) -> bool {
    rv.is_some_and(|rv| {
        input
            .ctx
            .is_new(&super::classify::RelationName::from_range_var(rv))
    })
}

/// How the evidence of use decides a contract rule about one table or column.
pub(crate) enum ByEvidence<'a> {
    /// No statement used it within the window: the rule does not fire.
    Unused,
    /// Statements used it: the violation names them.
    Used {
        /// The statements, most calls first.
        uses: &'a [crate::analysis::usage::UsedBy],
        /// The span they were counted over, in seconds.
        seconds: u64,
    },
    /// No evidence to go by (and why, when ddlgate keeps samples): the rule as without it.
    Without(Option<&'a str>),
}

/// What the evidence says about `name` (`column`) for `rule`.
pub(crate) fn by_evidence<'a>(
    input: &Input<'a>,
    rule: RuleId,
    name: &super::classify::RelationName,
    column: Option<&str>,
) -> ByEvidence<'a> {
    use crate::analysis::usage::Evidence;
    match input
        .ctx
        .evidence
        .about(rule, name, column)
        .map(|f| &f.evidence)
    {
        None => ByEvidence::Without(None),
        Some(Evidence::Unavailable(why)) => ByEvidence::Without(Some(why)),
        Some(Evidence::Observed { uses, .. }) if uses.is_empty() => ByEvidence::Unused,
        Some(Evidence::Observed { uses, seconds, .. }) => ByEvidence::Used {
            uses,
            seconds: *seconds,
        },
    }
}

/// How many of the statements a refusal names.
const USES_NAMED: usize = 3;

impl ByEvidence<'_> {
    /// The violation's help: `plain`, or — when statements still use `object` — the
    /// expand/contract step that is missing.
    pub(crate) fn help(&self, plain: String, object: &str) -> String {
        match self {
            Self::Used { seconds, .. } => format!(
                "Finish the expand/contract step first: the statements named above still use {object}. Once a release without them has run for the evidence window ({}), this runs without an override.",
                crate::analysis::usage::span(*seconds)
            ),
            _ => plain,
        }
    }

    /// The violation's detail with what the evidence says: the statements that used the
    /// object, or why there is no evidence.
    pub(crate) fn detail(&self, detail: Option<String>) -> Option<String> {
        let extra = match self {
            Self::Unused | Self::Without(None) => return detail,
            Self::Without(Some(why)) => format!("No evidence of use to go by: {why}."),
            Self::Used { uses, seconds } => {
                let named: Vec<String> = uses
                    .iter()
                    .take(USES_NAMED)
                    .map(crate::analysis::usage::UsedBy::describe)
                    .collect();
                let more = uses.len().saturating_sub(USES_NAMED);
                format!(
                    "Still used in the last {} by {} statement{}: {}{}.",
                    crate::analysis::usage::span(*seconds),
                    uses.len(),
                    if uses.len() == 1 { "" } else { "s" },
                    named.join("; "),
                    if more > 0 {
                        format!("; and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        };
        Some(match detail {
            Some(d) => format!("{d} {extra}"),
            None => extra,
        })
    }
}

/// "Locks orders in ACCESS EXCLUSIVE mode, which blocks reads and writes …": the detail line
/// of violations about a statement's strongest lock.
pub(crate) fn lock_detail(facts: &Facts) -> Option<String> {
    let mode = facts.strongest_lock()?;
    let targets: Vec<String> = facts
        .locks
        .iter()
        .filter(|l| l.mode == mode)
        .map(|l| l.target.to_string())
        .collect();
    Some(format!(
        "Locks {} in {} mode, which {} until the transaction ends.",
        targets.join(" and "),
        mode,
        mode.impact()
    ))
}

/// The name PostgreSQL gives an unnamed constraint or index: `{table}_{columns}_{suffix}`,
/// shortened to the 63 bytes of an identifier the way `makeObjectName` shortens it (the longer
/// part loses characters first).
pub(crate) fn default_object_name(table: &str, columns: &[&str], suffix: &str) -> String {
    const MAX: usize = 63;
    let mut name1 = table.to_owned();
    let mut name2 = columns.join("_");
    let overhead = suffix.len() + 1 + usize::from(!name2.is_empty());
    while name1.len() + name2.len() + overhead > MAX {
        if name1.len() > name2.len() {
            name1.pop();
        } else {
            name2.pop();
        }
    }
    if name2.is_empty() {
        format!("{name1}_{suffix}")
    } else {
        format!("{name1}_{name2}_{suffix}")
    }
}

/// Column names of a constraint's key list (`String` nodes).
pub(crate) fn key_names(keys: &[super::parse::ast::Node]) -> Vec<&str> {
    keys.iter()
        .filter_map(super::classify::string_value)
        .collect()
}

/// The subcommands of an `ALTER TABLE` (or `ALTER INDEX`, `ALTER MATERIALIZED VIEW`, …) on an
/// existing relation whose type is one of `types`.
pub(crate) fn alter_subcommands<'a>(
    input: &Input<'a>,
    types: &[super::parse::ast::AlterTableType],
) -> Vec<&'a super::parse::ast::AlterTableCmd> {
    let NodeEnum::AlterTableStmt(stmt) = input.node else {
        return Vec::new();
    };
    if is_new_table(input, stmt.relation.as_ref()) {
        return Vec::new();
    }
    super::classify::alter_cmds(stmt)
        .filter(|c| types.contains(&super::classify::subtype(c)))
        .collect()
}

/// A column type a statement declares: a column of `CREATE TABLE` or of a composite type,
/// `ALTER TABLE … ADD COLUMN`, or `ALTER TABLE … ALTER COLUMN … TYPE`.
pub(crate) struct DeclaredType<'a> {
    /// The column.
    pub column: &'a str,
    /// The type as written.
    pub type_name: &'a super::parse::ast::TypeName,
}

impl DeclaredType<'_> {
    /// The type's name, lower case, when it is a built-in (unqualified or in `pg_catalog`):
    /// `int4` for `integer`, `bpchar` for `char(n)`, `timestamp` for `timestamp without time
    /// zone`, `serial` for `serial`.
    pub(crate) fn builtin(&self) -> Option<String> {
        let names: Vec<&str> = self
            .type_name
            .names
            .iter()
            .filter_map(super::classify::string_value)
            .collect();
        match names.as_slice() {
            [name] | ["pg_catalog", name] => Some(name.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// Whether the type carries a modifier such as the `n` of `varchar(n)`.
    pub(crate) fn has_modifier(&self) -> bool {
        !self.type_name.typmods.is_empty()
    }
}

/// Every column type the statement declares (see [`DeclaredType`]).
pub(crate) fn declared_types(node: &NodeEnum) -> Vec<DeclaredType<'_>> {
    use super::parse::ast;
    fn from_column_defs<'a>(nodes: &'a [ast::Node], out: &mut Vec<DeclaredType<'a>>) {
        for n in nodes {
            if let Some(NodeEnum::ColumnDef(col)) = &n.node
                && let Some(type_name) = &col.type_name
            {
                out.push(DeclaredType {
                    column: &col.colname,
                    type_name,
                });
            }
        }
    }
    let mut out = Vec::new();
    match node {
        NodeEnum::CreateStmt(s) => from_column_defs(&s.table_elts, &mut out),
        NodeEnum::CompositeTypeStmt(s) => from_column_defs(&s.coldeflist, &mut out),
        NodeEnum::AlterTableStmt(s) => {
            for cmd in super::classify::alter_cmds(s) {
                let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
                else {
                    continue;
                };
                let column = match super::classify::subtype(cmd) {
                    ast::AlterTableType::AtAddColumn => col.colname.as_str(),
                    ast::AlterTableType::AtAlterColumnType => cmd.name.as_str(),
                    _ => continue,
                };
                if let Some(type_name) = &col.type_name {
                    out.push(DeclaredType { column, type_name });
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod naming_tests {
    use super::default_object_name;

    #[test]
    fn default_names_follow_postgres() {
        assert_eq!(
            default_object_name("orders", &["customer_id"], "fkey"),
            "orders_customer_id_fkey"
        );
        assert_eq!(
            default_object_name("orders", &["a", "b"], "key"),
            "orders_a_b_key"
        );
        assert_eq!(default_object_name("orders", &[], "pkey"), "orders_pkey");
        let long = default_object_name(&"t".repeat(60), &["column_with_long_name"], "fkey");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("_fkey"));
    }
}
