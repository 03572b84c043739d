//! Every statement ddlgate itself sends on a session's connection: applying and restoring the
//! policy's timeouts, naming the blockers of a lock wait, and finding and dropping the INVALID
//! index a failed concurrent build left behind. (Rewrites of the client's own statements come
//! from [`crate::enforce`].)
//!
//! Each names catalog objects schema-qualified (`pg_catalog.`) so that a client's
//! `search_path` or objects of its own cannot change what they do, and none of them takes a
//! lock a client's statement could queue behind.

use std::time::Duration;

use crate::analysis::classify::{RelationName, quote_ident};
use crate::analysis::locks::LockMode;
use crate::analysis::violation::{IndexBuild, Undo};
use crate::config::policy::TimeoutPair;
use crate::enforce::quote_literal;

/// The columns [`apply_timeouts`] returns, in order: the client's `lock_timeout` and
/// `statement_timeout` as shown, the same in milliseconds, and the two `set_config` results.
const APPLY_COLUMNS: usize = 6;

/// The client's timeouts before ddlgate changed them, and the values ddlgate set: read from
/// the row [`apply_timeouts`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTimeouts {
    lock_timeout: String,
    statement_timeout: String,
    lock_timeout_ms: String,
    statement_timeout_ms: String,
    applied_lock_timeout: String,
    applied_statement_timeout: String,
}

impl SavedTimeouts {
    /// The client's values from the first [`apply_timeouts`] row of a program, if the row has
    /// the expected shape.
    pub fn from_row(row: &[Option<String>]) -> Option<Self> {
        if row.len() != APPLY_COLUMNS {
            return None;
        }
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Some(Self {
            lock_timeout: col(0),
            statement_timeout: col(1),
            lock_timeout_ms: col(2),
            statement_timeout_ms: col(3),
            applied_lock_timeout: col(4),
            applied_statement_timeout: col(5),
        })
    }

    /// Takes in what a later [`apply_timeouts`] of the same program set.
    pub fn applied_again(&mut self, row: &[Option<String>]) {
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        self.applied_lock_timeout = col(4);
        self.applied_statement_timeout = col(5);
    }

    /// The client's values in milliseconds, for a later [`apply_timeouts`].
    pub fn client_ms(&self) -> (&str, &str) {
        (&self.lock_timeout_ms, &self.statement_timeout_ms)
    }

    /// The statement that puts the client's values back where ddlgate's still hold (a value
    /// the client changed in between is left alone).
    pub fn restore_sql(&self) -> String {
        format!(
            "SELECT CASE WHEN pg_catalog.current_setting('lock_timeout') = {} THEN pg_catalog.set_config('lock_timeout', {}, false) END, \
             CASE WHEN pg_catalog.current_setting('statement_timeout') = {} THEN pg_catalog.set_config('statement_timeout', {}, false) END",
            quote_literal(&self.applied_lock_timeout),
            quote_literal(&self.lock_timeout),
            quote_literal(&self.applied_statement_timeout),
            quote_literal(&self.statement_timeout),
        )
    }
}

/// The statement that applies a class's timeouts, keeping a stricter value of the client's:
/// `set_config(…, local)`; `saved` holds the client's values in milliseconds when ddlgate has
/// already changed them in this program. Returns six columns (`APPLY_COLUMNS`).
pub(crate) fn apply_timeouts(
    pair: &TimeoutPair,
    local: bool,
    saved: Option<(&str, &str)>,
) -> String {
    let local = if local { "true" } else { "false" };
    // The client's own value in milliseconds: read now, or as it was before ddlgate's first
    // change in this program (a later class must not be held to an earlier class's value).
    let client_ms = |short: &str, saved_ms: Option<&str>| match saved_ms {
        Some(ms) => format!("{}::bigint", quote_literal(ms)),
        None => format!("c.{short}_ms"),
    };
    let value = |name: &str, short: &str, policy: Duration, saved_ms: Option<&str>| {
        let current = client_ms(short, saved_ms);
        let policy_ms = u64::try_from(policy.as_millis()).unwrap_or(u64::MAX);
        if policy_ms == 0 {
            format!("pg_catalog.set_config('{name}', ({current})::text, {local})")
        } else {
            format!(
                "pg_catalog.set_config('{name}', CASE WHEN {current} > 0 AND {current} <= {policy_ms} THEN ({current})::text ELSE '{policy_ms}' END, {local})"
            )
        }
    };
    // current_setting() shows the value with its unit ("2s", "5min", "0"); an interval
    // reads every unit PostgreSQL prints for these settings. (pg_settings would give the
    // number directly but costs about a millisecond per look.)
    format!(
        "SELECT c.lt, c.st, c.lt_ms, c.st_ms, {}, {} FROM (SELECT \
         pg_catalog.current_setting('lock_timeout') AS lt, \
         pg_catalog.current_setting('statement_timeout') AS st, \
         (extract(epoch FROM pg_catalog.current_setting('lock_timeout')::interval) * 1000)::bigint AS lt_ms, \
         (extract(epoch FROM pg_catalog.current_setting('statement_timeout')::interval) * 1000)::bigint AS st_ms \
         OFFSET 0) c",
        value("lock_timeout", "lt", pair.lock_timeout, saved.map(|s| s.0)),
        value(
            "statement_timeout",
            "st",
            pair.statement_timeout,
            saved.map(|s| s.1)
        ),
    )
}

