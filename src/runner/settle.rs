//! Runs left `running` by a process that died or stalled past its lease, settled by the
//! process that holds the lease now (every run takes the lease, so none of them runs).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::engine::Scratch;
use crate::history::{RunRecord, RunStatus};
use crate::pipeline::Pipeline;
use crate::publish::{self, Journal, PublishError};

use super::Runner;

/// A run whose publication the date journal records as decided succeeded, once the commits
/// it left are done here, and so did one whose every output's publication for its date is of
/// its run (it published before the journal, or could not record its outcome). Otherwise it
/// is abandoned.
pub(super) async fn settle_unfinished(
    runner: &Runner,
    pipeline: &Pipeline,
    records: &mut [RunRecord],
) {
    let now = runner.clock.now();
    let journal = Journal::in_state(runner.storage.clone(), &runner.state, &pipeline.name);
    for record in records
        .iter_mut()
        .filter(|r| r.status == RunStatus::Running)
    {
        let published = match published_by(runner, &journal, pipeline, record).await {
            Ok(published) => published,
            Err(error) => {
                tracing::warn!(pipeline = %record.pipeline, %error, "Could not read what is published; the unfinished run is settled later.");
                continue;
            }
        };
        let settled = match published {
            Some((rows, committed_at)) => RunRecord {
                status: RunStatus::Succeeded,
                rows,
                ended_at: Some(committed_at),
                ..record.clone()
            },
            None => RunRecord {
                status: RunStatus::Abandoned,
                ended_at: Some(now),
                error: Some(
                    "the process running it stopped without finishing; its lease expired"
                        .to_string(),
                ),
                ..record.clone()
            },
        };
        match runner.history.save(&settled).await {
            Ok(()) => {
                tracing::warn!(pipeline = %record.pipeline, run_id = %record.run_id, status = ?settled.status, "A run left unfinished by another process is settled.");
                let scratch = pipeline.engine.scratch.as_ref();
                if let Err(error) =
                    Scratch::remove_left_by(scratch, &record.run_id, &runner.storage).await
                {
                    tracing::warn!(run_id = %record.run_id, %error, "Could not remove the scratch folder an unfinished run left.");
                }
                *record = settled;
            }
            Err(error) => tracing::warn!(%error, "Could not settle an unfinished run."),
        }
    }
}

/// The rows of each output and the time of the publication of `record`'s run, if it
/// published its date: decided in the journal, or live in every output.
async fn published_by(
    runner: &Runner,
    journal: &Journal,
    pipeline: &Pipeline,
    record: &RunRecord,
) -> Result<Option<(BTreeMap<String, u64>, DateTime<Utc>)>, PublishError> {
    let storage = &runner.storage;
    if let Some(decision) = journal.decided(record.as_of).await?
        && decision.run_id == record.run_id
    {
        let run = publish::PublishingRun {
            pipeline: pipeline.name.clone(),
            as_of: record.as_of,
            run_id: record.run_id.clone(),
            ended_runs: BTreeSet::new(),
            single_writer: runner.single_writer,
        };
        publish::complete(storage, &pipeline.outputs, &run, &decision).await?;
        let rows = decision
            .outputs
            .iter()
            .map(|o| (o.table.clone(), o.rows()))
            .collect();
        return Ok(Some((rows, decision.decided_at)));
    }
    let mut published = BTreeMap::new();
    let mut committed_at = DateTime::<Utc>::MIN_UTC;
    for output in &pipeline.outputs {
        match publish::sink(storage, output)
            .committed(record.as_of)
            .await?
        {
            Some(m) if m.run_id == record.run_id => {
                published.insert(output.table.clone(), m.rows);
                committed_at = committed_at.max(m.committed_at);
            }
            _ => return Ok(None),
        }
    }
    Ok(Some((published, committed_at)))
}
