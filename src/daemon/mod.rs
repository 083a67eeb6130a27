//! `segflow schedule`: the CLI in a loop. Every tick it re-reads the pipeline folder (a
//! broken edit is reported and the last good version keeps running), finds the slots each
//! schedule makes due, and runs them through the same recorded run as `segflow run`, one
//! pipeline at a time under a lease in the state store, so that two daemons on one state
//! never run a pipeline twice at once or a slot twice. Stopping (SIGTERM, SIGINT) starts no
//! new run and gives a running one a grace period before cancelling it.

mod folder;
mod http;
mod slots;
mod status;

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
use crate::history::{HistoryError, RunHistory};
use crate::lease::Leases;
use crate::pipeline::Pipeline;
use crate::runner::Runner;
use crate::schedule::{Slot, due_slots};
use crate::storage::{Location, Storage};
use folder::Loaded;
use status::DaemonStatus;

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
    /// The folders and buckets the pipelines may read and write (`--root`); anywhere when
    /// empty. A pipeline with a location elsewhere does not load.
    pub roots: Vec<Location>,
}

/// What a daemon did: `--once` exits non-zero when a run failed, so that cron or a
/// Kubernetes CronJob sees it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub published: usize,
    pub failed: usize,
    /// Runs stopped from outside (a stop, a lost lease): their slots run again at the next
    /// catch-up.
    pub interrupted: usize,
    /// Pipeline files that did not load when the daemon stopped.
    pub unloadable: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.published += other.published;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
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
    runner: Arc<Runner>,
    signals: Signals,
    status: Arc<DaemonStatus>,
}

/// How far back a pipeline with no successful run looks for a missed slot, so that a first
/// start (or a `--once` from cron) runs the latest slot under `catchup: latest`.
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

/// Catch-up never looks further back than this, so that a pipeline paused for years does
/// not enumerate every slot since.
const MAX_LOOKBACK: chrono::Duration = chrono::Duration::days(366);

pub async fn run(config: DaemonConfig, stop: impl std::future::Future<Output = ()>) -> Tally {
    run_serving(config, None, stop).await
}

/// The status page, health and metrics of a daemon (`segflow schedule --http`).
pub struct StatusServer {
    pub listener: tokio::net::TcpListener,
    /// How often the state store is asked for a sign of life; `/healthz` fails when its
    /// last answer is older than two of these.
    pub interval: Duration,
    /// The PostgreSQL protocol server beside the daemon (`--serve`), whose counts the page
    /// and `/metrics` show.
    pub serving: Option<crate::serve::Serving>,
}

/// [`run`], answering on `server` meanwhile.
pub async fn run_serving(
    config: DaemonConfig,
    server: Option<StatusServer>,
    stop: impl std::future::Future<Output = ()>,
) -> Tally {
    let interval = server.as_ref().map(|s| s.interval);
    let serving = server.as_ref().and_then(|s| s.serving.clone());
    let mut scheduler = Scheduler::new(config, interval, serving);
    let serving = CancellationToken::new();
    if let Some(server) = server {
        let context = &scheduler.context;
        let pages = http::Pages {
            status: Arc::clone(&context.status),
            runner: Arc::clone(&context.runner),
            storage: context.storage.clone(),
            clock: context.config.clock.clone(),
        };
        tokio::spawn(http::serve(server.listener, pages, serving.clone()));
    }
    tokio::pin!(stop);
    let stop_asked = scheduler.watch(stop.as_mut()).await;
    let tally = scheduler.shut_down(stop_asked, stop).await;
    serving.cancel();
    tally
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
    /// How often to ask the state store for a sign of life, when a status page is served.
    store_interval: Option<Duration>,
}

