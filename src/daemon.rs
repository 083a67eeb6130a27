//! `segflow schedule`: the CLI in a loop. Every tick it re-reads the pipeline folder (a
//! broken edit is reported and the last good version keeps running), finds the slots each
//! schedule makes due, and runs them through the same recorded run as `segflow run`, one
//! pipeline at a time under a lease in the state store, so that two daemons on one state
//! never run a pipeline twice at once or a slot twice. Stopping (SIGTERM, SIGINT) starts no
//! new run and gives a running one a grace period before cancelling it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::Lease;
use crate::progress::Progress;
use crate::run::RunRequest;
use crate::runs::{self, RunHistory, RunStatus};
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
}

/// Told to every pipeline task: stop starting runs (`stopping`), and cancel the running one
/// (`cancel`, after the grace period).
#[derive(Clone)]
struct Signals {
    stopping: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
}

const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

struct Loaded {
    pipeline: Arc<Pipeline>,
    fingerprint: Vec<(PathBuf, Option<SystemTime>)>,
}

pub async fn run(config: DaemonConfig, stop: impl std::future::Future<Output = ()>) {
    let storage = Storage::new();
    let history = Arc::new(RunHistory::new(storage.clone(), config.state.clone()));
    let holder = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
    let (stopping_tx, stopping) = watch::channel(false);
    let (cancel_tx, cancel) = watch::channel(false);
    let signals = Signals { stopping, cancel };
    let mut loaded: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut considered: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    tracing::info!(pipelines = %config.pipelines.display(), state = %config.state, %holder, "Scheduler started.");
    tokio::pin!(stop);
    loop {
        reload(&config.pipelines, &mut loaded);
        running.retain(|_, task| !task.is_finished());
        let now = Utc::now();
        for entry in loaded.values() {
            let pipeline = &entry.pipeline;
            let Some(schedule) = &pipeline.schedule else {
                continue;
            };
            if running.contains_key(&pipeline.name) {
                continue;
            }
            let since = match considered.get(&pipeline.name) {
                Some(t) => *t,
                // A pipeline never run before looks back one day, so that the first start
                // (or a --once from cron) runs the latest slot under catchup: latest.
                None => last_succeeded_slot(&history, &pipeline.name)
                    .await
                    .unwrap_or(now - FIRST_LOOKBACK),
            };
            let done = succeeded_slots(&history, &pipeline.name).await;
            let due = due_slots(&schedule.slots, schedule.catchup, since, now, |slot| {
                done.contains(&slot.due)
            });
            considered.insert(pipeline.name.clone(), now);
            if due.is_empty() {
                continue;
            }
            for slot in &due {
                tracing::info!(pipeline = %pipeline.name, due = %slot.due, as_of = %slot.as_of, "Slot due.");
            }
            let task = tokio::spawn(run_slots(
                Arc::clone(pipeline),
                due,
                storage.clone(),
                config.clone(),
                Arc::clone(&history),
                holder.clone(),
                signals.clone(),
            ));
            running.insert(pipeline.name.clone(), task);
        }
        if config.once {
            break;
        }
        tokio::select! {
            biased;
            () = &mut stop => {
                tracing::info!(running = running.len(), "Stop asked for: no new runs will start.");
                break;
            }
            () = tokio::time::sleep(config.tick) => {}
        }
    }
    let _ = stopping_tx.send(!config.once);
    let waiting = futures::future::join_all(running.into_values());
    tokio::pin!(waiting);
    if config.once {
        waiting.await;
    } else {
        tokio::select! {
            _ = &mut waiting => {}
            () = tokio::time::sleep(config.grace) => {
                tracing::warn!(grace_seconds = config.grace.as_secs(), "Grace period over: cancelling the running runs.");
                let _ = cancel_tx.send(true);
                waiting.await;
            }
        }
    }
    tracing::info!("Scheduler stopped.");
}

/// Runs the due slots of one pipeline in order, each under the pipeline's lease.
async fn run_slots(
    pipeline: Arc<Pipeline>,
    slots: Vec<Slot>,
    storage: Storage,
    config: DaemonConfig,
    history: Arc<RunHistory>,
    holder: String,
    mut signals: Signals,
) {
    let name = pipeline.name.clone();
    for slot in slots {
        if *signals.stopping.borrow() {
            return;
        }
        let mut lease = loop {
            match Lease::acquire(&storage, &config.state, &name, &holder, config.lease_ttl).await {
                Ok(Some(lease)) => break lease,
                Ok(None) => {
                    tracing::debug!(pipeline = %name, "Lease held by another daemon; waiting.");
                }
                Err(error) => tracing::warn!(pipeline = %name, %error, "Could not take the lease."),
            }
            tokio::select! {
                _ = signals.stopping.changed() => return,
                () = tokio::time::sleep(config.lease_ttl / 4) => {}
            }
        };
        tracing::info!(pipeline = %name, due = %slot.due, "Lease taken.");
        // Another daemon may have run this slot while we waited for the lease.
        if succeeded_slots(&history, &name).await.contains(&slot.due) {
            tracing::info!(pipeline = %name, due = %slot.due, "Slot already ran elsewhere.");
        } else {
            run_with_retries(&pipeline, slot, &history, &config, &mut lease, &mut signals).await;
        }
        if let Err(error) = lease.release().await {
            tracing::warn!(pipeline = %name, %error, "Could not release the lease.");
        }
    }
}

