//! `dynamic-ddl`: statements whose schema changes cannot be seen from their text: `DO` blocks
//! and functions that run DDL or `EXECUTE` dynamic SQL, and `CALL`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::{ClassifyOptions, classify, string_value};
use crate::analysis::parse::{NodeEnum, Options, ast, parse_plpgsql, parse_script};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DynamicDdl,
    summary: "DO blocks, functions and procedures that run DDL escape static analysis",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("dynamic_ddl.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &[
            "DO $$ DECLARE t text; BEGIN SELECT relname INTO t FROM pg_class WHERE relname = 'orders'; EXECUTE format('ALTER TABLE %I ADD COLUMN note text', t); END $$",
        ],
        safe: &["ALTER TABLE orders ADD COLUMN note text"],
    },
    check,
    finish: None,
};

/// What a PL/pgSQL or SQL body does that matters here.
#[derive(Debug, Default)]
struct BodyFindings {
    /// DDL statements written out in the body (their command tags).
    ddl: Vec<String>,
    /// Whether it runs `EXECUTE` of a string built at run time.
    dynamic_execute: bool,
    /// Whether the body could not be read.
    unreadable: bool,
}

impl BodyFindings {
    fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.ddl.is_empty() {
            let mut kinds = self.ddl.clone();
            kinds.dedup();
            parts.push(format!("runs {}", kinds.join(", ")));
        }
        if self.dynamic_execute {
            parts.push("EXECUTEs SQL built at run time".to_owned());
        }
        if self.unreadable {
            parts.push("has a body ddlgate cannot read".to_owned());
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

fn option_value<'a>(args: &'a [ast::Node], name: &str) -> Option<&'a ast::Node> {
    args.iter().find_map(|n| match &n.node {
        Some(NodeEnum::DefElem(d)) if d.defname == name => d.arg.as_deref(),
        _ => None,
    })
}

/// The body of a `DO` or `CREATE FUNCTION` (`AS '…'`); for functions the first string.
fn body_text(arg: &ast::Node) -> Option<&str> {
    match &arg.node {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        Some(NodeEnum::List(l)) => l.items.first().and_then(string_value),
        _ => None,
    }
}

fn language(args: &[ast::Node], default: &str) -> String {
    option_value(args, "language")
        .and_then(string_value)
        .unwrap_or(default)
        .to_ascii_lowercase()
}

fn inspect_sql(body: &str, server_major: u32, found: &mut BodyFindings) {
    for statement in parse_script(body, Options::default()) {
        match statement.tree {
            Ok(node) => {
                let facts = classify(&node, ClassifyOptions { server_major });
                if facts.ddl {
                    found.ddl.push(facts.kind);
                }
                if facts.dynamic {
                    found.dynamic_execute = true;
                }
            }
            Err(_) => found.unreadable = true,
        }
    }
}

/// Reads a PL/pgSQL function given as its whole `CREATE FUNCTION` statement (so trigger
/// variables such as `NEW` are known to the parser).
fn inspect_plpgsql(create_function: &str, server_major: u32) -> BodyFindings {
    let mut found = BodyFindings::default();
    match parse_plpgsql(create_function) {
        Ok(tree) => walk(&tree, server_major, &mut found),
        Err(_) => found.unreadable = true,
    }
    found
}

/// A `DO` body wrapped in a function, which is what the PL/pgSQL parser reads.
fn do_block_as_function(body: &str) -> String {
    body_as_function(body, "void")
}

fn body_as_function(body: &str, returns: &str) -> String {
    let mut tag = String::from("ddlgate");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    format!(
        "CREATE FUNCTION ddlgate_inspect() RETURNS {returns} LANGUAGE plpgsql AS ${tag}${body}${tag}$"
    )
}

