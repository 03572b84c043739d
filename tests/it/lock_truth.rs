//! Lock truth: the lock modes the engine claims for every rule's example statements are the
//! ones PostgreSQL takes.
//!
//! Each example runs in a fresh database after its rule's setup. Each statement is measured on
//! its own: inside a transaction when PostgreSQL allows it (run it, read `pg_locks` for this
//! backend, roll back), otherwise while it waits behind another session's ACCESS EXCLUSIVE lock
//! on each relation it claims to lock (the mode it requests shows in `pg_locks`, not yet
//! granted). Then it is applied for real, so the next statement sees its effect. Claims that a
//! statement cannot run inside a transaction block are checked too (SQLSTATE 25001), and no
//! pre-existing table may get a lock that blocks writes unless the engine claims it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ddlgate::internals::analysis::LockMode;
use ddlgate::internals::analysis::RuleId;
use ddlgate::internals::analysis::{ClassifyOptions, Facts, LockTarget, classify};
use ddlgate::internals::analysis::{Options, parse_script};

use crate::support::pg::{PgServer, SUPERUSER, connect};

async fn own_locks(client: &tokio_postgres::Client) -> HashMap<u32, LockMode> {
    let rows = client
        .query(
            "SELECT l.relation, l.mode FROM pg_locks l
              WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted",
            &[],
        )
        .await
        .unwrap();
    let mut out: HashMap<u32, LockMode> = HashMap::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let mode = LockMode::from_pg_locks_name(row.get::<_, String>(1).as_str()).unwrap();
        let entry = out.entry(oid).or_insert(mode);
        *entry = (*entry).max(mode);
    }
    out
}

