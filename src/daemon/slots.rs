//! One pipeline's due slots, each tried under the pipeline's lease with retries and backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Context, Tally};
use crate::cancel::CancelReason;
use crate::history::{RunRecord, RunStatus};
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::runner::{Leased, Order, RunOutcome};
use crate::schedule::Slot;

/// Runs the due slots of one pipeline in order.
pub(super) async fn run_slots(pipeline: &Pipeline, slots: Vec<Slot>, context: Context) -> Tally {
    let mut tally = Tally::default();
    for slot in slots {
        if context.signals.stopping.is_cancelled() {
            break;
        }
        match run_slot(pipeline, slot, &context).await {
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
async fn run_slot(pipeline: &Pipeline, slot: Slot, context: &Context) -> SlotOutcome {
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
        let leased = match take_lease(pipeline, context).await {
            Ok(leased) => leased,
            Err(outcome) => return outcome,
        };
        let of_slot: Vec<&RunRecord> = leased
            .records()
            .iter()
            .filter(|r| r.slot == Some(slot.due))
            .collect();
        if of_slot.iter().any(|r| r.status == RunStatus::Succeeded) {
            tracing::info!(pipeline = %name, due = %slot.due, "Slot already ran elsewhere.");
            leased.release().await;
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
            leased.release().await;
            return SlotOutcome::Failed;
        }
        let now = clock.now();
        if let Some(last) = failures.iter().max() {
            let wait = chrono::Duration::from_std(backoff(schedule.retry_delay, attempt - 1))
                .ok()
                .and_then(|wait| last.checked_add_signed(wait));
            let Some(retry_at) = wait else {
                tracing::error!(pipeline = %name, due = %slot.due, "The retry delay is too long to wait; the slot stays missed until the next catch-up.");
                leased.release().await;
                return SlotOutcome::Failed;
            };
            if now < retry_at {
                leased.release().await;
                let wait = (retry_at - now).to_std().unwrap_or_default();
                tokio::select! {
                    () = context.signals.stopping.cancelled() => return SlotOutcome::Failed,
                    () = clock.sleep(wait) => continue,
                }
            }
        }
        if context.signals.stopping.is_cancelled() {
            leased.release().await;
            return SlotOutcome::Stopped;
        }
        tracing::info!(pipeline = %name, due = %slot.due, attempt, "Lease taken.");
        let outcome = try_slot(pipeline, slot, attempt, context, leased).await;
        let interrupted = outcome.interrupted();
        let error = match outcome.result {
            Ok(report) => {
                let rows: u64 = report.outputs.iter().map(|o| o.committed.rows).sum();
                tracing::info!(pipeline = %name, due = %slot.due, as_of = %slot.as_of, attempt, rows, "Run published.");
                return SlotOutcome::Published;
            }
            Err(error) => error,
        };
        if interrupted {
            let error = crate::fault::one_line(&error);
            tracing::warn!(pipeline = %name, due = %slot.due, attempt, %error, "Run interrupted; the slot runs again at the next catch-up unless another daemon took it over.");
            return SlotOutcome::Interrupted;
        }
        let stopping = context.signals.stopping.is_cancelled();
        if stopping || attempt == schedule.attempts {
            let error = crate::fault::one_line(&error);
            tracing::error!(pipeline = %name, due = %slot.due, attempt, %error, "Run failed; the slot stays missed until the next catch-up.");
            return SlotOutcome::Failed;
        }
        own_failures = failures;
        own_failures.push(clock.now());
        let delay = backoff(schedule.retry_delay, attempt);
        let error = crate::fault::one_line(&error);
        tracing::warn!(pipeline = %name, due = %slot.due, attempt, %error, retry_in_seconds = delay.as_secs(), "Run failed; retrying.");
    }
}

/// The wait after the `tries`-th failed try: the retry delay, doubled after each try.
fn backoff(retry_delay: Duration, tries: u32) -> Duration {
    retry_delay.saturating_mul(2u32.saturating_pow(tries.saturating_sub(1)))
}

/// Waits for the pipeline's lease, with the history read under it and the runs a dead
/// daemon left `running` settled; gives the slot up after a few state-store errors in a row.
async fn take_lease<'c>(
    pipeline: &'c Pipeline,
    context: &'c Context,
) -> Result<Leased<'c>, SlotOutcome> {
    let name = &pipeline.name;
    let clock = context.config.clock.clone();
    let mut errors = 0;
    loop {
        match context.runner.lease(pipeline).await {
            Ok(Some(leased)) => {
                if let Some(holder) = leased.taken_over() {
                    tracing::warn!(pipeline = %name, previous = %holder, "Took over the lease, which its holder let expire.");
                    context.status.lease_taken_over(name);
                }
                // A standby daemon learns here of the success of the daemon that ran the slot.
                let successes = leased
                    .records()
                    .iter()
                    .filter(|r| r.status == RunStatus::Succeeded);
                if let Some(ended) = successes.filter_map(|r| r.ended_at).max() {
                    context.status.success_seen(name, ended);
                }
                return Ok(leased);
            }
            Ok(None) => {
                errors = 0;
                tracing::debug!(pipeline = %name, "Lease held by another daemon; waiting.");
            }
            Err(error) => {
                errors += 1;
                tracing::warn!(pipeline = %name, %error, "Could not take the lease or read the run history.");
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

/// One try of a slot under its lease, cancelled when it runs out of time, when the lease is
/// lost, or when the shutdown grace period ends.
async fn try_slot(
    pipeline: &Pipeline,
    slot: Slot,
    attempt: u32,
    context: &Context,
    leased: Leased<'_>,
) -> RunOutcome {
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
    let order = Order {
        as_of: slot.as_of,
        slot: Some(slot.due),
        attempt,
        full: false,
    };
    let progress = Progress::hidden();
    let run = leased.run(order, &progress, &cancel);
    tokio::pin!(run);
    tokio::select! {
        outcome = &mut run => outcome,
        // The run goes on to record that it was cancelled.
        () = time_limit => run.await,
    }
}