/// Who holds granted locks on `relations` (names as the client wrote them): up to five
/// sessions, one line each — pid, `application_name`, state, query start, the query's start.
pub(crate) fn blockers(relations: &[String]) -> String {
    let relations: Vec<String> = relations
        .iter()
        .map(|r| format!("pg_catalog.to_regclass({})", quote_literal(r)))
        .collect();
    format!(
        "SELECT pg_catalog.format('pid %s (application_name %L, %s, query started %s): %s', a.pid, a.application_name, a.state, a.query_start, pg_catalog.left(a.query, 80)) \
         FROM pg_catalog.pg_stat_activity a WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.pid IN \
         (SELECT l.pid FROM pg_catalog.pg_locks l WHERE l.granted AND l.relation IN ({})) ORDER BY a.query_start LIMIT 5",
        relations.join(", ")
    )
}

/// The transactions whose locks a request for `mode` on `relations` would queue behind: each
/// one that holds or waits for a conflicting lock on one of them, as one line
/// `<virtual transaction>|<old>|<pid>|<idle ms>|<application_name, hex>|<description>` (at most
/// [`LOCK_CONFLICTS_MAX`], the known oldest first; pid and idle time empty where unknown, idle
/// time only for a session idle in its transaction). `<old>` is `t` when its transaction has run for `young_ms` or more, sits idle
/// in it, or is prepared; `f` when it is younger; `?` when its age is not visible to this role
/// (another role's session, without `pg_read_all_stats`). The description names the pid,
/// `application_name`, state, the transaction's age and the lock. Reads only `pg_locks` and
/// `pg_stat_activity`: it takes no lock and does not queue.
pub(crate) fn lock_conflicts(relations: &[String], mode: LockMode, young_ms: u64) -> String {
    let relations: Vec<String> = relations
        .iter()
        .map(|r| format!("pg_catalog.to_regclass({})", quote_literal(r)))
        .collect();
    let modes: Vec<String> = LockMode::ALL
        .into_iter()
        .filter(|m| m.conflicts_with(mode))
        .map(|m| quote_literal(m.pg_locks_name()))
        .collect();
    format!(
        "SELECT x.vxid || '|' || x.old || '|' || COALESCE(x.pid::text, '') || '|' || COALESCE(x.idle_ms::text, '') \
         || '|' || pg_catalog.encode(pg_catalog.convert_to(COALESCE(x.app, ''), 'UTF8'), 'hex') || '|' || x.line FROM (\
         SELECT DISTINCT ON (l.virtualtransaction) l.virtualtransaction AS vxid, l.pid, a.application_name AS app, \
         CASE WHEN a.state LIKE 'idle in transaction%' \
           THEN (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.state_change) * 1000)::bigint END AS idle_ms, \
         CASE WHEN l.pid IS NULL THEN 't' WHEN a.xact_start IS NULL THEN '?' \
           WHEN a.state LIKE 'idle in transaction%' \
             OR a.xact_start <= pg_catalog.clock_timestamp() - interval '{young_ms} milliseconds' THEN 't' \
           ELSE 'f' END AS old, \
         CASE WHEN l.pid IS NULL THEN pg_catalog.format('prepared transaction %s %s %s on %s', \
             l.virtualtransaction, CASE WHEN l.granted THEN 'holds' ELSE 'waits for' END, l.mode, l.relation::regclass) \
           ELSE pg_catalog.format('pid %s (application_name %L, %s) %s %s on %s', l.pid, a.application_name, \
             COALESCE(a.state || ', transaction running ' \
               || pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::numeric, 1) || ' s', \
               'state not visible to this role'), \
             CASE WHEN l.granted THEN 'holds' ELSE 'waits for' END, l.mode, l.relation::regclass) END AS line, \
         a.xact_start \
         FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'relation' AND l.relation IN ({}) AND l.mode IN ({}) \
         AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid() \
         AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
         ORDER BY l.virtualtransaction) x ORDER BY x.xact_start NULLS LAST LIMIT {LOCK_CONFLICTS_MAX}",
        relations.join(", "),
        modes.join(", ")
    )
}

