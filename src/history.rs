//! Run history, kept beside the data in a state store (any URL: a local folder by default,
//! S3 in production), so that losing the machine loses nothing. One JSON record per run,
//! rewritten when the run ends; the newest record of a logical date says whether it is done.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::clock::Clock;
use crate::engine::VersionCounts;
use crate::lease::Lease;
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::publish::{self, Journal, PublishError};
use crate::run::{self, CheckResult, RunError, RunReport, RunRequest, Timing};
use crate::segments::Unmatched;
use crate::storage::{Location, Storage, StorageError, read_object};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not {action} the run record {url}")]
    Store {
        action: &'static str,
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("the run record {url} is not valid: {reason}")]
    Corrupt { url: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Cancelled for a reason that is not the pipeline's: a stop of the daemon, a lost lease.
    /// It does not count against the schedule's attempts.
    Interrupted,
    /// Was running when the daemon running it died; found by the daemon that took its lease.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    pub as_of: NaiveDate,
    /// The schedule slot the run stands for, when the scheduler started it.
    pub slot: Option<DateTime<Utc>>,
    pub attempt: u32,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// Rows published per output table.
    pub rows: BTreeMap<String, u64>,
    /// Per source, rows that belong to no known customer (in no segment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmatched: BTreeMap<String, Unmatched>,
    /// Per versioned source, the rows that were not in force (README, "Rows that change").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, VersionCounts>,
    /// How long each step took, with the rows of those computed on their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Timing>,
    /// How long writing each output took.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Timing>,
    /// Every check's outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    pub error: Option<String>,
}

impl RunRecord {
    /// How long the run took, once it has ended.
    pub fn seconds(&self) -> Option<f64> {
        self.ended_at
            .map(|end| (end - self.started_at).as_seconds_f64())
    }
}

