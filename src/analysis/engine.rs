//! Runs the enabled rules over a query string (proxy) or a file (`check`), statement by
//! statement, keeping the transaction history in a [`Context`].
//!
//! Inline overrides are comments directly before a statement (after the previous one):
//! `/* ddlgate:allow rename-column reason="expand done in #812" */` or the same as a `--` line
//! comment (several ids may be separated by commas). The block form is the one to recommend:
//! psql, and the tools that run it, drop `--` lines before a statement instead of sending
//! them. `ddlgate:allow-file <ids> reason="…"` anywhere applies to the whole text.
//! Overridden violations are kept, marked with the override, so they can be audited.

use std::ops::Range;

use super::catalog;
use super::classify::{ClassifyOptions, Facts, RelationName, classify};
use super::context::{ColumnType, Context, TimeoutSetting};
use super::parse::{self, NodeEnum, Options, SyntaxError, Token, TokenKind, ast};
use super::registry::RuleId;
use super::rules::Input;
use super::violation::{CheckedStep, Fix, Violation};

/// Which rules run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    rules: Vec<RuleId>,
}

/// A script being analysed: its text, tokens and file-level override comments, read once.
#[derive(Clone, Copy)]
struct Script<'a> {
    source: &'a str,
    tokens: &'a [parse::Token],
    file_overrides: &'a [Override],
}

impl Engine {
    /// An engine running exactly these rules.
    pub fn new(rules: impl IntoIterator<Item = RuleId>) -> Self {
        let mut rules: Vec<RuleId> = rules.into_iter().collect();
        rules.sort();
        rules.dedup();
        Self { rules }
    }

    /// Every rule that is not opt-in.
    pub fn with_default_rules() -> Self {
        Self::new(RuleId::ALL.iter().copied().filter(|r| !r.meta().opt_in))
    }

    /// Every rule, opt-in ones included.
    pub fn with_all_rules() -> Self {
        Self::new(RuleId::ALL.iter().copied())
    }

    /// The rules this engine runs.
    pub fn rules(&self) -> &[RuleId] {
        &self.rules
    }

    /// Analyses every statement of `source`, updating `ctx` as each would run.
    pub fn analyze(&self, source: &str, ctx: &mut Context) -> Vec<Report> {
        let parsed = parse::parse_script(
            source,
            Options {
                standard_conforming_strings: ctx.standard_conforming_strings,
            },
        );
        self.analyze_parsed(source, parsed, ctx)
    }

    /// [`Self::analyze`] of statements already parsed from `source` (with
    /// `ctx.standard_conforming_strings`): a caller that parsed the text once does not pay for
    /// a second parse.
    pub fn analyze_parsed(
        &self,
        source: &str,
        parsed: Vec<parse::Parsed>,
        ctx: &mut Context,
    ) -> Vec<Report> {
        let all_tokens = parse::tokens(source).unwrap_or_default();
        let file_overrides = overrides_in(source, &all_tokens, 0..source.len(), true);
        let script = Script {
            source,
            tokens: &all_tokens,
            file_overrides: &file_overrides,
        };
        self.analyze_part(&script, parsed, 0, true, ctx)
    }

    /// Each statement of a script analysed as if sent alone, in order (psql sends each with
    /// the comments before it): what the proxy sees of a file run statement by statement.
    pub fn analyze_one_by_one(
        &self,
        source: &str,
        parsed: Vec<parse::Parsed>,
        ctx: &mut Context,
        mut after_each: impl FnMut(&[Report], &mut Context),
    ) -> Vec<Report> {
        let all_tokens = parse::tokens(source).unwrap_or_default();
        let file_overrides = overrides_in(source, &all_tokens, 0..source.len(), true);
        let mut previous_end = 0;
        let mut reports = Vec::with_capacity(parsed.len());
        for statement in parsed {
            let end = statement.span.end;
            let script = Script {
                source,
                tokens: &all_tokens,
                file_overrides: &file_overrides,
            };
            let part = self.analyze_part(&script, vec![statement], previous_end, false, ctx);
            after_each(&part, ctx);
            reports.extend(part);
            previous_end = end;
        }
        self.finish(source, ctx, &mut reports);
        reports
    }

