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
use crate::progress::Progress;
use crate::run::RunRequest;
use crate::runs::{self, HistoryError, RunHistory, RunRecord, RunStatus};
use crate::schedule::{Slot, due_slots};
use crate::spec::{LoadOptions, Pipeline};
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

/// The modification times of a pipeline file and of the SQL files it uses.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>)>;

pub async fn run(config: DaemonConfig, stop: impl std::future::Future<Output = ()>) -> Tally {
    let clock = config.clock.clone();
    let storage = Storage::new();
    let history =
        Arc::new(RunHistory::new(storage.clone(), config.state.clone()).with_clock(clock.clone()));
    let holder = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
    let leases = Leases::new(
        storage,
        &config.state,
        holder,
        config.lease_ttl,
        clock.clone(),
    );
    let (stopping_tx, stopping) = watch::channel(false);
    let (cancel_tx, cancel) = watch::channel(false);
    let context = Context {
        config: config.clone(),
        history: Arc::clone(&history),
        leases,
        signals: Signals { stopping, cancel },
    };
    let mut loaded: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut unloadable: BTreeMap<PathBuf, Fingerprint> = BTreeMap::new();
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
    Some(due_slots(
        &schedule.slots,
        schedule.catchup,
        since,
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

/// Runs the due slots of one pipeline in order, each under the pipeline's lease.
async fn run_slots(pipeline: Arc<Pipeline>, slots: Vec<Slot>, mut context: Context) -> Tally {
    let name = pipeline.name.clone();
    let clock = context.config.clock.clone();
    let wait = context.config.lease_ttl / 4;
    let mut tally = Tally::default();
    for slot in slots {
        if *context.signals.stopping.borrow() {
            break;
        }
        // Wait for the lease, then for a readable history: another daemon may have run the
        // slot while we waited, and a run it left `running` when it died is now abandoned.
        let (mut lease, records) = loop {
            match context.leases.acquire(&name).await {
                Ok(Some(lease)) => match context.history.list(Some(&name)).await {
                    Ok(records) => break (lease, records),
                    Err(error) => {
                        tracing::warn!(pipeline = %name, %error, "Could not read the run history; will try again.");
                        release(lease, &name).await;
                    }
                },
                Ok(None) => {
                    tracing::debug!(pipeline = %name, "Lease held by another daemon; waiting.");
                }
                Err(error) => tracing::warn!(pipeline = %name, %error, "Could not take the lease."),
            }
            tokio::select! {
                _ = context.signals.stopping.wait_for(|s| *s) => return tally,
                () = clock.sleep(wait) => {}
            }
        };
        tracing::info!(pipeline = %name, due = %slot.due, "Lease taken.");
        mark_abandoned(&context.history, records.iter(), clock.now()).await;
        let already = records
            .iter()
            .any(|r| r.status == RunStatus::Succeeded && r.slot == Some(slot.due));
        if already {
            tracing::info!(pipeline = %name, due = %slot.due, "Slot already ran elsewhere.");
        } else if run_with_retries(&pipeline, slot, &mut context, &mut lease).await {
            tally.published += 1;
        } else {
            tally.failed += 1;
        }
        release(lease, &name).await;
    }
    tally
}

async fn release(lease: Lease, pipeline: &str) {
    if let Err(error) = lease.release().await {
        tracing::warn!(%pipeline, %error, "Could not release the lease.");
    }
}

/// Scheduled runs only happen under the lease, so once we hold it, a scheduled run still
/// recorded as running belongs to a daemon that died (or stalled past its lease).
async fn mark_abandoned<'a>(
    history: &RunHistory,
    records: impl Iterator<Item = &'a RunRecord>,
    now: DateTime<Utc>,
) {
    for record in records.filter(|r| r.status == RunStatus::Running && r.slot.is_some()) {
        let abandoned = RunRecord {
            status: RunStatus::Abandoned,
            ended_at: Some(now),
            error: Some(
                "the daemon running it stopped without finishing; its lease expired".to_string(),
            ),
            ..record.clone()
        };
        match history.save(&abandoned).await {
            Ok(()) => {
                tracing::warn!(pipeline = %record.pipeline, run_id = %record.run_id, "A run left unfinished by another daemon is marked abandoned.");
            }
            Err(error) => tracing::warn!(%error, "Could not mark an abandoned run."),
        }
    }
}

/// Runs one slot, retrying with exponential backoff; true when it published.
async fn run_with_retries(
    pipeline: &Pipeline,
    slot: Slot,
    context: &mut Context,
    lease: &mut Lease,
) -> bool {
    let schedule = pipeline
        .schedule
        .as_ref()
        .expect("scheduled pipelines only");
    let clock = context.config.clock.clone();
    let renew_every = context.config.lease_ttl / 3;
    for attempt in 1..=schedule.attempts {
        let request = RunRequest::new(slot.as_of);
        let mut cancel = context.signals.cancel.clone();
        let timeout = schedule.timeout;
        let lease = &mut *lease;
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
            let lost = async {
                loop {
                    clock.sleep(renew_every).await;
                    match lease.renew().await {
                        Ok(true) => {}
                        Ok(false) => {
                            return "the lease was taken over by another daemon".to_string();
                        }
                        // Past its expiry another daemon may take the lease, so the run
                        // must not go on unprotected: give up while it still holds.
                        Err(error) if clock.now() + renew_every >= lease.expires_at() => {
                            return format!("the lease expired; it could not be renewed: {error}");
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Could not renew the lease; will try again.")
                        }
                    }
                }
            };
            tokio::select! {
                reason = timed_out => reason,
                reason = lost => reason,
                _ = cancel.wait_for(|c| *c) => "stopped: the shutdown grace period ended".to_string(),
            }
        };
        let outcome = runs::run_recorded_until(
            &context.history,
            pipeline,
            &request,
            Some(slot.due),
            attempt,
            &Progress::hidden(),
            cancelled,
        )
        .await;
        match outcome {
            Ok(report) => {
                let rows: u64 = report.outputs.iter().map(|o| o.manifest.rows).sum();
                tracing::info!(pipeline = %pipeline.name, due = %slot.due, as_of = %slot.as_of, attempt, rows, "Run published.");
                return true;
            }
            Err(error) => {
                let stopping = *context.signals.stopping.borrow();
                if attempt == schedule.attempts || stopping {
                    tracing::error!(pipeline = %pipeline.name, due = %slot.due, attempt, error = %error, "Run failed; the slot stays missed until the next catch-up.");
                    return false;
                }
                let delay = schedule
                    .retry_delay
                    .saturating_mul(2u32.saturating_pow(attempt - 1));
                tracing::warn!(pipeline = %pipeline.name, due = %slot.due, attempt, error = %error, retry_in_seconds = delay.as_secs(), "Run failed; retrying.");
                tokio::select! {
                    _ = context.signals.stopping.wait_for(|s| *s) => return false,
                    () = clock.sleep(delay) => {}
                }
            }
        }
    }
    false
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
/// as they were then, so that each broken edit is reported once.
fn reload(
    folder: &Path,
    loaded: &mut BTreeMap<PathBuf, Loaded>,
    unloadable: &mut BTreeMap<PathBuf, Fingerprint>,
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
        let current = fingerprint(&file, last_good.map(|l| l.pipeline.as_ref()));
        let last_seen = unloadable.get(&file).or(last_good.map(|l| &l.fingerprint));
        if last_seen == Some(&current) {
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
                let keeps = last_good.is_some();
                tracing::error!(file = %file.display(), error = %error, keeps_last_good = keeps, "Pipeline does not load.");
                unloadable.insert(file, current);
            }
        }
    }
}

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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string())
}
