//! `segflow schedule --http ADDR`: the daemon's status page (`/`), its health (`/healthz`),
//! its metrics in the Prometheus text format (`/metrics`), and each pipeline's latest report
//! (`/report/NAME`, read from its `report.url`). Read-only; it binds only where it is told.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use object_store::ObjectStoreExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::status::DaemonStatus;
use crate::clock::Clock;
use crate::history::RunRecord;
use crate::lease::Holder;
use crate::pipeline::Pipeline;
use crate::report::escape;
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

/// Answers on `listener` until `stop` is cancelled.
pub(super) async fn serve(listener: TcpListener, pages: Pages, stop: CancellationToken) {
    loop {
        let socket = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "Could not accept a connection to the status page.");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |request: Request<Incoming>| {
                let pages = pages.clone();
                async move { Ok::<_, Infallible>(pages.answer(&request).await) }
            });
            if let Err(error) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), handler)
                .await
            {
                tracing::debug!(%error, "A status page connection ended with an error.");
            }
        });
    }
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// How long a page waits for the state store or a report's store before saying so.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Pages {
    async fn answer(&self, request: &Request<Incoming>) -> Response<String> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return response(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "The status page only answers GET.\n".to_string(),
            );
        }
        let now = self.clock.now();
        match request.uri().path() {
            "/healthz" => match self.status.health(now) {
                Ok(()) => response(StatusCode::OK, TEXT, "ok\n".to_string()),
                Err(why) => response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("unhealthy: {why}\n"),
                ),
            },
            "/metrics" => response(StatusCode::OK, PROMETHEUS, self.status.metrics_text(now)),
            // The page names its icon inline; browsers that ask anyway get nothing, not 404.
            "/favicon.ico" => response(StatusCode::NO_CONTENT, TEXT, String::new()),
            "/" => response(StatusCode::OK, HTML, self.status_page(now).await),
            path => match path.strip_prefix("/report/") {
                Some(name) => self.report(name).await,
                None => response(
                    StatusCode::NOT_FOUND,
                    TEXT,
                    format!("Nothing at {path}: try /, /healthz, /metrics or /report/NAME.\n"),
                ),
            },
        }
    }

    /// The latest report of pipeline `name`, as its last run wrote it.
    async fn report(&self, name: &str) -> Response<String> {
        let pipelines = self.status.pipelines();
        let Some(spec) = pipelines
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.report.as_ref())
        else {
            return response(
                StatusCode::NOT_FOUND,
                TEXT,
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
            Ok(Ok(page)) => response(StatusCode::OK, HTML, String::from_utf8_lossy(&page).into()),
            Ok(Err(missing)) if missing.is_empty() => response(
                StatusCode::NOT_FOUND,
                TEXT,
                format!(
                    "No report of {name} at {} yet: a successful run writes it.\n",
                    spec.location
                ),
            ),
            Ok(Err(error)) => response(
                StatusCode::BAD_GATEWAY,
                TEXT,
                format!(
                    "Cannot read the report of {name} at {}: {error}\n",
                    spec.location
                ),
            ),
            Err(_) => response(
                StatusCode::GATEWAY_TIMEOUT,
                TEXT,
                format!(
                    "The store of {} did not answer within {}s.\n",
                    spec.location,
                    STORE_WAIT.as_secs()
                ),
            ),
        }
    }

    async fn status_page(&self, now: DateTime<Utc>) -> String {
        let health = self.status.health(now);
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <link rel=\"icon\" href=\"{ICON}\">\
             <title>segflow schedule</title><style>{STYLE}</style></head><body>\
             <h1>segflow schedule</h1><p class=\"meta\">Daemon {} · up since {} UTC · \
             <span id=\"health\" data-healthy=\"{}\">{}</span> · \
             <a href=\"/metrics\">metrics</a></p>",
            escape(&self.status.holder),
            self.status.started_at.format("%Y-%m-%d %H:%M:%S"),
            health.is_ok(),
            escape(&match &health {
                Ok(()) => "healthy".to_string(),
                Err(why) => format!("unhealthy: {why}"),
            }),
        );
        let unloadable = self.status.unloadable();
        if !unloadable.is_empty() {
            html.push_str(
                "<h2>Pipeline files that do not load</h2><div class=\"scroll\">\
                 <table id=\"unloadable\"><thead><tr><th>File</th><th>Why</th></tr></thead>\
                 <tbody>",
            );
            for (file, error) in &unloadable {
                let _ = write!(
                    html,
                    "<tr data-file=\"{file}\"><td><code>{file}</code></td>\
                     <td class=\"failed\"><pre>{}</pre></td></tr>",
                    escape(error),
                    file = escape(&file.display().to_string()),
                );
            }
            html.push_str("</tbody></table></div>");
        }
        let pipelines = self.status.pipelines();
        if pipelines.is_empty() {
            html.push_str("<p>No pipeline loaded.</p></body></html>\n");
            return html;
        }
        html.push_str(
            "<h2>Pipelines</h2><div class=\"scroll\"><table id=\"pipelines\"><thead><tr>\
             <th>Pipeline</th><th>Schedule</th><th>Next slot (UTC)</th><th>Last run</th>\
             <th>Lease holder</th><th>Report</th></tr></thead><tbody>",
        );
        let mut runs: Vec<RunRecord> = Vec::new();
        for pipeline in &pipelines {
            runs.extend(self.pipeline_row(&mut html, pipeline, now).await);
        }
        html.push_str("</tbody></table></div>");
        runs.sort_by_key(|run| std::cmp::Reverse(run.started_at));
        runs.truncate(RECENT_RUNS);
        recent_runs(&mut html, &runs);
        html.push_str("</body></html>\n");
        html
    }

    /// Writes `pipeline`'s row; returns its runs, for the recent runs below.
    async fn pipeline_row(
        &self,
        html: &mut String,
        pipeline: &Pipeline,
        now: DateTime<Utc>,
    ) -> Vec<RunRecord> {
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
                let status = run.status.as_str().to_string();
                let mut text = format!(
                    "{status} · as_of {} · started {}",
                    run.as_of,
                    run.started_at.format("%Y-%m-%d %H:%M:%S")
                );
                if let Some(seconds) = run.seconds() {
                    let _ = write!(text, " · {seconds:.1} s");
                }
                if let Some(error) = first_line(run.error.as_deref()) {
                    let _ = write!(text, " · {error}");
                }
                (status, text)
            }
            Ok(None) => (String::new(), "no run yet".to_string()),
            Err(error) => (String::new(), format!("cannot read the history: {error}")),
        };
        let holder = match tokio::time::timeout(STORE_WAIT, self.runner.holder_of(name)).await {
            Ok(Ok(Some(Holder { host, pid, .. }))) => format!("process {pid} on {host}"),
            Ok(Ok(None)) => "nobody".to_string(),
            Ok(Err(error)) => format!("cannot read the lease: {error}"),
            Err(_) => format!("no answer within {}s", STORE_WAIT.as_secs()),
        };
        let report = match &pipeline.report {
            Some(_) => format!("<a href=\"/report/{}\">latest</a>", escape(name)),
            None => "–".to_string(),
        };
        let _ = write!(
            html,
            "<tr data-pipeline=\"{}\" data-last-status=\"{last_status}\" data-next-slot=\"{}\">\
             <td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"last {last_status}\">{}</td>\
             <td>{}</td><td>{report}</td></tr>",
            escape(name),
            escape(&next),
            escape(name),
            escape(&schedule),
            escape(&next),
            escape(&last_text),
            escape(&holder),
        );
        runs.unwrap_or_default()
    }
}

