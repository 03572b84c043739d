//! The review's memory of texts it cleared lately, for `Parse` messages.
//!
//! Drivers using the extended protocol without named statements (pgbench `-M extended`, JDBC
//! before its prepare threshold, most ORMs) send the same few texts in a `Parse` again and
//! again. Reading a text — the pre-filter's walk, the encoding check — costs a few hundred
//! instructions per statement; recognising a text seen a moment ago costs a length comparison
//! and a `memcmp`. So the review keeps the last few texts it cleared, with what it found.
//!
//! Only what is exactly the same decision is kept: texts the pre-filter cleared without a parse
//! (plain DML with no call of a routine that runs DDL, or transaction control), in ASCII (which
//! every client encoding reads alike). A text depends on nothing else but the session's copy of
//! the routines that run DDL, so each memory holds the copy it was made with and counts only
//! while the session still has that copy.

use std::sync::Arc;

use crate::analysis::routines::Routines;

use super::review::Checked;

/// Texts remembered per session.
const REMEMBERED: usize = 8;
/// Longer texts are not remembered (a copy per miss would cost more than the walk saves).
const LONGEST: usize = 4096;

/// What the review found in one text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub(super) checked: Checked,
    pub(super) may_change_encoding: bool,
}

#[derive(Debug)]
struct Memory {
    text: Box<[u8]>,
    routines: Arc<Routines>,
    found: Found,
}

/// The last [`REMEMBERED`] texts cleared, oldest replaced first.
#[derive(Debug, Default)]
pub(super) struct RecentTexts {
    memories: Vec<Memory>,
    next: usize,
}

impl RecentTexts {
    /// What was found in `text`, if it was cleared lately with the same routines.
    pub(super) fn find(&self, text: &[u8], routines: &Arc<Routines>) -> Option<Found> {
        self.memories
            .iter()
            .find(|m| m.text.len() == text.len() && *m.text == *text)
            .filter(|m| Arc::ptr_eq(&m.routines, routines))
            .map(|m| m.found)
    }

    /// Remembers what was found in `text`, if it is worth remembering (see the module docs).
    pub(super) fn remember(
        &mut self,
        text: &[u8],
        routines: &Arc<Routines>,
        found: Found,
        parsed: bool,
    ) {
        if parsed || !found.checked.plain || text.len() > LONGEST || !text.is_ascii() {
            return;
        }
        let memory = Memory {
            text: text.into(),
            routines: Arc::clone(routines),
            found,
        };
        if self.memories.len() < REMEMBERED {
            self.memories.push(memory);
        } else if let Some(slot) = self.memories.get_mut(self.next) {
            *slot = memory;
        }
        self.next = (self.next + 1) % REMEMBERED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(plain: bool) -> Found {
        Found {
            checked: Checked {
                plain,
                ..Checked::default()
            },
            may_change_encoding: false,
        }
    }

    #[test]
    fn only_cleared_ascii_texts_are_remembered_and_only_with_the_same_routines() {
        let routines = Arc::new(Routines::default());
        let mut recent = RecentTexts::default();
        recent.remember(b"SELECT 1", &routines, found(true), false);
        assert!(recent.find(b"SELECT 1", &routines).is_some());
        assert!(recent.find(b"SELECT 2", &routines).is_none());
        // A fresh copy of the routines (read again) forgets everything.
        assert!(
            recent
                .find(b"SELECT 1", &Arc::new(Routines::default()))
                .is_none()
        );

        recent.remember(b"SET x = 1", &routines, found(false), false);
        recent.remember(b"SELECT f()", &routines, found(true), true);
        recent.remember("SELECT 'é'".as_bytes(), &routines, found(true), false);
        for text in ["SET x = 1", "SELECT f()", "SELECT 'é'"] {
            assert!(recent.find(text.as_bytes(), &routines).is_none(), "{text}");
        }
    }

    #[test]
    fn the_oldest_text_is_forgotten_first() {
        let routines = Arc::new(Routines::default());
        let mut recent = RecentTexts::default();
        let texts: Vec<String> = (0..=REMEMBERED).map(|i| format!("SELECT {i}")).collect();
        for text in &texts {
            recent.remember(text.as_bytes(), &routines, found(true), false);
        }
        assert!(recent.find(texts[0].as_bytes(), &routines).is_none());
        for text in &texts[1..] {
            assert!(recent.find(text.as_bytes(), &routines).is_some(), "{text}");
        }
    }
}
