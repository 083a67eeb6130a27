//! One pipeline's due slots, each tried under the pipeline's lease with retries and backoff.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Context, Tally};
use crate::cancel::CancelReason;
use crate::engine::CacheSpec;
use crate::history::{self, RecordedRunError, RunRecord, RunStatus};
use crate::lease::Lease;
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::publish::{Fence, Journal};
use crate::run::{RunReport, RunRequest};
use crate::schedule::Slot;

/// Runs the due slots of one pipeline in order.
pub(super) async fn run_slots(
    pipeline: &Pipeline,
    slots: Vec<Slot>,
    mut context: Context,
) -> Tally {
    let mut tally = Tally::default();
    for slot in slots {
        if context.signals.stopping.is_cancelled() {
            break;
        }
        match run_slot(pipeline, slot, &mut context).await {
            SlotOutcome::Published => tally.published += 1,
            SlotOutcome::RanElsewhere => {}
            SlotOutcome::Failed => tally.failed += 1,
            SlotOutcome::Interrupted => tally.interrupted += 1,
            SlotOutcome::Stopped => break,
        }
    }
    tally
}

enum SlotOutcome {
    Published,
    RanElsewhere,
    Failed,
    /// Stopped from outside while it ran (a stop, a lost lease).
    Interrupted,
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
                    () = context.signals.stopping.cancelled() => return SlotOutcome::Failed,
                    () = clock.sleep(wait) => continue,
                }
            }
        }
        if context.signals.stopping.is_cancelled() {
            release(lease, name).await;
            return SlotOutcome::Stopped;
        }
        tracing::info!(pipeline = %name, due = %slot.due, attempt, "Lease taken.");
        let ended = history::ended_runs(&records);
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
        if lease_lost || error.is_interruption() {
            let error = history::error_chain(&error);
            tracing::warn!(pipeline = %name, due = %slot.due, attempt, %error, "Run interrupted; the slot runs again at the next catch-up unless another daemon took it over.");
            return SlotOutcome::Interrupted;
        }
        let stopping = context.signals.stopping.is_cancelled();
        if stopping || attempt == schedule.attempts {
            let error = history::error_chain(&error);
            tracing::error!(pipeline = %name, due = %slot.due, attempt, %error, "Run failed; the slot stays missed until the next catch-up.");
            return SlotOutcome::Failed;
        }
        own_failures = failures;
        own_failures.push(clock.now());
        let delay = backoff(schedule.retry_delay, attempt);
        let error = history::error_chain(&error);
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
        let acquired = context.leases.acquire(name).await;
        if let Ok(Some(lease)) = &acquired
            && let Some(holder) = lease.taken_over()
        {
            tracing::warn!(pipeline = %name, previous = %holder, "Took over the lease, which its holder let expire.");
            context.status.lease_taken_over(name);
        }
        match acquired {
            Ok(Some(lease)) => match context.history.list(Some(name)).await {
                Ok(mut records) => {
                    // A standby daemon learns here of the success of the daemon that ran
                    // the slot.
                    let successes = records.iter().filter(|r| r.status == RunStatus::Succeeded);
                    if let Some(ended) = successes.filter_map(|r| r.ended_at).max() {
                        context.status.success_seen(name, ended);
                    }
                    history::settle_unfinished(
                        &context.history,
                        (&context.storage, context.config.single_writer),
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
            () = context.signals.stopping.cancelled() => return Err(SlotOutcome::Stopped),
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
    let cancel = context.signals.cancel.child();
    let time_limit = async {
        match timeout {
            Some(limit) => {
                clock.sleep(limit).await;
                cancel.cancel(CancelReason::TimedOut(limit));
            }
            None => std::future::pending().await,
        }
    };
    let request = RunRequest {
        ended_runs: ended_runs.clone(),
        single_writer: context.config.single_writer,
        cache: Some(CacheSpec::in_state(
            &context.config.state,
            &pipeline.name,
            false,
        )),
        state: Some(context.config.state.clone()),
        fence: Some(Fence {
            journal: Journal::in_state(
                context.storage.clone(),
                &context.config.state,
                &pipeline.name,
            ),
            token: lease.epoch(),
        }),
        slot: Some(slot.due),
        attempt,
        ..RunRequest::new(slot.as_of)
    };
    let progress = Progress::hidden();
    let run = history::run_leased(
        &context.history,
        pipeline,
        &request,
        &progress,
        lease,
        &cancel,
    );
    tokio::pin!(run);
    tokio::select! {
        outcome = &mut run => outcome,
        // The run goes on to record that it was cancelled.
        () = time_limit => run.await,
    }
}
