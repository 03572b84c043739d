//! Catalog truth for governed requests: before a held request that names relations is planned,
//! the session asks the server — on its own connection, inside the client's transaction, in
//! one round trip — what those names are ([`crate::analysis::catalog`] says how the answers are
//! used), and plans with the answer.
//!
//! Decisions, and why:
//! - **Only governed requests look, and only when facts can change the decision.** The
//!   plain-DML fast path never does. A governed request looks only when one of its statements
//!   names a relation and either some rule of the policy judges it without facts (facts only
//!   exempt or correct a judgement) or the catalog may resolve what it is (`ALTER INDEX`,
//!   `IF [NOT] EXISTS`, `SET NOT NULL`, `CREATE INDEX` on what may be a partitioned table). `ALTER TABLE … SET DEFAULT`, a nullable `ADD COLUMN`
//!   and the like cost no read; observe mode (no rule on) never reads.
//! - **Read fresh for every governed request, kept for that request only.** Another session can
//!   create, drop or alter a relation at any time; a fact kept from an earlier request could be
//!   stale, and a stale "absent" would let a `DROP … IF EXISTS` of a live table through as a
//!   no-op. Inside the request, what its own statements change is forgotten as they are judged.
//! - **No look where none is possible or safe**: in a failed transaction (the server refuses
//!   everything), inside an open pipeline (nothing may run before the client's run), for a
//!   request planned off the worker threads (its text was not parsed by the review), for a
//!   prepared statement bound later, and for non-ASCII names when the session's
//!   `client_encoding` is not UTF-8. Those are planned without facts, as `check` plans: the
//!   engine's conservative assumptions apply.
//! - **At most [`MAX_LOOKUPS`] names per request**: the rest stay unknown.
//!
//! The look is one `SELECT` on catalog tables that takes no lock a client could wait on and
//! cannot fail on a name. Like ddlgate's timeouts statement, it runs under the client's own
//! `statement_timeout`; if it fails anyway, the request is planned without facts.

use crate::analysis::catalog::{Catalog, Lookup, RelKind, RelationFacts, lookups, may_resolve};
use crate::analysis::classify::{ClassifyOptions, classify};
use crate::analysis::context::ColumnType;
use crate::analysis::context::NewObjects;
use crate::analysis::{Context, Engine, RuleId};
use crate::protocol::backend::TxStatus;

use super::plan::Held;
use super::sql;
use super::state::SessionState;

/// The most names one request looks up.
pub(crate) const MAX_LOOKUPS: usize = 64;

/// What to look up before planning `held`: the relations its governed statements name, as the
/// review parsed them. Empty when nothing needs looking up or it cannot be done (see the
/// module docs).
pub(crate) fn lookups_for(
    held: &Held,
    state: &SessionState,
    rules: &[RuleId],
    utf8_session: bool,
) -> Vec<Lookup> {
    let server_major = state.server_major();
    let engine = Engine::new(rules.iter().copied());
    // Facts only ever change the decision about a statement some rule would judge, or one
    // whose kind or effect the catalog may resolve: judged first without them, in a fresh
    // context (no exemptions, so no statement that needs facts is missed), which costs
    // microseconds where a read costs a round trip.
    let judge = Context {
        in_transaction: state.tx_status != TxStatus::Idle,
        timeouts_managed: true,
        whole_scripts: false,
        new_objects: NewObjects::Transaction,
        routines: std::sync::Arc::clone(&state.routines),
        ..Context::for_server(server_major)
    };
    let mut out: Vec<Lookup> = Vec::new();
    for (_, parsed) in &held.parsed {
        for statement in &parsed.statements {
            let Ok(node) = &statement.tree else {
                continue;
            };
            let facts = classify(node, ClassifyOptions { server_major });
            if !facts.governed() || !(may_resolve(node) || engine.flags(node, &judge)) {
                continue;
            }
            for lookup in lookups(node, &facts) {
                if !out.contains(&lookup) && out.len() < MAX_LOOKUPS {
                    out.push(lookup);
                }
            }
        }
    }
    if !utf8_session && out.iter().any(|l| !is_ascii(l)) {
        // The names would have to be sent in the session's encoding, which ddlgate does not
        // convert to.
        return Vec::new();
    }
    out
}

fn is_ascii(lookup: &Lookup) -> bool {
    match lookup {
        Lookup::Relation(name) => name.to_string().is_ascii(),
        Lookup::BesideTable { name, table } => name.is_ascii() && table.to_string().is_ascii(),
    }
}

/// The statement that reads the facts for these lookups.
pub(crate) fn query(lookups: &[Lookup]) -> String {
    let pairs: Vec<(String, Option<String>)> = lookups
        .iter()
        .map(|l| match l {
            Lookup::Relation(name) => (name.to_string(), None),
            Lookup::BesideTable { name, table } => (name.clone(), Some(table.to_string())),
        })
        .collect();
    sql::catalog_facts(&pairs)
}

