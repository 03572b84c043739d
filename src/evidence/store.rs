//! The samples of `pg_stat_statements` ddlgate keeps, in three tables of its schema:
//!
//! | table | a row per | columns |
//! |---|---|---|
//! | `samples` | sample taken | `taken_at`, `statements` (entries the extension held) |
//! | `calls` | statement whose count changed, appeared or disappeared | `taken_at`, `dbid`, `userid`, `queryid`, `toplevel`, `calls` (NULL: gone) |
//! | `texts` | statement ever seen | `dbid`, `userid`, `queryid`, `toplevel`, `query` |
//!
//! The tables are created on first use (the schema too, when the role may); every write of a
//! sample is one transaction, so a sample is there whole or not at all. Several ddlgate
//! instances may sample into the same tables: every row holds an absolute count of the same
//! server's counters, so their samples interleave into one series.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use super::window::Sample;
use super::{EvidenceError, Key, OWN_MARK, own_sql};

/// ddlgate's evidence tables in one schema.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    /// The schema, as named.
    schema: String,
    /// The schema, quoted.
    quoted: String,
}

/// Where `pg_stat_statements` is, and what it offers.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The extension's schema, quoted.
    schema: String,
    /// Whether its entries have `toplevel` (PostgreSQL 14 and later).
    toplevel: bool,
}

impl Source {
    /// Finds the extension in the connected database.
    pub(crate) async fn find(c: &impl GenericClient) -> Result<Self, EvidenceError> {
        let row = c
            .query_opt(
                own_sql!(
                    "SELECT n.nspname::text, EXISTS (SELECT 1 FROM pg_attribute a \
                   WHERE a.attrelid = (quote_ident(n.nspname) || '.pg_stat_statements')::regclass \
                     AND a.attname = 'toplevel') \
                 FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
                 WHERE e.extname = 'pg_stat_statements'"
                ),
                &[],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        let Some(row) = row else {
            let db = current_database(c).await?;
            return Err(EvidenceError::NoExtension(format!(
                "pg_stat_statements is not installed in database {db:?} (CREATE EXTENSION pg_stat_statements, with the library in shared_preload_libraries)"
            )));
        };
        let schema: String = row.get(0);
        Ok(Self {
            schema: quote(&schema),
            toplevel: row.get(1),
        })
    }

    fn function(&self, texts: bool) -> String {
        let toplevel = if self.toplevel { "toplevel" } else { "true" };
        format!(
            "{OWN_MARK} SELECT userid, dbid, queryid, {toplevel}, {} FROM {}.pg_stat_statements({texts}) \
             WHERE queryid IS NOT NULL",
            if texts { "query" } else { "calls" },
            self.schema
        )
    }

    /// Every statement's count now.
    pub(crate) async fn counts(
        &self,
        c: &impl GenericClient,
    ) -> Result<HashMap<Key, i64>, EvidenceError> {
        let rows = c
            .query(&self.function(false), &[])
            .await
            .map_err(|e| no_library(&e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let key = key(&row);
            // Entries differing only in fields ddlgate does not key on are added up.
            *out.entry(key).or_insert(0) += row.get::<_, i64>(4);
        }
        Ok(out)
    }

    /// The texts of `queries`' statements.
    pub(crate) async fn texts(
        &self,
        c: &impl GenericClient,
        queries: &[i64],
    ) -> Result<Vec<(Key, String)>, EvidenceError> {
        let rows = c
            .query(
                &format!("{} AND queryid = ANY($1)", self.function(true)),
                &[&queries],
            )
            .await
            .map_err(|e| no_library(&e))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((key(r), r.get::<_, Option<String>>(4)?)))
            .collect())
    }
}

/// The name of the connected database.
pub(crate) async fn current_database(c: &impl GenericClient) -> Result<String, EvidenceError> {
    Ok(
        c.query_one(own_sql!("SELECT current_database()::text"), &[])
            .await
            .map_err(|e| EvidenceError::read(&e))?
            .get(0),
    )
}

