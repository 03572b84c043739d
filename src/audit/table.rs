//! The Postgres table sink: audit lines inserted into a table (its own DSN and role), so many
//! ddlgate instances share one queryable trail.
//!
//! Lines go through a bounded in-memory queue to a thread of their own that inserts them in
//! batches, in order, and retries a failed batch (after reconnecting) until it is written, so
//! the table gets every record of the chain without gaps once the server is reachable again.
//! A full queue is a write error for the audit writer: with `audit_fail_closed`, DDL is then
//! refused, as for a full disk. Queued lines live in memory only: configure the file sink as
//! well where a crash must not lose records.
//!
//! The table is created if missing:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS ddlgate_audit (
//!     instance text        NOT NULL,  -- which ddlgate wrote it (its own chain)
//!     seq      bigint      NOT NULL,
//!     ts       timestamptz NOT NULL,
//!     event    text        NOT NULL,
//!     record   jsonb       NOT NULL,  -- the record, for queries
//!     line     text        NOT NULL,  -- the exact line, for `ddlgate audit verify`
//!     PRIMARY KEY (instance, seq)
//! );
//! ```
//!
//! Connections use no TLS yet (`sslmode` other than `disable`/`prefer` is refused at start-up):
//! run the audit database on a trusted network or a local socket proxy.

use std::io;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use tracing::{info, warn};

use super::Sink;
use super::chain::ChainState;

/// How long to wait between attempts to reach the audit database.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// The most lines inserted by one statement.
const BATCH: usize = 200;

/// Where the table sink writes.
#[derive(Clone, PartialEq, Eq)]
pub struct TableTarget {
    /// libpq-style connection string (`host=… user=… password=… dbname=…`).
    pub dsn: String,
    /// The table (optionally schema-qualified), created if missing.
    pub table: String,
    /// This instance's name in the `instance` column.
    pub instance: String,
    /// Lines that may wait for the database.
    pub queue: usize,
}

impl std::fmt::Debug for TableTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableTarget")
            .field("dsn", &crate::config::dsn::redact(&self.dsn))
            .field("table", &self.table)
            .field("instance", &self.instance)
            .field("queue", &self.queue)
            .finish()
    }
}

/// Queues lines for the inserting thread.
#[derive(Debug)]
pub(crate) struct TableSink {
    lines: SyncSender<Vec<u8>>,
    describe: String,
    queue: usize,
}

impl TableSink {
    /// Starts the inserting thread; with `resume`, first reads where this instance's chain
    /// stands in the table (when the table is the only sink).
    pub(crate) fn start(
        target: &TableTarget,
        resume: bool,
    ) -> Result<(Self, Option<ChainState>), String> {
        let config: tokio_postgres::Config = target
            .dsn
            .parse()
            .map_err(|e| format!("invalid audit_table_dsn: {e}"))?;
        if matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        ) {
            return Err("audit_table_dsn: sslmode=require is not supported yet; use sslmode=disable on a trusted network".to_owned());
        }
        let table = quote_table(&target.table)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(target.queue);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Option<ChainState>, String>>();
        let inserter = Inserter {
            config,
            table: table.clone(),
            instance: target.instance.clone(),
        };
        std::thread::Builder::new()
            .name("ddlgate-audit-table".into())
            .spawn(move || inserter.run(&rx, resume, &ready_tx))
            .map_err(|e| format!("cannot start the audit table thread: {e}"))?;
        let chain = if resume {
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "the audit table did not answer within 30s at start-up".to_owned())??
        } else {
            None
        };
        Ok((
            Self {
                lines: tx,
                describe: format!("table {table} ({})", target.instance),
                queue: target.queue,
            },
            chain,
        ))
    }
}

