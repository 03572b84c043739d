//! A concurrent index build that would wait for its own client.
//!
//! `CREATE INDEX CONCURRENTLY` (and `REINDEX CONCURRENTLY`, and ddlgate's rewrites into them)
//! waits, between its phases, for every older transaction of the database that holds a
//! snapshot. Migration tools that guard a run with a transaction-level advisory lock keep that
//! lock's transaction open on a second connection while the migration runs (Flyway's default,
//! `postgresql.transactional.lock=true`; pgjdbc leaves the transaction holding a snapshot).
//! The build then waits for a transaction its own client ends only after the build: forever
//! on a direct connection, `lock_timeout` after `lock_timeout` through ddlgate.
//!
//! Before such a build ddlgate looks for that shape: a session of the same database, user and
//! `application_name`, idle in a transaction that holds a snapshot and an advisory lock. When
//! one is found it looks again after [`GRACE`]; a transaction still in the same idle stretch
//! (same transaction start, same state change) is taken for the client's own, and the build is
//! not sent: the client gets ddlgate's error naming it. A transaction that ended or moved on
//! in the meantime belongs to somebody who is working, and the build goes ahead as usual. A
//! failed look sends the build as without looking.

use std::time::Duration;

use tracing::{info, warn};

use crate::protocol::reply::Report;

use super::answers::Running;
use super::{Conductor, Op};

/// How long a suspect transaction must stay in the same idle stretch to be taken for the
/// client's own.
pub(super) const GRACE: Duration = Duration::from_secs(1);

impl Conductor {
    /// The answer to a look for the client's own idle transactions.
    pub(super) fn looked_for_own(&mut self, running: Running) {
        if let Some((code, message)) = &running.error {
            warn!(parent: &self.span, %code, %message, "could not look for the client's own open transactions; sending the build as it is");
            return;
        }
        let found: Vec<(String, String)> = running
            .rows
            .into_iter()
            .flatten()
            .filter_map(|line| {
                let mut parts = line.splitn(4, '|');
                let (pid, start, change) = (parts.next()?, parts.next()?, parts.next()?);
                Some((format!("{pid}|{start}|{change}"), parts.next()?.to_owned()))
            })
            .collect();
        let Some(seen) = self.own_seen.take() else {
            if !found.is_empty() {
                self.own_seen = Some(found.into_iter().map(|(key, _)| key).collect());
                self.ops.push_front(Op::LookForOwnSnapshots);
                self.ops.push_front(Op::Wait(GRACE));
            }
            return;
        };
        let still: Vec<String> = found
            .into_iter()
            .filter(|(key, _)| seen.contains(key))
            .map(|(_, description)| description)
            .collect();
        if still.is_empty() {
            return;
        }
        info!(parent: &self.span, transactions = ?still, "a concurrent build would wait for the client's own open transaction; not sent");
        self.refuse_unsent(
            &Report::policy_rejected(
                "a concurrent index build would wait for a transaction of its own client, which stays open until the build ends",
            )
            .detail(format!(
                "{}\nCREATE INDEX CONCURRENTLY waits for every older transaction holding a snapshot. This one belongs to a session of the same user and application_name, idle in its transaction for {} s or more and holding an advisory lock, as a migration tool's lock transaction does while the tool waits for this statement. The statement was not sent.",
                still.join("\n"),
                GRACE.as_secs()
            ))
            .hint("Flyway: set postgresql.transactional.lock=false (Spring Boot: spring.flyway.postgresql.transactional-lock=false); its lock is then session-level and holds no transaction open. Other tools: take the migration lock at session level, or run this migration without the tool's lock transaction."),
            "refused: the concurrent build would wait for its own client's open transaction"
                .to_owned(),
        );
    }
}