    /// The findings of rules that judge a whole script (at its end), added to the report of
    /// the statement they concern.
    fn finish(&self, source: &str, ctx: &Context, reports: &mut [Report]) {
        for rule in &self.rules {
            let Some(finish) = rule.meta().finish else {
                continue;
            };
            for v in finish(ctx, source) {
                let report = reports
                    .iter_mut()
                    .find(|r| r.span.contains(&v.span.start) || r.span.start == v.span.start);
                if let Some(Report {
                    result: Ok(finding),
                    ..
                }) = report
                {
                    finding.violations.push(v);
                }
            }
        }
    }

    /// The statements `parsed` of `source`, the first one's comments starting at `from`.
    fn analyze_part(
        &self,
        script: &Script<'_>,
        parsed: Vec<parse::Parsed>,
        from: usize,
        finish: bool,
        ctx: &mut Context,
    ) -> Vec<Report> {
        let Script {
            source,
            tokens: all_tokens,
            file_overrides,
        } = *script;
        if ctx.query_string {
            ctx.in_multi_statement_query = parsed.len() > 1;
        }
        let mut previous_end = from;
        let mut reports = Vec::with_capacity(parsed.len());
        for (n, statement) in parsed.into_iter().enumerate() {
            let gap = previous_end..statement.span.start;
            previous_end = statement.span.end;
            let local = overrides_in(source, all_tokens, gap, false);
            // Problems of file-level comments are reported once, with the first statement.
            let problems = local
                .iter()
                .chain(file_overrides.iter().filter(|_| n == 0 && from == 0))
                .filter_map(|o| o.rule.as_ref().err().cloned())
                .collect();
            let overrides: Vec<Override> = local
                .into_iter()
                .chain(file_overrides.iter().cloned())
                .collect();
            let result = match statement.tree {
                Ok(mut node) => {
                    // PostgreSQL's operation decides, not the keyword (see `catalog`).
                    catalog::resolve_kind(&mut node, &ctx.catalog);
                    Ok(self.analyze_statement(source, &statement.span, &node, ctx, &overrides))
                }
                Err(e) => Err(e),
            };
            reports.push(Report {
                span: statement.span,
                result,
                problems,
            });
        }
        if finish {
            self.finish(source, ctx, &mut reports);
        }
        reports
    }

    fn analyze_statement(
        &self,
        source: &str,
        span: &Range<usize>,
        node: &NodeEnum,
        ctx: &mut Context,
        overrides: &[Override],
    ) -> Finding {
        let mut facts = classify(
            node,
            ClassifyOptions {
                server_major: ctx.server_major,
            },
        );
        // A statement the catalog proves changes nothing is not judged: it runs, audited as
        // the no-op it is.
        let noop = catalog::proven_noop(node, &ctx.catalog);
        if let Some(why) = noop {
            record(node, &facts, source, span, ctx);
            ctx.catalog.forget_touched(node, &facts);
            return Finding {
                facts,
                violations: Vec::new(),
                overridden: Vec::new(),
                noop: Some(why),
                evidence: Vec::new(),
            };
        }
        let mut found = Vec::new();
        {
            let input = Input {
                source,
                span,
                node,
                facts: &facts,
                ctx,
            };
            for rule in &self.rules {
                (rule.meta().check)(&input, &mut found);
            }
        }
        found.extend(self.do_block_violations(node, span, ctx, 0));
        let calls_ddl_routine =
            !ctx.routines.is_empty() && !ctx.routines.called_by(node).is_empty();
        if calls_ddl_routine {
            found.extend(self.routine_violations(node, span, ctx, 0));
            // It runs DDL: governed like a `DO` block (timeouts, audit).
            facts.dynamic = true;
        }
        // A rewrite that does not parse, or not into the steps its rule describes, is never
        // offered (the proxy would send it).
        for v in &mut found {
            if v.fix
                .as_mut()
                .is_some_and(|f| !check_rewrite(source, span, f, ctx))
            {
                v.fix = None;
            }
        }
        let mut violations = Vec::new();
        let mut overridden = Vec::new();
        for v in found {
            match overrides
                .iter()
                .find(|o| o.rule.as_ref().is_ok_and(|r| *r == v.rule))
            {
                Some(o) => overridden.push((v, o.clone())),
                None => violations.push(v),
            }
        }
        let evidence = if ctx.evidence.found.is_empty() {
            Vec::new()
        } else {
            ctx.evidence.summaries(node)
        };
        record(node, &facts, source, span, ctx);
        ctx.catalog.forget_touched(node, &facts);
        Finding {
            facts,
            violations,
            overridden,
            noop: None,
            evidence,
        }
    }
}

