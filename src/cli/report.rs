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
pub enum Format {
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
pub enum Level {
    /// The policy rejects it (or the file cannot be read or parsed): exit code 1 or 2.
    Error,
    /// The policy warns, or the proxy would rewrite it into its safe form.
    Warning,
    /// Allowed by an inline override (shown for the record).
    Note,
}

/// A fix as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedFix {
    /// What it does.
    pub title: String,
    /// Whether the proxy would apply it by itself.
    pub applicability: Applicability,
    /// The statement rewritten.
    pub sql: String,
}

/// One thing to report.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
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
    /// The statement's first line, for the text format.
    #[serde(skip)]
    source_line: Option<String>,
}

/// Counts for the closing line and the exit code.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Summary {
    /// Files checked.
    pub files: usize,
    /// Error-level diagnostics.
    pub errors: usize,
    /// Warning-level diagnostics.
    pub warnings: usize,
    /// Files that could not be read.
    pub io_errors: usize,
}

/// 1-based line and character column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn line_at(text: &str, offset: usize) -> String {
    let start = text
        .get(..offset.min(text.len()))
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1);
    let rest = text.get(start..).unwrap_or_default();
    rest.lines().next().unwrap_or_default().to_owned()
}

impl Diagnostic {
    /// A diagnostic about a byte range of a file.
    pub fn at(
        file: &str,
        text: &str,
        span: Range<usize>,
        rule: Option<String>,
        level: Level,
        message: String,
    ) -> Self {
        let (line, column) = line_col(text, span.start);
        let (end_line, end_column) = line_col(text, span.end);
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
            source_line: Some(line_at(text, span.start)),
        }
    }

    /// A file that cannot be read.
    pub fn file_error(file: &str, message: String) -> Self {
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
    pub fn syntax(file: &str, text: &str, span: &Range<usize>, e: &SyntaxError) -> Self {
        let mut d = Self::at(
            file,
            text,
            e.position..e.position.max(span.end),
            None,
            Level::Error,
            e.message.clone(),
        );
        d.help = Some("PostgreSQL cannot parse this statement, so it would fail; ddlgate cannot analyse it either.".to_owned());
        d
    }

    /// A rule violation, at the level the policy's action gives it.
    pub fn violation(
        file: &str,
        text: &str,
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
            text,
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
            sql: f.apply(text, &v.span),
        });
        d.overridden = overridden;
        d
    }
}

/// Writes the diagnostics in `format`.
pub fn render(
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
        if let Some(source) = &d.source_line {
            let gutter = d.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_at: String = source
                .chars()
                .take(d.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(out, "{pad} |")?;
            writeln!(out, "{gutter} | {source}")?;
            writeln!(out, "{pad} | {caret_at}^")?;
        }
        if let Some(detail) = &d.detail {
            writeln!(out, "  = detail: {detail}")?;
        }
        if let Some(help) = &d.help {
            writeln!(out, "  = help: {help}")?;
        }
        if let Some(fix) = d.fix.as_ref().filter(|_| d.level == Level::Warning) {
            if fix.applicability == Applicability::Safe {
                writeln!(out, "  = ddlgate rewrites it to: {}", fix.sql)?;
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
        let text = "SELECT 1;\n  é CREATE";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 10), (2, 1));
        let create = text.find("CREATE").unwrap();
        assert_eq!(line_col(text, create), (2, 5));
    }

    #[test]
    fn github_escaping() {
        assert_eq!(escape("a:b,c%\n", true), "a%3Ab%2Cc%25%0A");
        assert_eq!(escape("a:b,c%\n", false), "a:b,c%25%0A");
    }
}
