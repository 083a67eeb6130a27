//! Runs started from the command line (`run`, `backfill`): recorded in the history and run
//! under the pipeline's lease, stopped cleanly by the first SIGINT or SIGTERM.

use chrono::NaiveDate;

use segflow::cancel::{Cancel, CancelReason};
use segflow::engine::CacheSpec;
use segflow::history::{self, RunHistory};
use segflow::lease::{Lease, Leases};
use segflow::pipeline::{EngineOverrides, Pipeline};
use segflow::progress::Progress;
use segflow::publish::{Fence, Journal};
use segflow::run::{RunError, RunReport, RunRequest};
use segflow::storage::{Location, Storage};

use super::Failure;
use super::args::{HandRunArgs, StateArgs};

/// Runs started from the command line (not schedule slots): each recorded in the history and
/// run under the pipeline's lease, like the scheduler's, so that a hand run never runs
/// alongside the daemon's run of the same pipeline or another hand run.
pub(super) struct HandRunner {
    storage: Storage,
    pub(super) history: RunHistory,
    leases: Leases,
    wait: std::time::Duration,
    single_writer: bool,
    /// The state store, where incremental steps keep their files' results.
    state: Location,
    /// Whether incremental steps compute every file again (`--full`).
    full: bool,
    /// `--cluster` and `--scratch`, over the pipeline's own.
    engine: EngineOverrides,
    /// Cancelled by the first SIGINT or SIGTERM.
    stop: Cancel,
}

impl HandRunner {
    pub(super) fn new(args: &HandRunArgs) -> Result<HandRunner, Failure> {
        let storage = Storage::new();
        let state = Location::parse(&args.state.url)?;
        Ok(HandRunner {
            history: RunHistory::new(storage.clone(), state.clone()),
            leases: Leases::new(
                storage.clone(),
                &state,
                segflow::lease::unique_holder(),
                std::time::Duration::from_secs(args.lease.lease_seconds.max(1)),
                segflow::clock::Clock::System,
            ),
            storage,
            wait: std::time::Duration::from_secs(args.wait_for_lease),
            single_writer: args.lease.single_writer,
            state,
            full: args.full,
            engine: args.engine.overrides()?,
            stop: stop_signals(),
        })
    }

    pub(super) async fn run(
        &self,
        pipeline: &Pipeline,
        as_of: NaiveDate,
    ) -> Result<RunReport, Failure> {
        let pipeline = &pipeline.with_engine(&self.engine);
        // Before the lease and the history, which are written in the state store.
        let collisions = pipeline.collisions(Some(&self.state));
        if !collisions.is_empty() {
            return Err(RunError::Collisions(collisions).into());
        }
        let progress = Progress::for_terminal();
        let (mut lease, records) = loop {
            let lease = self.take_lease(&pipeline.name, &progress).await?;
            let mut records = match self.history.list(Some(&pipeline.name)).await {
                Ok(records) => records,
                Err(error) => {
                    let _ = lease.release().await;
                    return Err(error.into());
                }
            };
            let publishing = (&self.storage, self.single_writer);
            history::settle_unfinished(&self.history, publishing, pipeline, &mut records).await;
            if lease.has_a_third_left() {
                break (lease, records);
            }
            tracing::warn!(pipeline = %pipeline.name, "The lease ran low while the history was read; taking it again.");
            let _ = lease.release().await;
        };
        let request = RunRequest {
            ended_runs: history::ended_runs(&records),
            single_writer: self.single_writer,
            cache: Some(CacheSpec::in_state(&self.state, &pipeline.name, self.full)),
            state: Some(self.state.clone()),
            fence: Some(Fence {
                journal: Journal::in_state(self.storage.clone(), &self.state, &pipeline.name),
                token: lease.epoch(),
            }),
            ..RunRequest::new(as_of)
        };
        // Ctrl-C cancels cleanly: the run removes what it staged, is recorded `interrupted`,
        // and gives the lease back instead of leaving it to expire.
        let (outcome, lease_lost) = history::run_leased(
            &self.history,
            pipeline,
            &request,
            &progress,
            &mut lease,
            &self.stop,
        )
        .await;
        if !lease_lost && let Err(error) = lease.release().await {
            tracing::warn!(pipeline = %pipeline.name, %error, "Could not release the lease.");
        }
        Ok(outcome?)
    }

    /// Takes the pipeline's lease, waiting up to `--wait-for-lease` while another run holds
    /// it; then fails naming the holder.
    async fn take_lease(&self, pipeline: &str, progress: &Progress) -> Result<Lease, Failure> {
        let started = std::time::Instant::now();
        loop {
            if let Some(lease) = self.leases.acquire(pipeline).await? {
                return Ok(lease);
            }
            let holder = self.leases.holder_of(pipeline).await?;
            let holder = holder.map_or_else(|| "another process".to_string(), |h| h.to_string());
            if started.elapsed() >= self.wait {
                return Err(Failure::Environment(anyhow::anyhow!(
                    "pipeline '{pipeline}' is being run by {holder}; gave up after waiting \
                     {}s (--wait-for-lease). Two runs of one pipeline never run at once: try \
                     again when it is done (`segflow runs {pipeline}` shows it), or wait longer",
                    self.wait.as_secs()
                )));
            }
            progress.message(format!("waiting for the lease: {holder}"));
            tracing::info!(%pipeline, %holder, "Waiting for the pipeline's lease.");
            let left = self.wait.saturating_sub(started.elapsed());
            tokio::select! {
                _ = self.stop.cancelled() => {
                    return Err(Failure::Environment(anyhow::anyhow!(
                        "stopped by SIGINT or SIGTERM while waiting for the lease of pipeline '{pipeline}'"
                    )));
                }
                () = tokio::time::sleep(left.min(std::time::Duration::from_millis(500))) => {}
            }
        }
    }
}
pub(super) fn open_history(state: &StateArgs) -> Result<RunHistory, Failure> {
    Ok(RunHistory::new(
        Storage::new(),
        Location::parse(&state.url)?,
    ))
}

/// Cancelled at the first SIGINT or SIGTERM, for hand runs to stop cleanly. The second
/// exits at once (130, as a shell reports Ctrl-C): what is published stays consistent, since
/// each output's commit is one write, and the next run removes what this one left.
fn stop_signals() -> Cancel {
    let stop = Cancel::new();
    let signalled = stop.clone();
    tokio::spawn(async move {
        stop_requested().await;
        signalled.cancel(CancelReason::Signal);
        stop_requested().await;
        std::process::exit(130);
    });
    stop
}

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