/// Ends the sessions `pids` with `pg_terminate_backend` — those this role may signal (a
/// superuser any; otherwise members of `pg_signal_backend`, or of the session's role, any but
/// a superuser's), so that nothing here fails — and answers the pids it ended, one per row.
/// Terminating, not cancelling: a cancelled statement inside a transaction block leaves the
/// transaction, and its locks, in place.
pub(crate) fn end_backends(pids: &[u32]) -> String {
    let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
    format!(
        "SELECT p.pid::text FROM pg_catalog.pg_stat_activity p WHERE p.pid IN ({}) AND CASE \
         WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) THEN pg_catalog.pg_terminate_backend(p.pid) \
         WHEN p.usesysid IS NULL OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = p.usesysid) THEN false \
         WHEN pg_catalog.pg_has_role('pg_signal_backend', 'MEMBER') OR pg_catalog.pg_has_role(p.usesysid, 'MEMBER') \
           THEN pg_catalog.pg_terminate_backend(p.pid) \
         ELSE false END",
        pids.join(", ")
    )
}

/// The most transactions [`lock_conflicts`] lists.
pub(crate) const LOCK_CONFLICTS_MAX: usize = 200;

/// What the catalog says about each lookup, as one JSON array (one object per lookup, in
/// order): `i` (the lookup's position), `kind` (`relkind`, null when absent), `system`, `new`
/// (created by the current transaction), `columns`, `not_null` (columns `NOT NULL` by a valid
/// constraint), `types` (`[column, type name, typmod]`) and `checked` (columns a validated
/// `CHECK (c IS NOT NULL)` proves not null).
///
/// A relation name is resolved as the session resolves it (`to_regclass`, its `search_path`);
/// an index name beside a table is looked up in that table's schema. Nothing here takes a lock
/// or can fail on a name: `to_regclass` answers NULL for one that does not exist.
///
/// "Created by the current transaction": the `pg_class` row was written by it and so was every
/// dependency row of the relation (its row type's, its namespace's, an index's on its table) —
/// an `ALTER` rewrites the `pg_class` row of an old table, but not those. A relation created
/// inside a savepoint carries the subtransaction's xid and is not recognised (stricter).
pub(crate) fn catalog_facts(lookups: &[(String, Option<String>)]) -> String {
    let values: Vec<String> = lookups
        .iter()
        .enumerate()
        .map(|(i, (name, beside))| {
            format!(
                "({i}, {}, {})",
                quote_literal(name),
                beside
                    .as_deref()
                    .map_or_else(|| "NULL".to_owned(), quote_literal)
            )
        })
        .collect();
    format!(
        "SELECT pg_catalog.json_agg(pg_catalog.json_build_object(\
         'i', n.i, 'kind', c.relkind, \
         'system', c.relnamespace IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace), \
         'exclusion', (SELECT x.indisexclusion FROM pg_catalog.pg_index x WHERE x.indexrelid = c.oid), \
         'new', COALESCE(c.xmin::text = (pg_catalog.txid_current_if_assigned() % 4294967296)::text \
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE ((d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid) \
             OR (d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = c.reltype AND d.refobjid = c.oid)) \
             AND d.xmin::text <> c.xmin::text), false), \
         'columns', (SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
         'not_null', (SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull \
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'n' \
             AND NOT k.convalidated AND k.conkey[1] = a.attnum)), \
         'types', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, t.typname, a.atttypmod)) \
           FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
         'checked', (SELECT pg_catalog.json_agg(a.attname) FROM pg_catalog.pg_constraint k \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
           WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated AND pg_catalog.array_length(k.conkey, 1) = 1 \
           AND pg_catalog.pg_get_constraintdef(k.oid) = pg_catalog.format('CHECK ((%s IS NOT NULL))', pg_catalog.quote_ident(a.attname)))\
         ) ORDER BY n.i) \
         FROM (VALUES {}) AS n(i, name, beside) \
         LEFT JOIN pg_catalog.pg_class c ON c.oid = CASE WHEN n.beside IS NULL THEN pg_catalog.to_regclass(n.name) \
           ELSE (SELECT r.oid FROM pg_catalog.pg_class r WHERE r.relname = n.name AND r.relnamespace = \
             (SELECT t.relnamespace FROM pg_catalog.pg_class t WHERE t.oid = pg_catalog.to_regclass(n.beside))) END",
        values.join(", ")
    )
}

