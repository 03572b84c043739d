//! How `ddlgate check` reports: human-readable text, JSON, and GitHub workflow commands.

use std::io::Write;
use std::ops::Range;

use serde::Serialize;

use crate::analysis::Violation;
use crate::analysis::parse::SyntaxError;
use crate::analysis::violation::Applicability;
use crate::config::policy::Action;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `file:line:col: level[rule]: message`, the statement, a caret, detail and help.
    Text,
    /// One JSON document with every diagnostic.
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// The policy rejects it (or the file cannot be read or parsed): exit code 1 or 2.
    Error,
    /// The policy warns, or the proxy would rewrite it into its safe form.
    Warning,
    /// Allowed by an inline override (shown for the record).
    Note,
}

/// A fix as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReportedFix {
    /// What it does.
    pub title: String,
    /// Whether the proxy would apply it by itself.
    pub applicability: Applicability,
    /// The statement rewritten.
    pub sql: String,
}

/// One thing to report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Diagnostic {
    /// The file (or `<stdin>`).
    pub file: String,
    /// 1-based line and column where it starts (0 when it concerns the whole file).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Where it ends.
    pub end_line: usize,
    /// Where it ends (exclusive).
    pub end_column: usize,
    /// The rule, or `null` for syntax and file errors.
    pub rule: Option<String>,
    /// How serious.
    pub level: Level,
    /// What the policy does with it.
    pub action: Option<Action>,
    /// The message.
    pub message: String,
    /// The facts behind it.
    pub detail: Option<String>,
    /// What to do.
    pub help: Option<String>,
    /// The safe rewrite, when there is one.
    pub fix: Option<ReportedFix>,
    /// The reason of the inline override that allowed it.
    pub overridden: Option<String>,
    /// The source line (or, for a long line, the part of it around the position) and the
    /// character index of the position in it, for the text format.
    #[serde(skip)]
    source_line: Option<(String, usize)>,
}

/// Counts for the closing line and the exit code.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    /// Files checked.
    pub files: usize,
    /// Error-level diagnostics.
    pub errors: usize,
    /// Warning-level diagnostics.
    pub warnings: usize,
    /// Files that could not be read.
    pub io_errors: usize,
}

/// The longest source line shown whole under a text diagnostic, in characters.
const MAX_EXCERPT: usize = 160;

/// The longest help or rewrite shown whole in the text format, in characters (they quote the
/// statement, which can be megabytes; the JSON and SARIF formats keep everything).
const MAX_TEXT: usize = 2000;

fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_TEXT) {
        None => text.into(),
        Some((cut, _)) => format!(
            "{}… ({} more bytes; --format json shows all)",
            text.get(..cut).unwrap_or_default(),
            text.len() - cut
        )
        .into(),
    }
}

/// A file's text with its line starts, so positions are found by bisection: a file with
/// thousands of findings must not be rescanned from the top for each one.
pub(crate) struct SourceText<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    /// Indexes `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    /// The text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    fn line_start(&self, offset: usize) -> (usize, usize) {
        let index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        (index, self.line_starts.get(index).copied().unwrap_or(0))
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let (index, start) = self.line_start(offset);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        (index + 1, column)
    }

    /// The line holding `offset`, without its line break, and the character index of `offset`
    /// in it. A line longer than [`MAX_EXCERPT`] characters is cut to a window around the
    /// offset, marked with `…`: a generated statement can be megabytes on one line.
    fn line_at(&self, offset: usize) -> (String, usize) {
        let offset = offset.min(self.text.len());
        let (_, start) = self.line_start(offset);
        let rest = self.text.get(start..).unwrap_or_default();
        let line = rest.lines().next().unwrap_or_default();
        let caret = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        let length = line.chars().count();
        if length <= MAX_EXCERPT {
            return (line.to_owned(), caret);
        }
        let from = caret
            .saturating_sub(MAX_EXCERPT / 3)
            .min(length - MAX_EXCERPT);
        let mut excerpt = String::new();
        if from > 0 {
            excerpt.push('…');
        }
        excerpt.extend(line.chars().skip(from).take(MAX_EXCERPT));
        if from + MAX_EXCERPT < length {
            excerpt.push('…');
        }
        (excerpt, caret - from + usize::from(from > 0))
    }
}

impl Diagnostic {
    /// A diagnostic about a byte range of a file.
    pub(crate) fn at(
        file: &str,
        source: &SourceText<'_>,
        span: Range<usize>,
        rule: Option<String>,
        level: Level,
        message: String,
    ) -> Self {
        let (line, column) = source.line_col(span.start);
        let (end_line, end_column) = source.line_col(span.end);
        Self {
            file: file.to_owned(),
            line,
            column,
            end_line,
            end_column,
            rule,
            level,
            action: None,
            message,
            detail: None,
            help: None,
            fix: None,
            overridden: None,
            source_line: Some(source.line_at(span.start)),
        }
    }

