//! The publication phase: the date claimed before any work, every output's publication
//! begun, the decision recorded once everything is staged, then every commit.

use crate::pipeline::Pipeline;
use crate::publish::{self, Decision, Publication, PublishError, PublishingRun};
use crate::storage::Storage;

use super::error::RunError;
use super::{PublishedOutput, RunRequest};

/// Claims the date for the run, fencing every run that claimed it before, and completes the
/// date's last decided publication if its run stopped between its commits.
pub(super) async fn claim(
    pipeline: &Pipeline,
    request: &RunRequest,
    storage: &Storage,
    run: &PublishingRun,
) -> Result<(), RunError> {
    let Some(fence) = &request.fence else {
        return Ok(());
    };
    if let Some(decision) = fence.journal.claim(run, fence.token).await? {
        publish::complete(storage, &pipeline.outputs, run, &decision).await?;
    }
    Ok(())
}

/// Begins the publication of every output before any work.
pub(super) async fn begin_publications(
    pipeline: &Pipeline,
    storage: &Storage,
    run: &PublishingRun,
) -> Result<Vec<Publication>, RunError> {
    let mut publications = Vec::new();
    for output in &pipeline.outputs {
        publications.push(Publication::begin(storage, output, run).await?);
    }
    Ok(publications)
}

/// Prepares every output and decides the date's publication: from here on it is this run's,
/// and a run that finds it unfinished completes it. A run that a newer one claimed the date
/// from publishes nothing.
pub(super) async fn decide(
    request: &RunRequest,
    run: &PublishingRun,
    publications: &mut Vec<Publication>,
) -> Result<Decision, RunError> {
    let mut outputs = Vec::new();
    for publication in publications.iter_mut() {
        match publication.prepare().await {
            Ok(prepared) => outputs.push(prepared),
            Err(error) => {
                discard(std::mem::take(publications)).await;
                return Err(error.into());
            }
        }
    }
    let decision = Decision {
        run_id: request.run_id.clone(),
        token: request.fence.as_ref().map_or(0, |f| f.token),
        decided_at: chrono::Utc::now(),
        outputs,
    };
    let Some(fence) = &request.fence else {
        return Ok(decision);
    };
    match fence.journal.decide(run, &decision).await {
        Ok(()) => Ok(decision),
        Err(error @ PublishError::Claimed { .. }) => {
            discard(std::mem::take(publications)).await;
            Err(error.into())
        }
        // The decision may have landed: its files stay for the run that completes it, or
        // for the next run to sweep.
        Err(error) => {
            for publication in std::mem::take(publications) {
                publication.abandon().await;
            }
            Err(error.into())
        }
    }
}

/// Removes what a failed run staged and prepared; nothing live changes.
pub(super) async fn discard(publications: impl IntoIterator<Item = Publication>) {
    for publication in publications {
        publication.discard().await;
    }
}

/// Commits every output after the decision. Every output is committed even after one
/// fails: a run that took over may have completed this decision already, and the files of
/// this run it made live must stay.
pub(super) async fn commit(
    pipeline: &Pipeline,
    publications: Vec<Publication>,
    decision: &Decision,
) -> Result<Vec<PublishedOutput>, RunError> {
    let mut outputs = Vec::new();
    let mut failed = None;
    for (output, publication) in pipeline.outputs.iter().zip(publications) {
        let committed = match publication.commit(decision).await {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(pipeline = %pipeline.name, table = %output.table, %error, "Output not published.");
                failed.get_or_insert(error);
                continue;
            }
        };
        tracing::info!(
            pipeline = %pipeline.name,
            table = %output.table,
            rows = committed.rows,
            url = %output.location,
            "Output published."
        );
        outputs.push(PublishedOutput {
            url: output.location.to_string(),
            committed,
        });
    }
    match failed {
        Some(error) => Err(error.into()),
        None => Ok(outputs),
    }
}