/// The body of a `CREATE FUNCTION` under a plainer signature, for when `libpg_query` cannot
/// compile the real one (it has no catalog: a `VARIADIC` array or a `%TYPE` parameter fails
/// with "not implemented"). The body only needs its variables to exist: every parameter keeps
/// its name and direction with type `text` (`text[]` for `VARIADIC`), and the result keeps its
/// shape (none, `void`, a value, a set, a table).
fn with_plain_signature(s: &ast::CreateFunctionStmt, body: &str) -> String {
    use ast::FunctionParameterMode as Mode;
    let mut params = Vec::new();
    let mut table_columns = Vec::new();
    let mut outputs = 0usize;
    for p in &s.parameters {
        let Some(NodeEnum::FunctionParameter(p)) = &p.node else {
            continue;
        };
        let name = if p.name.is_empty() {
            String::new()
        } else {
            format!("\"{}\" ", p.name.replace('"', "\"\""))
        };
        match Mode::try_from(p.mode).unwrap_or(Mode::FuncParamIn) {
            Mode::FuncParamOut => {
                outputs = outputs.saturating_add(1);
                params.push(format!("OUT {name}text"));
            }
            Mode::FuncParamInout => {
                outputs = outputs.saturating_add(1);
                params.push(format!("INOUT {name}text"));
            }
            Mode::FuncParamVariadic => params.push(format!("{name}text[]")),
            Mode::FuncParamTable => table_columns.push(format!("{name}text")),
            _ => params.push(format!("{name}text")),
        }
    }
    let setof = s.return_type.as_ref().is_some_and(|t| t.setof);
    let returns_void = s
        .return_type
        .as_ref()
        .and_then(|t| t.names.last())
        .and_then(string_value)
        == Some("void");
    let returns = if s.is_procedure {
        String::new()
    } else if !table_columns.is_empty() {
        format!(" RETURNS TABLE({})", table_columns.join(", "))
    } else if outputs > 0 {
        match (setof, outputs) {
            (false, _) => String::new(),
            (true, 1) => " RETURNS SETOF text".to_owned(),
            (true, _) => " RETURNS SETOF record".to_owned(),
        }
    } else if returns_void {
        " RETURNS void".to_owned()
    } else if setof {
        " RETURNS SETOF text".to_owned()
    } else {
        " RETURNS text".to_owned()
    };
    let kind = if s.is_procedure {
        "PROCEDURE"
    } else {
        "FUNCTION"
    };
    let mut tag = String::from("ddlgate");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    format!(
        "CREATE {kind} ddlgate_inspect({}){returns} LANGUAGE plpgsql AS ${tag}${body}${tag}$",
        params.join(", ")
    )
}

/// What kind of trigger function a `CREATE FUNCTION` defines, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TriggerFunction {
    /// `RETURNS trigger`: runs on a table's writes, with `NEW` and `OLD`.
    Dml,
    /// `RETURNS event_trigger`: runs on DDL.
    Event,
}

fn trigger_function(s: &ast::CreateFunctionStmt) -> Option<TriggerFunction> {
    let names = &s.return_type.as_ref()?.names;
    match names.last().and_then(string_value)? {
        "trigger" => Some(TriggerFunction::Dml),
        "event_trigger" => Some(TriggerFunction::Event),
        _ => None,
    }
}

/// Reads a trigger function's PL/pgSQL body. `libpg_query` cannot print the parse tree of a
/// trigger function (its `TG_*` variables come out as invalid JSON), so the body is read as an
/// ordinary function instead: an event trigger's as a `void` function, a table trigger's as a
/// block nested in one that declares `NEW` and `OLD` as records (a nested block needs its own
/// `;`, which the body may already end with, so both spellings are tried).
fn inspect_trigger_plpgsql(body: &str, kind: TriggerFunction, server_major: u32) -> BodyFindings {
    let sources = match kind {
        TriggerFunction::Event => vec![body_as_function(body, "void")],
        TriggerFunction::Dml => [";\n", "\n"]
            .iter()
            .map(|end| {
                body_as_function(
                    &format!("DECLARE new record; old record; BEGIN\n{body}\n{end}END"),
                    "record",
                )
            })
            .collect(),
    };
    let mut found = BodyFindings {
        unreadable: true,
        ..BodyFindings::default()
    };
    for source in sources {
        found = inspect_plpgsql(&source, server_major);
        if !found.unreadable {
            break;
        }
    }
    found
}

fn walk(value: &serde_json::Value, server_major: u32, found: &mut BodyFindings) {
    let constants = constant_variables(value);
    walk_with(value, server_major, &constants, found);
}

fn walk_with(
    value: &serde_json::Value,
    server_major: u32,
    constants: &Constants,
    found: &mut BodyFindings,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match key.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                        let expression = inner.pointer("/query/PLpgSQL_expr/query");
                        match executed_sql(expression, constants) {
                            Some(sql) => inspect_sql(&sql, server_major, found),
                            // SQL built at run time whose shape is a query or DML: harmless.
                            None if executes_only_dml(expression, constants, server_major) => {}
                            None => found.dynamic_execute = true,
                        }
                    }
                    "PLpgSQL_stmt_open" if inner.get("dynquery").is_some() => {
                        let expression = inner.pointer("/dynquery/PLpgSQL_expr/query");
                        match executed_sql(expression, constants) {
                            Some(sql) => inspect_sql(&sql, server_major, found),
                            None if executes_only_dml(expression, constants, server_major) => {}
                            None => found.dynamic_execute = true,
                        }
                    }
                    "PLpgSQL_stmt_execsql" => {
                        if let Some(q) = inner
                            .pointer("/sqlstmt/PLpgSQL_expr/query")
                            .and_then(|q| q.as_str())
                        {
                            inspect_sql(q, server_major, found);
                        }
                    }
                    _ => {}
                }
                walk_with(inner, server_major, constants, found);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                walk_with(item, server_major, constants, found);
            }
        }
        _ => {}
    }
}