impl RunStatus {
    /// As the history and `segflow runs --json` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

impl RunRecord {
    /// A first try by hand, running since `started_at`.
    pub fn started(
        pipeline: &str,
        as_of: NaiveDate,
        run_id: &str,
        started_at: DateTime<Utc>,
    ) -> RunRecord {
        RunRecord {
            pipeline: pipeline.to_string(),
            as_of,
            slot: None,
            attempt: 1,
            run_id: run_id.to_string(),
            started_at,
            ended_at: None,
            status: RunStatus::Running,
            rows: BTreeMap::new(),
            unmatched: BTreeMap::new(),
            versions: BTreeMap::new(),
            steps: Vec::new(),
            writes: Vec::new(),
            checks: Vec::new(),
            error: None,
        }
    }
}

impl HistoryError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            HistoryError::Storage(e) => e.fault(),
            HistoryError::Store { .. } | HistoryError::Corrupt { .. } => {
                crate::fault::Fault::Environment
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordedRunError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl RecordedRunError {
    /// Stopped from outside (a signal, a lost lease, a run that took over), not failed: how
    /// the run is recorded, and what the daemon says of it.
    pub fn is_interruption(&self) -> bool {
        match self {
            RecordedRunError::Run(RunError::Publish(e)) => e.is_overtaken(),
            RecordedRunError::Run(RunError::Cancelled(reason)) => reason.is_interruption(),
            _ => false,
        }
    }
}

/// Runs a pipeline and records the run: a `running` record before it starts (so a run that
/// dies is visible), then its outcome. Cancelled with `cancel`, as [`run::run_until`] is;
/// the reason is recorded, and an interruption recorded as such rather than as a failure.
pub async fn run_recorded_until(
    history: &RunHistory,
    pipeline: &Pipeline,
    request: &RunRequest,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<RunReport, RecordedRunError> {
    let mut record = RunRecord {
        slot: request.slot,
        attempt: request.attempt,
        ..RunRecord::started(
            &pipeline.name,
            request.as_of,
            &request.run_id,
            history.clock.now(),
        )
    };
    history.save(&record).await?;
    let outcome = run::run_until(pipeline, request, progress, cancel)
        .await
        .map_err(RecordedRunError::from);
    record.ended_at = Some(history.clock.now());
    match &outcome {
        Ok(report) => {
            record.status = RunStatus::Succeeded;
            record.rows = report
                .outputs
                .iter()
                .map(|o| (o.committed.table.clone(), o.committed.rows))
                .collect();
            record.unmatched = report.unmatched.clone();
            record.versions = report.versions.clone();
            record.steps = report.steps.clone();
            record.writes = report.writes.clone();
            record.checks = report.checks.clone();
        }
        Err(error) => {
            let interrupted = error.is_interruption();
            // Interrupted, and then failed on something else: a request in flight while the
            // process was frozen past its lease fails when it resumes. The interruption is
            // why the run did not finish, and what its record says first.
            let interrupted_first = cancel
                .reason()
                .filter(|reason| reason.is_interruption() && !interrupted);
            record.status = if interrupted || interrupted_first.is_some() {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            if let RecordedRunError::Run(RunError::ChecksFailed(checks)) = error {
                record.checks = checks.clone();
            }
            record.error = Some(match interrupted_first {
                Some(reason) => format!("{reason}; then: {}", error_chain(error)),
                None => error_chain(error),
            });
        }
    }
    // The outcome matters more than its record: a run that published stays a success (a
    // retry would publish again), and a failure keeps its own error.
    if let Err(error) = history.save(&record).await {
        tracing::warn!(pipeline = %record.pipeline, run_id = %record.run_id, %error, "Could not record the run's outcome; the history still shows it running.");
    }
    if let Some(ended) = &history.ended {
        ended(&record);
    }
    crate::notify::run_finished(&pipeline.notify, &record).await;
    if record.status == RunStatus::Succeeded
        && let Some(spec) = &pipeline.report
    {
        write_report(history, pipeline, spec, cancel).await;
    }
    outcome
}

/// How long writing a run's report may take before the run gives up on it.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes the report after a run that published. Like the run's record, it is about the
/// run, not part of it: one that cannot be written, is cancelled or takes too long is
/// logged, and the run stays a success.
async fn write_report(
    history: &RunHistory,
    pipeline: &Pipeline,
    spec: &crate::pipeline::ReportSpec,
    cancel: &Cancel,
) {
    let write = crate::report::write_latest(pipeline, &history.storage, history, spec);
    let failure = tokio::select! {
        written = write => match written {
            Ok(()) => {
                tracing::info!(pipeline = %pipeline.name, url = %spec.location, "Wrote the report.");
                return;
            }
            Err(error) => error_chain(&error),
        },
        reason = cancel.cancelled() => format!("cancelled: {reason}"),
        () = tokio::time::sleep(REPORT_TIMEOUT) => {
            format!("it took over {}s", REPORT_TIMEOUT.as_secs())
        }
    };
    tracing::warn!(pipeline = %pipeline.name, url = %spec.location, error = %failure, "Could not write the report; the run published all the same.");
}

/// [`run_recorded_until`] while `lease` is kept renewed; a lost lease cancels the run as an
/// interruption. The second value says whether the lease was lost: then it must not be
/// released (another process may hold it).
pub async fn run_leased(
    history: &RunHistory,
    pipeline: &Pipeline,
    request: &RunRequest,
    progress: &Progress,
    lease: &mut Lease,
    cancel: &Cancel,
) -> (Result<RunReport, RecordedRunError>, bool) {
    let cancel = cancel.child();
    let run = run_recorded_until(history, pipeline, request, progress, &cancel);
    let keeping = lease.keep(&cancel);
    tokio::pin!(run);
    tokio::pin!(keeping);
    tokio::select! {
        outcome = &mut run => (outcome, false),
        () = &mut keeping => (run.await, true),
    }
}

/// Settles the runs of `pipeline` still recorded as `running`, which the caller, holding the
/// pipeline's lease, knows are not running (every run takes the lease): a run whose process
/// died, or stalled past its lease. A run whose publication the date journal records as
/// decided succeeded, once the commits it left are done here, and so did
/// one whose every output's publication for its date is of its run (it published before the
/// journal, or could not record its outcome). Otherwise it is abandoned.
pub async fn settle_unfinished(
    history: &RunHistory,
    (storage, single_writer): (&Storage, bool),
    pipeline: &Pipeline,
    records: &mut [RunRecord],
) {
    let now = history.clock.now();
    let journal = Journal::in_state(storage.clone(), &history.root, &pipeline.name);
    for record in records
        .iter_mut()
        .filter(|r| r.status == RunStatus::Running)
    {
        let publishing = (storage, single_writer);
        let published = match published_by(&journal, publishing, pipeline, record).await {
            Ok(published) => published,
            Err(error) => {
                tracing::warn!(pipeline = %record.pipeline, %error, "Could not read what is published; the unfinished run is settled later.");
                continue;
            }
        };
        let settled = match published {
            Some((rows, committed_at)) => RunRecord {
                status: RunStatus::Succeeded,
                rows,
                ended_at: Some(committed_at),
                ..record.clone()
            },
            None => RunRecord {
                status: RunStatus::Abandoned,
                ended_at: Some(now),
                error: Some(
                    "the process running it stopped without finishing; its lease expired"
                        .to_string(),
                ),
                ..record.clone()
            },
        };
        match history.save(&settled).await {
            Ok(()) => {
                tracing::warn!(pipeline = %record.pipeline, run_id = %record.run_id, status = ?settled.status, "A run left unfinished by another process is settled.");
                *record = settled;
            }
            Err(error) => tracing::warn!(%error, "Could not settle an unfinished run."),
        }
    }
}

/// The rows of each output and the time of the publication of `record`'s run, if it
/// published its date: decided in the journal, or live in every output.
async fn published_by(
    journal: &Journal,
    (storage, single_writer): (&Storage, bool),
    pipeline: &Pipeline,
    record: &RunRecord,
) -> Result<Option<(BTreeMap<String, u64>, DateTime<Utc>)>, PublishError> {
    if let Some(decision) = journal.decided(record.as_of).await?
        && decision.run_id == record.run_id
    {
        let run = publish::PublishingRun {
            pipeline: pipeline.name.clone(),
            as_of: record.as_of,
            run_id: record.run_id.clone(),
            ended_runs: BTreeSet::new(),
            single_writer,
        };
        publish::complete(storage, &pipeline.outputs, &run, &decision).await?;
        let rows = decision
            .outputs
            .iter()
            .map(|o| (o.table.clone(), o.rows()))
            .collect();
        return Ok(Some((rows, decision.decided_at)));
    }
    let mut published = BTreeMap::new();
    let mut committed_at = DateTime::<Utc>::MIN_UTC;
    for output in &pipeline.outputs {
        match publish::sink(storage, output)
            .committed(record.as_of)
            .await?
        {
            Some(m) if m.run_id == record.run_id => {
                published.insert(output.table.clone(), m.rows);
                committed_at = committed_at.max(m.committed_at);
            }
            _ => return Ok(None),
        }
    }
    Ok(Some((published, committed_at)))
}

/// The runs among `records` that have ended, whose leftovers a new run may remove.
pub fn ended_runs(records: &[RunRecord]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.status != RunStatus::Running)
        .map(|r| r.run_id.clone())
        .collect()
}

/// An error and its causes on one line, as stored in the history.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    crate::fault::causes(error).join(": ")
}

/// Told of the outcome of every run recorded through a history (the daemon's metrics).
pub type EndedRuns = std::sync::Arc<dyn Fn(&RunRecord) + Send + Sync>;

pub struct RunHistory {
    storage: Storage,
    root: Location,
    clock: Clock,
    ended: Option<EndedRuns>,
}

const READS_IN_FLIGHT: usize = 16;

impl RunHistory {
    pub fn new(storage: Storage, root: Location) -> RunHistory {
        RunHistory {
            storage,
            root: root.as_folder(),
            clock: Clock::System,
            ended: None,
        }
    }

    /// Tells `ended` of the outcome of every run recorded from here on (not of runs settled
    /// for dead processes), whether or not its save lands.
    pub fn telling(self, ended: EndedRuns) -> RunHistory {
        RunHistory {
            ended: Some(ended),
            ..self
        }
    }

    /// Stamps start and end times from `clock` (the scheduler's) instead of the system's.
    pub fn with_clock(self, clock: Clock) -> RunHistory {
        RunHistory { clock, ..self }
    }

    fn record_location(&self, record: &RunRecord) -> Location {
        self.root
            .join(&format!("runs/{}/{}.json", record.pipeline, record.run_id))
    }

    pub async fn save(&self, record: &RunRecord) -> Result<(), HistoryError> {
        let location = self.record_location(record);
        let store = self.storage.store(&location, &Default::default())?;
        let body = serde_json::to_vec_pretty(record).expect("a run record serialises");
        store
            .put(&location.path(), PutPayload::from(body))
            .await
            .map_err(|source| HistoryError::Store {
                action: "write",
                url: location.to_string(),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Every recorded run, of one pipeline or all, oldest first.
    pub async fn list(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>, HistoryError> {
        let folder = match pipeline {
            Some(name) => self.root.join(&format!("runs/{name}/")),
            None => self.root.join("runs/"),
        };
        let store = self.storage.store(&folder, &Default::default())?;
        let objects = self.storage.list(&folder, store.as_ref()).await?;
        let records: Vec<Result<RunRecord, HistoryError>> = futures::stream::iter(objects)
            .filter(|meta| std::future::ready(meta.location.as_ref().ends_with(".json")))
            .map(|meta| {
                let store = store.clone();
                let url = folder.join(&folder.relative(&meta.location)).to_string();
                async move {
                    let bytes =
                        read_object(store.as_ref(), &meta.location)
                            .await
                            .map_err(|source| HistoryError::Store {
                                action: "read",
                                url: url.clone(),
                                source: Box::new(source),
                            })?;
                    serde_json::from_slice(&bytes).map_err(|e| HistoryError::Corrupt {
                        url: url.clone(),
                        reason: e.to_string(),
                    })
                }
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut records = records.into_iter().collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)));
        Ok(records)
    }

    /// The logical dates of a pipeline that have a successful run.
    pub async fn succeeded(&self, pipeline: &str) -> Result<BTreeSet<NaiveDate>, HistoryError> {
        Ok(self
            .list(Some(pipeline))
            .await?
            .into_iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.as_of)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run_id: &str, as_of: u32, status: RunStatus) -> RunRecord {
        let as_of = NaiveDate::from_ymd_opt(2026, 1, as_of).unwrap();
        RunRecord {
            status,
            ..RunRecord::started("p", as_of, run_id, Utc::now())
        }
    }

    #[tokio::test]
    async fn records_are_saved_listed_and_updated() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(&format!("{}/", dir.path().display())).unwrap();
        let history = RunHistory::new(Storage::new(), root);
        let mut first = record("a", 1, RunStatus::Running);
        history.save(&first).await.unwrap();
        history
            .save(&record("b", 2, RunStatus::Failed))
            .await
            .unwrap();
        assert!(history.succeeded("p").await.unwrap().is_empty());
        first.status = RunStatus::Succeeded;
        history.save(&first).await.unwrap();
        let all = history.list(None).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            history.succeeded("p").await.unwrap(),
            [NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()].into()
        );
        assert!(history.list(Some("other")).await.unwrap().is_empty());
    }
}
