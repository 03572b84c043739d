//! The audit trail: one JSON line per governed statement and per session start and end,
//! hash-chained so that an edited, inserted or deleted line is found by `ddlgate audit verify`.
//!
//! Sessions hand their records to one writer thread ([`Auditor`]), the single place where
//! records get their `seq` and `prev` (the SHA-256 of the previous line, hex), so the chain is
//! the order in which records were written, across sessions and across rotated files. A
//! session that must not answer its client before the record is written waits for the
//! writer's acknowledgement, which comes after the line is written and, with `fsync = always`,
//! on disk. Several records that arrive together are written and synced together (group
//! commit).
//!
//! Sinks sit behind [`Sink`]: [`file::FileSink`] (append, fsync policy, rotation by size or
//! time that carries the chain into the next file) and [`StdoutSink`] (for log shippers).

pub(crate) mod chain;
pub(crate) mod file;
pub(crate) mod record;
pub(crate) mod table;
pub(crate) mod verify;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tracing::{error, info, warn};

pub(crate) use record::{Outcome, Record};

/// Where audit lines go.
pub(crate) trait Sink: Send {
    /// Appends one line (without its newline).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (or at least handed on).
    fn sync(&mut self) -> io::Result<()>;
    /// Where the lines go, for messages.
    fn describe(&self) -> String;
    /// After a successful `write_line`: a part of the sink that missed the line (see
    /// [`table::Tee`]).
    fn take_missed(&mut self) -> Option<String> {
        None
    }
}

/// When written lines are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before each record is acknowledged (records written together share one fsync).
    #[default]
    Always,
    /// About once a second; records are acknowledged once written.
    Interval,
    /// Never by ddlgate; the operating system decides.
    Never,
}

/// Records written together, with the channel to acknowledge them on.
#[derive(Debug)]
struct Job {
    records: Vec<Record>,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

/// The handle sessions use to write records.
#[derive(Debug, Clone)]
pub(crate) struct Auditor {
    jobs: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
    /// Refuse DDL when records cannot be written.
    pub fail_closed: bool,
}

impl Auditor {
    /// Starts the writer thread over `sink`, continuing the chain from `resume`; with an
    /// `anchor` file, the chain's head is appended to it after each sync.
    pub(crate) fn start(
        sink: Box<dyn Sink>,
        resume: chain::ChainState,
        fsync: Fsync,
        fail_closed: bool,
        anchor: Option<std::path::PathBuf>,
    ) -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let healthy = Arc::new(AtomicBool::new(true));
        let errors = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let run = format!(
            "{:016x}",
            getrandom::u64().unwrap_or_else(|_| std::process::id().into())
        );
        let anchored = resume.seq;
        let writer = Writer {
            run,
            anchor,
            anchored,
            queued: Arc::clone(&queued),
            sink,
            chain: resume,
            fsync,
            healthy: Arc::clone(&healthy),
            errors: Arc::clone(&errors),
        };
        std::thread::Builder::new()
            .name("ddlgate-audit".into())
            .spawn(move || writer.run(&rx))?;
        Ok(Self {
            jobs,
            healthy,
            errors,
            queued,
            fail_closed,
        })
    }

    /// Queues a record; nobody waits for it.
    pub(crate) fn record(&self, record: Record) {
        let job = Job {
            records: vec![record],
            ack: None,
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(job).is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            error!("the audit writer has stopped; a record was lost");
        }
    }

    /// Queues records; the receiver says when all are written (or why not).
    pub(crate) fn record_and_wait(
        &self,
        records: Vec<Record>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queued
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let job = Job {
            records,
            ack: Some(tx),
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(ack) = job.ack {
                let _ = ack.send(Err("the audit writer has stopped".to_owned()));
            }
        }
        rx
    }

