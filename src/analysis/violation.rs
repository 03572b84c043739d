//! What a rule reports: a violation, and optionally a fix made of text edits to the original
//! statement (never deparsed SQL: deparse loses comments and has known bugs).

use std::ops::Range;

use super::classify::{Facts, RelationName};
use super::registry::RuleId;

/// How safe it is to apply a fix automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applicability {
    /// Same effect, safer execution: the proxy may apply it on its own.
    Safe,
    /// Changes behaviour or needs a human decision: shown, never applied automatically.
    Unsafe,
}

/// One text replacement in the source (an insertion when the range is empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Edit {
    /// Byte range of the source to replace.
    pub range: Range<usize>,
    /// The replacement.
    pub text: String,
}

/// A rewrite of the statement into its safe form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fix {
    /// What the fix does, e.g. "Add `CONCURRENTLY`".
    pub title: String,
    /// Edits to the source, in ascending, non-overlapping order.
    pub edits: Vec<Edit>,
    /// Whether it may be applied automatically.
    pub applicability: Applicability,
    /// What each statement of the rewritten text does that running it needs to know, one
    /// entry per statement, in order: the rule that writes the text knows it, so nobody has to
    /// read it back out of a tree.
    #[serde(skip)]
    pub steps: Vec<FixStep>,
}

/// One statement of a fix's text, as the proxy runs it: on its own, and taken back if a
/// later statement of the same fix fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixStep {
    /// It builds or rebuilds indexes concurrently; a build that fails leaves an INVALID index
    /// behind.
    pub builds_indexes: Option<IndexBuild>,
    /// What takes it back.
    pub undo: Option<Undo>,
    /// Where it is in the fixed text and what it does, from the engine's parse of that text:
    /// `None` until the engine has checked the fix.
    pub checked: Option<CheckedStep>,
}

/// A step of a fix as the engine's parse of the fixed text found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedStep {
    /// Its byte range in the fixed text.
    pub span: Range<usize>,
    /// Its classification.
    pub facts: Facts,
}

impl FixStep {
    /// A step that builds indexes concurrently.
    pub fn building(build: IndexBuild) -> Self {
        Self {
            builds_indexes: Some(build),
            ..Self::default()
        }
    }

    /// A step taken back by `undo`.
    pub fn undone_by(undo: Undo) -> Self {
        Self {
            undo: Some(undo),
            ..Self::default()
        }
    }
}

/// Where a concurrent index build adds its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexBuild {
    /// On this table.
    OnTable(RelationName),
    /// On the table this existing index belongs to (`REINDEX INDEX CONCURRENTLY`).
    BesideIndex(RelationName),
}

/// How a step of a fix is taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Drop the constraint it added.
    DropConstraint {
        /// The table.
        table: RelationName,
        /// The constraint.
        name: String,
    },
    /// Drop the index it built (named as the statement named it: in the table's schema).
    DropIndex(RelationName),
}

impl Fix {
    /// Applies the edits to `source`, returning the text of the statement at `span` rewritten.
    pub fn apply(&self, source: &str, span: &Range<usize>) -> String {
        let mut out = String::new();
        let mut at = span.start;
        for edit in &self.edits {
            out.push_str(source.get(at..edit.range.start).unwrap_or_default());
            out.push_str(&edit.text);
            at = edit.range.end;
        }
        out.push_str(source.get(at..span.end).unwrap_or_default());
        out
    }
}

/// A rule's finding about one statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The rule.
    pub rule: RuleId,
    /// What is unsafe, in one sentence.
    pub message: String,
    /// The facts behind it: the lock, the table, what waits.
    pub detail: Option<String>,
    /// What to do instead, usually the safe SQL.
    pub help: String,
    /// Byte range in the source this is about (the statement, or a part of it).
    pub span: Range<usize>,
    /// A rewrite into the safe form, when one exists.
    pub fix: Option<Fix>,
}

impl Violation {
    /// Adds the detail line.
    #[must_use]
    pub fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    /// Sets the help (what to do instead).
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Attaches a fix.
    #[must_use]
    pub fn with_fix(mut self, fix: Option<Fix>) -> Self {
        self.fix = fix;
        self
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_order_inside_the_statement() {
        let source = "SELECT 1; CREATE INDEX i ON t (a); SELECT 2";
        let span = 10..33;
        let fix = Fix {
            title: "Add `CONCURRENTLY`".into(),
            edits: vec![
                Edit {
                    range: 22..22,
                    text: " CONCURRENTLY".into(),
                },
                Edit {
                    range: 33..33,
                    text: " -- done".into(),
                },
            ],
            applicability: Applicability::Safe,
            steps: vec![FixStep::default()],
        };
        assert_eq!(
            fix.apply(source, &span),
            "CREATE INDEX CONCURRENTLY i ON t (a) -- done"
        );
    }
}
