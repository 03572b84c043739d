//! What the samples say about one table or column, on a connection to its database: which
//! statements used it within the window, with their calls.
//!
//! 1. The target is resolved in the catalog (`search_path` applies to an unqualified name),
//!    with what surrounds it: the other relations that have a column of that name, the views
//!    that read it (through `pg_depend`, views over views included), and the functions and
//!    procedures whose bodies use it (their definitions parsed as the proxy parses routine
//!    bodies; SQL-standard bodies through `pg_depend`).
//! 2. The texts of the database's statements that mention the table, a view or a routine are
//!    parsed and resolved ([`crate::analysis::usage`]).
//! 3. Their samples, with their counts now when `pg_stat_statements` is readable here, give the
//!    calls since the baseline ([`super::window`]).
//!
//! Everything runs in one read-only transaction.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_postgres::Client;

use super::own_sql;
use super::store::{Source, Store};
use super::window::{self, Sample};
use super::{EvidenceError, Key};
use crate::analysis::classify::RelationName;
use crate::analysis::usage::{self, Evidence, Surroundings, Target, UsedBy};

/// How far back uses count, from the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The window.
    pub window: Duration,
    /// The shortest span of samples that is enough to decide on.
    pub min_observation: Duration,
}

/// The evidence about `name` (and `column`) in the connected database.
pub(crate) async fn judge(
    c: &mut Client,
    store: &Store,
    name: &RelationName,
    column: Option<&str>,
    window: Window,
) -> Result<(Option<Target>, Evidence), EvidenceError> {
    let mut tx = c
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| EvidenceError::read(&e))?;
    let Some((target, oid, attnum)) = resolve(&tx, name, column).await? else {
        let what = match column {
            Some(c) => format!("column {c} of {name}"),
            None => name.to_string(),
        };
        return Ok((
            None,
            Evidence::Unavailable(format!(
                "{what} does not exist (yet) outside this migration"
            )),
        ));
    };
    if !store.exists(&tx).await? {
        let why = extension_problem(&mut tx).await.unwrap_or_else(|| {
            "ddlgate keeps no samples of pg_stat_statements in this database (serve's evidence_dsn)"
                .to_owned()
        });
        return Ok((Some(target), Evidence::Unavailable(why)));
    }
    let database: u32 = tx
        .query_one(
            own_sql!("SELECT oid FROM pg_database WHERE datname = current_database()"),
            &[],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?
        .get(0);
    let mut history = store.history(&tx, database).await?;
    let live = live_counts(&mut tx, database, &mut history.texts).await;
    let Some(baseline) = baseline(&history.samples, history.now, window) else {
        let observed = history
            .samples
            .first()
            .map_or(0.0, |first| history.now - first);
        let mut why = format!(
            "samples span {} of the {} needed",
            usage::span(secs(observed)),
            usage::span(window.min_observation.min(window.window).as_secs())
        );
        // Without the extension no sample will ever come: say that instead.
        if let Some(problem) = extension_problem(&mut tx).await {
            why = problem;
        }
        return Ok((Some(target), Evidence::Unavailable(why)));
    };
    let around = surroundings(&tx, &target, oid, attnum).await?;
    let candidates: Vec<(Key, &String, usage::Use)> = history
        .texts
        .iter()
        .filter(|(_, text)| !text.starts_with(super::OWN_MARK))
        .filter_map(|(k, text)| Some((*k, text, usage::find_use(text, &target, &around)?)))
        .collect();
    let keys: Vec<Key> = candidates.iter().map(|(k, ..)| *k).collect();
    let mut series = store.series(&tx, &keys).await?;
    if let Some(now) = &live {
        for key in &keys {
            if let Some(s) = series.get_mut(key) {
                s.push((history.now, now.get(key).copied()));
            }
        }
    }
    let mut uses = uses_in_window(candidates, &series, baseline);
    add_observed(
        &mut uses,
        store.observed_since(&tx, baseline).await?,
        &target,
        &around,
    );
    let tracked = tracked(
        &tx,
        store,
        database,
        baseline,
        live.as_ref(),
        &history.texts,
    )
    .await?;
    let _ = tx.rollback().await;
    Ok((
        Some(target),
        Evidence::Observed {
            seconds: secs(history.now - baseline),
            tracked: u64::try_from(tracked).unwrap_or(0),
            uses,
        },
    ))
}

