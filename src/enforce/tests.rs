use std::path::Path;

use super::*;
use crate::analysis::classify::RelationName;
use crate::analysis::parse::{NodeEnum, Options};
use crate::config::policy::Policy;

fn relation(schema: Option<&str>, name: &str) -> RelationName {
    RelationName {
        schema: schema.map(str::to_owned),
        name: name.to_owned(),
    }
}

fn settings(toml: &str) -> Settings {
    Policy::parse(toml, Path::new("test.toml"))
        .expect("valid policy")
        .base
}

fn proxy_context() -> Context {
    Context {
        timeouts_managed: true,
        whole_scripts: false,
        query_string: true,
        ..Context::for_server(15)
    }
}

fn decide_one(settings: &Settings, sql: &str, ctx: &mut Context) -> Vec<StatementDecision> {
    let engine = Engine::new(settings.enabled_rules());
    decide(
        &engine,
        settings,
        sql,
        ctx,
        Situation {
            single_statement: true,
        },
    )
}

#[test]
fn plain_dml_runs_untouched_without_timeouts() {
    let d = decide_one(&Settings::default(), "SELECT 1", &mut proxy_context());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(d[0].class, None);
    assert!(!d[0].ddl);
    assert!(d[0].rules.is_empty());
}

#[test]
fn create_index_outside_a_transaction_becomes_concurrent_and_online() {
    let d = decide_one(
        &Settings::default(),
        "CREATE INDEX orders_idx ON orders (customer_id)",
        &mut proxy_context(),
    );
    let Plan::Replace(step) = &d[0].plan else {
        panic!("expected a rewrite, got {:?}", d[0].plan);
    };
    assert_eq!(
        step.sql,
        "CREATE INDEX CONCURRENTLY orders_idx ON orders (customer_id)"
    );
    assert_eq!(step.class, Some(Class::Online));
    assert_eq!(d[0].class, Some(Class::Online));
    assert_eq!(
        step.builds_indexes,
        Some(IndexBuild::OnTable(relation(None, "orders")))
    );
    assert_eq!(
        d[0].rules,
        vec![(RuleId::CreateIndexNonconcurrent, Action::Rewrite)]
    );
}

#[test]
fn create_index_inside_a_transaction_falls_back() {
    let mut ctx = proxy_context();
    ctx.in_transaction = true;
    let d = decide_one(&Settings::default(), "CREATE INDEX i ON t (a)", &mut ctx);
    let Plan::Reject(m) = &d[0].plan else {
        panic!("expected the reject fallback, got {:?}", d[0].plan);
    };
    assert_eq!(m.code, reply::sqlstate::POLICY_REJECTED);
    assert!(
        m.text()
            .starts_with("ddlgate: create-index-nonconcurrent: "),
        "{}",
        m.message
    );
    assert!(m.message.ends_with("(no automatic rewrite is valid here)"));

    let warn = settings("rewrite_fallback = \"warn\"\n");
    let mut ctx = proxy_context();
    ctx.in_transaction = true;
    let d = decide_one(&warn, "CREATE INDEX i ON t (a)", &mut ctx);
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(d[0].class, Some(Class::Brief));
    assert_eq!(d[0].notices.len(), 1);
    assert!(
        d[0].notices[0]
            .text()
            .starts_with("ddlgate: create-index-nonconcurrent: ")
    );
}

#[test]
fn several_statements_in_one_query_are_never_rewritten() {
    let d = decide_one(
        &Settings::default(),
        "SELECT 1; CREATE INDEX i ON t (a)",
        &mut proxy_context(),
    );
    assert_eq!(d.len(), 2);
    assert!(matches!(d[1].plan, Plan::Reject(_)), "{:?}", d[1].plan);
}

#[test]
fn check_constraint_becomes_not_valid_then_validate() {
    let d = decide_one(
        &Settings::default(),
        "ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0)",
        &mut proxy_context(),
    );
    let Plan::Steps(steps) = &d[0].plan else {
        panic!("expected steps, got {:?}", d[0].plan);
    };
    assert_eq!(steps.len(), 2);
    assert_eq!(
        steps[0].sql,
        "ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0) NOT VALID"
    );
    assert_eq!(steps[0].class, Some(Class::Brief));
    assert_eq!(
        steps[0].undo,
        Some(Undo::DropConstraint {
            table: relation(None, "t"),
            name: "positive".into()
        })
    );
    assert_eq!(steps[1].sql, "ALTER TABLE t VALIDATE CONSTRAINT positive");
    assert_eq!(steps[1].class, Some(Class::Online));
    assert_eq!(steps[1].undo, None);
}

#[test]
fn multi_step_rewrites_need_autocommit() {
    let mut ctx = proxy_context();
    ctx.in_transaction = true;
    let d = decide_one(
        &Settings::default(),
        "ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0)",
        &mut ctx,
    );
    assert!(matches!(d[0].plan, Plan::Reject(_)), "{:?}", d[0].plan);
}

#[test]
fn unnamed_foreign_key_is_not_rewritten_because_its_name_is_a_guess() {
    let d = decide_one(
        &Settings::default(),
        "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u (id)",
        &mut proxy_context(),
    );
    let Plan::Reject(m) = &d[0].plan else {
        panic!("expected the fallback, got {:?}", d[0].plan);
    };
    assert!(m.hint.as_deref().unwrap_or_default().contains("NOT VALID"));
}