/// "must be loaded via `shared_preload_libraries`" read as what it means here.
fn no_library(e: &tokio_postgres::Error) -> EvidenceError {
    match e.as_db_error() {
        Some(db) if db.message().contains("shared_preload_libraries") => {
            EvidenceError::NoExtension(format!(
                "pg_stat_statements is installed but not loaded: {}",
                db.message()
            ))
        }
        _ => EvidenceError::read(e),
    }
}

fn key(row: &tokio_postgres::Row) -> Key {
    Key {
        user: row.get(0),
        database: row.get(1),
        query: row.get(2),
        toplevel: row.get(3),
    }
}

/// `name` as a quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What one sample wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Entries `pg_stat_statements` held.
    pub statements: usize,
    /// Rows written for statements whose count changed, appeared or disappeared.
    pub changed: usize,
}

/// The history the store holds for judging one database, read in one go.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    /// The server's time now, in seconds since the epoch.
    pub now: f64,
    /// When each kept sample was taken.
    pub samples: Vec<f64>,
    /// Every statement of the database ever seen, with its text.
    pub texts: Vec<(Key, String)>,
}

impl Store {
    /// The tables in `schema`.
    pub(crate) fn new(schema: &str) -> Result<Self, EvidenceError> {
        if schema.is_empty() || schema.len() > 63 {
            return Err(EvidenceError::Invalid(format!(
                "evidence schema {schema:?}: expected a name of 1 to 63 bytes"
            )));
        }
        Ok(Self {
            schema: schema.to_owned(),
            quoted: quote(schema),
        })
    }