/// How many runs the status page lists, newest first.
const RECENT_RUNS: usize = 20;

/// The recent runs of the loaded pipelines, as an on-call engineer first wants them: what
/// ran for which date, how it ended, how long it took, what it published, and why it failed.
fn recent_runs(html: &mut String, runs: &[RunRecord]) {
    html.push_str(
        "<h2>Recent runs</h2><div class=\"scroll\"><table id=\"runs\"><thead><tr>\
         <th>Pipeline</th><th>as_of</th><th>Status</th><th>Started (UTC)</th>\
         <th>Seconds</th><th>Rows</th><th>Error</th></tr></thead><tbody>",
    );
    for run in runs {
        let status = run.status.as_str();
        let seconds = run.seconds().map(|s| format!("{s:.1}")).unwrap_or_default();
        let _ = write!(
            html,
            "<tr data-run-id=\"{}\" data-status=\"{status}\"><td>{}</td><td>{}</td>\
             <td class=\"{status}\">{status}</td><td>{}</td><td class=\"number\">{seconds}</td>\
             <td class=\"number\">{}</td><td>{}</td></tr>",
            escape(&run.run_id),
            escape(&run.pipeline),
            run.as_of,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            run.rows.values().sum::<u64>(),
            escape(first_line(run.error.as_deref()).unwrap_or_default()),
        );
    }
    if runs.is_empty() {
        html.push_str("<tr><td colspan=\"7\">No run yet.</td></tr>");
    }
    html.push_str("</tbody></table></div>");
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
