//! A run's life around the run itself: the pipeline's lease taken and kept, the history
//! read and runs left unfinished by dead processes settled, the run recorded before it
//! starts and when it ends, and the after-run hooks told (`after`). Hand runs and the
//! scheduler go through here alike; each keeps only its own policy (how long to wait for
//! the lease, when to retry).

mod after;
mod settle;

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use crate::cancel::Cancel;
use crate::clock::Clock;
use crate::engine::CacheSpec;
use crate::history::{HistoryError, RunHistory, RunRecord, RunStatus};
use crate::lease::{Holder, Lease, LeaseError, Leases};
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::publish::{Fence, Journal};
use crate::run::{self, RunError, RunReport, RunRequest};
use crate::storage::{Location, Storage};

use after::AfterRun;
pub use after::EndedRuns;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl RunnerError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            RunnerError::Lease(e) => e.fault(),
            RunnerError::History(e) => e.fault(),
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

/// Runs pipelines whose history, leases and incremental results live in one state store.
pub struct Runner {
    storage: Storage,
    state: Location,
    history: RunHistory,
    leases: Leases,
    clock: Clock,
    /// Publish with plain writes on stores that cannot write conditionally (`--single-writer`).
    single_writer: bool,
    after: Vec<AfterRun>,
}

/// What to run under a lease: the date, and for the scheduler the slot and which try.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    pub as_of: NaiveDate,
    pub slot: Option<DateTime<Utc>>,
    /// Which try of its slot this is, from 1.
    pub attempt: u32,
    /// Whether incremental steps compute every file again (`--full`).
    pub full: bool,
}

impl Order {
    /// A run asked for from the command line.
    pub fn by_hand(as_of: NaiveDate, full: bool) -> Order {
        Order {
            as_of,
            slot: None,
            attempt: 1,
            full,
        }
    }
}

/// How a run under a lease went. A lost lease is told apart: the lease must not be
/// released then (another process may hold it), and the run is an interruption.
pub struct RunOutcome {
    pub result: Result<RunReport, RecordedRunError>,
    pub lease_lost: bool,
}

impl RunOutcome {
    /// Stopped from outside rather than failed.
    pub fn interrupted(&self) -> bool {
        self.lease_lost
            || self
                .result
                .as_ref()
                .is_err_and(RecordedRunError::is_interruption)
    }
}

impl Runner {
    /// Stamps times from the system clock, and tells the webhook and writes the report
    /// after each run.
    pub fn new(storage: Storage, state: &Location, leases: Leases, single_writer: bool) -> Runner {
        Runner {
            history: RunHistory::new(storage.clone(), state.clone()),
            state: state.as_folder(),
            storage,
            leases,
            clock: Clock::System,
            single_writer,
            after: vec![AfterRun::Webhook, AfterRun::Report],
        }
    }

    /// Stamps start and end times from `clock` (the scheduler's) instead of the system's.
    pub fn with_clock(self, clock: Clock) -> Runner {
        Runner { clock, ..self }
    }

    /// Tells `ended` first of the outcome of every run from here on (not of runs settled for
    /// dead processes), whether or not its record lands.
    pub fn telling(mut self, ended: EndedRuns) -> Runner {
        self.after.insert(0, AfterRun::Tell(ended));
        self
    }

