//! What a statement changes about its session that matters to the rules: the timeouts the
//! proxy applies before DDL (`SET`, `RESET`, `RESET ALL`, `DISCARD ALL`, `set_config(…)`, an `UPDATE` of
//! `pg_settings`) and the `search_path` that unqualified names resolve through.
//!
//! Only changes visible in the text count; a function that calls `set_config` inside is as
//! opaque here as any other function.

use super::context::{Context, TimeoutChange, TimeoutSetting};
use super::parse::{NodeEnum, NodeRef, ast};

/// Records what `node` changes into `ctx`.
pub(crate) fn record(node: &NodeEnum, source_text: &str, ctx: &mut Context) {
    match node {
        NodeEnum::VariableSetStmt(set) => record_set(set, source_text, ctx),
        // DISCARD ALL includes RESET ALL.
        NodeEnum::DiscardStmt(d) if d.target == ast::DiscardMode::DiscardAll as i32 => {
            reset_all(ctx, &one_line(source_text));
        }
        // Functions and UPDATEs of pg_settings only hide in statements that parse as DML.
        NodeEnum::SelectStmt(_)
        | NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_)
        | NodeEnum::CallStmt(_)
        | NodeEnum::ExplainStmt(_) => record_functions(node, source_text, ctx),
        _ => {}
    }
}

fn record_set(set: &ast::VariableSetStmt, text: &str, ctx: &mut Context) {
    let kind = ast::VariableSetKind::try_from(set.kind).unwrap_or(ast::VariableSetKind::Undefined);
    let how = one_line(text);
    match kind {
        ast::VariableSetKind::VarResetAll => reset_all(ctx, &how),
        ast::VariableSetKind::VarSetValue
        | ast::VariableSetKind::VarSetDefault
        | ast::VariableSetKind::VarReset
        | ast::VariableSetKind::VarSetCurrent => {
            let name = set.name.to_ascii_lowercase();
            if name == "search_path" {
                ctx.history.created.forget_unqualified();
                return;
            }
            let Some(setting) = timeout_setting(&name) else {
                return;
            };
            let value = if kind == ast::VariableSetKind::VarSetValue {
                set.args.first().and_then(constant_ms)
            } else {
                None
            };
            push(ctx, setting, value, &how);
        }
        _ => {}
    }
}

/// `RESET ALL` (or `DISCARD ALL`): both timeouts and `search_path` go back to their defaults.
fn reset_all(ctx: &mut Context, how: &str) {
    ctx.history.created.forget_unqualified();
    for setting in [TimeoutSetting::Lock, TimeoutSetting::Statement] {
        push(ctx, setting, None, how);
    }
}

fn timeout_setting(name: &str) -> Option<TimeoutSetting> {
    match name {
        "lock_timeout" => Some(TimeoutSetting::Lock),
        "statement_timeout" => Some(TimeoutSetting::Statement),
        _ => None,
    }
}

fn push(ctx: &mut Context, setting: TimeoutSetting, value_ms: Option<u64>, how: &str) {
    if !ctx.timeouts_managed {
        return;
    }
    ctx.request_timeout_changes.push(TimeoutChange {
        setting,
        value_ms,
        how: how.to_owned(),
    });
}

/// `set_config(name, value, is_local)` calls and `UPDATE pg_settings`.
fn record_functions(node: &NodeEnum, text: &str, ctx: &mut Context) {
    let how = one_line(text);
    for (child, ..) in node.nodes() {
        match child {
            NodeRef::FuncCall(call) => {
                let name = call
                    .funcname
                    .last()
                    .and_then(|n| match &n.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.to_ascii_lowercase()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if name != "set_config" {
                    continue;
                }
                if let Some(setting) = call.args.first().and_then(string_constant) {
                    let setting = setting.to_ascii_lowercase();
                    if setting == "search_path" {
                        ctx.history.created.forget_unqualified();
                    } else if let Some(which) = timeout_setting(&setting) {
                        let value = call
                            .args
                            .get(1)
                            .and_then(string_constant)
                            .and_then(parse_ms);
                        push(ctx, which, value, &how);
                    }
                } else {
                    // A name computed at run time may be either, or search_path.
                    ctx.history.created.forget_unqualified();
                    push(ctx, TimeoutSetting::Lock, None, &how);
                    push(ctx, TimeoutSetting::Statement, None, &how);
                }
            }
            NodeRef::UpdateStmt(update)
                if update
                    .relation
                    .as_ref()
                    .is_some_and(|r| r.relname.eq_ignore_ascii_case("pg_settings")) =>
            {
                ctx.history.created.forget_unqualified();
                push(ctx, TimeoutSetting::Lock, None, &how);
                push(ctx, TimeoutSetting::Statement, None, &how);
            }
            _ => {}
        }
    }
}

fn string_constant(node: &ast::Node) -> Option<&str> {
    match &node.node {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(ast::a_const::Val::Sval(s)) => Some(s.sval.as_str()),
            _ => None,
        },
        Some(NodeEnum::TypeCast(cast)) => cast.arg.as_deref().and_then(string_constant),
        _ => None,
    }
}

/// The value of a `SET` argument in milliseconds, when it is a constant.
fn constant_ms(node: &ast::Node) -> Option<u64> {
    match &node.node {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(ast::a_const::Val::Ival(i)) => u64::try_from(i.ival).ok(),
            Some(ast::a_const::Val::Fval(f)) => parse_ms(&f.fval),
            Some(ast::a_const::Val::Sval(s)) => parse_ms(&s.sval),
            _ => None,
        },
        _ => None,
    }
}

/// A timeout as PostgreSQL reads it: a number with an optional unit (`us`, `ms`, `s`, `min`,
/// `h`, `d`; none means milliseconds), rounded down to whole milliseconds. Negative and
/// malformed values give `None` (PostgreSQL refuses them anyway).
pub(crate) fn parse_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = number * factor;
    // The server refuses anything above i32::MAX milliseconds; clamp rather than overflow.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "finite, non-negative and clamped below u64::MAX"
    )]
    (ms.is_finite() && ms >= 0.0).then(|| ms.min(1e15) as u64)
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 80 {
        let cut: String = line.chars().take(77).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_read_with_postgres_units() {
        assert_eq!(parse_ms("0"), Some(0));
        assert_eq!(parse_ms("1500"), Some(1500));
        assert_eq!(parse_ms("2s"), Some(2000));
        assert_eq!(parse_ms("2 s"), Some(2000));
        assert_eq!(parse_ms("1.5min"), Some(90_000));
        assert_eq!(parse_ms("1h"), Some(3_600_000));
        assert_eq!(parse_ms("1d"), Some(86_400_000));
        assert_eq!(parse_ms("500us"), Some(0));
        assert_eq!(parse_ms("-1"), None);
        assert_eq!(parse_ms("2 fortnights"), None);
    }
}
