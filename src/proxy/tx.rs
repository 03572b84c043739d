//! Transaction truth: where one transaction ends and the next begins, as the server says it.
//!
//! The analysis engine remembers facts that belong to one transaction (what it created, which
//! constraints it added `NOT VALID`, which locks it holds; see [`crate::analysis::context`]).
//! They must end with that transaction, or a later one inherits an exemption it does not have:
//! a table created and committed by an earlier migration is visible to every session and may
//! hold data, so it is not "new" any more.
//!
//! The boundaries come from the server, not from the statements ddlgate happens to parse:
//! - every idle `ReadyForQuery` (`I`) ends one — a `COMMIT` or `ROLLBACK` on the fast path,
//!   a failed block, the implicit transaction of a request or of a pipeline (runs ending with
//!   `Flush`, then a `Sync`);
//! - a forwarded request that holds a transaction-ending statement (`COMMIT`, `END`,
//!   `ROLLBACK`, `ABORT`, `PREPARE TRANSACTION`, also with `AND CHAIN`, also pipelined with a
//!   `BEGIN` under one `Sync`) ends one even when no idle `ReadyForQuery` shows it;
//! - `ROLLBACK TO SAVEPOINT` does not end the transaction, but undoes what came after the
//!   savepoint: the engine then forgets its exemptions (it only ever gets stricter).
//!
//! Governed requests are simulated statement by statement by the engine at planning time, and
//! their end is checked when their program is over (see `Session::finish_program`); this
//! tracker covers everything in between, which goes by on the fast path unparsed.
//!
//! Whether an ended transaction *committed* matters only for what outlives it (a validated
//! `CHECK (c IS NOT NULL)`): it is taken as committed only when proven — the request was one
//! `COMMIT`/`END` sent with nothing else in flight, the block was not failed, and its
//! `ReadyForQuery` is idle with no error before it. Anything else counts as rolled back, which
//! can only make the engine stricter.

use crate::analysis::prefilter::word_at;
use crate::protocol::backend::TxStatus;

/// What a forwarded statement does to the transaction it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxEffect {
    /// Nothing (`BEGIN`, `SAVEPOINT`, `RELEASE`, any other statement).
    #[default]
    None,
    /// `ROLLBACK TO SAVEPOINT`.
    RollbackToSavepoint,
    /// It ends the transaction; `commit_alone`: a plain `COMMIT`/`END` (no `AND CHAIN`), so
    /// that its `ReadyForQuery` tells whether it committed.
    End {
        /// See above.
        commit_alone: bool,
    },
}

impl TxEffect {
    /// The effect of a transaction-control statement, from its words (the pre-filter proved
    /// that `text` is one such statement). A few byte comparisons: this runs on the fast path
    /// for every `BEGIN` and `COMMIT`.
    pub fn of_transaction_control(text: impl AsRef<[u8]>) -> Self {
        let bytes = text.as_ref();
        let Some((first, after)) = word_at(bytes, 0) else {
            return Self::None;
        };
        let is = |w: &[u8], word: &str| w.eq_ignore_ascii_case(word.as_bytes());
        if is(first, "commit") || is(first, "end") {
            // COMMIT AND CHAIN starts the next transaction at once: no idle ReadyForQuery.
            let chained = contains_word(bytes, after, b"chain");
            return Self::End {
                commit_alone: !chained && !contains_word(bytes, after, b"prepared"),
            };
        }
        if is(first, "abort") {
            return Self::End {
                commit_alone: false,
            };
        }
        if is(first, "rollback") {
            // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
            let mut at = after;
            while let Some((word, next)) = word_at(bytes, at) {
                if is(word, "to") {
                    return Self::RollbackToSavepoint;
                }
                if !(is(word, "work") || is(word, "transaction")) {
                    break;
                }
                at = next;
            }
            return Self::End {
                commit_alone: false,
            };
        }
        Self::None
    }

    /// The stronger of two effects of one request: any end wins, and two statements are never
    /// "alone".
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::None, x) | (x, Self::None) => x,
            (Self::End { .. }, _) | (_, Self::End { .. }) => Self::End {
                commit_alone: false,
            },
            (Self::RollbackToSavepoint, Self::RollbackToSavepoint) => Self::RollbackToSavepoint,
        }
    }
}

/// Whether `word` occurs as a whole word in `bytes` from `from` (ASCII, case-insensitive).
fn contains_word(bytes: &[u8], mut from: usize, word: &[u8]) -> bool {
    while let Some((w, next)) = word_at(bytes, from) {
        if w.eq_ignore_ascii_case(word) {
            return true;
        }
        from = next;
    }
    false
}

/// What happened to the session's transactions since the engine's facts were last brought up
/// to date (see [`Transactions::take`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Since {
    /// A transaction ended; `Some(true)` when the first one to end is proven committed.
    pub ended: Option<bool>,
    /// A `ROLLBACK TO SAVEPOINT` ran.
    pub rolled_back_to_savepoint: bool,
}

/// Transaction boundaries seen on the fast path.
#[derive(Debug, Clone, Default)]
pub struct Transactions {
    since: Since,
    /// A lone `COMMIT` went up with nothing else in flight: the next `ReadyForQuery` answers
    /// it and says whether it committed.
    commit_pending: bool,
}