    /// Whether the last write succeeded.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records handed over and not written yet.
    pub(crate) fn queue_depth(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records that could not be written since start.
    pub(crate) fn write_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The writer thread's state.
struct Writer {
    /// This process's run id, in every record.
    run: String,
    /// Where the chain's head is appended after each sync.
    anchor: Option<std::path::PathBuf>,
    /// `seq` of the head last written to the anchor.
    anchored: u64,
    queued: Arc<AtomicU64>,
    sink: Box<dyn Sink>,
    chain: chain::ChainState,
    fsync: Fsync,
    healthy: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
}

/// The most records written between two syncs.
const MAX_BATCH: usize = 256;
/// How often `fsync = interval` syncs.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        let mut last_sync = std::time::Instant::now();
        let mut unsynced = false;
        loop {
            let first = if unsynced && self.fsync == Fsync::Interval {
                match rx.recv_timeout(SYNC_INTERVAL) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let _ = self.sync_now();
                        unsynced = false;
                        last_sync = std::time::Instant::now();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            for job in batch {
                let mut failure = None;
                self.queued
                    .fetch_sub(job.records.len() as u64, Ordering::Relaxed);
                for record in job.records {
                    if let Err(e) = self.write(record) {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        failure.get_or_insert_with(|| {
                            format!(
                                "cannot write the audit record to {}: {e}",
                                self.sink.describe()
                            )
                        });
                    }
                }
                if let Some(ack) = job.ack {
                    acks.push((ack, failure));
                }
            }
            let synced = match self.fsync {
                Fsync::Always => self.sync_now(),
                Fsync::Interval if last_sync.elapsed() >= SYNC_INTERVAL => {
                    last_sync = std::time::Instant::now();
                    unsynced = false;
                    self.sync_now()
                }
                Fsync::Interval => {
                    unsynced = true;
                    Ok(())
                }
                Fsync::Never => Ok(()),
            };
            for (ack, failed) in acks {
                let result = match (failed, &synced) {
                    (Some(e), _) => Err(e),
                    (None, Err(e)) => Err(e.clone()),
                    (None, Ok(())) => Ok(()),
                };
                let _ = ack.send(result);
            }
        }
        let _ = self.sync_now();
        info!(seq = self.chain.seq, hash = %self.chain.prev, run = %self.run, "audit chain head at shutdown");
    }

    fn write(&mut self, mut record: Record) -> io::Result<()> {
        record.run.clone_from(&self.run);
        let line = self.chain.seal(&mut record)?;
        match self.sink.write_line(&line) {
            Ok(()) => {
                self.chain.advance(&line, record.seq);
                if let Some(missed) = self.sink.take_missed() {
                    self.healthy.store(false, Ordering::Relaxed);
                    warn!(error = %missed, "audit record missed by one of its sinks");
                    return Err(io::Error::other(missed));
                }
                self.healthy.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                warn!(error = %e, sink = %self.sink.describe(), "audit record not written");
                Err(e)
            }
        }
    }

    fn sync_now(&mut self) -> Result<(), String> {
        self.sink.sync().map_err(|e| {
            self.healthy.store(false, Ordering::Relaxed);
            self.errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, sink = %self.sink.describe(), "audit log could not be synced");
            format!("cannot sync the audit log {}: {e}", self.sink.describe())
        })?;
        self.write_anchor()
    }

    /// Appends the chain's head (seq, hash of the last line, run, time) to the anchor file,
    /// when it moved: what `audit verify --anchor` compares the trail's end with.
    fn write_anchor(&mut self) -> Result<(), String> {
        let Some(path) = &self.anchor else {
            return Ok(());
        };
        if self.chain.seq == self.anchored {
            return Ok(());
        }
        let line = format!(
            "{{\"seq\":{},\"hash\":\"{}\",\"run\":\"{}\",\"ts\":\"{}\"}}\n",
            self.chain.seq,
            self.chain.prev,
            self.run,
            record::now()
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            });
        match written {
            Ok(()) => {
                self.anchored = self.chain.seq;
                Ok(())
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                self.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, anchor = %path.display(), "audit anchor could not be written");
                Err(format!(
                    "cannot write the audit anchor {}: {e}",
                    path.display()
                ))
            }
        }
    }
}

/// Audit lines on standard output, for a log shipper.
#[derive(Debug, Default)]
pub(crate) struct StdoutSink;

impl Sink for StdoutSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(line)?;
        out.write_all(b"\n")
    }

    fn sync(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }

    fn describe(&self) -> String {
        "standard output".to_owned()
    }
}