/// The variables of a PL/pgSQL body whose value is one constant wherever it is read: given by
/// their declaration or by a single assignment, never the target of anything else, and not
/// shadowed by another variable of the same name.
type Constants = std::collections::HashMap<String, String>;

fn constant_variables(tree: &serde_json::Value) -> Constants {
    let mut constants = Constants::new();
    let Some(datums) = tree
        .pointer("/0/PLpgSQL_function/datums")
        .and_then(serde_json::Value::as_array)
    else {
        return constants;
    };
    let mut assignments: Vec<Vec<String>> = vec![Vec::new(); datums.len()];
    let mut other_targets = vec![false; datums.len()];
    collect_assignments(tree, &mut assignments, &mut other_targets);
    let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for datum in datums {
        if let Some(name) = datum
            .pointer("/PLpgSQL_var/refname")
            .and_then(|n| n.as_str())
        {
            *names.entry(name).or_default() += 1;
        }
    }
    let empty = Constants::new();
    for (varno, datum) in datums.iter().enumerate() {
        let Some(var) = datum.get("PLpgSQL_var") else {
            continue;
        };
        let Some(name) = var.get("refname").and_then(|n| n.as_str()) else {
            continue;
        };
        if names.get(name) != Some(&1) || other_targets.get(varno) == Some(&true) {
            continue;
        }
        let default = var
            .pointer("/default_val/PLpgSQL_expr/query")
            .and_then(|q| q.as_str());
        let assigned = assignments.get(varno).map_or(&[][..], Vec::as_slice);
        let value = match (default, assigned) {
            (Some(expr), []) => evaluate(expr, &empty),
            (None, [expr]) => evaluate(expr, &empty),
            _ => None,
        };
        if let Some(value) = value {
            constants.insert(name.to_owned(), value);
        }
    }
    constants
}

/// The right-hand sides assigned to each variable, and which variables are set any other way
/// (`SELECT … INTO`, a loop, `GET DIAGNOSTICS`, …: anything naming it by number).
fn collect_assignments(
    value: &serde_json::Value,
    assignments: &mut [Vec<String>],
    other_targets: &mut [bool],
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if key == "PLpgSQL_stmt_assign" {
                    let varno = inner.get("varno").and_then(serde_json::Value::as_u64);
                    let query = inner
                        .pointer("/expr/PLpgSQL_expr/query")
                        .and_then(|q| q.as_str());
                    if let (Some(varno), Some(query)) = (varno, query) {
                        let varno = usize::try_from(varno).unwrap_or(usize::MAX);
                        // `name := expr` (or `name = expr`): the expression after it.
                        let rhs = query
                            .split_once(":=")
                            .or_else(|| query.split_once('='))
                            .map_or(query, |(_, rhs)| rhs);
                        if let Some(list) = assignments.get_mut(varno) {
                            list.push(rhs.trim().to_owned());
                        }
                    }
                    continue;
                }
                if key == "varno"
                    && let Some(varno) = inner.as_u64()
                    && let Some(flag) = usize::try_from(varno)
                        .ok()
                        .and_then(|v| other_targets.get_mut(v))
                {
                    *flag = true;
                }
                collect_assignments(inner, assignments, other_targets);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_assignments(item, assignments, other_targets);
            }
        }
        _ => {}
    }
}

/// The SQL an `EXECUTE` runs, when its expression is known before it runs.
fn executed_sql(expression: Option<&serde_json::Value>, constants: &Constants) -> Option<String> {
    evaluate(expression?.as_str()?, constants)
}

/// The value of a PL/pgSQL expression built only of constants: string (and number) literals,
/// `||`, `format()` with `%s`, `%I`, `%L` and `%%`, `quote_ident()`, `quote_literal()`,
/// `concat()`, casts to text, and variables in `constants`. `None` for anything else.
fn evaluate(expression: &str, constants: &Constants) -> Option<String> {
    match value_of(target_of(expression)?.as_ref(), constants, Mode::Exact, 0)? {
        Value::Known(v) => Some(v),
        Value::Unknown => None,
    }
}

/// The shape of the SQL an `EXECUTE` runs when only the identifiers and literals it quotes are
/// unknown (`format('SELECT … FROM %I WHERE id = %L', t, v)`, `'… ' || quote_ident(t)`): those
/// become placeholders, so the statement's kind can be judged. `None` when more is unknown.
fn shape(expression: &str, constants: &Constants) -> Option<String> {
    match value_of(target_of(expression)?.as_ref(), constants, Mode::Shape, 0)? {
        Value::Known(v) => Some(v),
        Value::Unknown => None,
    }
}