/// The counts now, of `database`'s statements, when `pg_stat_statements` is readable here:
/// what ran since the last sample counts too. The texts of statements first seen since then
/// are added to `texts`.
async fn live_counts(
    tx: &mut tokio_postgres::Transaction<'_>,
    database: u32,
    texts: &mut Vec<(Key, String)>,
) -> Option<HashMap<Key, i64>> {
    let source = Source::find(&*tx).await.ok()?;
    // In a savepoint: a failed read (the library not loaded) must not abort the rest.
    let tx = tx.savepoint("ddlgate_live").await.ok()?;
    let now: HashMap<Key, i64> = source
        .counts(&tx)
        .await
        .ok()?
        .into_iter()
        .filter(|(k, _)| k.database == database)
        .collect();
    let known: HashSet<Key> = texts.iter().map(|(k, _)| *k).collect();
    let unknown: Vec<i64> = now
        .keys()
        .filter(|k| !known.contains(k))
        .map(|k| k.query)
        .collect();
    if !unknown.is_empty()
        && let Ok(found) = source.texts(&tx, &unknown).await
    {
        texts.extend(
            found
                .into_iter()
                .filter(|(k, _)| now.contains_key(k) && !known.contains(k)),
        );
    }
    tx.commit().await.ok()?;
    Some(now)
}

/// Why `pg_stat_statements` cannot be read here, if it cannot: not installed, or installed
/// without its library loaded.
async fn extension_problem(tx: &mut tokio_postgres::Transaction<'_>) -> Option<String> {
    let source = match Source::find(&*tx).await {
        Err(EvidenceError::NoExtension(why)) => return Some(why),
        Err(_) => return None,
        Ok(source) => source,
    };
    let tx = tx.savepoint("ddlgate_probe").await.ok()?;
    match source.counts(&tx).await {
        Err(EvidenceError::NoExtension(why)) => Some(why),
        _ => None,
    }
}

/// The candidates that ran (or may have run) after `baseline`, most calls first.
fn uses_in_window(
    candidates: Vec<(Key, &String, usage::Use)>,
    series: &HashMap<Key, Vec<Sample>>,
    baseline: f64,
) -> Vec<UsedBy> {
    let mut uses = Vec::new();
    for (key, text, how) in candidates {
        let samples: &[Sample] = series.get(&key).map_or(&[], Vec::as_slice);
        let calls = window::calls_since(samples, baseline);
        if calls.used() {
            uses.push(UsedBy {
                queryid: key.query,
                text: text.clone(),
                calls: calls.calls,
                lower_bound: calls.lower_bound,
                possibly: calls.possibly_used,
                how,
                observed: false,
            });
        }
    }
    uses.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.queryid.cmp(&b.queryid)));
    uses
}

/// How many of the database's statements ran after `baseline` (their count changed in a
/// sample, or since the last one), ddlgate's own left out.
async fn tracked(
    tx: &tokio_postgres::Transaction<'_>,
    store: &Store,
    database: u32,
    baseline: f64,
    live: Option<&HashMap<Key, i64>>,
    texts: &[(Key, String)],
) -> Result<usize, EvidenceError> {
    let mut tracked: HashSet<Key> = store
        .active_since(tx, database, baseline)
        .await?
        .into_iter()
        .collect();
    if let Some(now) = live {
        let last = store.latest(tx, Some(database)).await?;
        let own: HashSet<Key> = texts
            .iter()
            .filter(|(_, text)| text.starts_with(super::OWN_MARK))
            .map(|(k, _)| *k)
            .collect();
        tracked.extend(
            now.iter()
                .filter(|(k, n)| last.get(k) != Some(n) && !own.contains(k))
                .map(|(k, _)| *k),
        );
    }
    Ok(tracked.len())
}

/// Adds the statements observed through ddlgate itself that use the target (they add uses,
/// never remove any: one that `pg_stat_statements` no longer holds, or does not track).
fn add_observed(
    uses: &mut Vec<UsedBy>,
    observed: Vec<(i64, String, i64)>,
    target: &Target,
    around: &Surroundings,
) {
    for (hash, text, calls) in observed {
        if uses.iter().any(|u| u.text == text) {
            continue;
        }
        if let Some(how) = usage::find_use(&text, target, around) {
            uses.push(UsedBy {
                queryid: hash,
                text,
                calls,
                lower_bound: false,
                possibly: false,
                how,
                observed: true,
            });
        }
    }
}