impl Transactions {
    /// A request with this effect was forwarded. `alone`: it is one statement, and no other
    /// request is in flight, so its `ReadyForQuery` is its own.
    pub fn forwarded(&mut self, effect: TxEffect, alone: bool) {
        match effect {
            TxEffect::None => {}
            TxEffect::RollbackToSavepoint => self.since.rolled_back_to_savepoint = true,
            TxEffect::End { commit_alone } if commit_alone && alone => self.commit_pending = true,
            TxEffect::End { .. } => self.ended(false),
        }
    }

    /// A `ReadyForQuery` went from `before` to `after`; `after_error`: an `ErrorResponse` came
    /// since the previous one.
    pub fn ready(&mut self, before: TxStatus, after: TxStatus, after_error: bool) {
        if std::mem::take(&mut self.commit_pending) {
            let committed =
                before == TxStatus::InTransaction && after == TxStatus::Idle && !after_error;
            self.ended(committed);
        } else if after == TxStatus::Idle {
            // Also idle to idle: the implicit transaction of a request, or of a pipeline
            // (runs ending with Flush, then a Sync), ends here.
            self.ended(false);
        }
    }

    fn ended(&mut self, committed: bool) {
        // The facts belong to the first transaction to end; later ones cannot revive them.
        self.since.ended.get_or_insert(committed);
    }

    /// What happened since the last call, and starts afresh.
    pub fn take(&mut self) -> Since {
        std::mem::take(&mut self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TxStatus::{Failed, Idle, InTransaction};

    #[test]
    fn transaction_control_words_are_read_like_postgres() {
        let alone = TxEffect::End { commit_alone: true };
        let not_alone = TxEffect::End {
            commit_alone: false,
        };
        assert_eq!(TxEffect::of_transaction_control("COMMIT"), alone);
        assert_eq!(TxEffect::of_transaction_control("end transaction;"), alone);
        assert_eq!(TxEffect::of_transaction_control("  commit work"), alone);
        assert_eq!(
            TxEffect::of_transaction_control("COMMIT AND CHAIN"),
            not_alone
        );
        assert_eq!(TxEffect::of_transaction_control("ROLLBACK"), not_alone);
        assert_eq!(TxEffect::of_transaction_control("abort"), not_alone);
        assert_eq!(
            TxEffect::of_transaction_control("ROLLBACK TO SAVEPOINT s"),
            TxEffect::RollbackToSavepoint
        );
        assert_eq!(
            TxEffect::of_transaction_control("rollback work to s"),
            TxEffect::RollbackToSavepoint
        );
        assert_eq!(
            TxEffect::of_transaction_control("ROLLBACK /* c */ TRANSACTION TO s"),
            TxEffect::RollbackToSavepoint
        );
        assert_eq!(TxEffect::of_transaction_control("BEGIN"), TxEffect::None);
        assert_eq!(
            TxEffect::of_transaction_control("SAVEPOINT s"),
            TxEffect::None
        );
        assert_eq!(
            TxEffect::of_transaction_control("RELEASE SAVEPOINT s"),
            TxEffect::None
        );
    }

    #[test]
    fn an_idle_ready_for_query_ends_the_transaction() {
        let mut t = Transactions::default();
        t.ready(Idle, InTransaction, false);
        assert_eq!(t.take(), Since::default());
        t.ready(InTransaction, Idle, false);
        assert_eq!(t.take().ended, Some(false));
        t.ready(Failed, Idle, false);
        assert_eq!(t.take().ended, Some(false));
        // The implicit transaction of a pipeline ends at its Sync's ReadyForQuery.
        t.ready(Idle, Idle, true);
        assert_eq!(t.take().ended, Some(false));
    }

    #[test]
    fn a_lone_commit_is_committed_only_when_its_answer_says_so() {
        let mut t = Transactions::default();
        t.forwarded(TxEffect::of_transaction_control("COMMIT"), true);
        t.ready(InTransaction, Idle, false);
        assert_eq!(t.take().ended, Some(true));
        // COMMIT of a failed block rolls back.
        t.forwarded(TxEffect::of_transaction_control("COMMIT"), true);
        t.ready(Failed, Idle, false);
        assert_eq!(t.take().ended, Some(false));
        // A deferred constraint failed at COMMIT.
        t.forwarded(TxEffect::of_transaction_control("COMMIT"), true);
        t.ready(InTransaction, Idle, true);
        assert_eq!(t.take().ended, Some(false));
        // With other requests in flight its answer cannot be told apart.
        t.forwarded(TxEffect::of_transaction_control("COMMIT"), false);
        assert_eq!(t.take().ended, Some(false));
    }

    #[test]
    fn an_end_without_an_idle_ready_for_query_still_counts() {
        let mut t = Transactions::default();
        // COMMIT; BEGIN under one Sync: the server goes on reporting "in a block".
        t.forwarded(
            TxEffect::End {
                commit_alone: false,
            },
            false,
        );
        t.ready(InTransaction, InTransaction, false);
        assert_eq!(t.take().ended, Some(false));
        t.forwarded(TxEffect::RollbackToSavepoint, true);
        t.ready(InTransaction, InTransaction, false);
        let since = t.take();
        assert!(since.rolled_back_to_savepoint);
        assert_eq!(since.ended, None);
    }
}
