//! Runs started from the command line (`run`, `backfill`): recorded in the history and run
//! under the pipeline's lease, stopped cleanly by the first SIGINT or SIGTERM.

use chrono::NaiveDate;

use segflow::cancel::{Cancel, CancelReason};
use segflow::history::RunHistory;
use segflow::lease::Leases;
use segflow::pipeline::{EngineOverrides, Pipeline};
use segflow::progress::Progress;
use segflow::run::{RunError, RunReport};
use segflow::runner::{Leased, Order, Runner};
use segflow::storage::{Location, Storage};

use super::Failure;
use super::args::{HandRunArgs, StateArgs};

/// Runs started from the command line (not schedule slots): each recorded in the history and
/// run under the pipeline's lease, like the scheduler's, so that a hand run never runs
/// alongside the daemon's run of the same pipeline or another hand run. What is its own: it
/// waits for the lease up to `--wait-for-lease`, and the first SIGINT or SIGTERM stops it.
pub(super) struct HandRunner {
    pub(super) runner: Runner,
    wait: std::time::Duration,
    /// The state store, where the history, the leases and incremental results are.
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
        let leases = Leases::new(
            storage.clone(),
            &state,
            segflow::lease::unique_holder(),
            std::time::Duration::from_secs(args.lease.lease_seconds.max(1)),
            segflow::clock::Clock::System,
        );
        Ok(HandRunner {
            runner: Runner::new(storage, &state, leases, args.lease.single_writer),
            wait: std::time::Duration::from_secs(args.wait_for_lease),
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
        let leased = self.take_lease(pipeline, &progress).await?;
        // Ctrl-C cancels cleanly: the run removes what it staged, is recorded `interrupted`,
        // and gives the lease back instead of leaving it to expire.
        let order = Order::by_hand(as_of, self.full);
        Ok(leased.run(order, &progress, &self.stop).await.result?)
    }

    /// Takes the pipeline's lease, waiting up to `--wait-for-lease` while another run holds
    /// it; then fails naming the holder.
    async fn take_lease<'r>(
        &'r self,
        pipeline: &'r Pipeline,
        progress: &Progress,
    ) -> Result<Leased<'r>, Failure> {
        let name = &pipeline.name;
        let started = std::time::Instant::now();
        loop {
            if let Some(leased) = self.runner.lease(pipeline).await? {
                return Ok(leased);
            }
            let holder = self.runner.holder_of(name).await?;
            let holder = holder.map_or_else(|| "another process".to_string(), |h| h.to_string());
            if started.elapsed() >= self.wait {
                return Err(Failure::Environment(anyhow::anyhow!(
                    "pipeline '{name}' is being run by {holder}; gave up after waiting \
                     {}s (--wait-for-lease). Two runs of one pipeline never run at once: try \
                     again when it is done (`segflow runs {name}` shows it), or wait longer",
                    self.wait.as_secs()
                )));
            }
            progress.message(format!("waiting for the lease: {holder}"));
            tracing::info!(pipeline = %name, %holder, "Waiting for the pipeline's lease.");
            let left = self.wait.saturating_sub(started.elapsed());
            tokio::select! {
                _ = self.stop.cancelled() => {
                    return Err(Failure::Environment(anyhow::anyhow!(
                        "stopped by SIGINT or SIGTERM while waiting for the lease of pipeline '{name}'"
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