/// The baseline for the policy's window: the last sample before it, or — once the samples
/// span the minimum observation — the first sample.
fn baseline(samples: &[f64], now: f64, w: Window) -> Option<f64> {
    window::baseline(samples, now, w.window.as_secs_f64()).or_else(|| {
        let first = samples.iter().copied().reduce(f64::min)?;
        (now - first >= w.min_observation.min(w.window).as_secs_f64()).then_some(first)
    })
}

fn secs(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        // Whole seconds are plenty for a window; the cast saturates.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let s = seconds.round() as u64;
        s
    } else {
        0
    }
}

/// The target as the catalog names it, its oid and the column's number (0 for a table);
/// `None` when there is no such relation or column.
async fn resolve(
    tx: &tokio_postgres::Transaction<'_>,
    name: &RelationName,
    column: Option<&str>,
) -> Result<Option<(Target, u32, i32)>, EvidenceError> {
    let row = tx
        .query_opt(
            own_sql!(
                "SELECT c.oid, n.nspname::text, c.relname::text, a.attnum::int4 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 \
               AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.oid = to_regclass($1)"
            ),
            &[&name.to_string(), &column],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let attnum: Option<i32> = row.get(3);
    if column.is_some() && attnum.is_none() {
        return Ok(None);
    }
    Ok(Some((
        Target {
            schema: row.get(1),
            table: row.get(2),
            column: column.map(str::to_owned),
        },
        row.get(0),
        attnum.unwrap_or(0),
    )))
}

/// Reads what surrounds the target.
async fn surroundings(
    tx: &tokio_postgres::Transaction<'_>,
    target: &Target,
    oid: u32,
    attnum: i32,
) -> Result<Surroundings, EvidenceError> {
    let read = |e: tokio_postgres::Error| EvidenceError::read(&e);
    let pairs = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let mut around = Surroundings::default();
    if let Some(column) = &target.column {
        around.same_column = pairs(
            tx.query(
                own_sql!("SELECT n.nspname::text, c.relname::text FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.oid <> $2 \
                   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"),
                &[column, &oid],
            )
            .await
            .map_err(read)?,
        );
    }
    // Views reading the column (or the table), then views reading those views.
    around.views = pairs(
        tx.query(
            own_sql!(
                "WITH RECURSIVE v(oid) AS ( \
               SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
               WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
                 AND d.refobjid = $1 AND ($2 = 0 OR d.refobjsubid = $2) AND r.ev_class <> $1 \
               UNION \
               SELECT r.ev_class FROM v JOIN pg_depend d ON d.refobjid = v.oid \
                 AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
               JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> v.oid) \
             SELECT n.nspname::text, c.relname::text FROM v JOIN pg_class c ON c.oid = v.oid \
             JOIN pg_namespace n ON n.oid = c.relnamespace"
            ),
            &[&oid, &attnum],
        )
        .await
        .map_err(read)?,
    );
    // Routines: SQL-standard bodies (PostgreSQL 14+) record what they use in pg_depend.
    let mut routines = pairs(
        tx.query(
            own_sql!(
                "SELECT DISTINCT n.nspname::text, p.proname::text FROM pg_depend d \
             JOIN pg_proc p ON p.oid = d.objid JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = $1 AND ($2 = 0 OR d.refobjsubid = $2)"
            ),
            &[&oid, &attnum],
        )
        .await
        .map_err(read)?,
    );
    // Other bodies are text: those that mention the table or one of the views are parsed.
    let mut names: Vec<String> = vec![target.table.to_lowercase()];
    names.extend(around.views.iter().map(|(_, v)| v.to_lowercase()));
    let rows = tx
        .query(
            own_sql!(
                "SELECT n.nspname::text, p.proname::text, pg_get_functiondef(p.oid), p.prosrc, \
               l.lanname::text \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             JOIN pg_language l ON l.oid = p.prolang \
             WHERE p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND EXISTS (SELECT 1 FROM unnest($1::text[]) m WHERE strpos(lower(p.prosrc), m) > 0)"
            ),
            &[&names],
        )
        .await
        .map_err(read)?;
    for row in &rows {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let definition: String = row.get(2);
        let source: String = row.get(3);
        let language: String = row.get(4);
        if usage::body_uses(&language, &definition, &source, target, &around) {
            routines.push((schema, name));
        }
    }
    routines.sort();
    routines.dedup();
    around.routines = routines;
    Ok(around)
}
