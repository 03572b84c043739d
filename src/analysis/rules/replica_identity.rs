//! `replica-identity`: `ALTER TABLE … REPLICA IDENTITY`.

use super::{
    DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta, alter_subcommands,
    lock_detail,
};
use crate::analysis::parse::{NodeEnum, ast::AlterTableType};
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::ReplicaIdentity,
    summary: "REPLICA IDENTITY changes what logical replication writes for every update and delete",
    group: Group::StorageAndPartitions,
    opt_in: false,
    default_action: DefaultAction::Warn,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("replica_identity.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE events (id bigint PRIMARY KEY, payload text)",
        flagged: &["ALTER TABLE events REPLICA IDENTITY FULL"],
        safe: &["ALTER TABLE events ADD COLUMN note text"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    for cmd in alter_subcommands(input, &[AlterTableType::AtReplicaIdentity]) {
        let kind = match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::ReplicaIdentityStmt(r)) => match r.identity_type.as_str() {
                "f" => "FULL",
                "n" => "NOTHING",
                "i" => "USING INDEX",
                _ => "DEFAULT",
            },
            _ => "DEFAULT",
        };
        let consequence = match kind {
            "FULL" => {
                "every UPDATE and DELETE then writes the whole old row to WAL, which can multiply WAL volume and replication lag"
            }
            "NOTHING" => "UPDATE and DELETE on a published table then fail",
            _ => "logical replication subscribers identify rows by the new key from now on",
        };
        out.push(
            input
                .violation(RULE.id, format!("REPLICA IDENTITY {kind}: {consequence}"))
                .with_detail(lock_detail(input.facts))
                .with_help("Check the table's publications and subscribers before changing its replica identity."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rules::test_support::*;

    #[test]
    fn replica_identity_changes_are_flagged() {
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t REPLICA IDENTITY FULL")
                .message
                .contains("FULL")
        );
        assert!(
            assert_flagged(RULE.id, "ALTER TABLE t REPLICA IDENTITY USING INDEX t_key")
                .message
                .contains("USING INDEX")
        );
        assert_ok(
            RULE.id,
            "CREATE TABLE t (a int); ALTER TABLE t REPLICA IDENTITY FULL",
        );
    }
}
