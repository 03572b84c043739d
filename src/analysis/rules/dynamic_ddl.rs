//! `dynamic-ddl`: statements whose schema changes cannot be seen from their text: `DO` blocks
//! and functions that run DDL or `EXECUTE` dynamic SQL, and `CALL`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::{ClassifyOptions, classify, string_value};
use crate::analysis::parse::{NodeEnum, Options, ast, parse_plpgsql, parse_script};
use crate::analysis::plpgsql::{Constants, constant_variables, executed_sql, executes_only_dml};
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
        TriggerFunction::Dml => trigger_body_sources(body),
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

/// A table trigger's body as ordinary functions `parse_plpgsql` can print (see
/// [`inspect_trigger_plpgsql`]).
fn trigger_body_sources(body: &str) -> Vec<String> {
    [";\n", "\n"]
        .iter()
        .map(|end| {
            body_as_function(
                &format!("DECLARE new record; old record; BEGIN\n{body}\n{end}END"),
                "record",
            )
        })
        .collect()
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

/// What a routine's body runs, from its whole `CREATE FUNCTION`/`CREATE PROCEDURE` statement
/// (as `pg_get_functiondef` prints it): the SQL statements (written out, and `EXECUTE`s of SQL
/// known before it runs, in body order), and whether it also `EXECUTE`s SQL built at run time
/// or cannot be read. `None` for what is not a SQL or PL/pgSQL routine with a string body, and
/// for event trigger functions (they run on DDL). A table trigger's function runs inside the
/// write that fires it ([`crate::analysis::routines`]).
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
    let trigger = trigger_function(&s);
    if trigger == Some(TriggerFunction::Event) {
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
            let tree = if trigger.is_some() {
                trigger_body_sources(body)
                    .iter()
                    .find_map(|source| parse_plpgsql(source).ok())
                    .ok_or(())
            } else {
                parse_plpgsql(definition)
                    .or_else(|_| parse_plpgsql(&with_plain_signature(&s, body)))
                    .map_err(|_| ())
            };
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

    /// SQL built at run time whose shape is a query or DML (only quoted identifiers and
    /// literals unknown) is harmless: not reported, in a DO block or a function.
    #[test]
    fn dynamic_dml_is_judged_by_its_shape() {
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
