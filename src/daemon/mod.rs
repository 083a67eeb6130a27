//! `segflow schedule`: the CLI in a loop. Every tick it re-reads the pipeline folder (a
//! broken edit is reported and the last good version keeps running), finds the slots each
//! schedule makes due, and runs them through the same recorded run as `segflow run`, one
//! pipeline at a time under a lease in the state store, so that two daemons on one state
//! never run a pipeline twice at once or a slot twice. Stopping (SIGTERM, SIGINT) starts no
//! new run and gives a running one a grace period before cancelling it.

mod folder;
mod slots;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cancel::{Cancel, CancelReason};
use crate::clock::Clock;
use crate::history::{HistoryError, RunHistory, RunStatus};
use crate::lease::Leases;
use crate::pipeline::Pipeline;
use crate::schedule::{Slot, due_slots};
use crate::storage::{Location, Storage};
use folder::Loaded;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub pipelines: PathBuf,
    pub state: Location,
    /// Run what is due now, then exit.
    pub once: bool,
    /// How long a running run may go on after a stop was asked for.
    pub grace: Duration,
    pub lease_ttl: Duration,
    pub tick: Duration,
    pub clock: Clock,
    /// Publish with plain writes where a store cannot write conditionally (see
    /// [`RunRequest::single_writer`]).
    pub single_writer: bool,
}

/// What a daemon did: `--once` exits non-zero when a run failed, so that cron or a
/// Kubernetes CronJob sees it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub published: usize,
    pub failed: usize,
    /// Pipeline files that did not load when the daemon stopped.
    pub unloadable: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.published += other.published;
        self.failed += other.failed;
        self.unloadable += other.unloadable;
    }
}

/// What every pipeline task is told: stop starting runs (`stopping`), and cancel the
/// running one (`cancel`, after the grace period).
#[derive(Clone)]
struct Signals {
    stopping: CancellationToken,
    cancel: Cancel,
}

/// What one pipeline's slots need besides the pipeline itself.
#[derive(Clone)]
struct Context {
    config: DaemonConfig,
    storage: Storage,
    history: Arc<RunHistory>,
    leases: Leases,
    signals: Signals,
}

/// How far back a pipeline with no successful run looks for a missed slot, so that a first
/// start (or a `--once` from cron) runs the latest slot under `catchup: latest`.
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

/// Catch-up never looks further back than this, so that a pipeline paused for years does
/// not enumerate every slot since.
const MAX_LOOKBACK: chrono::Duration = chrono::Duration::days(366);

pub async fn run(config: DaemonConfig, stop: impl std::future::Future<Output = ()>) -> Tally {
    let mut scheduler = Scheduler::new(config);
    tokio::pin!(stop);
    let stop_asked = scheduler.watch(stop.as_mut()).await;
    scheduler.shut_down(stop_asked, stop).await
}

/// The daemon's state between ticks.
struct Scheduler {
    context: Context,
    loaded: BTreeMap<PathBuf, Loaded>,
    /// Pipeline files whose last edit does not load, with the error.
    unloadable: BTreeMap<PathBuf, String>,
    /// When each pipeline's schedule was last looked at.
    considered: HashMap<String, DateTime<Utc>>,
    /// One task per pipeline with slots being run.
    running: JoinSet<(String, Tally)>,
    busy: HashSet<String>,
    tally: Tally,
}

impl Scheduler {
    fn new(config: DaemonConfig) -> Scheduler {
        let clock = config.clock.clone();
        let storage = Storage::new();
        let history =
            RunHistory::new(storage.clone(), config.state.clone()).with_clock(clock.clone());
        let leases = Leases::new(
            storage.clone(),
            &config.state,
            crate::lease::unique_holder(),
            config.lease_ttl,
            clock,
        );
        Scheduler {
            context: Context {
                config,
                storage,
                history: Arc::new(history),
                leases,
                signals: Signals {
                    stopping: CancellationToken::new(),
                    cancel: Cancel::new(),
                },
            },
            loaded: BTreeMap::new(),
            unloadable: BTreeMap::new(),
            considered: HashMap::new(),
            running: JoinSet::new(),
            busy: HashSet::new(),
            tally: Tally::default(),
        }
    }

    /// Ticks until `stop` resolves (true) or, with `--once`, after the first tick (false).
    async fn watch(&mut self, mut stop: Pin<&mut impl Future<Output = ()>>) -> bool {
        let config = self.context.config.clone();
        tracing::info!(pipelines = %config.pipelines.display(), state = %config.state, holder = self.context.leases.holder(), "Scheduler started.");
        loop {
            folder::reload(&config.pipelines, &mut self.loaded, &mut self.unloadable);
            self.collect_finished();
            self.start_due().await;
            if config.once {
                return false;
            }
            tokio::select! {
                biased;
                () = stop.as_mut() => return true,
                () = config.clock.sleep(config.tick) => {}
            }
        }
    }