    /// A file that cannot be read.
    pub(crate) fn file_error(file: &str, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            end_line: 0,
            end_column: 0,
            rule: None,
            level: Level::Error,
            action: None,
            message,
            detail: None,
            help: None,
            fix: None,
            overridden: None,
            source_line: None,
        }
    }

    /// A statement PostgreSQL's grammar refuses.
    pub(crate) fn syntax(
        file: &str,
        source: &SourceText<'_>,
        span: &Range<usize>,
        e: &SyntaxError,
    ) -> Self {
        let mut d = Self::at(
            file,
            source,
            e.position..e.position.max(span.end),
            None,
            Level::Error,
            e.message.clone(),
        );
        d.help = Some("PostgreSQL cannot parse this statement, so it would fail; ddlgate cannot analyse it either.".to_owned());
        d
    }

    /// A rule violation, at the level the policy's action gives it.
    pub(crate) fn violation(
        file: &str,
        source: &SourceText<'_>,
        v: &Violation,
        action: Action,
        overridden: Option<String>,
    ) -> Self {
        let rewritten = v
            .fix
            .as_ref()
            .filter(|f| f.applicability == Applicability::Safe);
        let level = match (overridden.is_some(), action, rewritten) {
            (true, _, _) => Level::Note,
            (false, Action::Reject, _) | (false, Action::Rewrite, None) => Level::Error,
            (false, Action::Rewrite, Some(_)) | (false, Action::Warn | Action::Allow, _) => {
                Level::Warning
            }
        };
        let mut d = Self::at(
            file,
            source,
            v.span.clone(),
            Some(v.rule.to_string()),
            level,
            v.message.clone(),
        );
        d.action = Some(action);
        d.detail.clone_from(&v.detail);
        d.help = (!v.help.is_empty()).then(|| v.help.clone());
        d.fix = v.fix.as_ref().map(|f| ReportedFix {
            title: f.title.clone(),
            applicability: f.applicability,
            sql: f.apply(source.text(), &v.span),
        });
        d.overridden = overridden;
        d
    }
}

/// Writes the diagnostics in `format`.
pub(crate) fn render(
    format: Format,
    diagnostics: &[Diagnostic],
    summary: &Summary,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Text => text(diagnostics, summary, out),
        Format::Json => {
            #[derive(Serialize)]
            struct Document<'a> {
                summary: &'a Summary,
                diagnostics: &'a [Diagnostic],
            }
            serde_json::to_writer_pretty(
                &mut *out,
                &Document {
                    summary,
                    diagnostics,
                },
            )?;
            writeln!(out)
        }
        Format::Github => github(diagnostics, summary, out),
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(diagnostics))?;
            writeln!(out)
        }
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note => "note",
    }
}

fn text(diagnostics: &[Diagnostic], summary: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    for d in diagnostics {
        let rule = d
            .rule
            .as_deref()
            .map(|r| format!("[{r}]"))
            .unwrap_or_default();
        if d.line == 0 {
            writeln!(
                out,
                "{}: {}{rule}: {}",
                d.file,
                level_word(d.level),
                d.message
            )?;
            continue;
        }
        writeln!(
            out,
            "{}:{}:{}: {}{rule}: {}",
            d.file,
            d.line,
            d.column,
            level_word(d.level),
            d.message
        )?;
        if let Some((source, caret)) = &d.source_line {
            let gutter = d.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_at: String = source
                .chars()
                .take(*caret)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(out, "{pad} |")?;
            writeln!(out, "{gutter} | {source}")?;
            writeln!(out, "{pad} | {caret_at}^")?;
        }
        if let Some(detail) = &d.detail {
            writeln!(out, "  = detail: {}", clip(detail))?;
        }
        if let Some(help) = &d.help {
            writeln!(out, "  = help: {}", clip(help))?;
        }
        if let Some(fix) = d.fix.as_ref().filter(|_| d.level == Level::Warning) {
            if fix.applicability == Applicability::Safe {
                writeln!(out, "  = ddlgate rewrites it to: {}", clip(&fix.sql))?;
            }
        }
        if let Some(reason) = &d.overridden {
            writeln!(out, "  = allowed by an inline override: {reason}")?;
        }
        writeln!(out)?;
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    writeln!(
        out,
        "{}, {} in {} checked",
        plural(summary.errors, "error"),
        plural(summary.warnings, "warning"),
        plural(summary.files, "file")
    )
}

/// Escapes a workflow-command property or message as GitHub requires.
fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn github(
    diagnostics: &[Diagnostic],
    summary: &Summary,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for d in diagnostics {
        let command = match d.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "notice",
        };
        let title = match &d.rule {
            Some(r) => format!("ddlgate {r}"),
            None => "ddlgate".to_owned(),
        };
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push('\n');
            message.push_str(help);
        }
        if d.line == 0 {
            writeln!(
                out,
                "::{command} file={},title={}::{}",
                escape(&d.file, true),
                escape(&title, true),
                escape(&message, false)
            )?;
        } else {
            writeln!(
                out,
                "::{command} file={},line={},col={},endLine={},endColumn={},title={}::{}",
                escape(&d.file, true),
                d.line,
                d.column,
                d.end_line,
                d.end_column,
                escape(&title, true),
                escape(&message, false)
            )?;
        }
    }
    writeln!(
        out,
        "{} errors, {} warnings in {} files checked",
        summary.errors, summary.warnings, summary.files
    )
}

