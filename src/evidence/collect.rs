//! `serve`'s sampler: every `evidence_interval` it reads `pg_stat_statements` on its own
//! connection (`evidence_dsn`) and writes what changed to the evidence tables ([`super::store`]),
//! with the statements observed through ddlgate itself when it observes them
//! ([`super::observe`]), deleting what is older than `evidence_retention` about once an hour.
//!
//! It never stops the proxy: an unreachable server, a missing extension or a failed sample
//! is logged (a warning the first time, then at each change of state) and tried again at the
//! next interval; the contract rules meanwhile fall back as without evidence (their notice
//! says why). A restarted sampler continues from the counts last written, so a restart is not
//! taken for every statement running anew.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::store::{Source, Store};
use super::{EvidenceError, Key};
use crate::pgclient::Database;

/// How often old samples are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The sampler's settings (`serve`'s `evidence_*` keys).
#[derive(Debug, Clone)]
pub(crate) struct Sampling {
    /// Its connection string, as given (shown redacted).
    pub dsn: String,
    /// Its connection.
    pub database: Database,
    /// Where samples are kept.
    pub store: Store,
    /// Time between samples.
    pub interval: Duration,
    /// How long samples are kept.
    pub retention: Duration,
    /// The counters of statements observed through ddlgate, when it observes them
    /// (`evidence_observe`).
    pub observer: Option<std::sync::Arc<super::observe::Observer>>,
}

/// Samples until `stop` fires.
pub(crate) async fn run(sampling: Sampling, stop: CancellationToken) {
    let mut last_error: Option<String> = None;
    let mut previous: Option<HashMap<Key, i64>> = None;
    let mut client: Option<(tokio_postgres::Client, Option<Source>)> = None;
    let mut pruned: Option<Instant> = None;
    let mut ticks = tokio::time::interval(sampling.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let result = sample_once(&sampling, &mut client, &mut previous, &mut pruned).await;
        match result {
            Ok(changed) => {
                if last_error.take().is_some() {
                    info!("evidence sampling works again");
                }
                debug!(changed, "pg_stat_statements sampled");
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, "evidence sampling failed; trying again at the next interval");
                }
                last_error = Some(text);
                // Start over on a new connection; the counts are re-read from the store.
                client = None;
                previous = None;
            }
        }
    }
}

async fn sample_once(
    sampling: &Sampling,
    client: &mut Option<(tokio_postgres::Client, Option<Source>)>,
    previous: &mut Option<HashMap<Key, i64>>,
    pruned: &mut Option<Instant>,
) -> Result<usize, EvidenceError> {
    if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let c = sampling.database.connect().await?;
        sampling.store.prepare(&c).await?;
        *client = Some((c, None));
        *previous = None;
    }
    let Some((c, source)) = client.as_mut() else {
        return Ok(0);
    };
    // What ddlgate observed itself is written whether or not pg_stat_statements is there.
    if let Some(observer) = &sampling.observer {
        let (observed, missed) = observer.take();
        if missed > 0 {
            warn!(
                missed,
                kept = super::observe::MAX_TEXTS,
                "more distinct statement texts ran through ddlgate than it keeps between two samples; the calls of the others were not counted"
            );
        }
        if let Err(e) = sampling.store.write_observed(&*c, &observed).await {
            warn!(error = %e, texts = observed.len(), "the statements observed in this interval could not be written and are lost");
            return Err(e);
        }
    }
    if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
        let deleted = sampling.store.prune(&*c, sampling.retention).await?;
        debug!(deleted, "old evidence samples deleted");
        *pruned = Some(Instant::now());
    }
    if source.is_none() {
        *source = Some(Source::find(&*c).await?);
    }
    let Some(source) = source.as_ref() else {
        return Ok(0);
    };
    if previous.is_none() {
        *previous = Some(sampling.store.latest(&*c, None).await?);
    }
    let Some(counts) = previous.as_mut() else {
        return Ok(0);
    };
    let written = sampling.store.sample(c, source, counts).await?;
    Ok(written.changed)
}
