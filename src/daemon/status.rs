//! What a daemon knows about itself, for its status page, `/healthz` and `/metrics`: when
//! its loop last ticked, when the state store last answered, the pipelines it has loaded,
//! and counters of what it did since it started (Prometheus counters restart with the
//! process; the run history keeps the whole story).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::history::{RunRecord, RunStatus};
use crate::pipeline::Pipeline;
use crate::run::CheckStatus;
use crate::serve::{LATENCY_BUCKETS, ServeStats, Serving};

/// Shared by the scheduler's loop, its run tasks and the HTTP server.
pub(super) struct DaemonStatus {
    /// How often the loop asks the state store for a sign of life; `/healthz` fails once
    /// an answer is older than twice this.
    pub(super) interval: Duration,
    pub(super) holder: String,
    pub(super) started_at: DateTime<Utc>,
    /// The PostgreSQL protocol server beside the daemon (`--serve`), if any.
    pub(super) serving: Option<Serving>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last_tick: Option<DateTime<Utc>>,
    store_asked: Option<DateTime<Utc>>,
    store_answered: Option<DateTime<Utc>>,
    store_error: Option<String>,
    pipelines: Vec<Arc<Pipeline>>,
    /// Pipeline files whose last edit does not load, with why.
    unloadable: Vec<(std::path::PathBuf, String)>,
    metrics: Metrics,
}