/// Whether an `EXECUTE` of this expression can only run statements the policy does not govern
/// (queries and DML), judged by its shape.
fn executes_only_dml(
    expression: Option<&serde_json::Value>,
    constants: &Constants,
    server_major: u32,
) -> bool {
    let Some(sql) = expression
        .and_then(|e| e.as_str())
        .and_then(|e| shape(e, constants))
    else {
        return false;
    };
    let statements = parse_script(&sql, Options::default());
    !statements.is_empty()
        && statements.iter().all(|s| {
            s.tree
                .as_ref()
                .is_ok_and(|node| !classify(node, ClassifyOptions { server_major }).governed())
        })
}

/// The expression of `SELECT <expression>`.
fn target_of(expression: &str) -> Option<Box<ast::Node>> {
    let mut parsed = parse_script(&format!("SELECT {expression}"), Options::default());
    if parsed.len() != 1 {
        return None;
    }
    let NodeEnum::SelectStmt(select) = parsed.pop()?.tree.ok()? else {
        return None;
    };
    let [target] = select.target_list.as_slice() else {
        return None;
    };
    let Some(NodeEnum::ResTarget(target)) = &target.node else {
        return None;
    };
    target.val.clone()
}

/// How unknown parts of an expression are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing may be unknown.
    Exact,
    /// Identifiers and literals that are quoted may be unknown (placeholders stand for them).
    Shape,
}

/// An expression's value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Known(String),
    /// Known only at run time.
    Unknown,
}

/// Stands for an unknown identifier in a statement's shape.
const IDENTIFIER: &str = "ddlgate_identifier";
/// Stands for an unknown literal in a statement's shape.
const LITERAL: &str = "NULL";

fn value_of(node: &ast::Node, constants: &Constants, mode: Mode, depth: usize) -> Option<Value> {
    const MAX_DEPTH: usize = 32;
    if depth > MAX_DEPTH {
        return None;
    }
    let value = |n: &ast::Node| value_of(n, constants, mode, depth + 1);
    let known = |n: &ast::Node| match value(n)? {
        Value::Known(v) => Some(v),
        Value::Unknown => None,
    };
    let unknown = || (mode == Mode::Shape).then_some(Value::Unknown);
    Some(match node.node.as_ref()? {
        NodeEnum::AConst(c) => Value::Known(match c.val.as_ref()? {
            ast::a_const::Val::Sval(s) => s.sval.clone(),
            ast::a_const::Val::Ival(i) => i.ival.to_string(),
            ast::a_const::Val::Fval(f) => f.fval.clone(),
            _ => return None,
        }),
        NodeEnum::TypeCast(t) => {
            let to = t.type_name.as_ref()?.names.last().and_then(string_value)?;
            if !matches!(to, "text" | "varchar") {
                return unknown();
            }
            value(t.arg.as_deref()?)?
        }
        NodeEnum::AExpr(e) => {
            let op = e.name.first().and_then(string_value)?;
            if op != "||" || e.kind != ast::AExprKind::AexprOp as i32 {
                return unknown();
            }
            Value::Known(known(e.lexpr.as_deref()?)? + &known(e.rexpr.as_deref()?)?)
        }
        NodeEnum::ColumnRef(r) => match r.fields.as_slice() {
            [field] => match constants.get(string_value(field)?) {
                Some(v) => Value::Known(v.clone()),
                None => return unknown(),
            },
            _ => return unknown(),
        },
        NodeEnum::FuncCall(f) => {
            let name = f.funcname.last().and_then(string_value)?;
            let args: Option<Vec<Value>> = f.args.iter().map(value).collect();
            let args = args?;
            let all_known = || -> Option<Vec<String>> {
                args.iter()
                    .map(|a| match a {
                        Value::Known(v) => Some(v.clone()),
                        Value::Unknown => None,
                    })
                    .collect()
            };
            match (name, args.as_slice()) {
                ("quote_ident", [Value::Known(a)]) => {
                    Value::Known(crate::analysis::classify::quote_ident(a))
                }
                ("quote_ident", [Value::Unknown]) => Value::Known(IDENTIFIER.to_owned()),
                ("quote_literal" | "quote_nullable", [Value::Known(a)]) => {
                    Value::Known(format!("'{}'", a.replace('\'', "''")))
                }
                ("quote_literal" | "quote_nullable", [Value::Unknown]) => {
                    Value::Known(LITERAL.to_owned())
                }
                ("concat", _) => Value::Known(all_known()?.concat()),
                ("format", [Value::Known(pattern), rest @ ..]) => {
                    Value::Known(format_constant(pattern, rest)?)
                }
                _ => return unknown(),
            }
        }
        _ => return unknown(),
    })
}

