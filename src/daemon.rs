//! `segflow schedule`: the CLI in a loop. Every tick it re-reads the pipeline folder (a
//! broken edit is reported and the last good version keeps running), finds the slots each
//! schedule makes due, and runs them through the same recorded run as `segflow run`, one
//! pipeline at a time under a lease in the state store, so that two daemons on one state
//! never run a pipeline twice at once or a slot twice. Stopping (SIGTERM, SIGINT) starts no
//! new run and gives a running one a grace period before cancelling it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::lease::{Lease, Leases};
use crate::pipeline::{LoadOptions, Pipeline};
use crate::progress::Progress;
use crate::run::{RunReport, RunRequest};
use crate::runs::{
    self, Cancellation, HistoryError, RecordedRunError, RunHistory, RunRecord, RunStatus,
};
use crate::schedule::{Slot, due_slots};
use crate::storage::{Location, Storage};

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

/// Told to every pipeline task: stop starting runs (`stopping`), and cancel the running one
/// (`cancel`, after the grace period).
#[derive(Clone)]
struct Signals {
    stopping: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
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

struct Loaded {
    pipeline: Arc<Pipeline>,
    fingerprint: Fingerprint,
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>)>;

pub async fn run(config: DaemonConfig, stop: impl std::future::Future<Output = ()>) -> Tally {
    let clock = config.clock.clone();
    let storage = Storage::new();
    let history =
        Arc::new(RunHistory::new(storage.clone(), config.state.clone()).with_clock(clock.clone()));
    let holder = crate::lease::unique_holder();
    let leases = Leases::new(
        storage.clone(),
        &config.state,
        holder,
        config.lease_ttl,
        clock.clone(),
    );
    let (stopping_tx, stopping) = watch::channel(false);
    let (cancel_tx, cancel) = watch::channel(false);
    let context = Context {
        config: config.clone(),
        storage,
        history: Arc::clone(&history),
        leases,
        signals: Signals { stopping, cancel },
    };
    let mut loaded: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut unloadable: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut considered: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut running: HashMap<String, JoinHandle<Tally>> = HashMap::new();
    let mut tally = Tally::default();
    tracing::info!(pipelines = %config.pipelines.display(), state = %config.state, holder = context.leases.holder(), "Scheduler started.");
    tokio::pin!(stop);
    let stop_asked = loop {
        reload(&config.pipelines, &mut loaded, &mut unloadable);
        tally += collect_finished(&mut running).await;
        let now = clock.now();
        for entry in loaded.values() {
            let pipeline = &entry.pipeline;
            if pipeline.schedule.is_none() || running.contains_key(&pipeline.name) {
                continue;
            }
            let Some(due) = due_now(pipeline, &history, considered.get(&pipeline.name), now).await
            else {
                // Looked at again next tick; --once has no next tick.
                if config.once {
                    tally.failed += 1;
                }
                continue;
            };
            considered.insert(pipeline.name.clone(), now);
            if due.is_empty() {
                continue;
            }
            for slot in &due {
                tracing::info!(pipeline = %pipeline.name, due = %slot.due, as_of = %slot.as_of, "Slot due.");
            }
            let task = tokio::spawn(run_slots(Arc::clone(pipeline), due, context.clone()));
            running.insert(pipeline.name.clone(), task);
        }
        if config.once {
            break false;
        }
        tokio::select! {
            biased;
            () = &mut stop => break true,
            () = clock.sleep(config.tick) => {}
        }
    };
    tally.unloadable = unloadable.len();
    let waiting = futures::future::join_all(running.into_values());
    tokio::pin!(waiting);
    if !stop_asked {
        tokio::select! {
            biased;
            finished = &mut waiting => {
                tally += sum(finished);
                tracing::info!(published = tally.published, failed = tally.failed, unloadable = tally.unloadable, "Scheduler stopped.");
                return tally;
            }
            () = &mut stop => {}
        }
    }
    tracing::info!("Stop asked for: no new runs will start.");
    let _ = stopping_tx.send(true);
    let finished = tokio::select! {
        finished = &mut waiting => finished,
        () = clock.sleep(config.grace) => {
            tracing::warn!(grace_seconds = config.grace.as_secs(), "Grace period over: cancelling the running runs.");
            let _ = cancel_tx.send(true);
            waiting.await
        }
    };
    tally += sum(finished);
    tracing::info!(
        published = tally.published,
        failed = tally.failed,
        unloadable = tally.unloadable,
        "Scheduler stopped."
    );
    tally
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

async fn collect_finished(running: &mut HashMap<String, JoinHandle<Tally>>) -> Tally {
    let finished: Vec<String> = running
        .iter()
        .filter(|(_, task)| task.is_finished())
        .map(|(name, _)| name.clone())
        .collect();
    let mut tally = Tally::default();
    for name in finished {
        if let Some(task) = running.remove(&name) {
            tally += sum(vec![task.await]);
        }
    }
    tally
}

fn sum(finished: Vec<Result<Tally, tokio::task::JoinError>>) -> Tally {
    let mut tally = Tally::default();
    for outcome in finished {
        match outcome {
            Ok(one) => tally += one,
            Err(error) => {
                tracing::error!(%error, "A pipeline task ended abnormally.");
                tally.failed += 1;
            }
        }
    }
    tally
}

/// Runs the due slots of one pipeline in order.
async fn run_slots(pipeline: Arc<Pipeline>, slots: Vec<Slot>, mut context: Context) -> Tally {
    let mut tally = Tally::default();
    for slot in slots {
        if *context.signals.stopping.borrow() {
            break;
        }
        match run_slot(&pipeline, slot, &mut context).await {
            SlotOutcome::Published => tally.published += 1,
            SlotOutcome::RanElsewhere => {}
            SlotOutcome::Failed => tally.failed += 1,
            SlotOutcome::Stopped => break,
        }
    }
    tally
}

enum SlotOutcome {
    Published,
    RanElsewhere,
    Failed,
    /// A stop was asked for before the slot could start.
    Stopped,
}

/// How many state-store errors in a row a slot tolerates while taking the lease; after them
/// it counts as failed (and the next catch-up takes it again).
const STORE_ERRORS_TOLERATED: usize = 5;

/// Runs one slot, retrying with exponential backoff. Each try holds the lease only while it
/// runs: the lease is taken (and the history read again) before, released after, so that no
/// lease lapses unrenewed during a backoff. The attempt number and the wait come from the
/// history, so a retry taken over by another daemon keeps count and keeps the backoff.
async fn run_slot(pipeline: &Pipeline, slot: Slot, context: &mut Context) -> SlotOutcome {
    let schedule = pipeline
        .schedule
        .as_ref()
        .expect("scheduled pipelines only");
    let name = &pipeline.name;
    let clock = context.config.clock.clone();
    // This round's tries are those since the newest slot came due when the round began; a
    // slot given up is taken again by a later catch-up, with its attempts afresh.
    let round = schedule
        .slots
        .latest_at_or_before(clock.now())
        .map_or(slot.due, |latest| latest.due.max(slot.due));
    // The failures of this round seen here, for when the history could not record them.
    let mut own_failures: Vec<DateTime<Utc>> = Vec::new();
    loop {
        let (mut lease, records) = match take_lease(pipeline, context).await {
            Ok(taken) => taken,
            Err(outcome) => return outcome,
        };
        let of_slot: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.slot == Some(slot.due))
            .collect();
        if of_slot.iter().any(|r| r.status == RunStatus::Succeeded) {
            tracing::info!(pipeline = %name, due = %slot.due, "Slot already ran elsewhere.");
            release(lease, name).await;
            return SlotOutcome::RanElsewhere;
        }
        // Tries cut short by a stop, a lost lease or a dead daemon were not the pipeline's
        // failures and do not count.
        let recorded: Vec<DateTime<Utc>> = of_slot
            .iter()
            .filter(|r| r.started_at >= round && r.status == RunStatus::Failed)
            .map(|r| r.ended_at.unwrap_or(r.started_at))
            .collect();
        let failures = if recorded.len() >= own_failures.len() {
            recorded
        } else {
            own_failures.clone()
        };
        let attempt = u32::try_from(failures.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if attempt > schedule.attempts {
            tracing::error!(pipeline = %name, due = %slot.due, attempts = schedule.attempts, "Out of attempts; the slot stays missed until the next catch-up.");
            release(lease, name).await;
            return SlotOutcome::Failed;
        }
        let now = clock.now();
        if let Some(last) = failures.iter().max() {
            let wait = chrono::Duration::from_std(backoff(schedule.retry_delay, attempt - 1))
                .ok()
                .and_then(|wait| last.checked_add_signed(wait));
            let Some(retry_at) = wait else {
                tracing::error!(pipeline = %name, due = %slot.due, "The retry delay is too long to wait; the slot stays missed until the next catch-up.");
                release(lease, name).await;
                return SlotOutcome::Failed;
            };
            if now < retry_at {
                release(lease, name).await;
                let wait = (retry_at - now).to_std().unwrap_or_default();
                tokio::select! {
                    _ = context.signals.stopping.wait_for(|s| *s) => return SlotOutcome::Failed,
                    () = clock.sleep(wait) => continue,
                }
            }
        }
        if *context.signals.stopping.borrow() {
            release(lease, name).await;
            return SlotOutcome::Stopped;
        }
        tracing::info!(pipeline = %name, due = %slot.due, attempt, "Lease taken.");
        let ended = runs::ended_runs(&records);
        let (outcome, lease_lost) =
            try_slot(pipeline, slot, attempt, context, &mut lease, &ended).await;
        if !lease_lost {
            release(lease, name).await;
        }
        let error = match outcome {
            Ok(report) => {
                let rows: u64 = report.outputs.iter().map(|o| o.committed.rows).sum();
                tracing::info!(pipeline = %name, due = %slot.due, as_of = %slot.as_of, attempt, rows, "Run published.");
                return SlotOutcome::Published;
            }
            Err(error) => error,
        };
        let stopping = *context.signals.stopping.borrow();
        if lease_lost || stopping || attempt == schedule.attempts {
            let error = runs::error_chain(&error);
            tracing::error!(pipeline = %name, due = %slot.due, attempt, %error, "Run failed; the slot stays missed until the next catch-up.");
            return SlotOutcome::Failed;
        }
        own_failures = failures;
        own_failures.push(clock.now());
        let delay = backoff(schedule.retry_delay, attempt);
        let error = runs::error_chain(&error);
        tracing::warn!(pipeline = %name, due = %slot.due, attempt, %error, retry_in_seconds = delay.as_secs(), "Run failed; retrying.");
    }
}

/// The wait after the `tries`-th failed try: the retry delay, doubled after each try.
fn backoff(retry_delay: Duration, tries: u32) -> Duration {
    retry_delay.saturating_mul(2u32.saturating_pow(tries.saturating_sub(1)))
}

/// Waits for the pipeline's lease, then reads its history under it and settles the scheduled
/// runs a dead daemon left `running`. The lease returned has not expired meanwhile.
async fn take_lease(
    pipeline: &Pipeline,
    context: &mut Context,
) -> Result<(Lease, Vec<RunRecord>), SlotOutcome> {
    let name = &pipeline.name;
    let clock = context.config.clock.clone();
    let mut errors = 0;
    loop {
        match context.leases.acquire(name).await {
            Ok(Some(lease)) => match context.history.list(Some(name)).await {
                Ok(mut records) => {
                    runs::settle_unfinished(
                        &context.history,
                        &context.storage,
                        pipeline,
                        &mut records,
                    )
                    .await;
                    if lease.has_a_third_left() {
                        return Ok((lease, records));
                    }
                    tracing::warn!(pipeline = %name, "The lease ran low while the history was read; taking it again.");
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(pipeline = %name, %error, "Could not read the run history.");
                    release(lease, name).await;
                }
            },
            Ok(None) => {
                errors = 0;
                tracing::debug!(pipeline = %name, "Lease held by another daemon; waiting.");
            }
            Err(error) => {
                errors += 1;
                tracing::warn!(pipeline = %name, %error, "Could not take the lease.");
            }
        }
        if errors >= STORE_ERRORS_TOLERATED {
            tracing::error!(pipeline = %name, errors, "The state store keeps failing; giving the slot up until the next catch-up.");
            return Err(SlotOutcome::Failed);
        }
        tokio::select! {
            _ = context.signals.stopping.wait_for(|s| *s) => return Err(SlotOutcome::Stopped),
            () = clock.sleep(context.config.lease_ttl / 4) => {}
        }
    }
}

async fn release(lease: Lease, pipeline: &str) {
    if let Err(error) = lease.release().await {
        tracing::warn!(%pipeline, %error, "Could not release the lease.");
    }
}

/// One try of a slot under `lease`, cancelled when it runs out of time, when the lease is
/// lost (the second value: then the lease must not be released, and the slot not retried),
/// or when the shutdown grace period ends. The lease is renewed until the run has finished,
/// commits included, since a cancelled run still finishes committing.
async fn try_slot(
    pipeline: &Pipeline,
    slot: Slot,
    attempt: u32,
    context: &Context,
    lease: &mut Lease,
    ended_runs: &BTreeSet<String>,
) -> (Result<RunReport, RecordedRunError>, bool) {
    let clock = &context.config.clock;
    let timeout = pipeline.schedule.as_ref().and_then(|s| s.timeout);
    let mut cancel = context.signals.cancel.clone();
    let cancelled = async {
        let timed_out = async {
            match timeout {
                Some(limit) => {
                    clock.sleep(limit).await;
                    format!("timed out after {}s", limit.as_secs())
                }
                None => std::future::pending().await,
            }
        };
        let (reason, interruption) = tokio::select! {
            reason = timed_out => (reason, false),
            _ = cancel.wait_for(|c| *c) => {
                ("stopped: the shutdown grace period ended".to_string(), true)
            }
        };
        Cancellation {
            reason,
            interruption,
        }
    };
    let request = RunRequest {
        ended_runs: ended_runs.clone(),
        single_writer: context.config.single_writer,
        slot: Some(slot.due),
        attempt,
        ..RunRequest::new(slot.as_of)
    };
    runs::run_leased(
        &context.history,
        pipeline,
        &request,
        &Progress::hidden(),
        lease,
        cancelled,
    )
    .await
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

/// Loads every `*.yaml` in the folder that changed since the last look; a file that no longer
/// loads keeps its last good version. `unloadable` holds the files whose last edit is broken,
/// with the error: they are tried again every tick (the fix may be in a file they name, such
/// as a missing SQL file), and reported again only when the error changes.
fn reload(
    folder: &Path,
    loaded: &mut BTreeMap<PathBuf, Loaded>,
    unloadable: &mut BTreeMap<PathBuf, String>,
) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        tracing::error!(folder = %folder.display(), "Cannot read the pipelines folder.");
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    loaded.retain(|path, _| files.contains(path));
    unloadable.retain(|path, _| files.contains(path));
    for file in files {
        let last_good = loaded.get(&file);
        let unchanged = !unloadable.contains_key(&file)
            && last_good.is_some_and(|l| l.fingerprint == fingerprint(&file, Some(&l.pipeline)));
        if unchanged {
            continue;
        }
        match Pipeline::load(&file, &LoadOptions::default()) {
            Ok(pipeline) => {
                tracing::info!(file = %file.display(), pipeline = %pipeline.name, scheduled = pipeline.schedule.is_some(), "Pipeline loaded.");
                unloadable.remove(&file);
                let fingerprint = fingerprint(&file, Some(&pipeline));
                loaded.insert(
                    file,
                    Loaded {
                        pipeline: Arc::new(pipeline),
                        fingerprint,
                    },
                );
            }
            Err(error) => {
                let error = error.to_string();
                if unloadable.get(&file) != Some(&error) {
                    let keeps = last_good.is_some();
                    tracing::error!(file = %file.display(), error = %error, keeps_last_good = keeps, "Pipeline does not load.");
                }
                unloadable.insert(file, error);
            }
        }
    }
}

/// The modification times of a pipeline file and of the SQL files it uses.
fn fingerprint(file: &Path, pipeline: Option<&Pipeline>) -> Fingerprint {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut parts = vec![(file.to_path_buf(), mtime(file))];
    for step in pipeline.map(|p| p.steps.as_slice()).unwrap_or_default() {
        if step.sql_file != file {
            parts.push((step.sql_file.clone(), mtime(&step.sql_file)));
        }
    }
    parts
}
