//! `rename-enum-value`: `ALTER TYPE … RENAME VALUE`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::RenameEnumValue,
    summary: "RENAME VALUE breaks running code that still writes or compares the old label",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("rename_enum_value.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TYPE order_status AS ENUM ('new', 'shipped')",
        flagged: &["ALTER TYPE order_status RENAME VALUE 'shipped' TO 'sent'"],
        safe: &["ALTER TYPE order_status ADD VALUE 'sent'"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterEnumStmt(stmt) = input.node else {
        return;
    };
    if stmt.old_val.is_empty() {
        return;
    }
    out.push(
        input
            .violation(RULE.id, format!("renaming enum label '{}' to '{}' breaks running code that still writes or compares '{}'", stmt.old_val, stmt.new_val, stmt.old_val))
            .with_help(format!(
                "Add '{new}' as a new value, move the code and the data to it, and keep '{old}' until nothing uses it (enum values cannot be dropped; plan for that).",
                new = stmt.new_val,
                old = stmt.old_val
            )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn renaming_a_label_is_flagged() {
        assert_flagged(RULE.id, "ALTER TYPE s RENAME VALUE 'a' TO 'b'");
        assert_ok(RULE.id, "ALTER TYPE s ADD VALUE 'c'");
    }
}
