//! The user-defined routines that run DDL, per database, read from `pg_proc` on a session's
//! own connection and shared by every session of that database (see
//! [`crate::analysis::routines`] for how they are used).
//!
//! Decisions, and why:
//! - **Read once per database and interval, not per session.** The first session of a
//!   database that needs them reads them before it reviews its first request (one `SELECT`);
//!   the others take the shared copy. A copy older than [`REFRESH`] is read again by the next
//!   session that looks, so a routine created or changed by anyone, anywhere, is known within
//!   that interval. A session looks at the shared copy only when its own is older than
//!   [`REFRESH`]: the fast path takes no lock per request.
//! - **Invalidated by routine DDL through ddlgate**: after `CREATE`/`ALTER`/`DROP FUNCTION` or
//!   `PROCEDURE` (or a `DO` block, which may create one), the shared copy is marked stale and
//!   every session of the database reads them again before its next request (each checks a
//!   shared generation counter, one atomic load per request).
//! - **Only SQL and PL/pgSQL routines whose source mentions a DDL keyword are fetched** (the
//!   server filters with a regular expression), then parsed here; routines in other languages
//!   cannot be read and are left to `dynamic-ddl` where they are created.
//! - **Not read** in observe mode (no rule on), in a failed transaction or an open pipeline
//!   (the next quiet moment reads them), or when the read fails (the set stays as it was).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::analysis::routines::{Definition, Routines, Trigger};

/// How old a copy of a database's routines may get before it is read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// The routines of each database, as last read.
#[derive(Debug, Default)]
pub(crate) struct RoutineCache {
    by_database: Mutex<HashMap<String, Entry>>,
    /// Bumped whenever a copy is marked stale: a session whose copy is older looks again at
    /// its next request (one atomic load; the fast path takes no lock).
    generation: AtomicU64,
}

#[derive(Debug, Clone)]
struct Entry {
    read_at: Instant,
    routines: Arc<Routines>,
}

impl RoutineCache {
    /// The database's routines, if a copy younger than [`REFRESH`] exists.
    pub(crate) fn fresh(&self, database: &str) -> Option<Arc<Routines>> {
        let map = self
            .by_database
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(database)
            .filter(|e| e.read_at.elapsed() < REFRESH)
            .map(|e| Arc::clone(&e.routines))
    }

    /// Keeps what a session read.
    pub(crate) fn store(&self, database: &str, routines: Arc<Routines>) {
        self.by_database
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                database.to_owned(),
                Entry {
                    read_at: Instant::now(),
                    routines,
                },
            );
    }

    /// Marks the database's copy stale: a routine changed.
    pub(crate) fn invalidate(&self, database: &str) {
        self.by_database
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(database);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times a copy was marked stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Whether a statement of this kind may create, change or drop a routine (a `DO` block may
/// run `CREATE FUNCTION`; a schema or an extension holds routines; a trigger makes DML run one).
/// `ALTER TABLE … ENABLE/DISABLE TRIGGER` is seen at the next refresh.
pub(crate) fn may_change_routines(kind: &str) -> bool {
    kind == "DO"
        || [
            "FUNCTION",
            "PROCEDURE",
            "ROUTINE",
            "EXTENSION",
            "SCHEMA",
            "TRIGGER",
        ]
        .iter()
        .any(|k| kind.contains(k))
}

/// The routines in the server's answer to [`super::sql::routine_definitions`]: a JSON array
/// of `[schema, name, kind, definition, triggers]`, each trigger `[schema, table, tgtype]`. An
/// answer that cannot be read gives none.
pub(crate) fn read(answer: &str, server_major: u32) -> Routines {
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_str::<serde_json::Value>(answer)
    else {
        return Routines::default();
    };
    let definitions = rows.iter().filter_map(|row| {
        let text = |i: usize| {
            row.get(i)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let triggers = row
            .get(4)
            .and_then(serde_json::Value::as_array)
            .map(|triggers| {
                triggers
                    .iter()
                    .filter_map(|t| {
                        let tgtype = t.get(2)?.as_u64()?;
                        Some(Trigger {
                            schema: t.get(0)?.as_str()?.to_owned(),
                            table: t.get(1)?.as_str()?.to_owned(),
                            // Only the event bits (INSERT … TRUNCATE) are kept.
                            events: u8::try_from(tgtype & 0b11_1100).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Definition {
            schema: text(0)?,
            name: text(1)?,
            procedure: text(2)? == "p",
            create_statement: text(3)?,
            triggers,
        })
    });
    Routines::from_definitions(definitions, server_major)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_gives_the_routines_that_run_ddl() {
        let answer = r#"[["public", "f", "f", "CREATE OR REPLACE FUNCTION public.f()\n RETURNS void\n LANGUAGE sql\nAS $function$ DROP TABLE t $function$\n"],
                         ["public", "g", "f", "CREATE OR REPLACE FUNCTION public.g()\n RETURNS int\n LANGUAGE sql\nAS $function$ SELECT 1 $function$\n"]]"#;
        let routines = read(answer, 17);
        assert!(routines.mentioned_in("select f()"));
        assert!(!routines.mentioned_in("select g()"));
        assert!(read("nonsense", 17).is_empty());
    }

    #[test]
    fn a_copy_is_fresh_until_refresh_or_invalidation() {
        let cache = RoutineCache::default();
        assert!(cache.fresh("app").is_none());
        cache.store("app", Arc::new(Routines::default()));
        assert!(cache.fresh("app").is_some());
        assert!(cache.fresh("other").is_none());
        cache.invalidate("app");
        assert!(cache.fresh("app").is_none());
    }
}