/// Pre-existing tables, views and materialized views of the database: oid and name.
async fn existing_tables(client: &tokio_postgres::Client) -> Vec<(u32, String)> {
    client
        .query(
            "SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'm', 'v')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A claimed target resolved in the database.
#[derive(Debug, Clone)]
struct Resolved {
    oid: u32,
    schema: String,
    name: String,
    is_index: bool,
}

/// The concrete relation a claimed target names, resolved in the database.
async fn resolve(client: &tokio_postgres::Client, target: &LockTarget) -> Option<Resolved> {
    let (name, table_of_index) = match target {
        LockTarget::Relation(r) => (r, false),
        LockTarget::TableOfIndex(i) => (i, true),
        LockTarget::Unnamed(_) => return None,
    };
    let schema = name.schema.clone();
    let sql = if table_of_index {
        "SELECT t.oid, tn.nspname::text, t.relname::text, false FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
           JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
          WHERE i.relname = $1 AND (($2::text IS NULL AND pg_table_is_visible(i.oid)) OR n.nspname = $2)"
    } else {
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind IN ('i', 'I')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relname = $1 AND (($2::text IS NULL AND pg_table_is_visible(c.oid)) OR n.nspname = $2)"
    };
    client
        .query_opt(sql, &[&name.name, &schema])
        .await
        .unwrap()
        .map(|r| Resolved {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            is_index: r.get(3),
        })
}

struct Case {
    rule: RuleId,
    example: &'static str,
    /// The rule says PostgreSQL refuses this statement.
    refused: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_lock_modes_are_what_postgres_takes() {
    let pg = PgServer::shared();
    let admin = pg.connect(SUPERUSER).await;
    let mut cases = Vec::new();
    for rule in RuleId::ALL {
        let examples = rule.meta().examples;
        if pg.major < examples.min_server_major {
            continue;
        }
        for sql in examples.flagged {
            cases.push(Case {
                rule: *rule,
                example: sql,
                refused: examples.refused_by_postgres,
            });
        }
        for sql in examples.safe {
            cases.push(Case {
                rule: *rule,
                example: sql,
                refused: false,
            });
        }
    }
    let mut failures = Vec::new();
    let mut measured = 0;
    for (n, case) in cases.iter().enumerate() {
        let db = format!("lock_truth_{n}");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let conn = pg
            .conn_str(SUPERUSER)
            .replace("dbname=app", &format!("dbname={db}"));
        let client = connect(&conn).await;
        let setup = case.rule.meta().examples.setup;
        client
            .batch_execute(setup)
            .await
            .unwrap_or_else(|e| panic!("{}: setup fails: {e:?}", case.rule));
        if case.refused {
            if client.batch_execute(case.example).await.is_ok() {
                failures.push(format!(
                    "{} example {:?}: the rule says PostgreSQL refuses it, PostgreSQL {} runs it",
                    case.rule, case.example, pg.major
                ));
            }
            drop(client);
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await
                .unwrap();
            continue;
        }
        for parsed in parse_script(case.example, Options::default()) {
            let text = &case.example[parsed.span.clone()];
            let node = parsed.tree.unwrap();
            let facts = classify(
                &node,
                ClassifyOptions {
                    server_major: pg.major,
                },
            );
            if facts.tx_control.is_some() {
                continue;
            }
            let label = format!(
                "{} example {:?}, statement {text:?}",
                case.rule, case.example
            );
            let result = if facts.allowed_in_transaction {
                measure_in_transaction(&client, text, &facts).await
            } else {
                measure_while_blocked(&conn, &client, text, &facts).await
            };
            match result {
                Ok(count) => measured += count,
                Err(problem) => failures.push(format!("{label}: {problem}")),
            }
            if let Err(e) = client.batch_execute(text).await {
                failures.push(format!(
                    "{label}: does not run on PostgreSQL {}: {e:?}",
                    pg.major
                ));
            }
        }
        drop(client);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} lock claim(s) wrong on PostgreSQL {}:\n{}",
        failures.len(),
        pg.major,
        failures.join("\n")
    );
    assert!(measured >= 20, "only {measured} lock claims were measured");
}

/// Runs the statement in a transaction, compares the locks it holds with the claims, rolls
/// back. Returns how many claims were checked.
async fn measure_in_transaction(
    client: &tokio_postgres::Client,
    sql: &str,
    facts: &Facts,
) -> Result<usize, String> {
    let before = existing_tables(client).await;
    let mut claims = Vec::new();
    for lock in &facts.locks {
        if let Some(rel) = resolve(client, &lock.target).await {
            claims.push((rel, lock.mode, lock.target.clone()));
        }
    }
    client.batch_execute("BEGIN").await.unwrap();
    if let Err(e) = client.batch_execute(sql).await {
        client.batch_execute("ROLLBACK").await.unwrap();
        return Err(format!("fails in a transaction: {e}"));
    }
    let held = own_locks(client).await;
    client.batch_execute("ROLLBACK").await.unwrap();
    let mut problems = Vec::new();
    for (rel, mode, target) in &claims {
        let actual = held.get(&rel.oid).copied();
        if actual != Some(*mode) {
            problems.push(format!(
                "claims {mode} on {target}, PostgreSQL holds {actual:?}"
            ));
        }
    }
    if !facts.dynamic {
        // Tables the statement does not name are covered by an "unnamed" claim ("every table
        // with a column of this domain") of at least their mode, or, for partitions and
        // inheritance children, by the claim on their parent.
        let unnamed_cover = facts
            .locks
            .iter()
            .filter(|l| matches!(l.target, LockTarget::Unnamed(_)))
            .map(|l| l.mode)
            .max();
        for (oid, name) in &before {
            let claimed = claims.iter().any(|(rel, _, _)| rel.oid == *oid);
            let Some(mode) = held.get(oid).copied() else {
                continue;
            };
            if claimed || !mode.blocks_writes() || unnamed_cover.is_some_and(|m| m >= mode) {
                continue;
            }
            let parents: Vec<u32> = client
                .query(
                    "SELECT inhparent FROM pg_inherits WHERE inhrelid = $1",
                    &[oid],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let covered_by_parent = claims
                .iter()
                .any(|(rel, claimed_mode, _)| parents.contains(&rel.oid) && *claimed_mode >= mode);
            if !covered_by_parent {
                problems.push(format!(
                    "PostgreSQL also locks {name} in {mode} mode, which is not claimed"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(claims.len())
    } else {
        Err(problems.join("; "))
    }
}

/// For statements that refuse transaction blocks: checks the refusal, then observes the mode
/// each claimed lock is requested in while another session holds ACCESS EXCLUSIVE on it.
async fn measure_while_blocked(
    conn: &str,
    client: &tokio_postgres::Client,
    sql: &str,
    facts: &Facts,
) -> Result<usize, String> {
    client.batch_execute("BEGIN").await.unwrap();
    let refused = client.batch_execute(sql).await;
    client.batch_execute("ROLLBACK").await.unwrap();
    match refused {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION) => {}
        other => {
            return Err(format!(
                "claimed to refuse transaction blocks, but in one it gave {other:?}"
            ));
        }
    }
    let mut checked = 0;
    for lock in &facts.locks {
        let Some(Resolved {
            oid,
            schema,
            name,
            is_index,
        }) = resolve(client, &lock.target).await
        else {
            continue;
        };
        // LOCK TABLE refuses indexes; their own lock is measured where a transaction allows.
        if is_index {
            continue;
        }
        // The weakest mode that conflicts with the claim: weaker, passing locks the statement
        // takes first (VACUUM looks the table up under ACCESS SHARE) do not stop it early, and
        // a statement asking for less than claimed is never blocked, which is reported.
        let blocking_mode = LockMode::ALL
            .into_iter()
            .find(|m| m.conflicts_with(lock.mode))
            .unwrap_or(LockMode::AccessExclusive);
        let blocker = connect(conn).await;
        blocker
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {}.{} IN {} MODE",
                quote(&schema),
                quote(&name),
                blocking_mode.sql_name()
            ))
            .await
            .unwrap();
        let runner = connect(conn).await;
        let pid: i32 = runner
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let statement = sql.to_owned();
        let running = tokio::spawn(async move { runner.batch_execute(&statement).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        let requested = loop {
            let row = client
                .query_opt(
                    "SELECT l.mode FROM pg_locks l
                      WHERE l.pid = $1 AND NOT l.granted AND l.locktype = 'relation' AND l.relation = $2",
                    &[&pid, &oid],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                break LockMode::from_pg_locks_name(row.get::<_, String>(0).as_str());
            }
            if Instant::now() > deadline || running.is_finished() {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        client
            .query("SELECT pg_cancel_backend($1)", &[&pid])
            .await
            .unwrap();
        let _ = running.await;
        blocker.batch_execute("ROLLBACK").await.unwrap();
        if requested != Some(lock.mode) {
            return Err(format!(
                "claims {} on {}, PostgreSQL requested {requested:?}",
                lock.mode, lock.target
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

fn quote(ident: &str) -> String {
    ddlgate::internals::analysis::quote_ident(ident)
}
