//! Statements observed through ddlgate itself (`evidence_observe`): the texts its clients run,
//! counted per database, as evidence of use beside `pg_stat_statements`.
//!
//! What is counted: every `Query` text, every `Parse` text, and every `Bind` of a named
//! prepared statement (a driver that prepares once and executes for days is still using its
//! text). The sampler writes the counts of each interval to the evidence tables
//! (`observed_texts`, `observed_calls`); a judgement adds the observed statements that use the
//! target to those of `pg_stat_statements` — they can only add uses (a statement evicted or
//! reset there, a statement under `pg_stat_statements.track = none`), never allow on their own:
//! traffic that bypasses ddlgate is not in them.
//!
//! Decisions, and why:
//! - **Counted on the query path, resolved off it.** A request costs a hash of its text and a
//!   counter increment under a lock of one of [`SHARDS`] shards; texts are parsed and resolved
//!   only when a migration asks. It is still a cost on every request, measured in
//!   benches/pgbench.py, and so off by default.
//! - **Bounded.** At most [`MAX_TEXTS`] distinct texts are kept between two samples (texts
//!   that carry literals make every call distinct); beyond that new texts are not counted and
//!   the sampler logs how many were missed. A text idle for a whole interval is forgotten.
//! - **Normalised off the query path.** The sampler normalises each new text as
//!   `pg_stat_statements` does (constants become `$n`) and adds up the counts of texts that
//!   differ only in constants, so the evidence tables get one row per statement, not one per
//!   call of a literal-laden one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Keys that are already hashes ([`text_hash`]) need no hashing again.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else is folded in.
        self.0 = text_hash(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash<V> = HashMap<u64, V, std::hash::BuildHasherDefault<Prehashed>>;

/// Shards of the counters, so that sessions on different threads rarely wait for each other.
const SHARDS: usize = 16;
/// Distinct texts kept between two samples, in all.
pub(crate) const MAX_TEXTS: usize = 20_000;

/// The counters of every session's statements.
#[derive(Debug)]
pub(crate) struct Observer {
    shards: Vec<Mutex<Shard>>,
    /// Calls of texts not counted because the counters were full.
    missed: AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    entries: ByHash<Entry>,
}

#[derive(Debug)]
struct Entry {
    database: Arc<str>,
    /// The text as the client sent it, until the sampler has normalised it.
    text: Option<Box<str>>,
    /// The hash of the normalised text (its key in the evidence tables), once known.
    normalized: Option<i64>,
    calls: u64,
}

/// One observed statement, as the sampler writes it: texts that differ only in constants are
/// one statement (normalised as `pg_stat_statements` does, off the query path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The session's database.
    pub database: Arc<str>,
    /// The normalised text's hash (its key in the evidence tables).
    pub hash: i64,
    /// The normalised text, when one of the texts counted is new.
    pub text: Option<Box<str>>,
    /// Calls since the last sample.
    pub calls: u64,
}

impl Default for Observer {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            missed: AtomicU64::new(0),
        }
    }
}

/// The hash of a statement text within a database (FNV-style over 8-byte words: fast on the
/// query path; a collision would merge two texts' counts, at odds of 2^-64 per pair).
pub(crate) fn text_hash(database_hash: u64, text: &[u8]) -> u64 {
    let mut h = database_hash ^ 0xcbf2_9ce4_8422_2325;
    for chunk in text.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h ^ (h >> 29)
}

impl Observer {
    /// Counts one call of `text` in `database` (`database_hash`: [`text_hash`] of its name
    /// with 0); returns the text's hash.
    pub(crate) fn record(&self, database: &Arc<str>, database_hash: u64, text: &[u8]) -> u64 {
        let hash = text_hash(database_hash, text);
        self.count(database, hash, text);
        hash
    }