/// The SQL and PL/pgSQL functions and procedures outside the system schemas whose source
/// mentions a keyword of DDL or `EXECUTE`, as one JSON array (never null) of
/// `[schema, name, prokind, CREATE statement, triggers]` (`pg_get_functiondef`; the enabled
/// user triggers that call the function as `[schema, table, tgtype]`, or null). The pattern is
/// an `E''` string so that `standard_conforming_strings` does not change it.
pub(crate) fn routine_definitions() -> &'static str {
    "SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, p.proname, p.prokind, \
     pg_catalog.pg_get_functiondef(p.oid), \
     (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(tn.nspname, r.relname, t.tgtype)) \
      FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid \
      JOIN pg_catalog.pg_namespace tn ON tn.oid = r.relnamespace \
      WHERE t.tgfoid = p.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'))), '[]') \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql') \
     AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema' \
     AND p.prosrc OPERATOR(pg_catalog.~*) \
     E'\\\\m(alter|create|drop|truncate|execute|reindex|cluster|vacuum|refresh|lock|grant|revoke|comment|rename|attach|detach|import)\\\\M'"
}

/// The table a concurrent build adds indexes to, as an expression yielding its OID.
pub(crate) fn index_table(build: &IndexBuild) -> String {
    match build {
        IndexBuild::OnTable(table) => regclass(table),
        IndexBuild::BesideIndex(index) => format!(
            "(SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = {})",
            regclass(index)
        ),
    }
}

/// The statement that takes back a step of a rewrite when a later step failed.
pub(crate) fn undo(undo: &Undo) -> String {
    match undo {
        Undo::DropConstraint { table, name } => format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            quote_ident(name)
        ),
        // Built concurrently, so dropped the same way: a plain DROP INDEX would queue for
        // ACCESS EXCLUSIVE on the table.
        Undo::DropIndex(index) => format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
    }
}

/// `'name'::regclass` for a relation as a statement named it.
fn regclass(name: &RelationName) -> String {
    format!("{}::regclass", quote_literal(&name.to_string()))
}

/// The indexes of `table` (an expression yielding its OID) as an `oid[]` literal, before a
/// concurrent build.
pub(crate) fn index_oids(table: &str) -> String {
    format!(
        "SELECT pg_catalog.array_agg(indexrelid)::text FROM pg_catalog.pg_index WHERE indrelid = {table}"
    )
}

/// The INVALID indexes of `table` that were not there before (`before`: an `oid[]` literal
/// from [`index_oids`]) and that no running build is still making.
pub(crate) fn new_invalid_indexes(table: &str, before: &str) -> String {
    format!(
        "SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index i \
         WHERE i.indrelid = {table} AND NOT i.indisvalid \
         AND i.indexrelid <> ALL ({}::oid[]) \
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)",
        quote_literal(before)
    )
}

/// The transactions a concurrent index build would wait for that look like the client's own
/// migration lock: sessions of this database, user and `application_name`, idle in a
/// transaction that holds a snapshot (a build waits for every older snapshot to go) and a
/// granted advisory lock (what migration tools lock with). One line each,
/// `<pid>|<transaction start>|<state change>|<description>`; the first three tell whether the
/// same idle stretch is still there at a second look. Reads only `pg_stat_activity` and
/// `pg_locks`.
pub(crate) fn own_idle_snapshots() -> &'static str {
    // Holders of advisory locks first, and only their activity rows: without any, the costly
    // part (every backend's status, as `pg_stat_activity` builds it) is never computed.
    "SELECT a.pid || '|' || a.xact_start || '|' || a.state_change || '|' || pg_catalog.format(\
     'pid %s (application_name %L, idle in transaction for %s s, transaction running %s s, holding advisory lock %s)', \
     a.pid, a.application_name, \
     pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.state_change)::numeric, 1), \
     pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::numeric, 1), \
     (SELECT pg_catalog.string_agg(l.objid::text, ', ') FROM pg_catalog.pg_locks l \
      WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)) \
     FROM (SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l \
       WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()) h \
     CROSS JOIN LATERAL pg_catalog.pg_stat_get_activity(h.pid) a \
     WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
     AND a.usesysid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER) \
     AND a.application_name = pg_catalog.current_setting('application_name') \
     AND a.state LIKE 'idle in transaction%' AND a.backend_xmin IS NOT NULL \
     ORDER BY a.pid"
}