    /// The schema's name.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.quoted)
    }

    /// Creates the schema (if missing) and the tables (if missing).
    pub(crate) async fn prepare(&self, c: &impl GenericClient) -> Result<(), EvidenceError> {
        let exists: bool = c
            .query_one(
                own_sql!("SELECT to_regnamespace($1) IS NOT NULL"),
                &[&self.quoted],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?
            .get(0);
        if !exists {
            c.batch_execute(&format!(
                "{OWN_MARK} CREATE SCHEMA IF NOT EXISTS {}",
                self.quoted
            ))
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        }
        c.batch_execute(&format!(
            "{OWN_MARK} CREATE TABLE IF NOT EXISTS {samples} (taken_at timestamptz PRIMARY KEY, \
               statements integer NOT NULL); \
             {OWN_MARK} CREATE TABLE IF NOT EXISTS {calls} (taken_at timestamptz NOT NULL, dbid oid NOT NULL, \
               userid oid NOT NULL, queryid bigint NOT NULL, toplevel boolean NOT NULL, calls bigint, \
               PRIMARY KEY (dbid, queryid, userid, toplevel, taken_at)); \
             {OWN_MARK} CREATE TABLE IF NOT EXISTS {texts} (dbid oid NOT NULL, userid oid NOT NULL, \
               queryid bigint NOT NULL, toplevel boolean NOT NULL, query text NOT NULL, \
               PRIMARY KEY (dbid, queryid, userid, toplevel)); \
             {OWN_MARK} CREATE TABLE IF NOT EXISTS {observed_texts} (database text NOT NULL, hash bigint NOT NULL, \
               query text NOT NULL, PRIMARY KEY (database, hash)); \
             {OWN_MARK} CREATE TABLE IF NOT EXISTS {observed_calls} (taken_at timestamptz NOT NULL, \
               database text NOT NULL, hash bigint NOT NULL, calls bigint NOT NULL, \
               PRIMARY KEY (database, hash, taken_at))",
            samples = self.table("samples"),
            calls = self.table("calls"),
            texts = self.table("texts"),
            observed_texts = self.table("observed_texts"),
            observed_calls = self.table("observed_calls"),
        ))
        .await
        .map_err(|e| EvidenceError::read(&e))
    }

    /// Each statement's latest count, to continue sampling from (a restarted collector must
    /// not take every statement for new).
    /// (`database`: only that database's statements, as a judgement needs.)
    pub(crate) async fn latest(
        &self,
        c: &impl GenericClient,
        database: Option<u32>,
    ) -> Result<HashMap<Key, i64>, EvidenceError> {
        let rows = c
            .query(
                &format!(
                    "{OWN_MARK} SELECT DISTINCT ON (dbid, queryid, userid, toplevel) userid, dbid, queryid, \
                       toplevel, calls FROM {} WHERE $1::oid IS NULL OR dbid = $1 \
                     ORDER BY dbid, queryid, userid, toplevel, taken_at DESC",
                    self.table("calls")
                ),
                &[&database],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((key(r), r.get::<_, Option<i64>>(4)?)))
            .collect())
    }

    /// Takes a sample from `source`: writes what changed since `previous` (which it updates)
    /// and the texts of statements not seen before, in one transaction.
    pub(crate) async fn sample(
        &self,
        c: &mut Client,
        source: &Source,
        previous: &mut HashMap<Key, i64>,
    ) -> Result<Written, EvidenceError> {
        let tx = c.transaction().await.map_err(|e| EvidenceError::read(&e))?;
        let counts = source.counts(&tx).await?;
        let mut changed: Vec<(Key, Option<i64>)> = counts
            .iter()
            .filter(|(k, n)| previous.get(k) != Some(n))
            .map(|(k, n)| (*k, Some(*n)))
            .collect();
        changed.extend(
            previous
                .keys()
                .filter(|k| !counts.contains_key(k))
                .map(|k| (*k, None)),
        );
        let new: Vec<i64> = counts
            .keys()
            .filter(|k| !previous.contains_key(k))
            .map(|k| k.query)
            .collect();
        let users: Vec<u32> = changed.iter().map(|(k, _)| k.user).collect();
        let databases: Vec<u32> = changed.iter().map(|(k, _)| k.database).collect();
        let queries: Vec<i64> = changed.iter().map(|(k, _)| k.query).collect();
        let toplevel: Vec<bool> = changed.iter().map(|(k, _)| k.toplevel).collect();
        let calls: Vec<Option<i64>> = changed.iter().map(|(_, n)| *n).collect();
        tx.execute(
            &format!(
                "{OWN_MARK} INSERT INTO {} (taken_at, dbid, userid, queryid, toplevel, calls) \
                 SELECT now(), * FROM unnest($1::oid[], $2::oid[], $3::int8[], $4::bool[], $5::int8[]) \
                 ON CONFLICT DO NOTHING",
                self.table("calls")
            ),
            &[&databases, &users, &queries, &toplevel, &calls],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?;
        if !new.is_empty() {
            let texts = source.texts(&tx, &new).await?;
            let wanted: std::collections::HashSet<Key> = counts
                .keys()
                .filter(|k| !previous.contains_key(k))
                .copied()
                .collect();
            let texts: Vec<&(Key, String)> =
                texts.iter().filter(|(k, _)| wanted.contains(k)).collect();
            let users: Vec<u32> = texts.iter().map(|(k, _)| k.user).collect();
            let databases: Vec<u32> = texts.iter().map(|(k, _)| k.database).collect();
            let queries: Vec<i64> = texts.iter().map(|(k, _)| k.query).collect();
            let toplevel: Vec<bool> = texts.iter().map(|(k, _)| k.toplevel).collect();
            let query: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
            tx.execute(
                &format!(
                    "{OWN_MARK} INSERT INTO {} (dbid, userid, queryid, toplevel, query) \
                     SELECT * FROM unnest($1::oid[], $2::oid[], $3::int8[], $4::bool[], $5::text[]) \
                     ON CONFLICT DO NOTHING",
                    self.table("texts")
                ),
                &[&databases, &users, &queries, &toplevel, &query],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        }
        let statements = i32::try_from(counts.len()).unwrap_or(i32::MAX);
        tx.execute(
            &format!(
                "{OWN_MARK} INSERT INTO {} (taken_at, statements) VALUES (now(), $1) ON CONFLICT DO NOTHING",
                self.table("samples")
            ),
            &[&statements],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?;
        tx.commit().await.map_err(|e| EvidenceError::read(&e))?;
        let written = Written {
            statements: counts.len(),
            changed: changed.len(),
        };
        *previous = counts;
        Ok(written)
    }

    /// Writes what ddlgate observed of its clients' statements since the last call: the
    /// calls of each text in this interval, and the texts not written before.
    pub(crate) async fn write_observed(
        &self,
        c: &impl GenericClient,
        observed: &[super::observe::Observed],
    ) -> Result<(), EvidenceError> {
        if observed.is_empty() {
            return Ok(());
        }
        let databases: Vec<&str> = observed.iter().map(|o| &*o.database).collect();
        let hashes: Vec<i64> = observed.iter().map(|o| o.hash).collect();
        let calls: Vec<i64> = observed
            .iter()
            .map(|o| i64::try_from(o.calls).unwrap_or(i64::MAX))
            .collect();
        let new: Vec<&super::observe::Observed> =
            observed.iter().filter(|o| o.text.is_some()).collect();
        let new_databases: Vec<&str> = new.iter().map(|o| &*o.database).collect();
        let new_hashes: Vec<i64> = new.iter().map(|o| o.hash).collect();
        let texts: Vec<&str> = new.iter().filter_map(|o| o.text.as_deref()).collect();
        c.execute(
            &format!(
                "{OWN_MARK} INSERT INTO {} (database, hash, query) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[]) ON CONFLICT DO NOTHING",
                self.table("observed_texts")
            ),
            &[&new_databases, &new_hashes, &texts],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?;
        c.execute(
            &format!(
                "{OWN_MARK} INSERT INTO {} (taken_at, database, hash, calls) \
                 SELECT now(), * FROM unnest($1::text[], $2::int8[], $3::int8[]) ON CONFLICT DO NOTHING",
                self.table("observed_calls")
            ),
            &[&databases, &hashes, &calls],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?;
        Ok(())
    }

    /// The statements observed through ddlgate in the connected database after `since`:
    /// their hash, text and calls.
    pub(crate) async fn observed_since(
        &self,
        c: &impl GenericClient,
        since: f64,
    ) -> Result<Vec<(i64, String, i64)>, EvidenceError> {
        Ok(c.query(
            &format!(
                "{OWN_MARK} SELECT t.hash, t.query, sum(o.calls)::int8 FROM {calls} o \
                     JOIN {texts} t ON t.database = o.database AND t.hash = o.hash \
                     WHERE o.database = current_database() AND o.taken_at > to_timestamp($1) \
                     GROUP BY t.hash, t.query",
                calls = self.table("observed_calls"),
                texts = self.table("observed_texts")
            ),
            &[&since],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    }

    /// Deletes what is older than `retention`, except each statement's latest row and the
    /// latest sample before the cut (the baseline of a window as long as the retention).
    pub(crate) async fn prune(
        &self,
        c: &impl GenericClient,
        retention: Duration,
    ) -> Result<u64, EvidenceError> {
        let seconds = retention.as_secs_f64();
        let calls = c
            .execute(
                &format!(
                    "{OWN_MARK} DELETE FROM {t} c WHERE c.taken_at < now() - make_interval(secs => $1) \
                     AND (c.calls IS NULL OR EXISTS (SELECT 1 FROM {t} n WHERE n.dbid = c.dbid \
                       AND n.queryid = c.queryid AND n.userid = c.userid \
                       AND n.toplevel = c.toplevel AND n.taken_at > c.taken_at))",
                    t = self.table("calls")
                ),
                &[&seconds],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        let samples = c
            .execute(
                &format!(
                    "{OWN_MARK} DELETE FROM {t} WHERE taken_at < (SELECT max(taken_at) FROM {t} \
                       WHERE taken_at < now() - make_interval(secs => $1))",
                    t = self.table("samples")
                ),
                &[&seconds],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        let observed = c
            .execute(
                &format!(
                    "{OWN_MARK} DELETE FROM {calls} WHERE taken_at < now() - make_interval(secs => $1)",
                    calls = self.table("observed_calls")
                ),
                &[&seconds],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        // Texts without calls left: a text counted again is written again.
        let texts = c
            .execute(
                &format!(
                    "{OWN_MARK} DELETE FROM {texts} t WHERE NOT EXISTS (SELECT 1 FROM {calls} o \
                       WHERE o.database = t.database AND o.hash = t.hash)",
                    texts = self.table("observed_texts"),
                    calls = self.table("observed_calls")
                ),
                &[],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        Ok(calls + samples + observed + texts)
    }

    /// Whether the tables exist in the connected database.
    pub(crate) async fn exists(&self, c: &impl GenericClient) -> Result<bool, EvidenceError> {
        Ok(c.query_one(
            own_sql!("SELECT to_regclass($1) IS NOT NULL"),
            &[&self.table("samples")],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?
        .get(0))
    }

    /// The server's time, the samples kept, and the texts of `database`'s statements.
    pub(crate) async fn history(
        &self,
        c: &impl GenericClient,
        database: u32,
    ) -> Result<History, EvidenceError> {
        let now: f64 = c
            .query_one(own_sql!("SELECT extract(epoch FROM now())::float8"), &[])
            .await
            .map_err(|e| EvidenceError::read(&e))?
            .get(0);
        let samples = c
            .query(
                &format!(
                    "{OWN_MARK} SELECT extract(epoch FROM taken_at)::float8 FROM {} ORDER BY taken_at",
                    self.table("samples")
                ),
                &[],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let texts = c
            .query(
                &format!(
                    "{OWN_MARK} SELECT userid, dbid, queryid, toplevel, query FROM {} WHERE dbid = $1",
                    self.table("texts")
                ),
                &[&database],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?
            .iter()
            .map(|r| (key(r), r.get(4)))
            .collect();
        Ok(History {
            now,
            samples,
            texts,
        })
    }

    /// The samples of `keys`, each in time order.
    pub(crate) async fn series(
        &self,
        c: &impl GenericClient,
        keys: &[Key],
    ) -> Result<HashMap<Key, Vec<Sample>>, EvidenceError> {
        let mut out: HashMap<Key, Vec<Sample>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        if keys.is_empty() {
            return Ok(out);
        }
        let databases: Vec<u32> = keys.iter().map(|k| k.database).collect();
        let queries: Vec<i64> = keys.iter().map(|k| k.query).collect();
        let rows = c
            .query(
                &format!(
                    "{OWN_MARK} SELECT userid, dbid, queryid, toplevel, extract(epoch FROM taken_at)::float8, \
                       calls FROM {} WHERE dbid = ANY($1) AND queryid = ANY($2) ORDER BY taken_at",
                    self.table("calls")
                ),
                &[&databases, &queries],
            )
            .await
            .map_err(|e| EvidenceError::read(&e))?;
        for row in &rows {
            if let Some(series) = out.get_mut(&key(row)) {
                series.push((row.get(4), row.get(5)));
            }
        }
        Ok(out)
    }

    /// `database`'s statements whose count changed after `since`, ddlgate's own left out.
    pub(crate) async fn active_since(
        &self,
        c: &impl GenericClient,
        database: u32,
        since: f64,
    ) -> Result<Vec<Key>, EvidenceError> {
        Ok(c.query(
            &format!(
                "{OWN_MARK} SELECT DISTINCT c.userid, c.dbid, c.queryid, c.toplevel FROM {calls} c \
                 LEFT JOIN {texts} t ON t.dbid = c.dbid AND t.queryid = c.queryid \
                   AND t.userid = c.userid AND t.toplevel = c.toplevel \
                 WHERE c.dbid = $1 AND c.taken_at > to_timestamp($2) AND c.calls IS NOT NULL \
                   AND coalesce(left(t.query, $3), '') <> $4",
                calls = self.table("calls"),
                texts = self.table("texts"),
            ),
            &[
                &database,
                &since,
                &i32::try_from(OWN_MARK.len()).unwrap_or(i32::MAX),
                &OWN_MARK,
            ],
        )
        .await
        .map_err(|e| EvidenceError::read(&e))?
        .iter()
        .map(key)
        .collect())
    }
}
