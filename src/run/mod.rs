//! One run of a pipeline for one logical date, by phase: the request (`request`), the
//! date claimed and every publication begun (`commit`), the sources registered and checked
//! (`checks`), every step planned (`steps`), every output staged (`stage`), the staged
//! outputs checked, the date's publication decided, and only then the outputs committed
//! (`commit`). A failure before the decision leaves every published output as it was;
//! the scheduler calls this same function. `inspect` holds the commands that read what a
//! run would and publish nothing, and `error` how a run fails.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::NaiveDate;

use crate::cancel::{Cancel, CancelReason};
use crate::engine::{Backend, Engine, Scratch};
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::storage::Storage;

mod checks;
mod commit;
mod earlier;
mod error;
mod inspect;
mod request;
mod stage;
mod steps;

pub use error::RunError;
pub use inspect::{check_published, plan_only, show_table};
pub use request::{
    AuditReport, CheckResult, CheckStatus, Planned, PublishedOutput, RunReport, RunRequest, Timing,
};

use error::{name_damaged_file, name_full_disk};
use steps::{StepsDone, Targets};

pub async fn run(
    pipeline: &Pipeline,
    request: &RunRequest,
    progress: &Progress,
) -> Result<RunReport, RunError> {
    run_until(pipeline, request, progress, &Cancel::new()).await
}

/// [`run`], stopped when `cancel` is cancelled before the commits start. A cancelled run
/// removes what it staged, so it leaves no trace in the outputs; once the commits have
/// started they run to the end, so that no output is left half-published.
///
/// The work runs on the engine's own runtime: DataFusion keeps its threads busy for seconds
/// at a time, and the caller's timers (lease renewals, time limits, signals) must not wait
/// behind it. Dropping the returned future cancels the run too; it then cleans up on the
/// engine runtime with nobody waiting for it.
pub async fn run_until(
    pipeline: &Pipeline,
    request: &RunRequest,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<RunReport, RunError> {
    let cancel = cancel.child();
    let caller_gone = cancel.cancel_on_drop(CancelReason::CallerGone);
    let work = engine_runtime().spawn(run_on_engine(
        pipeline.clone(),
        request.clone(),
        progress.clone(),
        cancel,
    ));
    let finished = work.await;
    caller_gone.disarm();
    match finished {
        Ok(outcome) => outcome,
        Err(crash) => Err(RunError::Crashed(crash.to_string())),
    }
}

/// The runtime that runs pipelines, one worker per core, apart from the caller's.
fn engine_runtime() -> &'static tokio::runtime::Runtime {
    static ENGINE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    ENGINE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("segflow-engine")
            .enable_all()
            .build()
            .expect("the engine runtime starts")
    })
}

async fn run_on_engine(
    pipeline: Pipeline,
    request: RunRequest,
    progress: Progress,
    cancel: Cancel,
) -> Result<RunReport, RunError> {
    let (pipeline, request, progress) = (&pipeline, &request, &progress);
    let started = Instant::now();
    tracing::info!(pipeline = %pipeline.name, as_of = %request.as_of, run_id = %request.run_id, "Run started.");
    let backend = Backend::of(&pipeline.engine);
    check_locations(pipeline, request).await?;
    let storage = Storage::new();
    let scratch = Scratch::create(pipeline.engine.scratch.as_ref(), &request.run_id)
        .map_err(RunError::Scratch)?;
    let publishing = request.publishing(pipeline);
    let (mut publications, engine) = tokio::select! {
        prepared = async {
            commit::claim(pipeline, request, &storage, &publishing).await?;
            let publications = commit::begin_publications(pipeline, &storage, &publishing).await?;
            tracing::info!(pipeline = %pipeline.name, outputs = publications.len(), "Publications begun: the date is claimed, and each commit is fenced.");
            progress.message("checking sources");
            let engine = prepare(pipeline, storage.clone(), request.as_of).await?;
            Ok::<_, RunError>((publications, engine))
        } => prepared?,
        reason = cancel.cancelled() => return Err(RunError::Cancelled(reason)),
    };
    let worked = tokio::select! {
        worked = async {
            let on_sources = checks::check_sources(pipeline, request, (&engine, &storage), progress).await?;
            let targets = Targets::new(pipeline, &publications, &scratch, &backend);
            let planned = steps::plan_steps(pipeline, request, (&engine, &storage), &targets, progress).await?;
            let written_by_steps = targets.outputs_written(&planned.steps);
            let writes = stage::stage_outputs(pipeline, &engine, &mut publications, &written_by_steps, progress).await?;
            let checks = checks::check_staged(pipeline, request, (&engine, &storage), &publications, on_sources, progress).await?;
            Ok((planned, writes, checks))
        } => worked,
        reason = cancel.cancelled() => Err(RunError::Cancelled(reason)),
        never = backend.tell_waits(&pipeline.name, progress) => match never {},
    };
    // Measured before the cleanup below frees what filled the disk.
    let worked = worked.map_err(|error| name_full_disk(error, pipeline));
    remove_scratch(scratch, &storage).await;
    let (
        StepsDone {
            steps,
            unmatched,
            versions,
        },
        writes,
        checks,
    ) = match worked {
        Ok(done) => done,
        Err(error) => {
            commit::discard(publications).await;
            return Err(name_damaged_file(&engine, error).await);
        }
    };

    progress.message("publishing");
    let decision = commit::decide(request, &publishing, &mut publications).await?;
    let outputs = commit::commit(pipeline, publications, &decision).await?;
    progress.finish();
    let report = RunReport {
        pipeline: pipeline.name.clone(),
        as_of: request.as_of,
        run_id: request.run_id.clone(),
        outputs,
        unmatched,
        versions,
        steps,
        writes,
        checks,
        elapsed: started.elapsed(),
    };
    tracing::info!(pipeline = %pipeline.name, as_of = %request.as_of, run_id = %request.run_id, seconds = report.elapsed.as_secs_f64(), "Run finished.");
    Ok(report)
}

/// Before any work: nothing the run writes lies in what it reads, and in cluster mode every
/// location is one the executors reach, and the scheduler answers.
pub(super) async fn check_locations(
    pipeline: &Pipeline,
    request: &RunRequest,
) -> Result<(), RunError> {
    let collisions = pipeline.collisions(request.state.as_ref());
    if !collisions.is_empty() {
        return Err(RunError::Collisions(collisions));
    }
    Backend::of(&pipeline.engine)
        .check(pipeline, request.cache.as_ref())
        .await?;
    Ok(())
}

/// The engine with every source registered, Delta tables at their version as of the end of
/// `as_of`.
pub(super) async fn prepare(
    pipeline: &Pipeline,
    storage: Storage,
    as_of: NaiveDate,
) -> Result<Engine, RunError> {
    let engine = Engine::new(
        &pipeline.engine,
        pipeline.timezone,
        pipeline.members.clone(),
        storage,
    )?;
    for source in &pipeline.sources {
        engine.register_source(source, as_of).await?;
    }
    Ok(Backend::of(&pipeline.engine).connect(engine).await?)
}

/// Best-effort: a scratch folder left behind is invisible to readers.
async fn remove_scratch(scratch: Scratch, storage: &Storage) {
    let folder = scratch.to_string();
    if let Err(error) = scratch.remove(storage).await {
        tracing::warn!(scratch = %folder, %error, "Could not remove the run's scratch folder.");
    }
}