impl Scheduler {
    fn new(
        config: DaemonConfig,
        store_interval: Option<Duration>,
        serving: Option<crate::serve::Serving>,
    ) -> Scheduler {
        let clock = config.clock.clone();
        let storage = Storage::new();
        let holder = crate::lease::unique_holder();
        let status = Arc::new(DaemonStatus::new(
            store_interval.unwrap_or(Duration::from_secs(30)),
            holder.clone(),
            clock.now(),
            serving,
        ));
        let ended = Arc::clone(&status);
        let leases = Leases::new(
            storage.clone(),
            &config.state,
            holder,
            config.lease_ttl,
            clock.clone(),
        );
        let runner = Runner::new(storage.clone(), &config.state, leases, config.single_writer)
            .with_clock(clock)
            .telling(Arc::new(move |record| ended.run_ended(record)));
        Scheduler {
            context: Context {
                config,
                storage,
                runner: Arc::new(runner),
                signals: Signals {
                    stopping: CancellationToken::new(),
                    cancel: Cancel::new(),
                },
                status,
            },
            loaded: BTreeMap::new(),
            unloadable: BTreeMap::new(),
            considered: HashMap::new(),
            running: JoinSet::new(),
            busy: HashSet::new(),
            tally: Tally::default(),
            store_interval,
        }
    }

    /// Ticks until `stop` resolves (true) or, with `--once`, after the first tick (false).
    async fn watch(&mut self, mut stop: Pin<&mut impl Future<Output = ()>>) -> bool {
        let config = self.context.config.clone();
        tracing::info!(pipelines = %config.pipelines.display(), state = %config.state, holder = self.context.runner.leases().holder(), "Scheduler started.");
        loop {
            folder::reload(
                (&config.pipelines, &config.state, &config.roots),
                &mut self.loaded,
                &mut self.unloadable,
            );
            self.report_alive();
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

    /// Tells the status page that the loop goes round, and with a status page, asks the
    /// state store for a sign of life once an interval, in a task of its own so that a store
    /// that hangs never holds the loop up.
    fn report_alive(&mut self) {
        let context = &self.context;
        let now = context.config.clock.now();
        let pipelines = self
            .loaded
            .values()
            .map(|entry| Arc::clone(&entry.pipeline))
            .collect();
        let unloadable = self
            .unloadable
            .iter()
            .map(|(file, error)| (file.clone(), error.clone()))
            .collect();
        context.status.ticked(now, pipelines, unloadable);
        let Some(interval) = self.store_interval else {
            return;
        };
        if !context.status.ask_store(now) {
            return;
        }
        let (storage, state) = (context.storage.clone(), context.config.state.clone());
        let (status, clock) = (Arc::clone(&context.status), context.config.clock.clone());
        tokio::spawn(async move {
            let no_options = BTreeMap::new();
            let probe = storage.probe(&state, &no_options);
            let outcome = match tokio::time::timeout(interval, probe).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(crate::fault::one_line(&error)),
                Err(_) => Err(format!("no answer within {}s", interval.as_secs())),
            };
            if let Err(error) = &outcome {
                tracing::warn!(%state, %error, "The state store does not answer.");
            }
            status.store_answered(clock.now(), outcome);
        });
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
            self.context.status.alive(self.context.config.clock.now());
            let last = self.considered.get(&pipeline.name);
            let context = &self.context;
            let Some(due) = due_now(
                &pipeline,
                context.runner.history(),
                &context.status,
                last,
                now,
            )
            .await
            else {
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
            interrupted = tally.interrupted,
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
    status: &DaemonStatus,
    last_considered: Option<&DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Vec<Slot>> {
    let schedule = pipeline.schedule.as_ref()?;
    if let Some(&last) = last_considered
        && schedule.slots.slots_between(last, now).is_empty()
    {
        return Some(Vec::new());
    }
    let succeeded = match succeeded_slots(history, status, &pipeline.name).await {
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

/// The slots that succeeded, as the history says; its newest success goes to `status`.
async fn succeeded_slots(
    history: &RunHistory,
    status: &DaemonStatus,
    pipeline: &str,
) -> Result<BTreeSet<DateTime<Utc>>, HistoryError> {
    let succeeded = history.succeeded(pipeline).await?;
    if let Some(ended) = succeeded.iter().filter_map(|r| r.ended_at).max() {
        status.success_seen(pipeline, ended);
    }
    Ok(succeeded.into_iter().filter_map(|r| r.slot).collect())
}