impl Engine {
    /// Whether any rule finds something about this statement in `ctx`, judged on its tree
    /// alone (no text: no fix is built). Cheap next to a round trip to the server.
    pub(crate) fn flags(&self, node: &NodeEnum, ctx: &Context) -> bool {
        let facts = classify(
            node,
            ClassifyOptions {
                server_major: ctx.server_major,
            },
        );
        let mut found = Vec::new();
        let input = Input {
            source: "",
            span: &(0..0),
            node,
            facts: &facts,
            ctx,
        };
        for rule in &self.rules {
            (rule.meta().check)(&input, &mut found);
            if !found.is_empty() {
                return true;
            }
        }
        !self.do_block_violations(node, &(0..0), ctx, 0).is_empty()
            || !self.routine_violations(node, &(0..0), ctx, 0).is_empty()
    }

    /// The rules' findings about the statements written out in a `DO` block, reported on the
    /// block: wrapping a statement in `DO $$ BEGIN … END $$` must not take it past the policy.
    /// The body runs as one statement inside a transaction, so the statements are judged as
    /// inside a transaction block (no `CONCURRENTLY`, no rewrites: the block is sent as written).
    fn do_block_violations(
        &self,
        node: &NodeEnum,
        span: &Range<usize>,
        ctx: &Context,
        depth: usize,
    ) -> Vec<Violation> {
        let statements = super::rules::dynamic_ddl::do_block_statements(node);
        self.inner_violations(&statements, "in a DO block", span, ctx, depth)
    }

    /// The rules' findings about the DDL of the user-defined routines a statement calls
    /// (`SELECT f()`, `CALL p()`), reported on the statement with the routine named: the
    /// routine runs it as part of the statement, inside its transaction.
    fn routine_violations(
        &self,
        node: &NodeEnum,
        span: &Range<usize>,
        ctx: &Context,
        depth: usize,
    ) -> Vec<Violation> {
        let routines = std::sync::Arc::clone(&ctx.routines);
        let mut out = Vec::new();
        for call in routines.calls(node) {
            let routine = call.routine;
            let called = call.describe();
            out.extend(self.inner_violations(&routine.statements, &called, span, ctx, depth));
            if routine.dynamic && self.rules.contains(&RuleId::DynamicDdl) {
                out.push(Violation {
                    rule: RuleId::DynamicDdl,
                    message: format!(
                        "{} {}, which EXECUTEs SQL built at run time (or has a body ddlgate cannot read); ddlgate cannot apply policy to what it runs",
                        if call.trigger.is_some() { "fires a trigger of" } else { "calls" },
                        routine.describe()
                    ),
                    detail: None,
                    help: "Run the schema change as plain SQL statements, so each is checked and gets its timeouts.".to_owned(),
                    span: span.clone(),
                    fix: None,
                });
            }
        }
        out
    }

    /// The rules' findings about statements run inside another one (a `DO` block's, a called
    /// routine's), reported on the outer statement with `where_` in front. They run as one
    /// statement inside a transaction, so they are judged as inside a transaction block (no
    /// `CONCURRENTLY`, no rewrites: the outer statement is sent as written).
    fn inner_violations(
        &self,
        statements: &[String],
        where_: &str,
        span: &Range<usize>,
        ctx: &Context,
        depth: usize,
    ) -> Vec<Violation> {
        // A DO block can run another DO block, a routine another routine; a few levels are
        // all a real migration uses.
        const MAX_DEPTH: usize = 4;
        if statements.is_empty() || depth >= MAX_DEPTH {
            return Vec::new();
        }
        let mut inner_ctx = ctx.clone();
        inner_ctx.in_transaction = true;
        inner_ctx.in_multi_statement_query = false;
        let mut out = Vec::new();
        for text in statements {
            let options = Options {
                standard_conforming_strings: ctx.standard_conforming_strings,
            };
            for inner in parse::parse_script(text, options) {
                let Ok(inner_node) = inner.tree else {
                    continue;
                };
                let facts = classify(
                    &inner_node,
                    ClassifyOptions {
                        server_major: ctx.server_major,
                    },
                );
                let mut found = Vec::new();
                {
                    let input = Input {
                        source: text,
                        span: &inner.span,
                        node: &inner_node,
                        facts: &facts,
                        ctx: &inner_ctx,
                    };
                    for rule in &self.rules {
                        (rule.meta().check)(&input, &mut found);
                    }
                }
                found.extend(self.do_block_violations(
                    &inner_node,
                    &inner.span,
                    &inner_ctx,
                    depth + 1,
                ));
                found.extend(self.routine_violations(
                    &inner_node,
                    &inner.span,
                    &inner_ctx,
                    depth + 1,
                ));
                record(&inner_node, &facts, text, &inner.span, &mut inner_ctx);
                out.extend(found.into_iter().map(|v| Violation {
                    message: format!("{where_}: {}", v.message),
                    span: span.clone(),
                    fix: None,
                    ..v
                }));
            }
        }
        out
    }
}