fn sarif_level(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note => "note",
    }
}

fn sarif_region(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "startLine": d.line,
        "startColumn": d.column,
        "endLine": d.end_line,
        "endColumn": d.end_column,
    })
}

/// A SARIF 2.1.0 log with one run: the catalog as the driver's rules, one result per
/// diagnostic (fixes as replacements, overrides as in-source suppressions), file errors as
/// tool execution notifications.
fn sarif(diagnostics: &[Diagnostic]) -> serde_json::Value {
    use crate::analysis::RuleId;
    use crate::analysis::rules::DefaultAction;
    use serde_json::json;

    let rules: Vec<serde_json::Value> = RuleId::ALL
        .iter()
        .map(|r| {
            let m = r.meta();
            let level = match m.default_action {
                DefaultAction::Warn => "warning",
                DefaultAction::Reject | DefaultAction::Rewrite => "error",
            };
            json!({
                "id": r.as_str(),
                "name": r.as_str(),
                "shortDescription": { "text": m.summary },
                "fullDescription": { "text": m.summary },
                "help": { "text": m.summary, "markdown": m.docs },
                "defaultConfiguration": { "level": level, "enabled": !m.opt_in },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for d in diagnostics {
        if d.line == 0 {
            notifications.push(json!({
                "level": "error",
                "message": { "text": d.message },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": d.file } } }],
            }));
            continue;
        }
        let mut text = d.message.clone();
        if let Some(help) = &d.help {
            text.push_str(" Help: ");
            text.push_str(help);
        }
        let location = json!({
            "physicalLocation": {
                "artifactLocation": { "uri": d.file },
                "region": sarif_region(d),
            }
        });
        let mut result = json!({
            "level": sarif_level(d.level),
            "message": { "text": text },
            "locations": [location],
        });
        if let Some(rule) = &d.rule {
            result["ruleId"] = json!(rule);
            if let Some(index) = RuleId::ALL.iter().position(|r| r.as_str() == rule) {
                result["ruleIndex"] = json!(index);
            }
        }
        if let Some(fix) = &d.fix {
            result["fixes"] = json!([{
                "description": { "text": fix.title },
                "artifactChanges": [{
                    "artifactLocation": { "uri": d.file },
                    "replacements": [{
                        "deletedRegion": sarif_region(d),
                        "insertedContent": { "text": fix.sql },
                    }],
                }],
            }]);
        }
        if let Some(reason) = &d.overridden {
            result["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
        }
        results.push(result);
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "ddlgate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/ddlgate/ddlgate",
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "SELECT 1;\n  é CREATE\n\nx";
        let source = SourceText::new(text);
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(9), (1, 10));
        assert_eq!(source.line_col(10), (2, 1));
        let create = text.find("CREATE").unwrap();
        assert_eq!(source.line_col(create), (2, 5));
        assert_eq!(source.line_col(text.len()), (4, 2));
        assert_eq!(source.line_col(text.len() + 5), (4, 2));
        assert_eq!(source.line_at(create), ("  é CREATE".to_owned(), 4));
        assert_eq!(source.line_at(text.len() - 2), (String::new(), 0));
    }

    #[test]
    fn long_help_is_clipped_in_text_only() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_TEXT + 10);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(MAX_TEXT)));
        assert!(clipped.ends_with("… (20 more bytes; --format json shows all)"));
    }

    #[test]
    fn long_lines_are_cut_around_the_position() {
        let text = format!("SELECT '{}' + bad", "x".repeat(100_000));
        let source = SourceText::new(&text);
        let at = text.find("bad").unwrap();
        let (excerpt, caret) = source.line_at(at);
        assert!(excerpt.starts_with('…') && !excerpt.ends_with('…'));
        assert_eq!(excerpt.chars().count(), MAX_EXCERPT + 1);
        assert_eq!(excerpt.chars().skip(caret).collect::<String>(), "bad");
        let (start, caret) = source.line_at(0);
        assert!(start.starts_with("SELECT 'xx") && start.ends_with('…'));
        assert_eq!(caret, 0);
    }

    #[test]
    fn github_escaping() {
        assert_eq!(escape("a:b,c%\n", true), "a%3Ab%2Cc%25%0A");
        assert_eq!(escape("a:b,c%\n", false), "a:b,c%25%0A");
    }
}
