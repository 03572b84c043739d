//! Metrics: every metric ddlgate exports is declared here, once, with its help text
//! ([`CATALOG`]); sessions count through [`Metrics`], a small sink over the `metrics` crate's
//! recorder API. Each server owns its recorder (no process-global state), and
//! [`Metrics::render`] produces the Prometheus text served on `--metrics-listen` (see
//! [`crate::proxy::http`]).

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (seconds).
    Histogram,
}

/// Name, kind and help text of every metric.
pub(crate) const CATALOG: &[(&str, Kind, &str)] = &[
    (
        "ddlgate_connections_active",
        Kind::Gauge,
        "Client sessions open now.",
    ),
    (
        "ddlgate_connections_total",
        Kind::Counter,
        "Client sessions started (authenticated).",
    ),
    (
        "ddlgate_fast_lane_sessions",
        Kind::Gauge,
        "Client sessions served by a worker's fast lane now (steady ordinary traffic).",
    ),
    (
        "ddlgate_fast_lane_handovers_total",
        Kind::Counter,
        "Times a session moved to a fast lane.",
    ),
    (
        "ddlgate_connections_rejected_total",
        Kind::Counter,
        "Connections refused because max_connections was reached.",
    ),
    (
        "ddlgate_upstream_connect_errors_total",
        Kind::Counter,
        "Sessions that could not reach or start on the upstream server.",
    ),
    (
        "ddlgate_statements_total",
        Kind::Counter,
        "Governed statements (DDL, rules that fired, overrides) by kind and the action ddlgate took.",
    ),
    (
        "ddlgate_rejections_total",
        Kind::Counter,
        "Statements refused, by rule.",
    ),
    (
        "ddlgate_rewrites_total",
        Kind::Counter,
        "Statements rewritten into their safe form, by rule.",
    ),
    (
        "ddlgate_lock_timeout_retries_total",
        Kind::Counter,
        "Retries after lock_not_available (55P03).",
    ),
    (
        "ddlgate_ddl_duration_seconds",
        Kind::Histogram,
        "Time from the decision to the answer of governed requests, retries and cleanup included.",
    ),
    (
        "ddlgate_audit_write_errors_total",
        Kind::Counter,
        "Audit records that could not be written (or synced).",
    ),
    (
        "ddlgate_audit_queue_depth",
        Kind::Gauge,
        "Audit records waiting for the audit writer.",
    ),
    (
        "ddlgate_held_long_total",
        Kind::Counter,
        "Times a session held a request or an answer back for 10 s, and again at each doubling, by what it held (pending, planning, governed, backoff, audit).",
    ),
    (
        "ddlgate_bytes_in_total",
        Kind::Counter,
        "Bytes received from clients and forwarded.",
    ),
    (
        "ddlgate_bytes_out_total",
        Kind::Counter,
        "Bytes received from the upstream and forwarded to clients.",
    ),
];

/// Buckets of `ddlgate_ddl_duration_seconds`: from a catalog-only change to a long build.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The counters sessions update, and the recorder behind them.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `ddlgate_connections_active`.
    pub connections_active: Gauge,
    /// `ddlgate_connections_total`.
    pub connections_total: Counter,
    /// `ddlgate_connections_rejected_total`.
    pub connections_rejected: Counter,
    /// `ddlgate_fast_lane_sessions`.
    pub fast_lane_sessions: Gauge,
    /// `ddlgate_fast_lane_handovers_total`.
    pub fast_lane_handovers: Counter,
    /// `ddlgate_upstream_connect_errors_total`.
    pub upstream_connect_errors: Counter,
    /// `ddlgate_lock_timeout_retries_total`.
    pub lock_timeout_retries: Counter,
    /// `ddlgate_ddl_duration_seconds`.
    pub ddl_duration: Histogram,
    /// `ddlgate_audit_write_errors_total` (set from the audit writer's count at each scrape).
    pub audit_write_errors: Counter,
    /// `ddlgate_audit_queue_depth`.
    pub audit_queue_depth: Gauge,
    /// `ddlgate_bytes_in_total`.
    pub bytes_in: Counter,
    /// `ddlgate_bytes_out_total`.
    pub bytes_out: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A recorder with every metric of [`CATALOG`] described and the unlabelled ones created
    /// (so they show 0 before anything happens).
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "ddlgate_ddl_duration_seconds".to_owned(),
                ),
                DURATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, kind, help) in CATALOG {
            let name: metrics::KeyName = (*name).into();
            let help = SharedString::const_str(help);
            match kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram => recorder.describe_histogram(name, Some(Unit::Seconds), help),
            }
        }
        let meta = metadata();
        let counter = |n: &'static str| recorder.register_counter(&Key::from_static_name(n), &meta);
        let gauge = |n: &'static str| recorder.register_gauge(&Key::from_static_name(n), &meta);
        Self {
            connections_active: gauge("ddlgate_connections_active"),
            connections_total: counter("ddlgate_connections_total"),
            connections_rejected: counter("ddlgate_connections_rejected_total"),
            fast_lane_sessions: gauge("ddlgate_fast_lane_sessions"),
            fast_lane_handovers: counter("ddlgate_fast_lane_handovers_total"),
            upstream_connect_errors: counter("ddlgate_upstream_connect_errors_total"),
            lock_timeout_retries: counter("ddlgate_lock_timeout_retries_total"),
            ddl_duration: recorder.register_histogram(
                &Key::from_static_name("ddlgate_ddl_duration_seconds"),
                &meta,
            ),
            audit_write_errors: counter("ddlgate_audit_write_errors_total"),
            audit_queue_depth: gauge("ddlgate_audit_queue_depth"),
            bytes_in: counter("ddlgate_bytes_in_total"),
            bytes_out: counter("ddlgate_bytes_out_total"),
            recorder,
            handle,
        }
    }

    /// Counts a governed statement.
    pub(crate) fn statement(&self, kind: &str, action: &str) {
        self.labelled(
            "ddlgate_statements_total",
            vec![
                Label::new("kind", kind.to_owned()),
                Label::new("action", action.to_owned()),
            ],
        )
        .increment(1);
    }

    /// Counts a report of something held back for long, by what was held.
    pub(crate) fn held_long(&self, holding: &'static str) {
        self.labelled("ddlgate_held_long_total", vec![Label::new("held", holding)])
            .increment(1);
    }

    /// Counts a refusal by rule.
    pub(crate) fn rejection(&self, rule: &str) {
        self.labelled(
            "ddlgate_rejections_total",
            vec![Label::new("rule", rule.to_owned())],
        )
        .increment(1);
    }

    /// Counts a rewrite by rule.
    pub(crate) fn rewrite(&self, rule: &str) {
        self.labelled(
            "ddlgate_rewrites_total",
            vec![Label::new("rule", rule.to_owned())],
        )
        .increment(1);
    }

    fn labelled(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &metadata())
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_help() {
        let m = Metrics::new();
        m.statement("ALTER TABLE", "allow");
        m.rejection("rename-column");
        m.rewrite("create-index-nonconcurrent");
        m.held_long("pending");
        m.ddl_duration.record(0.2);
        let text = m.render();
        for (name, _, help) in CATALOG {
            assert!(
                text.contains(&format!("# HELP {name} {help}")),
                "{name} in\n{text}"
            );
        }
        assert!(
            text.contains("ddlgate_statements_total{kind=\"ALTER TABLE\",action=\"allow\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ddlgate_rejections_total{rule=\"rename-column\"} 1"),
            "{text}"
        );
        assert!(text.contains("ddlgate_connections_total 0"), "{text}");
    }
}