/// The facts in the server's answer to [`query`]. A lookup the answer does not cover (or an
/// answer that cannot be read) stays unknown.
pub(crate) fn read(answer: &str, lookups: &[Lookup]) -> Catalog {
    let mut catalog = Catalog::default();
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_str::<serde_json::Value>(answer)
    else {
        return catalog;
    };
    for row in rows {
        let Some(lookup) = row
            .get("i")
            .and_then(serde_json::Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| lookups.get(i))
        else {
            continue;
        };
        let names = |key: &str| -> Vec<String> {
            row.get(key)
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let flag = |key: &str| row.get(key).and_then(serde_json::Value::as_bool) == Some(true);
        let facts = RelationFacts {
            kind: row
                .get("kind")
                .and_then(serde_json::Value::as_str)
                .map(RelKind::from_relkind),
            system: flag("system"),
            exclusion: flag("exclusion"),
            created_in_transaction: flag("new"),
            columns: names("columns"),
            not_null: names("not_null"),
            checked_not_null: names("checked"),
            column_types: row
                .get("types")
                .and_then(serde_json::Value::as_array)
                .map(|types| {
                    types
                        .iter()
                        .filter_map(|t| {
                            let column = t.get(0)?.as_str()?;
                            let name = t.get(1)?.as_str()?;
                            let typmod = t.get(2)?.as_i64()?;
                            Some((column.to_owned(), ColumnType::from_catalog(name, typmod)))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        catalog.insert(lookup.clone(), facts);
    }
    catalog
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::classify::RelationName;

    fn name(n: &str) -> RelationName {
        RelationName {
            schema: None,
            name: n.to_owned(),
        }
    }

    /// A read is asked for only where facts can change the decision.
    #[test]
    fn only_statements_facts_can_change_look() {
        use super::super::plan::ParsedText;
        use crate::analysis::parse::{Options, parse_script};
        let held = |sql: &str| Held {
            bytes: bytes::Bytes::new(),
            spans: Vec::new(),
            parsed: vec![(
                0,
                ParsedText {
                    standard_conforming_strings: true,
                    class: None,
                    statements: parse_script(sql, Options::default()),
                },
            )],
        };
        let state = SessionState::with_server_version("17.2");
        let rules: Vec<RuleId> = crate::config::policy::Policy::builtin_default()
            .base
            .enabled_rules();
        let looks = |sql: &str| !lookups_for(&held(sql), &state, &rules, true).is_empty();
        assert!(!looks("ALTER TABLE t ALTER COLUMN v SET DEFAULT 1"));
        assert!(!looks("ALTER TABLE t ADD COLUMN c int"));
        assert!(!looks("SELECT * FROM t"));
        assert!(
            looks("ALTER TABLE t RENAME COLUMN a TO b"),
            "a rule judges it"
        );
        assert!(looks("ALTER INDEX t RENAME TO u"), "its kind may differ");
        assert!(looks("DROP TABLE IF EXISTS t"));
        assert!(
            looks("CREATE INDEX CONCURRENTLY i ON t (a)"),
            "t may be partitioned"
        );
    }

    #[test]
    fn the_answer_is_read_by_position() {
        let lookups = [
            Lookup::Relation(name("t")),
            Lookup::Relation(name("gone")),
            Lookup::BesideTable {
                name: "i".into(),
                table: name("t"),
            },
        ];
        let answer = r#"[{"i" : 0, "kind" : "p", "system" : false, "new" : true, "columns" : ["a", "b"], "not_null" : ["a"], "checked" : ["b"],
              "types" : [["a", "varchar", 14], ["b", "numeric", 655366]]},
            {"i" : 1, "kind" : null, "system" : null, "new" : false, "columns" : null, "not_null" : null, "checked" : null}]"#;
        let catalog = read(answer, &lookups);
        let t = catalog.relation(&name("t")).unwrap();
        assert_eq!(t.kind, Some(RelKind::PartitionedTable));
        assert!(t.created_in_transaction);
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!(t.not_null, ["a"]);
        assert_eq!(t.checked_not_null, ["b"]);
        assert_eq!(
            t.column_types,
            [
                ("a".to_owned(), ColumnType::from_catalog("varchar", 14)),
                ("b".to_owned(), ColumnType::from_catalog("numeric", 655_366)),
            ]
        );
        assert_eq!(t.column_types[0].1.mods, [10], "varchar(10)");
        assert_eq!(t.column_types[1].1.mods, [10, 2], "numeric(10,2)");
        // interval(5) and interval day to second(3), as the parser and as the catalog has them.
        let parsed = |sql: &str| {
            let stmt = crate::analysis::parse::parse_script(
                sql,
                crate::analysis::parse::Options::default(),
            )
            .remove(0)
            .tree
            .unwrap();
            let crate::analysis::parse::NodeEnum::CreateStmt(c) = stmt else {
                panic!()
            };
            let Some(crate::analysis::parse::NodeEnum::ColumnDef(d)) = &c.table_elts[0].node else {
                panic!()
            };
            ColumnType::from_type_name(d.type_name.as_ref().unwrap())
        };
        let interval5 = ColumnType::from_catalog("interval", 0x7fff_0005);
        assert_eq!(parsed("CREATE TABLE t (i interval(5))"), interval5);
        assert_eq!(interval5.to_string(), "interval(5)");
        assert_eq!(
            parsed("CREATE TABLE t (i interval day to second(3))"),
            ColumnType::from_catalog("interval", (0x1c08 << 16) | 3)
        );
        assert_eq!(
            parsed("CREATE TABLE t (i interval)"),
            ColumnType::from_catalog("interval", -1)
        );
        assert!(!catalog.relation(&name("gone")).unwrap().exists());
        assert!(catalog.beside("i", &name("t")).is_none(), "not answered");
        assert!(read("not json", &lookups).is_empty());
        assert!(read("[{\"i\": 9}]", &lookups).is_empty());
    }
}