/// Whether the rewritten statement parses into exactly the steps the fix describes; if so,
/// records each step's place in the fixed text and its classification, so that whoever runs
/// the fix need not parse it again.
fn check_rewrite(source: &str, span: &Range<usize>, fix: &mut Fix, ctx: &Context) -> bool {
    let rewritten = fix.apply(source, span);
    let parsed = parse::parse_script(
        &rewritten,
        Options {
            standard_conforming_strings: ctx.standard_conforming_strings,
        },
    );
    if parsed.is_empty() || parsed.len() != fix.steps.len() {
        return false;
    }
    for (step, statement) in fix.steps.iter_mut().zip(&parsed) {
        let Ok(node) = &statement.tree else {
            return false;
        };
        let facts = classify(
            node,
            ClassifyOptions {
                server_major: ctx.server_major,
            },
        );
        step.checked = Some(CheckedStep {
            span: statement.span.clone(),
            facts,
        });
    }
    true
}

/// The analysis of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Byte range of the statement in the source.
    pub span: Range<usize>,
    /// What was found, or why the grammar refused the statement.
    pub result: Result<Finding, SyntaxError>,
    /// Problems with the override comments before it (an unknown rule id).
    pub problems: Vec<String>,
}

/// What the rules found about a statement that parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The statement's classification.
    pub facts: Facts,
    /// Violations in force.
    pub violations: Vec<Violation>,
    /// Violations an inline override allowed, with the override.
    pub overridden: Vec<(Violation, Override)>,
    /// Why the catalog proves the statement changes nothing, when it does.
    pub noop: Option<String>,
    /// What the evidence of use says about the tables and columns it drops, renames or
    /// retypes (one sentence each; empty without evidence).
    pub evidence: Vec<String>,
}

/// An inline override comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The rule it allows, or the reason it names none that exists.
    pub rule: Result<RuleId, String>,
    /// The reason given, if any.
    pub reason: Option<String>,
    /// Whether it applies to the whole file.
    pub file_level: bool,
    /// Where the comment is.
    pub span: Range<usize>,
}

/// Reads the override comments among `tokens` inside `range`.
fn overrides_in(
    source: &str,
    tokens: &[Token],
    range: Range<usize>,
    file_level: bool,
) -> Vec<Override> {
    let marker = if file_level {
        "ddlgate:allow-file"
    } else {
        "ddlgate:allow"
    };
    let mut out = Vec::new();
    // Tokens are in source order: find the range by bisection, so a file of n statements costs
    // O(n log n), not O(n²).
    let first = tokens.partition_point(|t| t.span.start < range.start);
    let in_range = tokens
        .get(first..)
        .unwrap_or_default()
        .iter()
        .take_while(|t| t.span.end <= range.end);
    for token in in_range {
        if !matches!(token.kind, TokenKind::LineComment | TokenKind::BlockComment) {
            continue;
        }
        let text = source.get(token.span.clone()).unwrap_or_default();
        let body = text
            .trim_start_matches("--")
            .trim_start_matches("/*")
            .trim_end_matches("*/")
            .trim();
        let Some(rest) = body.strip_prefix(marker) else {
            continue;
        };
        // "ddlgate:allow-file" also starts with "ddlgate:allow".
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let (ids, reason) = match rest.find("reason=") {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                Some(
                    rest.get(i + "reason=".len()..)
                        .unwrap_or_default()
                        .trim()
                        .trim_matches('"')
                        .to_owned(),
                ),
            ),
            None => (rest, None),
        };
        for id in ids
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push(Override {
                rule: id
                    .parse::<RuleId>()
                    .map_err(|e| format!("override comment names an {e}")),
                reason: reason.clone().filter(|r| !r.is_empty()),
                file_level,
                span: token.span.clone(),
            });
        }
    }
    out
}

