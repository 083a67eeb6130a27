//! `segflow schedule --http ADDR`: the daemon's status page (`/`), its health (`/healthz`),
//! its metrics in the Prometheus text format (`/metrics`), and each pipeline's latest report
//! (`/report/NAME`, read from its `report.url`). Read-only; it binds only where it is told.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use object_store::ObjectStoreExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::status::DaemonStatus;
use crate::clock::Clock;
use crate::history::RunRecord;
use crate::lease::Holder;
use crate::pipeline::Pipeline;
use crate::runner::Runner;
use crate::storage::Storage;

/// What the pages read: the daemon's own status, and the state store it shares with others.
#[derive(Clone)]
pub(super) struct Pages {
    pub(super) status: Arc<DaemonStatus>,
    pub(super) runner: Arc<Runner>,
    pub(super) storage: Storage,
    pub(super) clock: Clock,
}

/// Answers on `listener` until `stop` is cancelled. `get` routes answer GET and HEAD;
/// any other method is refused (405).
pub(super) async fn serve(listener: TcpListener, pages: Pages, stop: CancellationToken) {
    let app = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        // The page names its icon inline; browsers that ask anyway get nothing, not 404.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/report/{name}", get(report))
        .fallback(not_found)
        .layer(axum::middleware::map_response(no_sniffing))
        .with_state(pages);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "The status page stopped answering.");
    }
}

/// Every answer is what its content type says, for browsers too.
async fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, TEXT)], body).into_response()
}

/// How long a page waits for the state store or a report's store before saying so.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn health(State(pages): State<Pages>) -> Response {
    match pages.status.health(pages.clock.now()) {
        Ok(()) => text(StatusCode::OK, "ok\n".to_string()),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        ),
    }
}

async fn metrics(State(pages): State<Pages>) -> Response {
    let body = pages.status.metrics_text(pages.clock.now());
    ([(CONTENT_TYPE, PROMETHEUS)], body).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "Nothing at {}: try /, /healthz, /metrics or /report/NAME.\n",
            uri.path()
        ),
    )
}

/// The PostgreSQL protocol server's line: where it listens and what it has done.
fn serving_line(serving: &crate::serve::Serving) -> Markup {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &serving.stats;
    let queries = stats.queries_total.load(Relaxed);
    let mean = match queries {
        0 => "–".to_string(),
        n => format!(
            "{:.1} ms",
            stats.query_micros_total.load(Relaxed) as f64 / n as f64 / 1000.0
        ),
    };
    html! {
        p.meta #serving {
            "PostgreSQL protocol on " code { (serving.address) } " · "
            (stats.connections_open.load(Relaxed)) " connections open, "
            (stats.connections_total.load(Relaxed)) " in all · "
            (queries) " queries (" (stats.queries_failed.load(Relaxed)) " failed), mean " (mean)
        }
    }
}

async fn status_page(State(pages): State<Pages>) -> Markup {
    pages.status_page(pages.clock.now()).await
}

async fn report(State(pages): State<Pages>, Path(name): Path<String>) -> Response {
    pages.report(&name).await
}

