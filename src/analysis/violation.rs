//! What a rule reports: a violation, and optionally a fix made of text edits to the original
//! statement (never deparsed SQL: deparse loses comments and has known bugs).

use std::ops::Range;

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
        };
        assert_eq!(
            fix.apply(source, &span),
            "CREATE INDEX CONCURRENTLY i ON t (a) -- done"
        );
    }
}