/// Updates the history with what the statement did, beyond its generic facts.
fn record(node: &NodeEnum, facts: &Facts, source: &str, span: &Range<usize>, ctx: &mut Context) {
    super::session_changes::record(node, source.get(span.clone()).unwrap_or_default(), ctx);
    match node {
        NodeEnum::VariableSetStmt(set) => record_setting(set, ctx),
        NodeEnum::CreateStmt(create) => record_create_table(create, span, ctx),
        NodeEnum::AlterTableStmt(alter) => record_alter(alter, facts, span, ctx),
        NodeEnum::IndexStmt(index) => {
            if let Some(table) = index.relation.as_ref().map(RelationName::from_range_var) {
                let keys: Vec<String> = index
                    .index_params
                    .iter()
                    .map_while(|p| match &p.node {
                        Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
                        _ => None,
                    })
                    .collect();
                if !keys.is_empty() && index.where_clause.is_none() {
                    ctx.history.schema.indexes.push((table, keys));
                }
            }
        }
        NodeEnum::TransactionStmt(_) => {
            if let Some(super::classify::TxControl::Begin) = facts.tx_control
                && !ctx.in_transaction
            {
                ctx.history.open_begin = Some(span.clone());
            }
        }
        _ => {}
    }
    ctx.record(facts);
    // COMMIT AND CHAIN / ROLLBACK AND CHAIN: a new transaction starts at once.
    if let NodeEnum::TransactionStmt(t) = node
        && t.chain
    {
        ctx.in_transaction = true;
    }
}

/// Key columns of a PRIMARY KEY or UNIQUE constraint.
fn key_columns(c: &ast::Constraint) -> Vec<String> {
    c.keys
        .iter()
        .filter_map(super::classify::string_value)
        .map(str::to_owned)
        .collect()
}

fn is_key_constraint(c: &ast::Constraint) -> bool {
    c.contype == ast::ConstrType::ConstrPrimary as i32
        || c.contype == ast::ConstrType::ConstrUnique as i32
}

fn record_create_table(create: &ast::CreateStmt, span: &Range<usize>, ctx: &mut Context) {
    let Some(table) = create.relation.as_ref().map(RelationName::from_range_var) else {
        return;
    };
    if create.partspec.is_some() {
        ctx.history.schema.partitioned.push(table.clone());
    }
    for elt in &create.table_elts {
        match &elt.node {
            Some(NodeEnum::ColumnDef(col)) => {
                record_column(ctx, &table, col);
                record_column_constraints(ctx, &table, col, span);
            }
            Some(NodeEnum::Constraint(c)) => record_table_constraint(ctx, &table, c, span),
            _ => {}
        }
    }
}

fn record_column_constraints(
    ctx: &mut Context,
    table: &RelationName,
    col: &ast::ColumnDef,
    span: &Range<usize>,
) {
    for c in &col.constraints {
        let Some(NodeEnum::Constraint(c)) = &c.node else {
            continue;
        };
        if is_key_constraint(c) {
            ctx.history
                .schema
                .indexes
                .push((table.clone(), vec![col.colname.clone()]));
        } else if c.contype == ast::ConstrType::ConstrForeign as i32 {
            ctx.history
                .foreign_keys
                .push(super::context::ForeignKeySeen {
                    table: table.clone(),
                    columns: vec![col.colname.clone()],
                    span: span.clone(),
                });
        }
    }
}

fn record_table_constraint(
    ctx: &mut Context,
    table: &RelationName,
    c: &ast::Constraint,
    span: &Range<usize>,
) {
    if is_key_constraint(c) && c.indexname.is_empty() {
        ctx.history
            .schema
            .indexes
            .push((table.clone(), key_columns(c)));
    } else if c.contype == ast::ConstrType::ConstrForeign as i32 {
        ctx.history
            .foreign_keys
            .push(super::context::ForeignKeySeen {
                table: table.clone(),
                columns: c
                    .fk_attrs
                    .iter()
                    .filter_map(super::classify::string_value)
                    .map(str::to_owned)
                    .collect(),
                span: span.clone(),
            });
    }
}

fn record_column(ctx: &mut Context, table: &RelationName, col: &ast::ColumnDef) {
    if let Some(t) = &col.type_name {
        ctx.history.schema.columns.push((
            table.clone(),
            col.colname.clone(),
            ColumnType::from_type_name(t),
        ));
    }
}