async fn run_with_retries(
    pipeline: &Pipeline,
    slot: Slot,
    history: &RunHistory,
    config: &DaemonConfig,
    lease: &mut Lease,
    signals: &mut Signals,
) {
    let schedule = pipeline
        .schedule
        .as_ref()
        .expect("scheduled pipelines only");
    let renew_every = config.lease_ttl / 3;
    for attempt in 1..=schedule.attempts {
        let request = RunRequest::new(slot.as_of);
        let mut cancel = signals.cancel.clone();
        let timeout = schedule.timeout;
        let lease = &mut *lease;
        let cancelled = async {
            let timed_out = async {
                match timeout {
                    Some(limit) => {
                        tokio::time::sleep(limit).await;
                        format!("timed out after {}s", limit.as_secs())
                    }
                    None => std::future::pending().await,
                }
            };
            let lost = async {
                loop {
                    tokio::time::sleep(renew_every).await;
                    match lease.renew().await {
                        Ok(true) => {}
                        Ok(false) => {
                            return "the lease was taken over by another daemon".to_string();
                        }
                        Err(error) => tracing::warn!(%error, "Could not renew the lease."),
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
            history,
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
                break;
            }
            Err(error) => {
                let stopping = *signals.stopping.borrow();
                if attempt == schedule.attempts || stopping {
                    tracing::error!(pipeline = %pipeline.name, due = %slot.due, attempt, error = %error, "Run failed; the slot stays missed.");
                    break;
                }
                let delay = schedule.retry_delay * 2u32.pow(attempt - 1);
                tracing::warn!(pipeline = %pipeline.name, due = %slot.due, attempt, error = %error, retry_in_seconds = delay.as_secs(), "Run failed; retrying.");
                tokio::select! {
                    _ = signals.stopping.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn succeeded_slots(
    history: &RunHistory,
    pipeline: &str,
) -> std::collections::BTreeSet<chrono::DateTime<Utc>> {
    match history.list(Some(pipeline)).await {
        Ok(records) => records
            .into_iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .filter_map(|r| r.slot)
            .collect(),
        Err(error) => {
            tracing::warn!(%pipeline, %error, "Could not read the run history.");
            Default::default()
        }
    }
}

/// The newest slot that succeeded: catch-up looks for missed slots after it. A slot whose
/// run failed or died with its daemon is still missed, so it is not a starting point.
async fn last_succeeded_slot(
    history: &RunHistory,
    pipeline: &str,
) -> Option<chrono::DateTime<Utc>> {
    succeeded_slots(history, pipeline)
        .await
        .into_iter()
        .next_back()
}

/// Loads every `*.yaml` in the folder that changed since the last look; a file that no longer
/// loads keeps its last good version.
fn reload(folder: &Path, loaded: &mut BTreeMap<PathBuf, Loaded>) {
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
    for file in files {
        let unchanged = loaded
            .get(&file)
            .is_some_and(|l| l.fingerprint == fingerprint(&file, Some(&l.pipeline)));
        if unchanged {
            continue;
        }
        match Pipeline::load(&file, &LoadOptions::default()) {
            Ok(pipeline) => {
                tracing::info!(file = %file.display(), pipeline = %pipeline.name, scheduled = pipeline.schedule.is_some(), "Pipeline loaded.");
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
                let keeps = loaded.contains_key(&file);
                tracing::error!(file = %file.display(), error = %error, keeps_last_good = keeps, "Pipeline does not load.");
                // Remember the broken state so the error is logged once per edit.
                if let Some(last) = loaded.get_mut(&file) {
                    last.fingerprint = fingerprint(&file, Some(&last.pipeline));
                }
            }
        }
    }
}

/// The modification times of a pipeline file and of the SQL files it uses.
fn fingerprint(file: &Path, pipeline: Option<&Pipeline>) -> Vec<(PathBuf, Option<SystemTime>)> {
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