/// PostgreSQL's `format()` for `%s`, `%I`, `%L` and `%%` (no positions or widths); an unknown
/// argument only where it is quoted (`%I`, `%L`), as a placeholder.
fn format_constant(pattern: &str, args: &[Value]) -> Option<String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next()?;
        if spec == '%' {
            out.push('%');
            continue;
        }
        match (spec, args.next()) {
            ('s', Some(Value::Known(a))) => out.push_str(a),
            ('I', Some(Value::Known(a))) => {
                out.push_str(&crate::analysis::classify::quote_ident(a));
            }
            ('I', Some(Value::Unknown)) => out.push_str(IDENTIFIER),
            ('L', Some(Value::Known(a))) => {
                out.push('\'');
                out.push_str(&a.replace('\'', "''"));
                out.push('\'');
            }
            ('L', Some(Value::Unknown)) => out.push_str(LITERAL),
            _ => return None,
        }
    }
    Some(out)
}

/// What a routine's body runs, from its whole `CREATE FUNCTION`/`CREATE PROCEDURE` statement
/// (as `pg_get_functiondef` prints it): the SQL statements (written out, and `EXECUTE`s of SQL
/// known before it runs, in body order), and whether it also `EXECUTE`s SQL built at run time
/// or cannot be read. `None` for what is not a SQL or PL/pgSQL routine with a string body, and
/// for trigger functions (they run on a table's writes, not when called).
pub(crate) fn routine_statements(
    definition: &str,
    server_major: u32,
) -> Option<(Vec<String>, bool)> {
    let mut parsed = parse_script(definition, Options::default());
    if parsed.len() != 1 {
        return None;
    }
    let NodeEnum::CreateFunctionStmt(s) = parsed.pop()?.tree.ok()? else {
        return None;
    };
    if trigger_function(&s).is_some() {
        return None;
    }
    let body = option_value(&s.options, "as").and_then(body_text)?;
    match language(&s.options, "sql").as_str() {
        "sql" => {
            let mut statements = Vec::new();
            let mut unreadable = false;
            for statement in parse_script(body, Options::default()) {
                unreadable |= statement.tree.is_err();
                if let Some(text) = body.get(statement.span.clone()) {
                    statements.push(text.to_owned());
                }
            }
            Some((statements, unreadable))
        }
        "plpgsql" => {
            let tree = parse_plpgsql(definition)
                .or_else(|_| parse_plpgsql(&with_plain_signature(&s, body)));
            let Ok(tree) = tree else {
                return Some((Vec::new(), true));
            };
            let constants = constant_variables(&tree);
            let mut statements = Vec::new();
            collect_execsql(&tree, &constants, &mut statements);
            let mut found = BodyFindings::default();
            walk(&tree, server_major, &mut found);
            Some((statements, found.dynamic_execute || found.unreadable))
        }
        _ => None,
    }
}

/// The SQL statements written out in a PL/pgSQL `DO` block, in body order, so the engine can
/// hold each to the rules that apply to it as a plain statement. Empty for other statements,
/// other languages and bodies the parser cannot read (`dynamic-ddl` reports those).
pub(crate) fn do_block_statements(node: &NodeEnum) -> Vec<String> {
    let NodeEnum::DoStmt(s) = node else {
        return Vec::new();
    };
    if language(&s.args, "plpgsql") != "plpgsql" {
        return Vec::new();
    }
    let Some(body) = option_value(&s.args, "as").and_then(body_text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(tree) = parse_plpgsql(&do_block_as_function(body)) {
        collect_execsql(&tree, &constant_variables(&tree), &mut out);
    }
    out
}

fn collect_execsql(value: &serde_json::Value, constants: &Constants, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                // EXECUTE of SQL known before it runs: held to its rules like written-out SQL.
                let executed = match key.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                        executed_sql(inner.pointer("/query/PLpgSQL_expr/query"), constants)
                    }
                    "PLpgSQL_stmt_open" => {
                        executed_sql(inner.pointer("/dynquery/PLpgSQL_expr/query"), constants)
                    }
                    _ => None,
                };
                if let Some(sql) = executed {
                    out.push(sql);
                    continue;
                }
                // `CALL` and `DO` in a body are statements of their own kind; `PERFORM` is a
                // SELECT whose result is thrown away.
                let statement = match key.as_str() {
                    "PLpgSQL_stmt_execsql" => inner.pointer("/sqlstmt/PLpgSQL_expr/query"),
                    "PLpgSQL_stmt_call" | "PLpgSQL_stmt_perform" => {
                        inner.pointer("/expr/PLpgSQL_expr/query")
                    }
                    _ => None,
                };
                if let Some(q) = statement.and_then(|q| q.as_str()) {
                    out.push(q.to_owned());
                    continue;
                }
                // Any other expression (`x := set_config(…)`, an IF condition) that can change
                // settings counts as a change to them whose value cannot be known.
                if key == "PLpgSQL_expr"
                    && inner
                        .get("query")
                        .and_then(|q| q.as_str())
                        .is_some_and(changes_settings)
                {
                    out.push(UNKNOWN_SETTING_CHANGE.to_owned());
                    continue;
                }
                collect_execsql(inner, constants, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_execsql(item, constants, out);
            }
        }
        _ => {}
    }
}