/// The column of a `CHECK (column IS NOT NULL)` expression.
fn not_null_check_column(expr: &ast::Node) -> Option<String> {
    let Some(NodeEnum::NullTest(test)) = &expr.node else {
        return None;
    };
    if test.nulltesttype != ast::NullTestType::IsNotNull as i32 {
        return None;
    }
    match test.arg.as_deref().and_then(|a| a.node.as_ref()) {
        Some(NodeEnum::ColumnRef(c)) if c.fields.len() == 1 => c
            .fields
            .first()
            .and_then(super::classify::string_value)
            .map(str::to_owned),
        _ => None,
    }
}

fn record_alter(
    alter: &ast::AlterTableStmt,
    facts: &Facts,
    span: &Range<usize>,
    ctx: &mut Context,
) {
    use ast::AlterTableType as T;
    let Some(table) = alter.relation.as_ref().map(RelationName::from_range_var) else {
        return;
    };
    if facts.rewrites || facts.scans {
        match ctx.history.alters.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += 1,
            None => ctx.history.alters.push((table.clone(), 1)),
        }
    }
    let in_block = ctx.in_transaction || ctx.in_multi_statement_query;
    for cmd in super::classify::alter_cmds(alter) {
        let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
        match (super::classify::subtype(cmd), def) {
            (T::AtAddColumn, Some(NodeEnum::ColumnDef(col))) => {
                record_column(ctx, &table, col);
                record_column_constraints(ctx, &table, col, span);
            }
            (T::AtAlterColumnType, Some(NodeEnum::ColumnDef(col))) => {
                if let Some(t) = &col.type_name {
                    ctx.history.schema.columns.push((
                        table.clone(),
                        cmd.name.clone(),
                        ColumnType::from_type_name(t),
                    ));
                }
            }
            (T::AtAddConstraint, Some(NodeEnum::Constraint(c))) => {
                record_table_constraint(ctx, &table, c, span);
                if c.skip_validation && in_block {
                    ctx.history
                        .not_validated
                        .push(super::context::NotValidated {
                            table: table.clone(),
                            constraint: c.conname.clone(),
                            references: c.pktable.as_ref().map(RelationName::from_range_var),
                        });
                }
                if let Some(column) = c.raw_expr.as_deref().and_then(not_null_check_column) {
                    if c.skip_validation {
                        ctx.learn_not_null_check(table.clone(), c.conname.clone(), column);
                    } else {
                        ctx.learn_validated_not_null(table.clone(), column);
                    }
                }
            }
            (T::AtValidateConstraint, _) => {
                for column in ctx.not_null_check_columns(&table, &cmd.name) {
                    ctx.learn_validated_not_null(table.clone(), column);
                }
            }
            _ => {}
        }
    }
}