impl Sink for TableSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self.lines.try_send(line.to_vec()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(io::Error::other(format!(
                "{} queued records wait for the audit database, the queue is full",
                self.queue
            ))),
            Err(TrySendError::Disconnected(_)) => {
                Err(io::Error::other("the audit table thread has stopped"))
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// `name` or `schema.name`, each part quoted.
fn quote_table(table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid audit_table {table:?}: expected name or schema.name"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join("."))
}

struct Inserter {
    config: tokio_postgres::Config,
    table: String,
    instance: String,
}

impl Inserter {
    fn run(
        self,
        rx: &mpsc::Receiver<Vec<u8>>,
        resume: bool,
        ready: &mpsc::Sender<Result<Option<ChainState>, String>>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start the audit table runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async {
            let mut client = None;
            if resume {
                match self.connect().await {
                    Ok(c) => {
                        let chain = self.chain_state(&c).await;
                        let _ = ready.send(chain);
                        client = Some(c);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!(
                            "cannot reach the audit table to continue its chain: {e}"
                        )));
                        return;
                    }
                }
            }
            // Lines taken from the queue and not yet inserted, oldest first.
            let mut pending: Vec<String> = Vec::new();
            loop {
                if pending.is_empty() {
                    match rx.recv() {
                        Ok(line) => pending.push(String::from_utf8_lossy(&line).into_owned()),
                        Err(_) => return,
                    }
                }
                while pending.len() < BATCH {
                    match rx.try_recv() {
                        Ok(line) => pending.push(String::from_utf8_lossy(&line).into_owned()),
                        Err(_) => break,
                    }
                }
                let c = match client.take() {
                    Some(c) => c,
                    None => match self.connect().await {
                        Ok(c) => c,
                        Err(e) => {
                            warn!(error = %e, queued = pending.len(), "audit table unreachable; retrying");
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                    },
                };
                let sql = format!(
                    "INSERT INTO {} (instance, seq, ts, event, record, line) \
                     SELECT $1, (l::jsonb->>'seq')::bigint, (l::jsonb->>'ts')::timestamptz, l::jsonb->>'event', l::jsonb, l \
                     FROM unnest($2::text[]) WITH ORDINALITY AS u(l, n) ORDER BY n \
                     ON CONFLICT (instance, seq) DO NOTHING",
                    self.table
                );
                match c.execute(&sql, &[&self.instance, &pending]).await {
                    Ok(_) => {
                        pending.clear();
                        client = Some(c);
                    }
                    Err(e) => {
                        warn!(error = %e, queued = pending.len(), "audit records not inserted yet; retrying");
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                    }
                }
            }
        });
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, String> {
        let (client, connection) = self
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "audit table connection ended");
            }
        });
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (instance text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL, event text NOT NULL, record jsonb NOT NULL, line text NOT NULL, PRIMARY KEY (instance, seq))",
                self.table
            ))
            .await
            .map_err(|e| format!("cannot create the audit table {}: {e}", self.table))?;
        info!(table = %self.table, "audit table connected");
        Ok(client)
    }

    async fn chain_state(&self, c: &tokio_postgres::Client) -> Result<Option<ChainState>, String> {
        let row = c
            .query_opt(
                &format!(
                    "SELECT line FROM {} WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
                    self.table
                ),
                &[&self.instance],
            )
            .await
            .map_err(|e| format!("cannot read the audit table: {e}"))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let line: String = row.get(0);
                ChainState::after_line(line.as_bytes()).map(Some)
            }
        }
    }
}

/// Writes every line to each of several sinks. A line that reached at least one sink is in
/// the chain (its `seq` is used); the sinks that missed it are reported as a failure.
pub(crate) struct Tee {
    sinks: Vec<Box<dyn Sink>>,
    missed: Option<String>,
}

impl Tee {
    /// Several sinks as one.
    pub(crate) fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self {
            sinks,
            missed: None,
        }
    }
}

impl Sink for Tee {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut written = false;
        let mut first_error = None;
        for sink in &mut self.sinks {
            match sink.write_line(line) {
                Ok(()) => written = true,
                Err(e) => {
                    first_error.get_or_insert(format!("{}: {e}", sink.describe()));
                }
            }
        }
        match (written, first_error) {
            (_, None) => Ok(()),
            (true, Some(e)) => {
                self.missed = Some(e);
                Ok(())
            }
            (false, Some(e)) => Err(io::Error::other(e)),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut first_error = None;
        for sink in &mut self.sinks {
            if let Err(e) = sink.sync() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn describe(&self) -> String {
        self.sinks
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn take_missed(&mut self) -> Option<String> {
        self.missed.take()
    }
}
