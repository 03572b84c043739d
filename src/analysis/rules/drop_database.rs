//! `drop-database`: `DROP DATABASE` and `DROP SCHEMA`.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::string_value;
use crate::analysis::parse::{NodeEnum, ast};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DropDatabase,
    summary: "DROP DATABASE and DROP SCHEMA destroy everything in them",
    group: Group::ExpandContract,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("drop_database.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE SCHEMA reporting",
        flagged: &["DROP SCHEMA reporting CASCADE"],
        safe: &["ALTER SCHEMA reporting RENAME TO reporting_retired"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let what = match input.node {
        NodeEnum::DropdbStmt(s) => format!("DROP DATABASE {}", s.dbname),
        NodeEnum::DropStmt(s) if s.remove_type == ast::ObjectType::ObjectSchema as i32 => {
            let names: Vec<&str> = s.objects.iter().filter_map(string_value).collect();
            format!("DROP SCHEMA {}", names.join(", "))
        }
        _ => return,
    };
    out.push(
        input
            .violation(RULE.id, format!("{what} destroys every object and row in it"))
            .with_help("This is not a migration step; if it really is intended, record why with /* ddlgate:allow drop-database reason=\"…\" */."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn databases_and_schemas_are_flagged() {
        assert_flagged(RULE.id, "DROP DATABASE app");
        assert_flagged(RULE.id, "DROP SCHEMA IF EXISTS a, b CASCADE");
        assert_ok(RULE.id, "DROP TABLE t");
    }
}