fn record_setting(set: &ast::VariableSetStmt, ctx: &mut Context) {
    let kind = ast::VariableSetKind::try_from(set.kind).unwrap_or(ast::VariableSetKind::Undefined);
    let name = set.name.to_ascii_lowercase();
    // SET LOCAL outside a transaction block has no effect (PostgreSQL warns and ignores it).
    let effective = !(set.is_local && !ctx.in_transaction && !ctx.in_multi_statement_query);
    let value_is_nonzero = || {
        set.args.first().is_some_and(|arg| match &arg.node {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(ast::a_const::Val::Ival(i)) => i.ival != 0,
                Some(ast::a_const::Val::Sval(s)) => {
                    let v = s.sval.trim();
                    !v.is_empty()
                        && v.trim_start_matches('0')
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_digit())
                }
                Some(ast::a_const::Val::Fval(f)) => f.fval.parse::<f64>().is_ok_and(|v| v != 0.0),
                _ => false,
            },
            _ => false,
        })
    };
    let setting = match kind {
        ast::VariableSetKind::VarSetValue => effective && value_is_nonzero(),
        ast::VariableSetKind::VarReset | ast::VariableSetKind::VarSetDefault => false,
        ast::VariableSetKind::VarResetAll => {
            ctx.learn_timeout_set(TimeoutSetting::Lock, false, false);
            ctx.learn_timeout_set(TimeoutSetting::Statement, false, false);
            return;
        }
        _ => return,
    };
    if !effective && kind == ast::VariableSetKind::VarSetValue {
        return;
    }
    let which = match name.as_str() {
        "lock_timeout" => TimeoutSetting::Lock,
        "statement_timeout" => TimeoutSetting::Statement,
        _ => return,
    };
    ctx.learn_timeout_set(which, setting, set.is_local);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::violation::{Applicability, Edit, FixStep};

    #[test]
    fn rewrites_are_checked_by_parsing_them() {
        let source = "SELECT 1; CREATE INDEX i ON t (a)";
        let span = 10..source.len();
        let insert = |text: &str| Fix {
            title: String::new(),
            edits: vec![Edit {
                range: 22..22,
                text: text.to_owned(),
            }],
            applicability: Applicability::Safe,
            steps: vec![FixStep::default()],
        };
        let ctx = Context::default();
        let mut fix = insert(" CONCURRENTLY");
        assert!(check_rewrite(source, &span, &mut fix, &ctx));
        let checked = fix.steps[0].checked.as_ref().expect("checked");
        assert_eq!(checked.span, 0..36);
        assert_eq!(checked.facts.kind, "CREATE INDEX");
        assert!(checked.facts.is_online());
        assert!(!check_rewrite(
            source,
            &span,
            &mut insert(" CONCURRENTLY ("),
            &ctx
        ));
        assert!(!check_rewrite(source, &span, &mut insert(" -- "), &ctx));
        // Two statements where the rule described one step: not offered.
        assert!(!check_rewrite(
            source,
            &span,
            &mut insert(" CONCURRENTLY x ON t (a); CREATE INDEX"),
            &ctx
        ));
    }

    fn rules_of(source: &str) -> Vec<(RuleId, String, bool)> {
        let reports = Engine::with_default_rules().analyze(source, &mut Context::default());
        reports
            .into_iter()
            .flat_map(|r| r.result.unwrap().violations)
            .map(|v| (v.rule, v.message, v.fix.is_some()))
            .collect()
    }

    #[test]
    fn statements_written_out_in_a_do_block_are_held_to_their_rules() {
        let found =
            rules_of("DO $$ BEGIN IF true THEN ALTER TABLE t RENAME COLUMN a TO b; END IF; END $$");
        let rename = found
            .iter()
            .find(|(r, ..)| *r == RuleId::RenameColumn)
            .expect("rename-column fires inside the block");
        assert!(rename.1.starts_with("in a DO block: "), "{}", rename.1);
        assert!(
            found.iter().all(|(r, ..)| *r != RuleId::DynamicDdl),
            "{found:?}"
        );

        // No rewrite inside a block: the block is sent as written.
        let found = rules_of("DO $$ BEGIN CREATE INDEX i ON t (a); END $$");
        let index = found
            .iter()
            .find(|(r, ..)| *r == RuleId::CreateIndexNonconcurrent)
            .expect("create-index-nonconcurrent fires inside the block");
        assert!(!index.2, "no fix is offered inside a DO block");

        // What the block created earlier is known to later statements of the block.
        let found =
            rules_of("DO $$ BEGIN CREATE TABLE fresh (a int); CREATE INDEX i ON fresh (a); END $$");
        assert!(
            found
                .iter()
                .all(|(r, ..)| *r != RuleId::CreateIndexNonconcurrent),
            "{found:?}"
        );

        // A CALL in a block is as opaque as a CALL on its own.
        let found = rules_of("DO $$ BEGIN CALL maintenance(); END $$");
        assert!(
            found
                .iter()
                .any(|(r, m, _)| *r == RuleId::DynamicDdl && m.starts_with("in a DO block: CALL")),
            "{found:?}"
        );

        // Nested DO blocks are looked into too.
        let found = rules_of(
            "DO $a$ BEGIN DO $b$ BEGIN ALTER TABLE t RENAME COLUMN a TO b; END $b$; END $a$",
        );
        assert!(
            found.iter().any(|(r, m, _)| *r == RuleId::RenameColumn
                && m.starts_with("in a DO block: in a DO block: ")),
            "{found:?}"
        );
    }

    #[test]
    fn inline_overrides_allow_the_named_rule_for_the_next_statement_only() {
        let source = "-- ddlgate:allow rename-column reason=\"expand done in #812\"\n\
                      ALTER TABLE t RENAME COLUMN a TO b;\n\
                      ALTER TABLE t RENAME COLUMN c TO d;";
        let reports = Engine::new([RuleId::RenameColumn]).analyze(source, &mut Context::default());
        let first = reports[0].result.as_ref().unwrap();
        assert!(first.violations.is_empty());
        assert_eq!(first.overridden.len(), 1);
        assert_eq!(
            first.overridden[0].1.reason.as_deref(),
            Some("expand done in #812")
        );
        let second = reports[1].result.as_ref().unwrap();
        assert_eq!(second.violations.len(), 1);
        assert_eq!(second.violations[0].rule, RuleId::RenameColumn);
    }

    #[test]
    fn file_level_override_applies_everywhere() {
        let source = "ALTER TABLE t RENAME COLUMN a TO b;\n/* ddlgate:allow-file rename-column */\n\
                      ALTER TABLE t RENAME COLUMN c TO d;";
        let reports = Engine::new([RuleId::RenameColumn]).analyze(source, &mut Context::default());
        for r in &reports {
            assert!(r.result.as_ref().unwrap().violations.is_empty());
        }
    }

    #[test]
    fn an_unknown_rule_in_an_override_is_a_problem() {
        let source = "-- ddlgate:allow rename-colum\nALTER TABLE t RENAME COLUMN a TO b;";
        let reports = Engine::new([RuleId::RenameColumn]).analyze(source, &mut Context::default());
        assert_eq!(reports[0].problems.len(), 1);
        assert!(
            reports[0].problems[0].contains("rename-colum"),
            "{:?}",
            reports[0].problems
        );
        assert_eq!(reports[0].result.as_ref().unwrap().violations.len(), 1);
    }

    #[test]
    fn timeouts_are_tracked_as_postgres_applies_them() {
        let engine = Engine::new([]);
        let mut ctx = Context::default();
        engine.analyze("SET lock_timeout = '2s'", &mut ctx);
        assert!(ctx.history.lock_timeout_set);
        engine.analyze("SET lock_timeout = 0", &mut ctx);
        assert!(!ctx.history.lock_timeout_set);
        engine.analyze("SET LOCAL lock_timeout = '2s'", &mut ctx);
        assert!(
            !ctx.history.lock_timeout_set,
            "SET LOCAL outside a block has no effect"
        );
        engine.analyze("BEGIN; SET LOCAL statement_timeout = '5s'", &mut ctx);
        assert!(ctx.history.statement_timeout_set);
        engine.analyze("RESET ALL", &mut ctx);
        assert!(!ctx.history.statement_timeout_set);
    }

    #[test]
    fn objects_created_earlier_are_new() {
        let mut ctx = Context::default();
        Engine::new([]).analyze(
            "CREATE TABLE s.t (a int); CREATE INDEX i ON s.t (a)",
            &mut ctx,
        );
        assert!(ctx.is_new(&RelationName {
            schema: Some("s".into()),
            name: "t".into()
        }));
        // An index lives in its table's schema.
        assert!(ctx.is_new(&RelationName {
            schema: Some("s".into()),
            name: "i".into()
        }));
        assert!(!ctx.is_new(&RelationName {
            schema: None,
            name: "other".into()
        }));
        // Unqualified, `t` is whatever the search_path finds first: maybe an old, full table.
        assert!(!ctx.is_new(&RelationName {
            schema: None,
            name: "t".into()
        }));
    }

    #[test]
    fn if_not_exists_and_search_path_changes_do_not_make_old_tables_new() {
        let rules = |sql: &str| -> Vec<RuleId> {
            Engine::with_default_rules()
                .analyze(sql, &mut Context::default())
                .into_iter()
                .flat_map(|r| r.result.unwrap().violations)
                .map(|v| v.rule)
                .collect()
        };
        // The table may exist already, full and in use.
        assert!(
            rules("CREATE TABLE IF NOT EXISTS t (a int); CREATE INDEX i ON t (a)")
                .contains(&RuleId::CreateIndexNonconcurrent)
        );
        // After the search_path changes, `t` may be another, older table.
        for change in [
            "SET search_path = app",
            "SELECT set_config('search_path', 'app', false)",
            "RESET ALL",
        ] {
            let sql = format!("CREATE TABLE t (a int); {change}; CREATE INDEX i ON t (a)");
            assert!(
                rules(&sql).contains(&RuleId::CreateIndexNonconcurrent),
                "{sql}"
            );
        }
        assert!(
            !rules("CREATE TABLE t (a int); SET work_mem = '64MB'; CREATE INDEX i ON t (a)")
                .contains(&RuleId::CreateIndexNonconcurrent)
        );
    }
}
