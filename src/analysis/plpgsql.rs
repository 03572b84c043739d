//! What PL/pgSQL code will run, read without running it: the variables whose value is one
//! constant, the SQL an `EXECUTE` runs when its expression is built of constants, and the shape
//! of one built at run time when only the identifiers and literals it quotes are unknown.
//! Used by `dynamic-ddl` and the engine to hold `EXECUTE`d SQL to its own rules.

use super::classify::{ClassifyOptions, classify, quote_ident, string_value};
use super::parse::{NodeEnum, Options, ast, parse_script};

/// The variables of a PL/pgSQL body whose value is one constant wherever it is read: given by
/// their declaration or by a single assignment, never the target of anything else, and not
/// shadowed by another variable of the same name.
pub(crate) type Constants = std::collections::HashMap<String, String>;

pub(crate) fn constant_variables(tree: &serde_json::Value) -> Constants {
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
pub(crate) fn executed_sql(
    expression: Option<&serde_json::Value>,
    constants: &Constants,
) -> Option<String> {
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
pub(crate) fn executes_only_dml(
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
                ("quote_ident", [Value::Known(a)]) => Value::Known(quote_ident(a)),
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
                out.push_str(&quote_ident(a));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    /// SQL built at run time is judged by its shape: only quoted identifiers and literals may
    /// be unknown.
    #[test]
    fn shapes_keep_quoted_unknowns_only() {
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
    }
}