    /// Counts one call of `text`, whose hash is `hash`.
    fn count(&self, database: &Arc<str>, hash: u64, text: &[u8]) {
        let index = usize::try_from(hash % SHARDS as u64).unwrap_or(0);
        let Some(shard) = self.shards.get(index) else {
            return;
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = shard.entries.get_mut(&hash) {
            entry.calls += 1;
            return;
        }
        if shard.entries.len() >= MAX_TEXTS / SHARDS {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shard.entries.insert(
            hash,
            Entry {
                database: Arc::clone(database),
                text: Some(String::from_utf8_lossy(text).into()),
                normalized: None,
                calls: 1,
            },
        );
    }

    /// What was counted since the last call, by normalised statement, and how many calls
    /// were missed; texts idle for the whole interval are forgotten. New texts are normalised
    /// here, outside the shards' locks: the query path never waits for a parse.
    pub(crate) fn take(&self) -> (Vec<Observed>, u64) {
        // Counts and new texts, taken under each shard's lock.
        let mut counted: Vec<Counted> = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.entries.retain(|hash, entry| {
                if entry.calls == 0 {
                    return false;
                }
                counted.push(Counted {
                    shard: index,
                    hash: *hash,
                    database: Arc::clone(&entry.database),
                    normalized: entry.normalized,
                    text: entry
                        .normalized
                        .is_none()
                        .then(|| entry.text.take())
                        .flatten(),
                    calls: std::mem::take(&mut entry.calls),
                });
                true
            });
        }
        // New texts normalised, without a lock held.
        let mut learned: Vec<(usize, u64, i64)> = Vec::new();
        let mut by_statement: HashMap<(Arc<str>, i64), Observed> = HashMap::new();
        for Counted {
            shard: index,
            hash,
            database,
            normalized,
            text,
            calls,
        } in counted
        {
            let (key, new_text) = match (normalized, text) {
                (Some(key), _) => (key, None),
                (None, Some(raw)) => {
                    let normal: Box<str> =
                        crate::analysis::parse::normalize(&raw).map_or(raw, Into::into);
                    let key = i64::from_ne_bytes(
                        text_hash(text_hash(0, database.as_bytes()), normal.as_bytes())
                            .to_ne_bytes(),
                    );
                    learned.push((index, hash, key));
                    (key, Some(normal))
                }
                (None, None) => continue,
            };
            let entry = by_statement
                .entry((Arc::clone(&database), key))
                .or_insert_with(|| Observed {
                    database,
                    hash: key,
                    text: None,
                    calls: 0,
                });
            entry.calls += calls;
            if entry.text.is_none() {
                entry.text = new_text;
            }
        }
        for (index, hash, key) in learned {
            if let Some(shard) = self.shards.get(index) {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = shard.entries.get_mut(&hash) {
                    entry.normalized = Some(key);
                }
            }
        }
        (
            by_statement.into_values().collect(),
            self.missed.swap(0, Ordering::Relaxed),
        )
    }
}

/// One entry's count, taken by [`Observer::take`].
struct Counted {
    shard: usize,
    hash: u64,
    database: Arc<str>,
    normalized: Option<i64>,
    /// The text, when it still has to be normalised.
    text: Option<Box<str>>,
    calls: u64,
}

/// A named prepared statement of a session.
#[derive(Debug)]
struct Named {
    name: Box<[u8]>,
    /// Its text's hash.
    hash: u64,
    text: Box<[u8]>,
}

/// A session's side of the observer: its database and its named prepared statements.
#[derive(Debug)]
pub(crate) struct Observing {
    observer: Arc<Observer>,
    database: Arc<str>,
    database_hash: u64,
    /// Named prepared statements of the session, by the hash of their name: the name, and
    /// the text and its hash.
    named: ByHash<Named>,
}

impl Observing {
    /// The session of `database` counts into `observer`.
    pub(crate) fn new(observer: Arc<Observer>, database: &str) -> Self {
        Self {
            observer,
            database: Arc::from(database),
            database_hash: text_hash(0, database.as_bytes()),
            named: ByHash::default(),
        }
    }

    /// A `Query` text ran.
    pub(crate) fn query(&self, text: &[u8]) {
        self.observer
            .record(&self.database, self.database_hash, text);
    }

    /// A `Parse` of `text` as statement `name` (`""`: the unnamed one, run by the next Bind).
    pub(crate) fn parse(&mut self, name: &[u8], text: &[u8]) {
        let hash = self
            .observer
            .record(&self.database, self.database_hash, text);
        if !name.is_empty() {
            self.named.insert(
                text_hash(0, name),
                Named {
                    name: name.into(),
                    hash,
                    text: text.into(),
                },
            );
        }
    }

    /// A `Bind` of statement `name`: a named statement runs again.
    pub(crate) fn bind(&self, name: &[u8]) {
        if name.is_empty() {
            return;
        }
        if let Some(named) = self.named.get(&text_hash(0, name))
            && *named.name == *name
        {
            self.observer.count(&self.database, named.hash, &named.text);
        }
    }

    /// A `Close` of statement `name`.
    pub(crate) fn close(&mut self, name: &[u8]) {
        let key = text_hash(0, name);
        if self.named.get(&key).is_some_and(|n| *n.name == *name) {
            self.named.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_counted_per_database_and_taken_once() {
        let observer = Arc::new(Observer::default());
        let mut app = Observing::new(Arc::clone(&observer), "app");
        let other = Observing::new(Arc::clone(&observer), "other");
        app.query(b"SELECT note FROM orders");
        app.query(b"SELECT note FROM orders");
        other.query(b"SELECT note FROM orders");
        app.parse(b"s1", b"SELECT id FROM orders WHERE id = $1");
        app.bind(b"s1");
        app.bind(b"s1");
        app.bind(b"unknown");
        let (mut taken, missed) = observer.take();
        taken.sort_by_key(|o| (o.database.to_string(), o.calls));
        let summary: Vec<(&str, Option<&str>, u64)> = taken
            .iter()
            .map(|o| (&*o.database, o.text.as_deref(), o.calls))
            .collect();
        assert_eq!(
            summary,
            [
                ("app", Some("SELECT note FROM orders"), 2),
                ("app", Some("SELECT id FROM orders WHERE id = $1"), 3),
                ("other", Some("SELECT note FROM orders"), 1),
            ]
        );
        assert_eq!(missed, 0);
        // Counted again: the text was written already and is not taken twice.
        app.bind(b"s1");
        let (taken, _) = observer.take();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].text.as_deref(), taken[0].calls), (None, 1));
        // Idle for an interval: forgotten; bound again, it is counted afresh with its text.
        let _ = observer.take();
        let _ = observer.take();
        app.bind(b"s1");
        let (taken, _) = observer.take();
        assert_eq!(
            (taken[0].text.as_deref(), taken[0].calls),
            (Some("SELECT id FROM orders WHERE id = $1"), 1)
        );
        app.close(b"s1");
        app.bind(b"s1");
        assert!(observer.take().0.is_empty());
    }

    #[test]
    fn the_counters_are_bounded() {
        let observer = Arc::new(Observer::default());
        let app = Observing::new(Arc::clone(&observer), "app");
        for n in 0..(MAX_TEXTS * 2) {
            app.query(format!("SELECT {n}").as_bytes());
        }
        let (taken, missed) = observer.take();
        // Texts differing in constants only are one statement once normalised.
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].text.as_deref(), Some("SELECT $1"));
        assert!(taken[0].calls <= MAX_TEXTS as u64, "{}", taken[0].calls);
        assert_eq!(taken[0].calls + missed, (MAX_TEXTS * 2) as u64);
    }
}