/// Drops an INVALID index a failed concurrent build left behind (`index`: as `regclass::text`
/// printed it, quoted where needed).
pub(crate) fn drop_index_concurrently(index: &str) -> String {
    format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement parses with PostgreSQL's own grammar, as one statement.
    fn parses(sql: &str) {
        let parsed =
            crate::analysis::parse::parse_script(sql, crate::analysis::parse::Options::default());
        assert_eq!(parsed.len(), 1, "{sql}");
        assert!(parsed.iter().all(|p| p.tree.is_ok()), "{sql}: {parsed:?}");
    }

    #[test]
    fn every_statement_is_one_valid_statement() {
        let pair = TimeoutPair {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::ZERO,
        };
        parses(&apply_timeouts(&pair, false, None));
        parses(&apply_timeouts(&pair, true, Some(("100", "0"))));
        parses(&blockers(&["public.t".to_owned(), "o'brien".to_owned()]));
        parses(&end_backends(&[1, 2]));
        parses(&lock_conflicts(
            &["public.t".to_owned(), "o'brien".to_owned()],
            LockMode::AccessExclusive,
            200,
        ));
        parses(&index_oids("'t'::regclass"));
        parses(&new_invalid_indexes("'t'::regclass", "{1,2}"));
        parses(&drop_index_concurrently("public.\"t_a_idx\""));
        parses(routine_definitions());
        parses(own_idle_snapshots());
        parses(&catalog_facts(&[
            ("public.t".into(), None),
            ("o'brien".into(), Some("s.\"T\"".into())),
        ]));
        let odd = RelationName {
            schema: Some("My Schema".into()),
            name: "o'brien".into(),
        };
        parses(&index_oids(&index_table(&IndexBuild::OnTable(odd.clone()))));
        parses(&index_oids(&index_table(&IndexBuild::BesideIndex(
            odd.clone(),
        ))));
        parses(&undo(&Undo::DropConstraint {
            table: odd.clone(),
            name: "Positive".into(),
        }));
        parses(&undo(&Undo::DropIndex(odd)));
        let saved = SavedTimeouts::from_row(&[
            Some("0".into()),
            Some("1min".into()),
            Some("0".into()),
            Some("60000".into()),
            Some("2000".into()),
            Some("60000".into()),
        ])
        .unwrap();
        parses(&saved.restore_sql());
        assert_eq!(saved.client_ms(), ("0", "60000"));
    }

    #[test]
    fn a_stricter_client_value_is_kept_and_zero_means_leave_it() {
        let pair = TimeoutPair {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::ZERO,
        };
        let sql = apply_timeouts(&pair, true, None);
        assert!(sql.contains(
            "CASE WHEN c.lt_ms > 0 AND c.lt_ms <= 2000 THEN (c.lt_ms)::text ELSE '2000' END, true"
        ));
        assert!(sql.contains("pg_catalog.set_config('statement_timeout', (c.st_ms)::text, true)"));
        let later = apply_timeouts(&pair, false, Some(("500", "0")));
        assert!(later.contains("'500'::bigint <= 2000"), "{later}");
    }

    #[test]
    fn rewrite_facts_become_sql_naming_the_same_objects() {
        let t = RelationName {
            schema: Some("s".into()),
            name: "Orders".into(),
        };
        assert_eq!(
            index_table(&IndexBuild::OnTable(t.clone())),
            "'s.\"Orders\"'::regclass"
        );
        assert_eq!(
            index_table(&IndexBuild::BesideIndex(t.clone())),
            "(SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = 's.\"Orders\"'::regclass)"
        );
        assert_eq!(
            undo(&Undo::DropConstraint {
                table: t.clone(),
                name: "positive".into()
            }),
            "ALTER TABLE s.\"Orders\" DROP CONSTRAINT IF EXISTS positive"
        );
        assert_eq!(
            undo(&Undo::DropIndex(t)),
            "DROP INDEX CONCURRENTLY IF EXISTS s.\"Orders\""
        );
    }

    #[test]
    fn names_are_quoted_as_literals() {
        assert!(blockers(&["o'brien".to_owned()]).contains("pg_catalog.to_regclass('o''brien')"));
        assert!(SavedTimeouts::from_row(&vec![None; 5]).is_none());
    }
}
