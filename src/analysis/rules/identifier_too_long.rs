//! `identifier-too-long`: names longer than PostgreSQL's 63-byte limit, which it truncates.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::parse::TokenKind;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::IdentifierTooLong,
    summary: "A name longer than 63 bytes is silently truncated by PostgreSQL",
    group: Group::Correctness,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("identifier_too_long.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, created_at timestamptz)",
        flagged: &[
            "CREATE INDEX CONCURRENTLY orders_customer_id_created_at_including_everything_we_need_for_reports_idx ON orders (customer_id, created_at)",
        ],
        safe: &[
            "CREATE INDEX CONCURRENTLY orders_customer_created_idx ON orders (customer_id, created_at)",
        ],
    },
    check,
    finish: None,
};

/// The identifier a token spells: unquoted names are folded to lower case, quoted ones keep
/// their case with doubled quotes undone. (The parser has already truncated what it returns,
/// so the lengths must be read from the text.)
fn identifier_value(token: &str) -> String {
    if let Some(inner) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        inner.replace("\"\"", "\"")
    } else if let Some(inner) = token
        .strip_prefix("U&\"")
        .or_else(|| token.strip_prefix("u&\""))
        .and_then(|t| t.strip_suffix('"'))
    {
        inner.replace("\"\"", "\"")
    } else {
        token.to_lowercase()
    }
}

/// What PostgreSQL keeps of a long name: at most 63 bytes, not splitting a character.
fn truncated(name: &str) -> &str {
    let mut end = MAX_IDENTIFIER_BYTES.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or(name)
}

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    if !input.facts.ddl {
        return;
    }
    let mut reported = Vec::new();
    for token in input.tokens() {
        if token.kind != TokenKind::Identifier {
            continue;
        }
        let name = identifier_value(input.source.get(token.span.clone()).unwrap_or_default());
        if name.len() <= MAX_IDENTIFIER_BYTES || reported.contains(&name) {
            continue;
        }
        out.push(
            input
                .violation(RULE.id, format!("the name {name:?} is {} bytes long; PostgreSQL keeps only the first 63: {:?}", name.len(), truncated(&name)))
                .with_detail(Some("Code and later migrations that use the full name will not find the object, and two long names with the same start collide.".to_owned()))
                .with_help("Choose a name of at most 63 bytes."),
        );
        reported.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn long_names_anywhere_are_flagged() {
        let long = "a".repeat(64);
        assert_flagged(RULE.id, &format!("CREATE TABLE {long} (x int)"));
        assert_flagged(RULE.id, &format!("CREATE TABLE t ({long} int)"));
        assert_flagged(
            RULE.id,
            &format!("ALTER TABLE t ADD CONSTRAINT {long} CHECK (x > 0)"),
        );
        assert_flagged(RULE.id, &format!("CREATE INDEX {long} ON t (x)"));
        assert_flagged(RULE.id, &format!("ALTER TABLE t RENAME TO {long}"));
        let v = assert_flagged(
            RULE.id,
            &format!("CREATE TABLE \"{}é\" (x int)", "b".repeat(62)),
        );
        assert!(
            v.message.contains(&format!("\"{}\"", "b".repeat(62))),
            "{}",
            v.message
        );
    }

    #[test]
    fn names_up_to_63_bytes_are_fine() {
        assert_ok(RULE.id, &format!("CREATE TABLE {} (x int)", "a".repeat(63)));
    }
}