    /// Counts the pipeline tasks that have ended since the last tick.
    fn collect_finished(&mut self) {
        while let Some(finished) = self.running.try_join_next() {
            self.count(finished);
        }
    }

    fn count(&mut self, finished: Result<(String, Tally), tokio::task::JoinError>) {
        match finished {
            Ok((pipeline, tally)) => {
                self.busy.remove(&pipeline);
                self.tally += tally;
            }
            Err(error) => {
                tracing::error!(%error, "A pipeline task ended abnormally.");
                self.tally.failed += 1;
            }
        }
    }

    /// Starts a task for each idle scheduled pipeline with slots due now.
    async fn start_due(&mut self) {
        let now = self.context.config.clock.now();
        let pipelines: Vec<Arc<Pipeline>> = self
            .loaded
            .values()
            .map(|entry| Arc::clone(&entry.pipeline))
            .filter(|p| p.schedule.is_some() && !self.busy.contains(&p.name))
            .collect();
        for pipeline in pipelines {
            let last = self.considered.get(&pipeline.name);
            let Some(due) = due_now(&pipeline, &self.context.history, last, now).await else {
                // Looked at again next tick; --once has no next tick.
                if self.context.config.once {
                    self.tally.failed += 1;
                }
                continue;
            };
            self.considered.insert(pipeline.name.clone(), now);
            if due.is_empty() {
                continue;
            }
            for slot in &due {
                tracing::info!(pipeline = %pipeline.name, due = %slot.due, as_of = %slot.as_of, "Slot due.");
            }
            self.busy.insert(pipeline.name.clone());
            let context = self.context.clone();
            self.running.spawn(async move {
                let tally = slots::run_slots(&pipeline, due, context).await;
                (pipeline.name.clone(), tally)
            });
        }
    }

    /// Waits for the running tasks: all of them without a stop (`--once`), else for the grace
    /// period, then cancels what still runs. A stop during `--once`'s wait counts as a stop.
    async fn shut_down(
        mut self,
        stop_asked: bool,
        mut stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Tally {
        let config = self.context.config.clone();
        self.tally.unloadable = self.unloadable.len();
        if !stop_asked {
            loop {
                tokio::select! {
                    biased;
                    finished = self.running.join_next() => match finished {
                        Some(finished) => self.count(finished),
                        None => return self.stopped(),
                    },
                    () = stop.as_mut() => break,
                }
            }
        }
        tracing::info!("Stop asked for: no new runs will start.");
        self.context.signals.stopping.cancel();
        let grace = config.clock.sleep(config.grace);
        tokio::pin!(grace);
        let mut cancelled = false;
        loop {
            tokio::select! {
                finished = self.running.join_next() => match finished {
                    Some(finished) => self.count(finished),
                    None => return self.stopped(),
                },
                () = &mut grace, if !cancelled => {
                    tracing::warn!(grace_seconds = config.grace.as_secs(), "Grace period over: cancelling the running runs.");
                    self.context.signals.cancel.cancel(CancelReason::Shutdown);
                    cancelled = true;
                }
            }
        }
    }

    fn stopped(self) -> Tally {
        let tally = self.tally;
        tracing::info!(
            published = tally.published,
            failed = tally.failed,
            unloadable = tally.unloadable,
            "Scheduler stopped."
        );
        tally
    }
}

/// The slots of a pipeline to run now, or None when its history cannot be read (it is
/// looked at again next tick). A failed slot is retried by the next catch-up: whenever a
/// new slot comes due, missed slots are counted from the newest one that succeeded.
async fn due_now(
    pipeline: &Pipeline,
    history: &RunHistory,
    last_considered: Option<&DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Vec<Slot>> {
    let schedule = pipeline.schedule.as_ref()?;
    if let Some(&last) = last_considered
        && schedule.slots.slots_between(last, now).is_empty()
    {
        return Some(Vec::new());
    }
    let succeeded = match succeeded_slots(history, &pipeline.name).await {
        Ok(succeeded) => succeeded,
        Err(error) => {
            tracing::warn!(pipeline = %pipeline.name, %error, "Could not read the run history; will look again.");
            return None;
        }
    };
    let since = succeeded
        .last()
        .copied()
        .unwrap_or(now - FIRST_LOOKBACK)
        .max(now - MAX_LOOKBACK);
    // Before the first look, only a slot due in the last minute came due while we watched.
    let watched_since = last_considered
        .copied()
        .unwrap_or(now - chrono::Duration::minutes(1));
    Some(due_slots(
        &schedule.slots,
        schedule.catchup,
        since,
        watched_since,
        now,
        |slot| succeeded.contains(&slot.due),
    ))
}

async fn succeeded_slots(
    history: &RunHistory,
    pipeline: &str,
) -> Result<BTreeSet<DateTime<Utc>>, HistoryError> {
    Ok(history
        .list(Some(pipeline))
        .await?
        .into_iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .filter_map(|r| r.slot)
        .collect())
}