/// A statement that changes a setting whose name is not known from the text.
const UNKNOWN_SETTING_CHANGE: &str = "SELECT set_config(NULL::text, NULL::text, false)";

fn changes_settings(expression: &str) -> bool {
    let lower = expression.to_ascii_lowercase();
    lower.contains("set_config") || lower.contains("pg_settings")
}

/// `plpgsql_source` is the body as a whole `CREATE FUNCTION` statement.
fn inspect_body(lang: &str, body: &str, plpgsql_source: &str, server_major: u32) -> BodyFindings {
    match lang {
        "plpgsql" => inspect_plpgsql(plpgsql_source, server_major),
        "sql" => {
            let mut found = BodyFindings::default();
            inspect_sql(body, server_major, &mut found);
            found
        }
        // Other languages (PL/Python, PL/Perl, C) can do anything; nothing is visible.
        _ => BodyFindings {
            unreadable: true,
            ..BodyFindings::default()
        },
    }
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let server_major = input.ctx.server_major;
    let (what, findings, when) = match input.node {
        NodeEnum::DoStmt(s) => {
            let lang = language(&s.args, "plpgsql");
            let Some(body) = option_value(&s.args, "as").and_then(body_text) else {
                return;
            };
            let wrapped = do_block_as_function(body);
            let mut findings = inspect_body(&lang, body, &wrapped, server_major);
            // The engine holds statements written out in the block to their own rules, and the
            // block gets the timeouts of DDL; only what cannot be seen is this rule's business.
            findings.ddl.clear();
            ("DO block".to_owned(), findings, "")
        }
        NodeEnum::CreateFunctionStmt(s) => {
            let lang = language(&s.options, "sql");
            if lang != "sql" && lang != "plpgsql" {
                // Not analysable, but creating such a function is routine: say nothing.
                return;
            }
            // BEGIN ATOMIC bodies (no AS string) cannot contain DDL.
            let Some(body) = option_value(&s.options, "as").and_then(body_text) else {
                return;
            };
            let trigger = trigger_function(s);
            let mut findings = match trigger {
                Some(kind) if lang == "plpgsql" => {
                    inspect_trigger_plpgsql(body, kind, server_major)
                }
                _ => inspect_body(&lang, body, input.text(), server_major),
            };
            if findings.unreadable && lang == "plpgsql" {
                findings = inspect_plpgsql(&with_plain_signature(s, body), server_major);
            }
            // A body that still cannot be read is reported: it may hide anything. (PostgreSQL
            // itself refuses most of those, when it checks function bodies.)
            let kind = if s.is_procedure {
                "procedure"
            } else {
                "function"
            };
            let name: Vec<&str> = s.funcname.iter().filter_map(string_value).collect();
            let when = match trigger {
                Some(TriggerFunction::Dml) => " when its trigger fires (on a later write)",
                Some(TriggerFunction::Event) => " when its event trigger fires (on later DDL)",
                None => " when called",
            };
            (format!("{kind} {}", name.join(".")), findings, when)
        }
        NodeEnum::CopyStmt(s) if s.is_program => {
            out.push(
                input
                    .violation(RULE.id, "COPY … PROGRAM runs a shell command on the database server; ddlgate cannot see what it does, schema changes through a connection of its own included")
                    .with_help("Load data with COPY … FROM STDIN (psql's \\copy) through ddlgate, and run schema changes as plain statements."),
            );
            return;
        }
        // A procedure whose body was read: its statements are held to their own rules.
        NodeEnum::CallStmt(_) if !input.ctx.routines.called_by(input.node).is_empty() => return,
        NodeEnum::CallStmt(_) => {
            out.push(
                input
                    .violation(RULE.id, "CALL runs a procedure whose statements ddlgate cannot see; any schema change it makes is not governed")
                    .with_help("Run schema changes as plain statements so ddlgate can apply timeouts and policy to them."),
            );
            return;
        }
        _ => return,
    };
    let Some(described) = findings.describe() else {
        return;
    };
    out.push(
        input
            .violation(RULE.id, format!("{what} {described}{when}; ddlgate cannot apply timeouts or policy to statements run that way"))
            .with_help("Write the schema change as plain SQL statements, so each is checked and gets its timeouts."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    /// What `EXECUTE` runs is known when its expression is built of constants.
    #[test]
    fn constant_expressions_are_evaluated() {
        let none = Constants::new();
        let eval = |e: &str| evaluate(e, &none);
        assert_eq!(
            eval("'ALTER TABLE t ADD c int'").as_deref(),
            Some("ALTER TABLE t ADD c int")
        );
        assert_eq!(
            eval("'DROP TABLE ' || 'q' || ''").as_deref(),
            Some("DROP TABLE q")
        );
        assert_eq!(
            eval("format('ALTER TABLE %I ADD %s int -- %L %%', 'My T', 'c', 'it''s')").as_deref(),
            Some("ALTER TABLE \"My T\" ADD c int -- 'it''s' %")
        );
        assert_eq!(
            eval("'ALTER TABLE ' || quote_ident('victim') || ' RENAME a TO b'").as_deref(),
            Some("ALTER TABLE victim RENAME a TO b")
        );
        assert_eq!(eval("'x'::text || 5").as_deref(), Some("x5"));
        assert_eq!(
            eval("format('%1$s', 'a')"),
            None,
            "positions are not evaluated"
        );
        assert_eq!(eval("'x' || now()"), None);
        assert_eq!(eval("s"), None, "an unknown variable");
    }

    /// SQL built at run time whose shape is a query or DML (only quoted identifiers and
    /// literals unknown) is harmless: not reported, in a DO block or a function.
    #[test]
    fn dynamic_dml_is_judged_by_its_shape() {
        let none = Constants::new();
        assert_eq!(
            shape(
                "format('SELECT count(*) FROM %I WHERE id = %L', t, v)",
                &none
            )
            .as_deref(),
            Some("SELECT count(*) FROM ddlgate_identifier WHERE id = NULL")
        );
        assert_eq!(
            shape(
                "'DELETE FROM ' || quote_ident(t) || ' WHERE x = ' || quote_literal(v)",
                &none
            )
            .as_deref(),
            Some("DELETE FROM ddlgate_identifier WHERE x = NULL")
        );
        assert_eq!(shape("format('%s', t)", &none), None, "%s of the unknown");
        assert_eq!(shape("'SELECT ' || t", &none), None);
        assert_ok(
            RULE.id,
            "CREATE FUNCTION n(t text) RETURNS bigint LANGUAGE plpgsql AS $$ DECLARE c bigint; BEGIN EXECUTE format('SELECT count(*) FROM %I', t) INTO c; RETURN c; END $$",
        );
        assert_ok(
            RULE.id,
            "DO $$ DECLARE t text := current_user; BEGIN EXECUTE format('UPDATE %I SET a = 1', t); END $$",
        );
        // The same shape with DDL is reported.
        assert_flagged(
            RULE.id,
            "DO $$ DECLARE t text := current_user; BEGIN EXECUTE format('DROP TABLE %I', t); END $$",
        );
    }

    /// A variable is a constant only when one constant is all it is ever given.
    #[test]
    fn variables_given_only_one_constant_are_known() {
        let statements = |body: &str| {
            do_block_statements(
                &parse_script(&format!("DO $do$ {body} $do$"), Options::default())
                    .remove(0)
                    .tree
                    .unwrap(),
            )
        };
        assert_eq!(
            statements("DECLARE s text := 'ALTER TABLE v RENAME a TO b'; BEGIN EXECUTE s; END"),
            ["ALTER TABLE v RENAME a TO b"]
        );
        assert_eq!(
            statements(
                "DECLARE s text; BEGIN s := format('ALTER TABLE %I RENAME a TO b', 'v'); EXECUTE s; END"
            ),
            ["ALTER TABLE v RENAME a TO b"]
        );
        // Assigned twice, or by a query: unknown.
        assert!(
            statements("DECLARE s text := 'x'; BEGIN s := 'y'; EXECUTE s; END")
                .iter()
                .all(|q| !q.contains('x') && !q.contains('y'))
        );
        assert!(
            statements("DECLARE s text; BEGIN SELECT 'DROP TABLE t' INTO s; EXECUTE s; END")
                .iter()
                .all(|q| !q.starts_with("DROP"))
        );
        // Shadowed in an inner block: unknown.
        assert!(
            statements("DECLARE s text := 'DROP TABLE a'; BEGIN DECLARE s text := 'DROP TABLE b'; BEGIN EXECUTE s; END; END")
                .iter()
                .all(|q| !q.starts_with("DROP"))
        );
    }

    #[test]
    fn do_blocks_that_execute_dynamic_sql_are_flagged() {
        // Statements written out in a DO block are checked by their own rules instead.
        assert_ok(
            RULE.id,
            "DO $$ BEGIN ALTER TABLE t ADD COLUMN c int; END $$",
        );
        let v = assert_flagged(
            RULE.id,
            "DO $$ DECLARE t text; BEGIN SELECT relname INTO t FROM pg_class LIMIT 1; EXECUTE format('DROP TABLE %I', t); END $$",
        );
        assert!(
            v.message.contains("EXECUTEs SQL built at run time"),
            "{}",
            v.message
        );
        // SQL known before it runs is held to its own rules by the engine instead.
        assert_ok(
            RULE.id,
            "DO $$ BEGIN IF true THEN FOR i IN 1..2 LOOP EXECUTE 'CREATE INDEX ON t (a)'; END LOOP; END IF; END $$",
        );
        assert_ok(
            RULE.id,
            "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 't'); END $$",
        );
        assert_flagged(
            RULE.id,
            "DO LANGUAGE plpython3u $$ plpy.execute('DROP TABLE t') $$",
        );
    }

    #[test]
    fn functions_that_run_ddl_later_are_flagged() {
        let v = assert_flagged(
            RULE.id,
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'TRUNCATE t'; END $$",
        );
        assert!(
            v.message.contains("function f") && v.message.contains("when called"),
            "{}",
            v.message
        );
        assert_flagged(
            RULE.id,
            "CREATE PROCEDURE p() LANGUAGE sql AS 'CREATE TABLE x (a int)'",
        );
        // Trigger and event-trigger functions run their DDL on a later write or DDL.
        for sql in [
            "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN c int'; RETURN NEW; END $$",
            "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('ALTER TABLE t ADD COLUMN c%s int', NEW.id); RETURN NEW; END $$",
            "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE t ADD COLUMN c int; RETURN NULL; END $$",
            "CREATE FUNCTION ef() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE t ADD COLUMN c int; END $$",
            "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ <<outer>> DECLARE n int; BEGIN ALTER TABLE t ADD COLUMN c int; RETURN NULL; END outer; -- done\n$$",
        ] {
            let v = assert_flagged(RULE.id, sql);
            assert!(v.message.contains("trigger fires"), "{}", v.message);
        }
        // Signatures libpg_query cannot compile do not hide the body.
        for signature in [
            "f(VARIADIC a text[]) RETURNS void",
            "f(a t.c%TYPE, OUT b int, INOUT c int)",
            "f(VARIADIC a int[]) RETURNS SETOF int",
            "f(a t.c%TYPE) RETURNS TABLE(x int, y text)",
            "f(a t.c%TYPE) RETURNS t.c%TYPE",
        ] {
            let sql = format!(
                "CREATE FUNCTION {signature} LANGUAGE plpgsql AS $$ BEGIN a := a; EXECUTE 'DROP TABLE t'; END $$"
            );
            let v = assert_flagged(RULE.id, &sql);
            assert!(
                v.message.contains("runs DROP TABLE") && !v.message.contains("cannot read"),
                "{sql}: {}",
                v.message
            );
        }
        let v = assert_flagged(
            RULE.id,
            "CREATE PROCEDURE p(a t.c%TYPE) LANGUAGE plpgsql AS $$ BEGIN DROP TABLE t; END $$",
        );
        assert!(v.message.contains("runs DROP TABLE"), "{}", v.message);
        let v = assert_flagged(
            RULE.id,
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN this is not plpgsql; END $$",
        );
        assert!(v.message.contains("cannot read"), "{}", v.message);
        assert_flagged(RULE.id, "CALL maintenance()");
        assert_flagged(RULE.id, "COPY t FROM PROGRAM 'psql -c \"DROP TABLE t\"'");
        assert_flagged(RULE.id, "COPY (SELECT 1) TO PROGRAM 'cat > /tmp/x'");
        assert_ok(RULE.id, "COPY t FROM STDIN");
        assert_ok(RULE.id, "COPY t TO '/tmp/t.csv'");
    }

    #[test]
    fn harmless_bodies_are_fine() {
        assert_ok(
            RULE.id,
            "DO $$ BEGIN PERFORM pg_sleep(0); UPDATE t SET a = 1; END $$",
        );
        assert_ok(
            RULE.id,
            "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b'",
        );
        assert_ok(
            RULE.id,
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RETURN NEW; END $$",
        );
        assert_ok(
            RULE.id,
            "CREATE FUNCTION c_func() RETURNS int LANGUAGE c AS 'lib', 'sym'",
        );
    }
}