#[test]
fn unique_constraint_builds_its_index_concurrently_then_attaches_it() {
    let d = decide_one(
        &Settings::default(),
        "ALTER TABLE s.t ADD CONSTRAINT t_a_key UNIQUE (a)",
        &mut proxy_context(),
    );
    let Plan::Steps(steps) = &d[0].plan else {
        panic!("expected steps, got {:?}", d[0].plan);
    };
    assert!(steps[0].sql.starts_with("CREATE UNIQUE INDEX CONCURRENTLY"));
    assert_eq!(
        steps[0].builds_indexes,
        Some(IndexBuild::OnTable(relation(Some("s"), "t")))
    );
    // If attaching fails, the index goes again: the migration can then be run once more.
    assert_eq!(
        steps[0].undo,
        Some(Undo::DropIndex(relation(Some("s"), "t_a_key")))
    );
    assert!(steps[1].sql.contains("USING INDEX"));
    assert_eq!(steps[1].builds_indexes, None);
}

#[test]
fn rejection_names_the_rule_the_lock_and_the_safe_sql() {
    let d = decide_one(
        &Settings::default(),
        "ALTER TABLE users RENAME COLUMN name TO full_name",
        &mut proxy_context(),
    );
    let Plan::Reject(m) = &d[0].plan else {
        panic!("expected a rejection, got {:?}", d[0].plan);
    };
    assert!(
        m.text().starts_with("ddlgate: rename-column: "),
        "{}",
        m.message
    );
    assert!(m.detail.as_deref().unwrap_or_default().contains("users"));
    assert!(m.hint.is_some());
}

#[test]
fn overrides_follow_the_policy() {
    let sql = "-- ddlgate:allow rename-column reason=\"expand done in #812\"\nALTER TABLE users RENAME COLUMN name TO full_name";
    let d = decide_one(&Settings::default(), sql, &mut proxy_context());
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(
        d[0].overrides,
        vec![(RuleId::RenameColumn, Some("expand done in #812".to_owned()))]
    );

    let no_reason =
        "-- ddlgate:allow rename-column\nALTER TABLE users RENAME COLUMN name TO full_name";
    let d = decide_one(&Settings::default(), no_reason, &mut proxy_context());
    assert!(matches!(d[0].plan, Plan::Reject(_)));
    assert!(d[0].notices[0].message.contains("requires a reason"));

    let on = settings("overrides = \"on\"\n");
    let d = decide_one(&on, no_reason, &mut proxy_context());
    assert_eq!(d[0].plan, Plan::Run);

    let off = settings("overrides = \"off\"\n");
    let d = decide_one(&off, sql, &mut proxy_context());
    assert!(matches!(d[0].plan, Plan::Reject(_)));
}

#[test]
fn dynamic_ddl_warns_and_gets_brief_timeouts() {
    let d = decide_one(
        &Settings::default(),
        "DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN c int', current_user); END $$",
        &mut proxy_context(),
    );
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(d[0].class, Some(Class::Brief));
    assert!(
        d[0].notices
            .iter()
            .any(|n| n.text().starts_with("ddlgate: dynamic-ddl: "))
    );
}

#[test]
fn unparsable_statements_are_left_to_a_server_that_shares_the_grammar() {
    let d = decide_one(&Settings::default(), "SELEC 1", &mut proxy_context());
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(d[0].kind, "unparsable");

    let mut newer = proxy_context();
    newer.server_major = GRAMMAR_MAJOR + 1;
    let d = decide_one(&Settings::default(), "SELEC 1", &mut newer);
    let Plan::Reject(m) = &d[0].plan else {
        panic!("expected a rejection, got {:?}", d[0].plan);
    };
    assert_eq!(m.code, reply::sqlstate::SYNTAX_ERROR);

    let allow = settings("unparsable = \"warn\"\n");
    let d = decide_one(&allow, "SELEC 1", &mut newer);
    assert_eq!(d[0].plan, Plan::Run);
    assert_eq!(d[0].class, Some(Class::Brief));
    assert_eq!(d[0].notices.len(), 1);
}

#[test]
fn the_raising_statement_is_one_do_block_that_keeps_the_words() {
    let m = reply::Report {
        severity: reply::Severity::Error,
        code: reply::sqlstate::POLICY_REJECTED,
        message: "rename-column: it's unsafe".to_owned(),
        detail: Some("Locks users".to_owned()),
        hint: Some("ALTER TABLE users ADD COLUMN full_name text".to_owned()),
    };
    let sql = raising_statement(&m);
    let parsed = parse::parse_script(&sql, Options::default());
    assert_eq!(parsed.len(), 1);
    assert!(matches!(parsed[0].tree, Ok(NodeEnum::DoStmt(_))));
    assert!(sql.contains("'ddlgate: rename-column: it''s unsafe'"));

    let tricky = reply::Report {
        message: "x: $ddlgate$; DROP TABLE t; --".to_owned(),
        ..m
    };
    let parsed = parse::parse_script(&raising_statement(&tricky), Options::default());
    assert_eq!(parsed.len(), 1);
}
