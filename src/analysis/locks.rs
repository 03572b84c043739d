//! Table-level lock modes and what they block, from the PostgreSQL manual, "Explicit Locking"
//! (Table 13.2, conflicting lock modes).

use std::fmt;

/// A table-level lock mode, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    /// Taken by `SELECT`.
    AccessShare,
    /// Taken by `SELECT … FOR UPDATE/SHARE`.
    RowShare,
    /// Taken by `INSERT`, `UPDATE`, `DELETE`, `MERGE`.
    RowExclusive,
    /// Taken by `VACUUM`, `ANALYZE`, `CREATE INDEX CONCURRENTLY`, `VALIDATE CONSTRAINT`, …
    ShareUpdateExclusive,
    /// Taken by `CREATE INDEX`: blocks writes.
    Share,
    /// Taken by `CREATE TRIGGER`, `ADD FOREIGN KEY`: blocks writes.
    ShareRowExclusive,
    /// Taken by `REFRESH MATERIALIZED VIEW CONCURRENTLY`: blocks writes and row locks.
    Exclusive,
    /// Taken by most `ALTER TABLE` forms, `DROP`, `TRUNCATE`, `VACUUM FULL`: blocks everything.
    AccessExclusive,
}

impl LockMode {
    /// Every mode, weakest first.
    pub const ALL: [Self; 8] = [
        Self::AccessShare,
        Self::RowShare,
        Self::RowExclusive,
        Self::ShareUpdateExclusive,
        Self::Share,
        Self::ShareRowExclusive,
        Self::Exclusive,
        Self::AccessExclusive,
    ];

    /// The name in SQL and in the manual, e.g. `ACCESS EXCLUSIVE`.
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::AccessShare => "ACCESS SHARE",
            Self::RowShare => "ROW SHARE",
            Self::RowExclusive => "ROW EXCLUSIVE",
            Self::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Self::Share => "SHARE",
            Self::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Self::Exclusive => "EXCLUSIVE",
            Self::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The name in `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub fn pg_locks_name(self) -> &'static str {
        match self {
            Self::AccessShare => "AccessShareLock",
            Self::RowShare => "RowShareLock",
            Self::RowExclusive => "RowExclusiveLock",
            Self::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Self::Share => "ShareLock",
            Self::ShareRowExclusive => "ShareRowExclusiveLock",
            Self::Exclusive => "ExclusiveLock",
            Self::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// Parses a `pg_locks.mode` value.
    pub fn from_pg_locks_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.pg_locks_name() == name)
    }

    /// Whether a lock in this mode and one in `other` cannot be held at once by two
    /// transactions.
    pub fn conflicts_with(self, other: Self) -> bool {
        use LockMode::{
            AccessExclusive, AccessShare, Exclusive, RowExclusive, RowShare, Share,
            ShareRowExclusive, ShareUpdateExclusive,
        };
        let (weak, strong) = if self <= other {
            (self, other)
        } else {
            (other, self)
        };
        match strong {
            AccessExclusive => true,
            Exclusive => weak >= RowShare,
            ShareRowExclusive => weak >= RowExclusive,
            Share => matches!(weak, RowExclusive | ShareUpdateExclusive),
            ShareUpdateExclusive => weak >= ShareUpdateExclusive,
            RowExclusive | RowShare | AccessShare => false,
        }
    }

    /// Whether plain `SELECT`s on the table wait while this lock is held.
    pub fn blocks_reads(self) -> bool {
        self.conflicts_with(Self::AccessShare)
    }

    /// Whether `INSERT`/`UPDATE`/`DELETE` on the table wait while this lock is held.
    pub fn blocks_writes(self) -> bool {
        self.conflicts_with(Self::RowExclusive)
    }

    /// What the lock means for application traffic, for messages: "blocks reads and writes".
    pub fn impact(self) -> &'static str {
        match (self.blocks_reads(), self.blocks_writes()) {
            (true, _) => "blocks reads and writes",
            (false, true) => "blocks writes",
            (false, false) => "blocks neither reads nor writes",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The manual's table 13.2, row by row ('X' = conflict), in `ALL` order.
    const MANUAL: [&str; 8] = [
        ".......X", // ACCESS SHARE
        "......XX", // ROW SHARE
        "....XXXX", // ROW EXCLUSIVE
        "...XXXXX", // SHARE UPDATE EXCLUSIVE
        "..XX.XXX", // SHARE
        "..XXXXXX", // SHARE ROW EXCLUSIVE
        ".XXXXXXX", // EXCLUSIVE
        "XXXXXXXX", // ACCESS EXCLUSIVE
    ];

    #[test]
    fn conflicts_match_the_manual() {
        for (i, a) in LockMode::ALL.into_iter().enumerate() {
            for (j, b) in LockMode::ALL.into_iter().enumerate() {
                let expected = MANUAL[i].as_bytes()[j] == b'X';
                assert_eq!(a.conflicts_with(b), expected, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn impact_in_words() {
        assert_eq!(
            LockMode::AccessExclusive.impact(),
            "blocks reads and writes"
        );
        assert_eq!(LockMode::Share.impact(), "blocks writes");
        assert_eq!(
            LockMode::ShareUpdateExclusive.impact(),
            "blocks neither reads nor writes"
        );
    }

    #[test]
    fn pg_locks_names_roundtrip() {
        for m in LockMode::ALL {
            assert_eq!(LockMode::from_pg_locks_name(m.pg_locks_name()), Some(m));
        }
    }
}
