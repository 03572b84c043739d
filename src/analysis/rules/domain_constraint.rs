//! `domain-constraint`: adding or validating a constraint on a domain.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::classify::string_value;
use crate::analysis::parse::NodeEnum;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::DomainConstraint,
    summary: "Checking a domain constraint scans every table using the domain while blocking writes to them",
    group: Group::Constraints,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("domain_constraint.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE DOMAIN email AS text; CREATE TABLE users (id bigint PRIMARY KEY, address email)",
        flagged: &[
            "ALTER DOMAIN email ADD CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%')",
            "ALTER DOMAIN email ADD CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%') NOT VALID; \
             ALTER DOMAIN email VALIDATE CONSTRAINT email_has_at",
        ],
        safe: &[
            "ALTER TABLE users ADD CONSTRAINT users_address_has_at CHECK (address LIKE '%@%') NOT VALID; \
                 ALTER TABLE users VALIDATE CONSTRAINT users_address_has_at",
        ],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let NodeEnum::AlterDomainStmt(stmt) = input.node else {
        return;
    };
    // Only the statements that check existing data (the classifier knows which).
    if !input.facts.scans {
        return;
    }
    let domain: Vec<&str> = stmt.type_name.iter().filter_map(string_value).collect();
    let what = match stmt.subtype.as_str() {
        "V" => "validating a constraint of",
        "O" => "SET NOT NULL on",
        _ => "adding a validated constraint to",
    };
    out.push(
        input
            .violation(RULE.id, format!("{what} domain {} checks every column of that type in every table, blocking writes to each table until done", domain.join(".")))
            .with_detail(Some("Each table with a column of the domain is scanned under a SHARE lock; for domains, VALIDATE CONSTRAINT is no lighter than ADD CONSTRAINT.".to_owned()))
            .with_help("There is no non-blocking way to check a domain constraint. Put the rule on each table instead (ADD CONSTRAINT … CHECK (…) NOT VALID, then VALIDATE CONSTRAINT, which blocks nothing), or add it NOT VALID to the domain and leave old rows unchecked."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn domain_checks_are_flagged() {
        assert_flagged(
            RULE.id,
            "ALTER DOMAIN app.email ADD CONSTRAINT has_at CHECK (VALUE LIKE '%@%')",
        );
        assert_flagged(RULE.id, "ALTER DOMAIN email VALIDATE CONSTRAINT has_at");
        assert_flagged(RULE.id, "ALTER DOMAIN email SET NOT NULL");
    }

    #[test]
    fn unvalidated_and_other_changes_are_fine() {
        assert_ok(
            RULE.id,
            "ALTER DOMAIN email ADD CONSTRAINT c CHECK (VALUE <> '') NOT VALID",
        );
        assert_ok(RULE.id, "ALTER DOMAIN email DROP NOT NULL");
        assert_ok(RULE.id, "ALTER DOMAIN email DROP CONSTRAINT c");
    }
}
