//! What happens after a run has ended and is recorded, in order: the daemon's metrics are
//! told, the webhook is posted, and the report is written after a run that published. Like
//! the run's record, each is about the run, not part of it: one that fails is logged, and
//! the run's outcome stands.

use std::time::Duration;

use crate::cancel::Cancel;
use crate::history::{RunRecord, RunStatus};
use crate::pipeline::{Pipeline, ReportSpec};

use super::Runner;

/// Told of the outcome of every run (the daemon's metrics and status page).
pub type EndedRuns = std::sync::Arc<dyn Fn(&RunRecord) + Send + Sync>;

pub(super) enum AfterRun {
    Tell(EndedRuns),
    /// The pipeline's `notify:` webhooks.
    Webhook,
    /// The pipeline's `report:`, after a run that published.
    Report,
}

/// How long writing a run's report may take before the run gives up on it.
const REPORT_TIMEOUT: Duration = Duration::from_secs(600);

impl AfterRun {
    pub(super) async fn run_ended(
        &self,
        runner: &Runner,
        pipeline: &Pipeline,
        record: &RunRecord,
        cancel: &Cancel,
    ) {
        match self {
            AfterRun::Tell(ended) => ended(record),
            AfterRun::Webhook => crate::notify::run_finished(&pipeline.notify, record).await,
            AfterRun::Report => {
                if record.status == RunStatus::Succeeded
                    && let Some(spec) = &pipeline.report
                {
                    write_report(runner, pipeline, spec, cancel).await;
                }
            }
        }
    }
}

/// Writes the report of a run that published; one that cannot be written, is cancelled or
/// takes too long is logged.
async fn write_report(runner: &Runner, pipeline: &Pipeline, spec: &ReportSpec, cancel: &Cancel) {
    let write = crate::report::write_latest(pipeline, &runner.storage, &runner.history, spec);
    let failure = tokio::select! {
        written = write => match written {
            Ok(()) => {
                tracing::info!(pipeline = %pipeline.name, url = %spec.location, "Wrote the report.");
                return;
            }
            Err(error) => crate::fault::one_line(&error),
        },
        reason = cancel.cancelled() => format!("cancelled: {reason}"),
        () = tokio::time::sleep(REPORT_TIMEOUT) => {
            format!("it took over {}s", REPORT_TIMEOUT.as_secs())
        }
    };
    tracing::warn!(pipeline = %pipeline.name, url = %spec.location, error = %failure, "Could not write the report; the run published all the same.");
}