    pub fn history(&self) -> &RunHistory {
        &self.history
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Takes the pipeline's lease if no one holds it, then reads the pipeline's history
    /// under it and settles the runs that dead processes left `running`. The lease returned
    /// has at least a third left: one that ran low meanwhile is taken again. None when
    /// another process holds it; an error after giving it back.
    pub async fn lease<'r>(
        &'r self,
        pipeline: &'r Pipeline,
    ) -> Result<Option<Leased<'r>>, RunnerError> {
        loop {
            let Some(lease) = self.leases.acquire(&pipeline.name).await? else {
                return Ok(None);
            };
            let mut records = match self.history.list(Some(&pipeline.name)).await {
                Ok(records) => records,
                Err(error) => {
                    release(lease, &pipeline.name).await;
                    return Err(error.into());
                }
            };
            settle::settle_unfinished(self, pipeline, &mut records).await;
            if lease.has_a_third_left() {
                return Ok(Some(Leased {
                    runner: self,
                    pipeline,
                    lease,
                    records,
                }));
            }
            tracing::warn!(pipeline = %pipeline.name, "The lease ran low while the history was read; taking it again.");
            release(lease, &pipeline.name).await;
        }
    }

    /// Who holds the pipeline's lease, if anyone.
    pub async fn holder_of(&self, pipeline: &str) -> Result<Option<Holder>, LeaseError> {
        self.leases.holder_of(pipeline).await
    }

    /// Runs a pipeline and records the run: a `running` record before it starts (so a run
    /// that dies is visible), then its outcome, which the after-run hooks are told.
    /// Cancelled with `cancel`, as [`run::run_until`] is; the reason is recorded, and an
    /// interruption recorded as such rather than as a failure.
    async fn run_recorded(
        &self,
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
                self.clock.now(),
            )
        };
        self.history.save(&record).await?;
        let outcome = run::run_until(pipeline, request, progress, cancel)
            .await
            .map_err(RecordedRunError::from);
        record.ended_at = Some(self.clock.now());
        match &outcome {
            Ok(report) => record_success(&mut record, report),
            Err(error) => {
                let interrupted = error.is_interruption();
                // Interrupted, and then failed on something else: a request in flight while
                // the process was frozen past its lease fails when it resumes. The
                // interruption is why the run did not finish, and what its record says first.
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
                let told = crate::fault::one_line(error);
                record.error = Some(match interrupted_first {
                    Some(reason) => format!("{reason}; then: {told}"),
                    None => told,
                });
            }
        }
        // The outcome matters more than its record: a run that published stays a success (a
        // retry would publish again), and a failure keeps its own error.
        if let Err(error) = self.history.save(&record).await {
            tracing::warn!(pipeline = %record.pipeline, run_id = %record.run_id, %error, "Could not record the run's outcome; the history still shows it running.");
        }
        for hook in &self.after {
            hook.run_ended(self, pipeline, &record, cancel).await;
        }
        outcome
    }
}

/// A pipeline's lease, held, with its history as read under it.
pub struct Leased<'r> {
    runner: &'r Runner,
    pipeline: &'r Pipeline,
    lease: Lease,
    records: Vec<RunRecord>,
}

impl Leased<'_> {
    /// The pipeline's runs, oldest first, those left unfinished settled.
    pub fn records(&self) -> &[RunRecord] {
        &self.records
    }

    /// Who let the lease expire without giving it up, when taking it was a takeover.
    pub fn taken_over(&self) -> Option<&Holder> {
        self.lease.taken_over()
    }

    /// Gives the lease back without running.
    pub async fn release(self) {
        release(self.lease, &self.pipeline.name).await;
    }

    /// Runs `order` while the lease is kept renewed, then gives the lease back. A lost lease
    /// cancels the run as an interruption. The lease is renewed until the run has finished,
    /// commits included, since a cancelled run still finishes committing.
    pub async fn run(mut self, order: Order, progress: &Progress, cancel: &Cancel) -> RunOutcome {
        let runner = self.runner;
        let name = &self.pipeline.name;
        let ended_runs: BTreeSet<String> = self
            .records
            .iter()
            .filter(|r| r.status != RunStatus::Running)
            .map(|r| r.run_id.clone())
            .collect();
        let request = RunRequest {
            ended_runs,
            single_writer: runner.single_writer,
            cache: Some(CacheSpec::in_state(&runner.state, name, order.full)),
            state: Some(runner.state.clone()),
            fence: Some(Fence {
                journal: Journal::in_state(runner.storage.clone(), &runner.state, name),
                token: self.lease.epoch(),
            }),
            slot: order.slot,
            attempt: order.attempt,
            ..RunRequest::new(order.as_of)
        };
        let cancel = cancel.child();
        let (result, lease_lost) = {
            let run = runner.run_recorded(self.pipeline, &request, progress, &cancel);
            let keeping = self.lease.keep(&cancel);
            tokio::pin!(run);
            tokio::pin!(keeping);
            tokio::select! {
                outcome = &mut run => (outcome, false),
                () = &mut keeping => (run.await, true),
            }
        };
        if !lease_lost {
            release(self.lease, name).await;
        }
        RunOutcome { result, lease_lost }
    }
}

fn record_success(record: &mut RunRecord, report: &RunReport) {
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

async fn release(lease: Lease, pipeline: &str) {
    if let Err(error) = lease.release().await {
        tracing::warn!(%pipeline, %error, "Could not release the lease.");
    }
}
