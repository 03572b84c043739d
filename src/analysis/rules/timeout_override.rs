//! `timeout-override`: a statement sent together with DDL undoes the timeouts ddlgate applied.

use super::{DefaultAction, Examples, FixAvailability, Group, Input, RuleMeta};
use crate::analysis::context::TimeoutSetting;
use crate::analysis::registry::RuleId;
use crate::analysis::violation::Violation;

/// The rule.
pub(crate) static RULE: RuleMeta = RuleMeta {
    id: RuleId::TimeoutOverride,
    summary: "A statement in the same request as DDL loosens the timeouts ddlgate applies",
    group: Group::TransactionsAndSessions,
    opt_in: false,
    default_action: DefaultAction::Reject,
    fix: FixAvailability::None,
    catalog: &[],
    docs: include_str!("timeout_override.md"),
    examples: Examples {
        min_server_major: 0,
        refused_by_postgres: false,
        setup: "CREATE TABLE orders (id bigint PRIMARY KEY)",
        flagged: &["SET lock_timeout = 0; ALTER TABLE orders ADD COLUMN note text"],
        safe: &["SET lock_timeout = '1s'; ALTER TABLE orders ADD COLUMN note text"],
    },
    check,
    finish: None,
};

fn check(input: &Input<'_>, out: &mut Vec<Violation>) {
    let ctx = input.ctx;
    if !ctx.timeouts_managed || ctx.request_timeout_changes.is_empty() {
        return;
    }
    let facts = input.facts;
    let (lock_ms, statement_ms) = if facts.is_online() {
        ctx.managed_timeouts.online_ms
    } else if facts.governed() {
        ctx.managed_timeouts.brief_ms
    } else {
        return;
    };
    // The first change that leaves a setting looser than the policy's (0 is "no timeout").
    let looser = ctx.request_timeout_changes.iter().find(|change| {
        let policy = match change.setting {
            TimeoutSetting::Lock => lock_ms,
            TimeoutSetting::Statement => statement_ms,
        };
        policy > 0 && change.value_ms.is_none_or(|v| v == 0 || v > policy)
    });
    let Some(change) = looser else {
        return;
    };
    let policy = match change.setting {
        TimeoutSetting::Lock => lock_ms,
        TimeoutSetting::Statement => statement_ms,
    };
    let name = change.setting.name();
    out.push(
        input
            .violation(
                RULE.id,
                format!(
                    "`{}`, sent in the same request before this {}, would replace the {name} of {policy}ms ddlgate applies to it",
                    change.how, facts.kind
                ),
            )
            .with_detail(Some(format!(
                "ddlgate applies {name} before a request that runs DDL; a statement of the same request runs after that and its setting wins."
            )))
            .with_help(format!(
                "Leave {name} to ddlgate, or send the SET in a request of its own (ddlgate keeps a value the client set when it is stricter than the policy's)."
            )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::{Context, ManagedTimeouts};
    use crate::analysis::rules::test_support::*;

    fn proxy() -> Context {
        Context {
            timeouts_managed: true,
            query_string: true,
            whole_scripts: false,
            managed_timeouts: ManagedTimeouts {
                brief_ms: (2_000, 5_000),
                online_ms: (300_000, 0),
            },
            ..Context::default()
        }
    }

    fn fired(sql: &str) -> usize {
        violations_in(RULE.id, sql, &mut proxy()).len()
    }

    #[test]
    fn loosening_a_timeout_before_ddl_in_the_same_request_is_flagged() {
        for sql in [
            "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN c int",
            "SET lock_timeout TO '10min'; ALTER TABLE t ADD COLUMN c int",
            "set statement_timeout = '1h'; ALTER TABLE t ADD COLUMN c int",
            "SET LOCAL lock_timeout = DEFAULT; ALTER TABLE t ADD COLUMN c int",
            "RESET lock_timeout; ALTER TABLE t ADD COLUMN c int",
            "RESET ALL; ALTER TABLE t ADD COLUMN c int",
            "DISCARD ALL; ALTER TABLE t ADD COLUMN c int",
            "SELECT set_config('lock_timeout', '0', false); ALTER TABLE t ADD COLUMN c int",
            "SELECT pg_catalog.set_config('statement_timeout', '0', true); ALTER TABLE t ADD COLUMN c int",
            "SELECT set_config(current_setting('x.name'), '0', false); ALTER TABLE t ADD COLUMN c int",
            "UPDATE pg_settings SET setting = '0' WHERE name = 'lock_timeout'; ALTER TABLE t ADD COLUMN c int",
            "SET lock_timeout = 0; DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN c int', current_user); END $$",
            "SET lock_timeout = 0; CREATE INDEX CONCURRENTLY i ON t (a)",
            // Inside a DO block, after ddlgate applied the timeouts to the block.
            "DO $$ BEGIN SET lock_timeout = 0; ALTER TABLE t ADD COLUMN c int; END $$",
            "DO $$ BEGIN PERFORM set_config('lock_timeout', '0', false); ALTER TABLE t ADD COLUMN c int; END $$",
            "DO $$ DECLARE x text; BEGIN x := set_config('lock_timeout', '0', false); ALTER TABLE t ADD COLUMN c int; END $$",
        ] {
            assert_eq!(fired(sql), 1, "{sql}");
        }
        let v = &violations_in(
            RULE.id,
            "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN c int",
            &mut proxy(),
        )[0];
        assert!(
            v.message
                .starts_with("`SET lock_timeout = 0`, sent in the same request"),
            "{}",
            v.message
        );
    }

    #[test]
    fn stricter_values_other_settings_and_check_are_fine() {
        for sql in [
            "SET lock_timeout = '1s'; ALTER TABLE t ADD COLUMN c int",
            "SET lock_timeout = 2000; SET statement_timeout = '3s'; ALTER TABLE t ADD COLUMN c int",
            "SET work_mem = '1GB'; ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE t ADD COLUMN c int; SET lock_timeout = 0",
            "SET lock_timeout = 0; SELECT 1",
            // Online DDL sets no statement_timeout: the client may choose one.
            "SET statement_timeout = 0; CREATE INDEX CONCURRENTLY i ON t (a)",
        ] {
            assert_eq!(fired(sql), 0, "{sql}");
        }
        // `ddlgate check` has no proxy applying timeouts: lock-timeout-missing covers files.
        assert_ok(
            RULE.id,
            "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN c int",
        );
    }
}
