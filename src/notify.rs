//! Webhooks after a run (`notify:` in a pipeline): one JSON POST per finished run. Its
//! `text` is what Slack's incoming webhooks (and Teams' and Mattermost's) show; the run's
//! facts sit beside it for receivers that read fields. A webhook that fails is logged and
//! never changes the run's outcome, which is already recorded when the post is made.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::history::{RunRecord, RunStatus};
use crate::pipeline::Notify;

/// Long enough for a slow chat service, short enough not to hold a nightly schedule.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
struct Message<'a> {
    text: String,
    pipeline: &'a str,
    as_of: NaiveDate,
    status: RunStatus,
    run_id: &'a str,
    attempt: u32,
    slot: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    seconds: Option<f64>,
    rows: &'a BTreeMap<String, u64>,
    error: Option<&'a str>,
}

/// Posts `record` to the webhook its status asks for: `on_success` after a published run,
/// `on_failure` after a failed one. Interrupted runs (a stop, a lost lease) are not the
/// pipeline's failures and are not posted; the run that follows them is.
pub async fn run_finished(notify: &Notify, record: &RunRecord) {
    let url = match record.status {
        RunStatus::Succeeded => notify.on_success.as_ref(),
        RunStatus::Failed => notify.on_failure.as_ref(),
        RunStatus::Running | RunStatus::Interrupted | RunStatus::Abandoned => None,
    };
    let Some(url) = url else { return };
    let message = message(record);
    let body = serde_json::to_vec(&message).expect("a run's message serialises");
    let posted = reqwest::Client::new()
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(TIMEOUT)
        .body(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    // The URL's path and query often hold the webhook's token: only the host is logged.
    let host = url.host_str().unwrap_or_default();
    match posted {
        Ok(_) => {
            tracing::info!(pipeline = %record.pipeline, run_id = %record.run_id, %host, "Run notified.")
        }
        Err(error) => tracing::warn!(
            pipeline = %record.pipeline,
            run_id = %record.run_id,
            %host,
            error = %error.without_url(),
            "Could not post the run's notification; the run's outcome stands."
        ),
    }
}

fn message(record: &RunRecord) -> Message<'_> {
    let seconds = record
        .ended_at
        .map(|end| (end - record.started_at).as_seconds_f64());
    let outcome = match (&record.status, &record.error) {
        (RunStatus::Failed, Some(error)) => {
            format!("failed: {}", error.lines().next().unwrap_or_default())
        }
        (RunStatus::Failed, None) => "failed".to_string(),
        _ => format!(
            "published {} outputs, {} rows",
            record.rows.len(),
            record.rows.values().sum::<u64>()
        ),
    };
    let took = seconds.map(|s| format!(" in {s:.1} s")).unwrap_or_default();
    Message {
        text: format!(
            "segflow: {} as of {} (attempt {}) {outcome}{took}",
            record.pipeline, record.as_of, record.attempt
        ),
        pipeline: &record.pipeline,
        as_of: record.as_of,
        status: record.status,
        run_id: &record.run_id,
        attempt: record.attempt,
        slot: record.slot,
        started_at: record.started_at,
        ended_at: record.ended_at,
        seconds,
        rows: &record.rows,
        error: record.error.as_deref(),
    }
}