impl Pages {
    /// The latest report of pipeline `name`, as its last run wrote it.
    async fn report(&self, name: &str) -> Response {
        let pipelines = self.status.pipelines();
        let Some(spec) = pipelines
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.report.as_ref())
        else {
            return text(
                StatusCode::NOT_FOUND,
                format!("No loaded pipeline named {name} has a report: url.\n"),
            );
        };
        let read = async {
            let store = self
                .storage
                .store(&spec.location, &spec.options)
                .map_err(|e| e.to_string())?;
            let got = store.get(&spec.location.path()).await;
            let bytes = match got {
                Ok(found) => found.bytes().await,
                Err(error) => Err(error),
            };
            bytes.map_err(|error| match error {
                object_store::Error::NotFound { .. } => String::new(),
                other => crate::fault::one_line(&other),
            })
        };
        match tokio::time::timeout(STORE_WAIT, read).await {
            Ok(Ok(page)) => ([(CONTENT_TYPE, HTML)], page).into_response(),
            Ok(Err(missing)) if missing.is_empty() => text(
                StatusCode::NOT_FOUND,
                format!(
                    "No report of {name} at {} yet: a successful run writes it.\n",
                    spec.location
                ),
            ),
            Ok(Err(error)) => text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Cannot read the report of {name} at {}: {error}\n",
                    spec.location
                ),
            ),
            Err(_) => text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "The store of {} did not answer within {}s.\n",
                    spec.location,
                    STORE_WAIT.as_secs()
                ),
            ),
        }
    }

    async fn status_page(&self, now: DateTime<Utc>) -> Markup {
        let health = self.status.health(now);
        let unloadable = self.status.unloadable();
        let pipelines = self.status.pipelines();
        let mut rows = Vec::with_capacity(pipelines.len());
        let mut runs: Vec<RunRecord> = Vec::new();
        for pipeline in &pipelines {
            let (row, pipeline_runs) = self.pipeline_row(pipeline, now).await;
            rows.push(row);
            runs.extend(pipeline_runs);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.started_at));
        runs.truncate(RECENT_RUNS);
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    link rel="icon" href=(ICON);
                    title { "segflow schedule" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { "segflow schedule" }
                    p.meta {
                        "Daemon " (self.status.holder) " · up since "
                        (self.status.started_at.format("%Y-%m-%d %H:%M:%S")) " UTC · "
                        span #health data-healthy=(health.is_ok()) {
                            @match &health {
                                Ok(()) => "healthy",
                                Err(why) => { "unhealthy: " (why) },
                            }
                        }
                        " · " a href="/metrics" { "metrics" }
                    }
                    @if let Some(serving) = &self.status.serving {
                        (serving_line(serving))
                    }
                    @if !unloadable.is_empty() {
                        h2 { "Pipeline files that do not load" }
                        div.scroll { table #unloadable {
                            thead { tr { th { "File" } th { "Why" } } }
                            tbody {
                                @for (file, error) in &unloadable {
                                    @let file = file.display().to_string();
                                    tr data-file=(file) {
                                        td { code { (file) } }
                                        td.failed { pre { (error) } }
                                    }
                                }
                            }
                        } }
                    }
                    @if pipelines.is_empty() {
                        p { "No pipeline loaded." }
                    } @else {
                        h2 { "Pipelines" }
                        div.scroll { table #pipelines {
                            thead { tr {
                                th { "Pipeline" } th { "Schedule" } th { "Next slot (UTC)" }
                                th { "Last run" } th { "Lease holder" } th { "Report" }
                            } }
                            tbody { @for row in &rows { (row) } }
                        } }
                        (recent_runs(&runs))
                    }
                }
            }
        }
    }

    /// `pipeline`'s row, and its runs for the recent runs below.
    async fn pipeline_row(
        &self,
        pipeline: &Pipeline,
        now: DateTime<Utc>,
    ) -> (Markup, Vec<RunRecord>) {
        let name = &pipeline.name;
        let (schedule, next) = match &pipeline.schedule {
            Some(schedule) => (
                schedule.slots.expression().to_string(),
                schedule
                    .slots
                    .next_after(now)
                    .map(|slot| slot.due.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "none".to_string()),
            ),
            None => ("not scheduled".to_string(), "–".to_string()),
        };
        let runs: Result<Vec<RunRecord>, String> =
            match tokio::time::timeout(STORE_WAIT, self.runner.history().list(Some(name))).await {
                Ok(listed) => listed.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {}s", STORE_WAIT.as_secs())),
            };
        let last = runs
            .as_ref()
            .map(|runs| runs.iter().max_by_key(|r| r.started_at));
        let (last_status, last_text) = match &last {
            Ok(Some(run)) => {
                let status = run.status.as_str();
                let mut text = format!(
                    "{status} · as_of {} · started {}",
                    run.as_of,
                    run.started_at.format("%Y-%m-%d %H:%M:%S")
                );
                if let Some(seconds) = run.seconds() {
                    text.push_str(&format!(" · {seconds:.1} s"));
                }
                if let Some(error) = first_line(run.error.as_deref()) {
                    text.push_str(&format!(" · {error}"));
                }
                (status, text)
            }
            Ok(None) => ("", "no run yet".to_string()),
            Err(error) => ("", format!("cannot read the history: {error}")),
        };
        let holder = match tokio::time::timeout(STORE_WAIT, self.runner.holder_of(name)).await {
            Ok(Ok(Some(Holder { host, pid, .. }))) => format!("process {pid} on {host}"),
            Ok(Ok(None)) => "nobody".to_string(),
            Ok(Err(error)) => format!("cannot read the lease: {error}"),
            Err(_) => format!("no answer within {}s", STORE_WAIT.as_secs()),
        };
        let row = html! {
            tr data-pipeline=(name) data-last-status=(last_status) data-next-slot=(next) {
                td { (name) }
                td { code { (schedule) } }
                td { (next) }
                td class={ "last " (last_status) } { (last_text) }
                td { (holder) }
                td {
                    @if pipeline.report.is_some() {
                        a href={ "/report/" (name) } { "latest" }
                    } @else { "–" }
                }
            }
        };
        (row, runs.unwrap_or_default())
    }
}

/// How many runs the status page lists, newest first.
const RECENT_RUNS: usize = 20;

/// The recent runs of the loaded pipelines, as an on-call engineer first wants them: what
/// ran for which date, how it ended, how long it took, what it published, and why it failed.
fn recent_runs(runs: &[RunRecord]) -> Markup {
    html! {
        h2 { "Recent runs" }
        div.scroll { table #runs {
            thead { tr {
                th { "Pipeline" } th { "as_of" } th { "Status" } th { "Started (UTC)" }
                th { "Seconds" } th { "Rows" } th { "Error" }
            } }
            tbody {
                @for run in runs {
                    @let status = run.status.as_str();
                    tr data-run-id=(run.run_id) data-status=(status) {
                        td { (run.pipeline) }
                        td { (run.as_of) }
                        td class=(status) { (status) }
                        td { (run.started_at.format("%Y-%m-%d %H:%M:%S")) }
                        td.number { @if let Some(s) = run.seconds() { (format!("{s:.1}")) } }
                        td.number { (run.rows.values().sum::<u64>()) }
                        td { (first_line(run.error.as_deref()).unwrap_or_default()) }
                    }
                }
                @if runs.is_empty() {
                    tr { td colspan="7" { "No run yet." } }
                }
            }
        } }
    }
}

fn first_line(error: Option<&str>) -> Option<&str> {
    error.and_then(|e| e.lines().next())
}

/// The page's icon, inline, so that no request for it can fail.
const ICON: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' \
viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%230072B2'/%3E%3C/svg%3E";

const STYLE: &str = "body{margin:0 auto;max-width:1100px;padding:16px;font:15px/1.45 system-ui,\
sans-serif;color:#1a1a1a}h1{font-size:1.5rem;margin:0 0 4px}.meta{color:#5f6368}\
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #dadce0;\
text-align:left;vertical-align:top}.scroll{overflow-x:auto}td.failed{color:#D55E00;\
font-weight:600}td.succeeded{color:#0072B2}code{overflow-wrap:anywhere}h2{font-size:1.1rem;\
margin:20px 0 4px}td.number{text-align:right;font-variant-numeric:tabular-nums}\
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font:inherit}";