#[derive(Default)]
struct Metrics {
    runs: BTreeMap<(String, &'static str), u64>,
    check_failures: BTreeMap<(String, String), u64>,
    lease_takeovers: BTreeMap<String, u64>,
    last_success: BTreeMap<String, DateTime<Utc>>,
    last_duration: BTreeMap<String, f64>,
    rows: BTreeMap<(String, String), u64>,
}

impl DaemonStatus {
    pub(super) fn new(
        interval: Duration,
        holder: String,
        started_at: DateTime<Utc>,
        serving: Option<Serving>,
    ) -> DaemonStatus {
        DaemonStatus {
            interval,
            holder,
            started_at,
            serving,
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The loop went round at `now` with these pipelines loaded, and these files not.
    pub(super) fn ticked(
        &self,
        now: DateTime<Utc>,
        pipelines: Vec<Arc<Pipeline>>,
        unloadable: Vec<(std::path::PathBuf, String)>,
    ) {
        let mut inner = self.inner();
        inner.last_tick = Some(now);
        inner.pipelines = pipelines;
        inner.unloadable = unloadable;
    }

    pub(super) fn unloadable(&self) -> Vec<(std::path::PathBuf, String)> {
        self.inner().unloadable.clone()
    }

    /// Whether to ask the state store for a sign of life at `now`: an interval after the last
    /// question, answered or not. A yes counts as asking.
    pub(super) fn ask_store(&self, now: DateTime<Utc>) -> bool {
        let mut inner = self.inner();
        let interval = chrono::Duration::from_std(self.interval).unwrap_or_default();
        let due = inner
            .store_asked
            .is_none_or(|asked| now - asked >= interval);
        if due {
            inner.store_asked = Some(now);
        }
        due
    }

    /// The loop is going round: it may take a while inside one tick (each pipeline's
    /// history is read before its slots start).
    pub(super) fn alive(&self, now: DateTime<Utc>) {
        self.inner().last_tick = Some(now);
    }

    pub(super) fn store_answered(&self, at: DateTime<Utc>, outcome: Result<(), String>) {
        let mut inner = self.inner();
        match outcome {
            Ok(()) => {
                inner.store_answered = Some(at);
                inner.store_error = None;
            }
            Err(error) => inner.store_error = Some(error),
        }
    }

    pub(super) fn pipelines(&self) -> Vec<Arc<Pipeline>> {
        self.inner().pipelines.clone()
    }

    /// A run this daemon ended: counted by status, with its checks, and for a success its
    /// end, duration and rows.
    pub(super) fn run_ended(&self, record: &RunRecord) {
        let mut inner = self.inner();
        let metrics = &mut inner.metrics;
        *metrics
            .runs
            .entry((record.pipeline.clone(), record.status.as_str()))
            .or_default() += 1;
        for check in &record.checks {
            if check.status != CheckStatus::Passed {
                *metrics
                    .check_failures
                    .entry((record.pipeline.clone(), check.name.clone()))
                    .or_default() += 1;
            }
        }
        if let Some(ended) = record.ended_at {
            metrics.last_duration.insert(
                record.pipeline.clone(),
                (ended - record.started_at).num_milliseconds() as f64 / 1000.0,
            );
            if record.status == RunStatus::Succeeded {
                Self::succeeded_at(metrics, &record.pipeline, ended);
                metrics.rows.retain(|(p, _), _| p != &record.pipeline);
                for (table, rows) in &record.rows {
                    metrics
                        .rows
                        .insert((record.pipeline.clone(), table.clone()), *rows);
                }
            }
        }
    }

    /// A success found in the run history (another daemon's, or from before this one
    /// started), whenever the daemon reads it: when a slot comes due, and under the lease.
    pub(super) fn success_seen(&self, pipeline: &str, ended: DateTime<Utc>) {
        Self::succeeded_at(&mut self.inner().metrics, pipeline, ended);
    }

    fn succeeded_at(metrics: &mut Metrics, pipeline: &str, ended: DateTime<Utc>) {
        let last = metrics
            .last_success
            .entry(pipeline.to_string())
            .or_insert(ended);
        *last = (*last).max(ended);
    }

    pub(super) fn lease_taken_over(&self, pipeline: &str) {
        *self
            .inner()
            .metrics
            .lease_takeovers
            .entry(pipeline.to_string())
            .or_default() += 1;
    }

    /// Whether the daemon is well at `now`: its loop went round lately, and the state store
    /// answered within the last two intervals. Else what is wrong, in a sentence.
    pub(super) fn health(&self, now: DateTime<Utc>) -> Result<(), String> {
        let inner = self.inner();
        let stale = chrono::Duration::from_std(self.interval.saturating_mul(2)).unwrap_or_default();
        match inner.last_tick {
            None => return Err("the scheduler loop has not gone round yet".to_string()),
            Some(tick) if now - tick > stale.max(chrono::Duration::seconds(60)) => {
                return Err(format!(
                    "the scheduler loop last went round at {}",
                    tick.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            Some(_) => {}
        }
        match inner.store_answered {
            Some(answered) if now - answered <= stale => Ok(()),
            answered => {
                let when = answered.map_or("never".to_string(), |t| {
                    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                });
                let why = inner
                    .store_error
                    .as_deref()
                    .map_or(String::new(), |e| format!(": {e}"));
                Err(format!(
                    "the state store last answered {when}, over {}s ago{why}",
                    stale.num_seconds()
                ))
            }
        }
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub(super) fn metrics_text(&self, now: DateTime<Utc>) -> String {
        let healthy = self.health(now).is_ok();
        let inner = self.inner();
        let metrics = &inner.metrics;
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        // Every loaded pipeline has its success and failure counters from the start, so that
        // a rate over them is defined before the first run.
        let mut runs = metrics.runs.clone();
        for pipeline in &inner.pipelines {
            for status in ["succeeded", "failed"] {
                runs.entry((pipeline.name.clone(), status)).or_default();
            }
        }
        family(
            "segflow_runs_total",
            "counter",
            "Runs this daemon ended, by pipeline and status.",
            runs.iter()
                .map(|((p, s), n)| (labels(&[("pipeline", p), ("status", s)]), n.to_string()))
                .collect(),
        );
        family(
            "segflow_last_success_timestamp_seconds",
            "gauge",
            "When the pipeline's newest successful run ended, in Unix time.",
            metrics
                .last_success
                .iter()
                .map(|(p, t)| (labels(&[("pipeline", p)]), seconds(*t)))
                .collect(),
        );
        family(
            "segflow_last_run_duration_seconds",
            "gauge",
            "How long the pipeline's last run ended by this daemon took.",
            metrics
                .last_duration
                .iter()
                .map(|(p, d)| (labels(&[("pipeline", p)]), format!("{d:.3}")))
                .collect(),
        );
        family(
            "segflow_rows_published",
            "gauge",
            "Rows of each output in the last successful run this daemon ended.",
            metrics
                .rows
                .iter()
                .map(|((p, t), n)| (labels(&[("pipeline", p), ("table", t)]), n.to_string()))
                .collect(),
        );
        family(
            "segflow_check_failures_total",
            "counter",
            "Checks that failed (severity error or warn) in runs this daemon ended.",
            metrics
                .check_failures
                .iter()
                .map(|((p, c), n)| (labels(&[("pipeline", p), ("check", c)]), n.to_string()))
                .collect(),
        );
        family(
            "segflow_lease_takeovers_total",
            "counter",
            "Leases this daemon took over after their holder let them expire unreleased.",
            metrics
                .lease_takeovers
                .iter()
                .map(|(p, n)| (labels(&[("pipeline", p)]), n.to_string()))
                .collect(),
        );
        family(
            "segflow_pipelines_loaded",
            "gauge",
            "Pipeline files the daemon has loaded.",
            vec![(String::new(), inner.pipelines.len().to_string())],
        );
        family(
            "segflow_pipelines_unloadable",
            "gauge",
            "Pipeline files whose last edit does not load (the status page says why).",
            vec![(String::new(), inner.unloadable.len().to_string())],
        );
        family(
            "segflow_healthy",
            "gauge",
            "1 when /healthz answers 200: the loop goes round and the state store answers.",
            vec![(String::new(), u8::from(healthy).to_string())],
        );
        family(
            "segflow_daemon_start_timestamp_seconds",
            "gauge",
            "When this daemon started, in Unix time.",
            vec![(String::new(), seconds(self.started_at))],
        );
        if let Some(serving) = &self.serving {
            serving_counts(&serving.stats, &mut family);
            latency_histogram(&serving.stats, &mut text);
        }
        text
    }
}

/// The PostgreSQL protocol server's connections and queries.
fn serving_counts(
    stats: &ServeStats,
    family: &mut impl FnMut(&str, &str, &str, Vec<(String, String)>),
) {
    let families: [(&str, &str, &str, &AtomicU64); 4] = [
        (
            "segflow_serve_connections_open",
            "gauge",
            "Connections to the PostgreSQL protocol server now.",
            &stats.connections_open,
        ),
        (
            "segflow_serve_connections_total",
            "counter",
            "Connections the PostgreSQL protocol server accepted, refused ones included.",
            &stats.connections_total,
        ),
        (
            "segflow_serve_connections_refused_total",
            "counter",
            "Connections refused: over --max-connections, or without TLS when it is required.",
            &stats.connections_refused,
        ),
        (
            "segflow_serve_queries_failed_total",
            "counter",
            "Queries that ended with an error (timeouts and memory limits included).",
            &stats.queries_failed,
        ),
    ];
    for (name, kind, help, count) in families {
        let value = count.load(Ordering::Relaxed).to_string();
        family(name, kind, help, vec![(String::new(), value)]);
    }
}

/// The queries' latency as a Prometheus histogram, whose samples carry suffixes of its name.
fn latency_histogram(stats: &ServeStats, text: &mut String) {
    let name = "segflow_serve_query_seconds";
    let _ = writeln!(
        text,
        "# HELP {name} Queries from their start until their last row was sent."
    );
    let _ = writeln!(text, "# TYPE {name} histogram");
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&stats.query_latency_buckets) {
        let le = labels(&[("le", &bound.to_string())]);
        let _ = writeln!(text, "{name}_bucket{le} {}", n.load(Ordering::Relaxed));
    }
    let total = stats.queries_total.load(Ordering::Relaxed);
    let _ = writeln!(text, "{name}_bucket{} {total}", labels(&[("le", "+Inf")]));
    let micros = stats.query_micros_total.load(Ordering::Relaxed);
    let _ = writeln!(text, "{name}_sum {:.6}", micros as f64 / 1e6);
    let _ = writeln!(text, "{name}_count {total}");
}

fn seconds(at: DateTime<Utc>) -> String {
    format!("{:.3}", at.timestamp_millis() as f64 / 1000.0)
}

/// `{a="x",b="y"}`, values escaped as the text format wants.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inside: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{value}\"")
        })
        .collect();
    format!("{{{}}}", inside.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_a_recent_tick_and_a_recent_answer() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let status = DaemonStatus::new(Duration::from_secs(30), "me".into(), start, None);
        assert!(status.health(start).is_err());
        status.ticked(start, Vec::new(), Vec::new());
        assert!(status.health(start).unwrap_err().contains("never"));
        status.store_answered(start, Ok(()));
        assert_eq!(status.health(start), Ok(()));
        let later = start + chrono::Duration::seconds(61);
        status.ticked(later, Vec::new(), Vec::new());
        status.store_answered(later, Err("connection refused".into()));
        let why = status.health(later).unwrap_err();
        assert!(why.contains("over 60s ago: connection refused"), "{why}");
        assert_eq!(labels(&[("a", "x\"y\\")]), "{a=\"x\\\"y\\\\\"}");
    }
}
