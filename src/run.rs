//! One run of a pipeline for one logical date: claim the date, register the sources
//! (checked), plan every step, stage every output, decide the date's publication, and only
//! then commit the outputs. A failure before the decision leaves every published output as it
//! was; the scheduler calls this same function.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;

use crate::cancel::{Cancel, CancelReason};
use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::engine::{
    CacheSpec, CheckInputs, Engine, EngineError, FilesDone, IncrementalMode, Params, ParquetTarget,
    Scratch, StepResult, VersionCounts,
};
use crate::pipeline::{
    Check, CheckRule, Pipeline, Published, SelectError, Selector, Severity, Step, StepKind,
};
use crate::progress::Progress;
use crate::publish::{self, Committed, Decision, Fence, Publication, PublishError, PublishingRun};
use crate::segments::Unmatched;
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("could not create a scratch folder for intermediate results")]
    Scratch(#[source] std::io::Error),
    #[error(
        "a disk filled up (no space left on device): {disks}. Free space there, or move what \
         fills it: segflow keeps intermediate results and spill files in its scratch folder \
         (point TMPDIR at a bigger disk, `TMPDIR=/mnt/big segflow run ...`; engine.scratch \
         moves the intermediate results alone), and writes each output where its url says"
    )]
    DiskFull {
        /// The local places the run writes to, on the disks that are (nearly) full.
        disks: String,
        #[source]
        source: Box<RunError>,
    },
    #[error(
        "reading a source failed, but every source file read back whole afterwards: a storage \
         or network failure, most likely; run again"
    )]
    ReadFailed(#[source] Box<RunError>),
    #[error("{} steps do not plan:{}", .0.len(), each_on_a_line(.0))]
    Steps(Vec<RunError>),
    #[error("the run was cancelled: {0}")]
    Cancelled(CancelReason),
    #[error("{} of the run failed, so nothing was published:{}", checks_failed(.0), failed_checks(.0))]
    ChecksFailed(Vec<CheckResult>),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(
        "the pipeline runs on a cluster, whose executors cannot reach what is on this \
         machine; make each of these a URL every executor reaches (s3://...):{}",
        .0.iter().map(|l| format!("\n  {l}")).collect::<String>()
    )]
    LocalOnCluster(Vec<String>),
    #[error(
        "the run would write where it reads; one may not be in the other, or a run would \
         overwrite or delete what it reads. Give each a folder of its own:{}",
        .0.iter().map(|l| format!("\n  {l}")).collect::<String>()
    )]
    Collisions(Vec<String>),
    #[error("no output of the pipeline is published for {as_of}")]
    NothingPublished { as_of: NaiveDate },
    #[error("the run crashed: {0}")]
    Crashed(String),
}

fn checks_failed(checks: &[CheckResult]) -> String {
    match checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .count()
    {
        1 => "a check".to_string(),
        n => format!("{n} checks"),
    }
}

fn failed_checks(checks: &[CheckResult]) -> String {
    checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .map(|c| format!("\n  {}", c.summary()))
        .collect()
}

fn each_on_a_line(errors: &[RunError]) -> String {
    errors
        .iter()
        .map(|e| format!("\n  {}", crate::history::error_chain(e)))
        .collect()
}

impl RunError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            RunError::Engine(e) => e.fault(),
            RunError::Publish(e) => e.fault(),
            RunError::Steps(errors) => errors
                .iter()
                .map(RunError::fault)
                .max()
                .unwrap_or(crate::fault::Fault::User),
            RunError::Select(_)
            | RunError::ChecksFailed(_)
            | RunError::NothingPublished { .. }
            | RunError::LocalOnCluster(_)
            | RunError::Collisions(_) => crate::fault::Fault::User,
            RunError::Scratch(_)
            | RunError::DiskFull { .. }
            | RunError::ReadFailed(_)
            | RunError::Cancelled(_)
            | RunError::Crashed(_) => crate::fault::Fault::Environment,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub as_of: NaiveDate,
    pub run_id: String,
    /// The schedule slot the run stands for, when the scheduler started it (for the history).
    pub slot: Option<chrono::DateTime<chrono::Utc>>,
    /// Which try of its slot this is, from 1 (for the history).
    pub attempt: u32,
    /// Runs of the pipeline known to have ended, whose leftovers (staging folders, files
    /// never committed) this run may delete.
    pub ended_runs: BTreeSet<String>,
    /// Publish with plain writes on stores that cannot write conditionally, on the user's
    /// promise that nothing else publishes these outputs at the same time.
    pub single_writer: bool,
    /// Where incremental steps keep each file's result for later runs (in the state store);
    /// without it they compute every file.
    pub cache: Option<CacheSpec>,
    /// The date journal and the run's token, for a run under a lease; without it the run
    /// publishes unfenced, as the only writer (the demo, library callers).
    pub fence: Option<Fence>,
    /// The state store the run keeps its history, leases and cache in, checked not to lie
    /// in a source.
    pub state: Option<crate::storage::Location>,
}

/// The run request is the one context of a run; what the engine and the publications need
/// of it is derived here, not rewrapped along the way.
impl RunRequest {
    /// The values SQL sees as `$as_of`, `$run_id` and the vars.
    pub fn params(&self, pipeline: &Pipeline) -> Params {
        Params::new(self.as_of, pipeline.timezone, &self.run_id, &pipeline.vars)
    }

    /// What each output's publication needs to know of the run.
    pub fn publishing(&self, pipeline: &Pipeline) -> PublishingRun {
        PublishingRun {
            pipeline: pipeline.name.clone(),
            as_of: self.as_of,
            run_id: self.run_id.clone(),
            ended_runs: self.ended_runs.clone(),
            single_writer: self.single_writer,
        }
    }

    /// A request with a fresh run id; ids sort by start time (UUIDv7).
    pub fn new(as_of: NaiveDate) -> RunRequest {
        RunRequest {
            as_of,
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            slot: None,
            attempt: 1,
            ended_runs: BTreeSet::new(),
            single_writer: false,
            cache: None,
            fence: None,
            state: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub outputs: Vec<PublishedOutput>,
    /// Per source, rows that belong to no known customer (and so to no segment).
    pub unmatched: BTreeMap<String, Unmatched>,
    /// Per versioned source, the rows that were not in force.
    pub versions: BTreeMap<String, VersionCounts>,
    /// Each step, in the order they ran.
    pub steps: Vec<Timing>,
    /// Each output's writing into its staging area, in the order they were written.
    pub writes: Vec<Timing>,
    /// Every check's outcome, in the spec's order.
    pub checks: Vec<CheckResult>,
    pub elapsed: Duration,
}

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// Failed, with `severity: warn`: the run published.
    Warned,
    /// Failed, with `severity: error`: the run published nothing.
    Failed,
}

/// One check's outcome, as the run record keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub table: String,
    /// The rule as the spec writes it.
    pub rule: String,
    /// What broke it, in words; for a check that passed, empty or a note (an anomaly
    /// check's first publication, with nothing to compare).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub found: String,
    pub status: CheckStatus,
    /// Rows that break the rule (for row_count, 1 when the count is out of bounds).
    pub offending: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl CheckResult {
    /// One line for a person: the check, its table, and what broke it.
    pub fn summary(&self) -> String {
        let examples = if self.examples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", self.examples.join("; "))
        };
        format!(
            "check '{}' on '{}' ({}): {}{examples}",
            self.name, self.table, self.rule, self.found
        )
    }
}

/// How long one step took, or one output's writing, and its rows where they were counted
/// (a step planned into its reader has none of its own).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub name: String,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// An incremental step's files: computed by this run, or reused from earlier ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesDone>,
}

#[derive(Debug, Clone)]
pub struct PublishedOutput {
    pub url: String,
    pub committed: Committed,
}

/// What `segflow validate` planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub steps: usize,
    pub segments: usize,
}

/// What `segflow check` found on an earlier night's publication.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub checks: Vec<CheckResult>,
    /// Checks it could not run, each with why: they read a table that only a run computes.
    pub skipped: Vec<(String, String)>,
}

/// Runs the checks on what is published for `as_of` and on the sources, computing no step
/// and writing nothing (`segflow check`). A check that reads a step which is not an output
/// is skipped: only a run computes it.
pub async fn check_published(
    pipeline: &Pipeline,
    as_of: NaiveDate,
    progress: &Progress,
) -> Result<AuditReport, RunError> {
    let storage = Storage::new();
    let engine = prepare(pipeline, storage.clone(), as_of).await?;
    let mut published = BTreeSet::new();
    for output in &pipeline.outputs {
        if let Some(committed) = publish::sink(&storage, output).committed(as_of).await? {
            engine
                .read_table_from(&output.table, &committed.files, &output.options)
                .await?;
            published.insert(output.table.as_str());
        }
    }
    if published.is_empty() && !pipeline.outputs.is_empty() {
        return Err(RunError::NothingPublished { as_of });
    }
    let sources: BTreeSet<&str> = pipeline.sources.iter().map(|s| s.name.as_str()).collect();
    let mut runnable = Vec::new();
    let mut skipped = Vec::new();
    for check in &pipeline.checks {
        let unread = check
            .reads()
            .into_iter()
            .find(|t| !published.contains(t) && !sources.contains(t));
        match unread {
            None => runnable.push(check),
            Some(table) => skipped.push((
                check.name.clone(),
                format!("'{table}' is not published for {as_of}; only a run computes it"),
            )),
        }
    }
    let request = RunRequest {
        run_id: "check".to_string(),
        ..RunRequest::new(as_of)
    };
    let evaluated = evaluate_checks(pipeline, &request, (&engine, &storage), &runnable, progress);
    let checks = match evaluated.await {
        Ok(checks) => checks,
        // As a run does: a damaged source file is named.
        Err(error) => return Err(name_damaged_file(&engine, error).await),
    };
    progress.finish();
    Ok(AuditReport { checks, skipped })
}

/// Plans every step against the sources' schemas without scanning data: what
/// `segflow validate` checks beyond the spec itself.
pub async fn plan_only(pipeline: &Pipeline, request: &RunRequest) -> Result<Planned, RunError> {
    check_locations(pipeline, request).await?;
    let storage = Storage::new();
    let engine = prepare(pipeline, storage.clone(), request.as_of).await?;
    plan_views(pipeline, request, &engine, &storage).await?;
    let mut pending: Vec<&Check> = pipeline.checks.iter().collect();
    let every_table: BTreeSet<&str> = pending.iter().flat_map(|c| c.reads()).collect();
    plan_ready_checks(
        pipeline,
        request,
        (&engine, &storage),
        &mut pending,
        &every_table,
    )
    .await?;
    Ok(Planned {
        steps: pipeline.query_steps().count(),
        segments: pipeline.segments.len(),
    })
}

/// The first `limit` rows of `table` (a source or step) as a run for `request` would compute
/// it, computing only what it needs and publishing nothing: `segflow show`.
pub async fn show_table(
    pipeline: &Pipeline,
    request: &RunRequest,
    table: &str,
    limit: usize,
) -> Result<Vec<RecordBatch>, RunError> {
    let table = Selector {
        name: table.to_lowercase(),
        downstream: false,
    };
    let pipeline = pipeline.clone().select(std::slice::from_ref(&table))?;
    let storage = Storage::new();
    let engine = prepare(&pipeline, storage.clone(), request.as_of).await?;
    plan_views(&pipeline, request, &engine, &storage).await?;
    match engine.head(&table.name, limit).await {
        Ok(rows) => Ok(rows),
        Err(error) => Err(name_damaged_file(&engine, error.into()).await),
    }
}

/// Registers every step as a view. Every step that fails is reported; a step that reads a
/// failed one is not planned (its errors would only repeat the cause).
async fn plan_views(
    pipeline: &Pipeline,
    request: &RunRequest,
    engine: &Engine,
    storage: &Storage,
) -> Result<(), RunError> {
    let params = request.params(pipeline);
    let mut failed = Vec::new();
    let mut broken: BTreeSet<&str> = BTreeSet::new();
    for step in &pipeline.steps {
        if step.sql.tables.iter().any(|t| broken.contains(t.as_str())) {
            broken.insert(&step.name);
            continue;
        }
        let planned = async {
            register_published(pipeline, engine, storage, step, request.as_of).await?;
            if step.incremental.is_some() {
                let mode = IncrementalMode::View;
                engine
                    .add_incremental(step, &pipeline.steps, &params, mode)
                    .await?;
            } else {
                engine.add_step(step, &params, StepResult::View).await?;
            }
            Ok::<_, RunError>(())
        };
        if let Err(error) = planned.await {
            broken.insert(&step.name);
            failed.push(error);
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.remove(0)),
        _ => Err(RunError::Steps(failed)),
    }
}

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
    check_locations(pipeline, request).await?;
    let storage = Storage::new();
    let scratch = Scratch::create(pipeline.engine.scratch.as_ref(), &request.run_id)
        .map_err(RunError::Scratch)?;
    let publishing = request.publishing(pipeline);
    let (mut publications, engine) = tokio::select! {
        prepared = async {
            claim(pipeline, request, &storage, &publishing).await?;
            let publications = begin_publications(pipeline, &storage, &publishing).await?;
            tracing::info!(pipeline = %pipeline.name, outputs = publications.len(), "Publications begun: the date is claimed, and each commit is fenced.");
            progress.message("checking sources");
            let engine = prepare(pipeline, storage.clone(), request.as_of).await?;
            Ok::<_, RunError>((publications, engine))
        } => prepared?,
        reason = cancel.cancelled() => return Err(RunError::Cancelled(reason)),
    };
    let worked = tokio::select! {
        worked = async {
            let on_sources = check_sources(pipeline, request, (&engine, &storage), progress).await?;
            let targets = Targets::new(pipeline, &publications, &scratch);
            let planned = plan_steps(pipeline, request, (&engine, &storage), &targets, progress).await?;
            let written_by_steps = targets.outputs_written(&planned.steps);
            let writes = stage_outputs(pipeline, &engine, &mut publications, &written_by_steps, progress).await?;
            let checks = check_staged(pipeline, request, (&engine, &storage), &publications, on_sources, progress).await?;
            Ok((planned, writes, checks))
        } => worked,
        reason = cancel.cancelled() => Err(RunError::Cancelled(reason)),
        never = say_what_the_cluster_works_on(pipeline, progress) => match never {},
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
            discard(publications).await;
            return Err(name_damaged_file(&engine, error).await);
        }
    };

    progress.message("publishing");
    let decision = decide(request, &publishing, &mut publications).await?;
    let mut outputs = Vec::new();
    let mut failed = None;
    // Every output is committed even after one fails: a run that took over may have
    // completed this decision already, and the files of this run it made live must stay.
    for (output, publication) in pipeline.outputs.iter().zip(publications) {
        let committed = match publication.commit(&decision).await {
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
    if let Some(error) = failed {
        return Err(error.into());
    }
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

/// Plans each check of `pending` whose tables are all `ready` against their schemas,
/// reading no data, and takes it off `pending`: a run plans each check as soon as its
/// tables are, so that a check naming a column its table does not have, or a value the
/// column cannot hold, fails before the steps after it are computed.
async fn plan_ready_checks(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    pending: &mut Vec<&Check>,
    ready: &BTreeSet<&str>,
) -> Result<(), RunError> {
    let params = request.params(pipeline);
    let (now, later): (Vec<&Check>, Vec<&Check>) = pending
        .iter()
        .partition(|check| check.reads().iter().all(|table| ready.contains(table)));
    *pending = later;
    for check in now {
        if let CheckRule::Sql(step) = &check.rule {
            register_published(pipeline, engine, storage, step, request.as_of).await?;
        }
        engine.plan_check(check, &params).await?;
    }
    Ok(())
}

/// The checks that read sources only (they can run before any step is computed), or the
/// others.
fn checks_on_sources(pipeline: &Pipeline, only_sources: bool) -> Vec<&Check> {
    let on_sources = |check: &&Check| {
        check
            .reads()
            .iter()
            .all(|table| pipeline.sources.iter().any(|s| s.name == *table))
    };
    pipeline
        .checks
        .iter()
        .filter(|check| on_sources(check) == only_sources)
        .collect()
}

/// Whether an `error` check failed, which fails the run.
fn any_failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == CheckStatus::Failed)
}

/// Runs the checks that read sources only, before any step is computed: a night whose
/// export has not landed fails in seconds, not after the night's work (and so does each of
/// its retries).
async fn check_sources(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let checks = checks_on_sources(pipeline, true);
    let results = evaluate_checks(pipeline, request, (engine, storage), &checks, progress).await?;
    if any_failed(&results) {
        return Err(RunError::ChecksFailed(results));
    }
    Ok(results)
}

/// Runs the other checks on what the run is about to publish: an output's staged files
/// (read as the output's table from here on, so that nothing is computed twice), or the
/// registered table. A failed `error` check fails the run (its publications are then
/// discarded); a failed `warn` one is logged. Returns every check's outcome, `on_sources`'
/// too, in the spec's order.
async fn check_staged(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    publications: &[Publication],
    on_sources: Vec<CheckResult>,
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let checks = checks_on_sources(pipeline, false);
    if checks.is_empty() {
        return Ok(on_sources);
    }
    for (output, publication) in pipeline.outputs.iter().zip(publications) {
        let staged = std::slice::from_ref(&publication.staging().folder);
        engine
            .read_table_from(&output.table, staged, &output.options)
            .await?;
    }
    let staged = evaluate_checks(pipeline, request, (engine, storage), &checks, progress).await?;
    let mut results: Vec<CheckResult> = on_sources.into_iter().chain(staged).collect();
    let position = |name: &str| pipeline.checks.iter().position(|c| c.name == name);
    results.sort_by_key(|result| position(&result.name));
    if any_failed(&results) {
        return Err(RunError::ChecksFailed(results));
    }
    Ok(results)
}

/// Runs `checks` on the tables as `engine` has them, each outcome logged.
async fn evaluate_checks(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    checks: &[&Check],
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let params = request.params(pipeline);
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        progress.message(format!("check {}", check.name));
        let previous = match &check.rule {
            CheckRule::Sql(step) => {
                register_published(pipeline, engine, storage, step, request.as_of).await?;
                None
            }
            CheckRule::Anomaly { .. } => match pipeline.earlier_publications_of(&check.table) {
                Some(earlier) => {
                    publish::sink(storage, &earlier)
                        .latest_before(request.as_of)
                        .await?
                }
                None => None,
            },
            _ => None,
        };
        let inputs = CheckInputs {
            params: &params,
            previous: previous.as_ref().map(|p| p.files.as_slice()),
        };
        let outcome = engine.check(check, &inputs).await?;
        let status = match (outcome.offending, check.severity) {
            (0, _) => CheckStatus::Passed,
            (_, Severity::Warn) => CheckStatus::Warned,
            (_, Severity::Error) => CheckStatus::Failed,
        };
        let result = CheckResult {
            name: check.name.clone(),
            table: check.table.clone(),
            rule: check.rule.to_string(),
            found: outcome.found,
            status,
            offending: outcome.offending,
            examples: outcome.examples,
        };
        match status {
            CheckStatus::Passed if result.found.is_empty() => {
                tracing::info!(pipeline = %pipeline.name, check = %check.name, table = %check.table, "Check passed.")
            }
            CheckStatus::Passed => {
                tracing::info!(pipeline = %pipeline.name, check = %check.name, table = %check.table, note = %result.found, "Check passed.")
            }
            _ => {
                tracing::warn!(pipeline = %pipeline.name, check = %check.name, table = %check.table, offending = outcome.offending, status = ?status, "{}", result.summary())
            }
        }
        results.push(result);
    }
    Ok(results)
}

/// Claims the date for the run, fencing every run that claimed it before, and completes the
/// date's last decided publication if its run stopped between its commits.
async fn claim(
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

/// How often a run on a cluster says what it waits for: Ballista's client says nothing while
/// a job runs.
const CLUSTER_WAIT_LOG: Duration = Duration::from_secs(30);

/// Logs, every [`CLUSTER_WAIT_LOG`] while the run's queries run on a cluster, what the run
/// is at; never ends (in process, it logs nothing).
async fn say_what_the_cluster_works_on(
    pipeline: &Pipeline,
    progress: &Progress,
) -> std::convert::Infallible {
    let Some(url) = &pipeline.engine.cluster else {
        return std::future::pending().await;
    };
    let started = Instant::now();
    loop {
        tokio::time::sleep(CLUSTER_WAIT_LOG).await;
        tracing::info!(pipeline = %pipeline.name, cluster = %url, seconds = started.elapsed().as_secs(), at = %progress.latest(), "Waiting on the cluster.");
    }
}

/// Begins the publication of every output before any work.
async fn begin_publications(
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
async fn decide(
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
async fn discard(publications: impl IntoIterator<Item = Publication>) {
    for publication in publications {
        publication.discard().await;
    }
}

/// Best-effort: a scratch folder left behind is invisible to readers.
async fn remove_scratch(scratch: Scratch, storage: &Storage) {
    let folder = scratch.to_string();
    if let Err(error) = scratch.remove(storage).await {
        tracing::warn!(scratch = %folder, %error, "Could not remove the run's scratch folder.");
    }
}

/// Out of disk, DataFusion and the Parquet writer say only "No space left on device": say
/// where segflow writes, and how to move it.
fn name_full_disk(error: RunError, pipeline: &Pipeline) -> RunError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut full = false;
    while let Some(current) = cause {
        let io_full = current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
        full |= io_full || current.to_string().contains("No space left on device");
        cause = current.source();
    }
    if !full {
        return error;
    }
    RunError::DiskFull {
        disks: full_disks(pipeline),
        source: Box::new(error),
    }
}

/// Where a run writes on local disks (the scratch folder, local outputs), grouped by disk:
/// those nearly out of space, or all of them if none is (something freed space since).
fn full_disks(pipeline: &Pipeline) -> String {
    /// Less than this left counts as full: a write that failed for space left little.
    const NEARLY_FULL: u64 = 64 << 20;
    #[derive(Default)]
    struct OnDisk {
        folders: Vec<String>,
        outputs: Vec<(String, std::path::PathBuf)>,
    }
    let temp = std::env::temp_dir();
    let mut folders = Vec::new();
    match pipeline
        .engine
        .scratch
        .as_ref()
        .and_then(|s| s.local_path())
    {
        Some(scratch) => {
            folders.push((format!("the scratch folder {}", scratch.display()), scratch));
            folders.push((
                format!("the spill folder {} (TMPDIR)", temp.display()),
                temp,
            ));
        }
        None => folders.push((format!("the scratch folder {}", temp.display()), temp)),
    }
    let outputs = pipeline
        .outputs
        .iter()
        .filter_map(|o| Some((o.table.clone(), o.location.local_path()?)));
    let mut disks: Vec<(crate::storage::DiskSpace, OnDisk)> = Vec::new();
    let places = folders
        .into_iter()
        .map(|f| (true, f))
        .chain(outputs.map(|o| (false, o)));
    for (is_folder, (name, path)) in places {
        let Some(space) = crate::storage::space_of(&path) else {
            continue;
        };
        let at = match disks.iter().position(|(known, _)| known.disk == space.disk) {
            Some(at) => at,
            None => {
                disks.push((space, OnDisk::default()));
                disks.len() - 1
            }
        };
        let on_disk = &mut disks[at].1;
        match is_folder {
            true => on_disk.folders.push(name),
            false => on_disk.outputs.push((name, path)),
        }
    }
    let nearly_full = disks.iter().any(|(space, _)| space.available < NEARLY_FULL);
    disks
        .iter()
        .filter(|(space, _)| !nearly_full || space.available < NEARLY_FULL)
        .map(|(space, on_disk)| {
            let mut names = on_disk.folders.clone();
            match on_disk.outputs.as_slice() {
                [] => {}
                [(table, path)] => names.push(format!("output '{table}' at {}", path.display())),
                several => {
                    let tables: Vec<&str> = several.iter().map(|(t, _)| t.as_str()).collect();
                    let under = several
                        .iter()
                        .map(|(_, path)| path.as_path())
                        .reduce(common_folder)
                        .unwrap_or(std::path::Path::new("/"));
                    names.push(format!(
                        "the outputs {} under {}",
                        tables.join(", "),
                        under.display()
                    ));
                }
            }
            format!(
                "{} ({} KiB free on that disk)",
                names.join(" and "),
                space.available / 1024
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The deepest folder that holds both `a` and `b`.
fn common_folder<'a>(a: &'a std::path::Path, b: &std::path::Path) -> &'a std::path::Path {
    a.ancestors()
        .find(|folder| b.starts_with(folder))
        .unwrap_or(a)
}

/// A query that stopped at data that does not decode names no file: find it. When every file
/// reads back whole, the data was not the problem.
async fn name_damaged_file(engine: &Engine, error: RunError) -> RunError {
    let unreadable = matches!(
        error,
        RunError::Engine(EngineError::UnreadableData { .. } | EngineError::UnparsedText { .. })
    );
    if !unreadable {
        return error;
    }
    match (engine.find_damaged_file().await, error) {
        (Some(damaged), _) => damaged.into(),
        // No file repeats it: the SQL's own cast failed.
        (None, RunError::Engine(EngineError::UnparsedText { otherwise })) => (*otherwise).into(),
        (None, error) => RunError::ReadFailed(Box::new(error)),
    }
}

/// What [`plan_steps`] did: each step's timing, per source the rows that belong to no
/// known customer, and per versioned source the rows not in force.
struct StepsDone {
    steps: Vec<Timing>,
    unmatched: BTreeMap<String, Unmatched>,
    versions: BTreeMap<String, VersionCounts>,
}

/// Where each step that is used twice or more is materialised: into the staging folder of
/// its publication when it is an output (so that its files are written once, as published),
/// else into the run's scratch folder.
struct Targets<'a> {
    uses: HashMap<&'a str, usize>,
    /// The staging of each published table's first output, by its index among the outputs.
    outputs: HashMap<&'a str, (usize, ParquetTarget)>,
    scratch: &'a Scratch,
    /// On a cluster, results live where executors can read them: never in this process.
    in_memory: bool,
}

impl<'a> Targets<'a> {
    fn new(
        pipeline: &'a Pipeline,
        publications: &[Publication],
        scratch: &'a Scratch,
    ) -> Targets<'a> {
        let mut outputs = HashMap::new();
        for (index, (output, publication)) in pipeline.outputs.iter().zip(publications).enumerate()
        {
            outputs
                .entry(output.table.as_str())
                .or_insert_with(|| (index, publication.staging().clone()));
        }
        Targets {
            uses: step_uses(pipeline),
            outputs,
            scratch,
            in_memory: pipeline.engine.cluster.is_none(),
        }
    }

    /// A step used twice or more (read by later steps, or read and published) is computed
    /// once: a segment (a set of ids) into memory, any other step into Parquet files. One
    /// used once is planned into its one reader, or is written straight from its plan into
    /// its output's files.
    fn of(&self, step: &Step) -> StepResult {
        if self.uses.get(step.name.as_str()).copied().unwrap_or(0) < 2 {
            return StepResult::View;
        }
        match self.outputs.get(step.name.as_str()) {
            Some((_, staging)) => StepResult::Materialize(Box::new(staging.clone())),
            None if step.kind == StepKind::Segment && self.in_memory => StepResult::Memory {
                fallback: Box::new(self.scratch.target_of(&step.name)),
            },
            None => StepResult::Materialize(Box::new(self.scratch.target_of(&step.name))),
        }
    }

    /// The outputs (by index) whose files a materialised step already wrote.
    fn outputs_written(&self, steps: &[Timing]) -> BTreeSet<usize> {
        steps
            .iter()
            .filter(|step| step.rows.is_some())
            .filter_map(|step| self.outputs.get(step.name.as_str()))
            .map(|(index, _)| *index)
            .collect()
    }
}

/// Checks the sources' keys, and adds every step to the engine, materialising the steps
/// that are used twice or more where `targets` says. Also counts, per source, the rows
/// that belong to no known customer.
async fn plan_steps(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    targets: &Targets<'_>,
    progress: &Progress,
) -> Result<StepsDone, RunError> {
    let params = request.params(pipeline);
    let mut versions = BTreeMap::new();
    for source in &pipeline.sources {
        if source.key.as_ref().is_some_and(|k| k.versions.is_some()) {
            progress.message(format!("rows in force of {}", source.name));
        }
        if let Some(counts) = engine.settle_key(source, params.as_of_end_micros()).await? {
            versions.insert(source.name.clone(), counts);
        }
    }
    let mut unplanned: Vec<&Check> = pipeline.checks.iter().collect();
    let mut ready: BTreeSet<&str> = pipeline.sources.iter().map(|s| s.name.as_str()).collect();
    plan_ready_checks(pipeline, request, (engine, storage), &mut unplanned, &ready).await?;
    let count = pipeline.steps.len();
    let mut timings = Vec::with_capacity(count);
    for (done, step) in pipeline.steps.iter().enumerate() {
        progress.message(format!("step {}", step.name));
        let started = Instant::now();
        register_published(pipeline, engine, storage, step, request.as_of).await?;
        let (rows, files) = if step.incremental.is_some() {
            let mode = IncrementalMode::Compute {
                cache: request.cache.as_ref(),
                scratch: targets.scratch,
            };
            let files = engine
                .add_incremental(step, &pipeline.steps, &params, mode)
                .await?;
            (None, files)
        } else {
            (
                engine.add_step(step, &params, targets.of(step)).await?,
                None,
            )
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(pipeline = %pipeline.name, step = %step.name, seconds, rows, "Step ready.");
        // A step planned into its reader costs nothing until that reader runs.
        let what = match (rows, files) {
            (_, Some(files)) => format!(
                "computed step {} file by file: {} files computed, {} kept from earlier runs",
                step.name,
                thousands(files.computed),
                thousands(files.reused)
            ),
            (Some(rows), None) => format!(
                "computed {} {}: {} rows",
                step.kind.noun(),
                step.name,
                thousands(rows)
            ),
            (None, None) => format!("planned {} {}", step.kind.noun(), step.name),
        };
        progress.done(format!("{}/{count} {what} ({seconds:.2} s)", done + 1));
        timings.push(Timing {
            name: step.name.clone(),
            seconds,
            rows,
            files,
        });
        ready.insert(step.name.as_str());
        plan_ready_checks(pipeline, request, (engine, storage), &mut unplanned, &ready).await?;
    }
    let mut unmatched = BTreeMap::new();
    if !pipeline.segments.is_empty() {
        let matched: Vec<&str> = match &pipeline.members.matched {
            Some(tables) => tables.iter().map(String::as_str).collect(),
            None => pipeline.sources.iter().map(|s| s.name.as_str()).collect(),
        };
        for table in matched {
            let Some(counts) = engine.unmatched(table, &pipeline.members).await? else {
                continue;
            };
            if counts != Unmatched::default() {
                tracing::warn!(
                    pipeline = %pipeline.name,
                    table,
                    without_customer = counts.without_customer,
                    unknown_customer = counts.unknown_customer,
                    members = %pipeline.members.table,
                    "Rows without a known customer; they count for no one."
                );
            }
            unmatched.insert(table.to_string(), counts);
        }
    }
    Ok(StepsDone {
        steps: timings,
        unmatched,
        versions,
    })
}

/// Makes the earlier publications that `step` reads (`previous_t`, `history_t`) available.
async fn register_published(
    pipeline: &Pipeline,
    engine: &Engine,
    storage: &Storage,
    step: &Step,
    as_of: NaiveDate,
) -> Result<(), RunError> {
    for table in &step.sql.tables {
        let Some((kind, name)) = Published::parse(table) else {
            continue;
        };
        let Some(earlier) = pipeline.earlier_publications_of(name) else {
            continue;
        };
        if engine.has_table(table) {
            continue;
        }
        let sink = publish::sink(storage, &earlier);
        let partitions = match kind {
            Published::Previous => sink.latest_before(as_of).await?.into_iter().collect(),
            Published::History => sink.partitions_before(as_of, None).await?,
        };
        let partitions: Vec<_> = partitions.into_iter().map(|p| (p.as_of, p.files)).collect();
        tracing::info!(pipeline = %pipeline.name, table = %table, partitions = partitions.len(), "Reading earlier publications.");
        engine
            .register_published(table, partitions, &earlier.options, name)
            .await?;
    }
    Ok(())
}

/// In cluster mode, the executors read the sources and the scratch folder and write the
/// outputs' files: what of these is a path of this machine, which they cannot reach.
fn local_on_cluster(pipeline: &Pipeline, cache: Option<&CacheSpec>) -> Vec<String> {
    let mut local: Vec<String> = Vec::new();
    for source in pipeline.sources.iter().filter(|s| s.location.is_local()) {
        local.push(format!("source '{}' at {}", source.name, source.location));
    }
    for output in pipeline.outputs.iter().filter(|o| o.location.is_local()) {
        local.push(format!("output '{}' at {}", output.table, output.location));
    }
    match &pipeline.engine.scratch {
        None => local.push("engine.scratch, unset (a temporary folder here)".to_string()),
        Some(scratch) if scratch.is_local() => local.push(format!("engine.scratch at {scratch}")),
        Some(_) => {}
    }
    // Executors write and read the results of incremental steps kept in the state store.
    let incremental = pipeline.steps.iter().any(|step| step.incremental.is_some());
    if let Some(cache) = cache.filter(|cache| incremental && cache.root.is_local()) {
        local.push(format!(
            "the state store, which keeps incremental steps' results, at {}",
            cache.root
        ));
    }
    local
}

/// Before any work: nothing the run writes lies in what it reads, and in cluster mode every
/// location is one the executors reach, and the scheduler answers.
async fn check_locations(pipeline: &Pipeline, request: &RunRequest) -> Result<(), RunError> {
    let collisions = pipeline.collisions(request.state.as_ref());
    if !collisions.is_empty() {
        return Err(RunError::Collisions(collisions));
    }
    let Some(url) = &pipeline.engine.cluster else {
        return Ok(());
    };
    let local = local_on_cluster(pipeline, request.cache.as_ref());
    if !local.is_empty() {
        return Err(RunError::LocalOnCluster(local));
    }
    crate::cluster::reach(url)
        .await
        .map(|_| ())
        .map_err(|error| RunError::Engine(error.into()))
}

/// The engine with every source registered, Delta tables at their version as of the end of
/// `as_of`.
async fn prepare(
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
    match &pipeline.engine.cluster {
        Some(url) => Ok(engine.on_cluster(url).await?),
        None => Ok(engine),
    }
}

/// How many outputs are written at once. Each write runs its own query and DataFusion's
/// Parquet writer, which encodes in parallel too; writing two at once keeps both cores of a
/// small machine busy through the single-threaded parts of each (BENCHMARKS.md).
const CONCURRENT_WRITES: usize = 2;

/// Has the engine write every output into its publication's staging folder (but those that
/// a materialised step wrote already: `written_by_steps`), a few at a time, and hands
/// each publication its files.
async fn stage_outputs(
    pipeline: &Pipeline,
    engine: &Engine,
    publications: &mut [Publication],
    written_by_steps: &BTreeSet<usize>,
    progress: &Progress,
) -> Result<Vec<Timing>, RunError> {
    let writing = Writing {
        progress,
        count: pipeline.outputs.len(),
        tables: Default::default(),
        done: Default::default(),
    };
    let writes: Vec<_> = pipeline
        .outputs
        .iter()
        .zip(publications.iter_mut())
        .enumerate()
        .map(|(index, (output, publication))| {
            let written = written_by_steps.contains(&index);
            stage_output(
                pipeline,
                engine,
                &output.table,
                publication,
                written,
                &writing,
            )
            .boxed()
        })
        .collect();
    futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect()
        .await
}

/// Stages one output: has the engine write it unless `written` already, then hands the
/// publication its files.
async fn stage_output(
    pipeline: &Pipeline,
    engine: &Engine,
    table: &str,
    publication: &mut Publication,
    written: bool,
    writing: &Writing<'_>,
) -> Result<Timing, RunError> {
    let started = Instant::now();
    let schema = if written {
        engine.published_schema(table).await?
    } else {
        writing.started(table);
        let (schema, _) = engine.write(table, publication.staging()).await?;
        writing.ended(table);
        schema
    };
    let rows = publication.staged(schema).await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(pipeline = %pipeline.name, table = %table, rows, seconds, "Output staged.");
    let rows_text = thousands(rows);
    writing.done(if written {
        format!("staged {table}: {rows_text} rows (written by its step)")
    } else {
        format!("wrote {table}: {rows_text} rows ({seconds:.2} s)")
    });
    Ok(Timing {
        name: table.to_string(),
        seconds,
        rows: Some(rows),
        files: None,
    })
}

/// The terminal's view of outputs written at once: which are being written, and how many
/// are done.
struct Writing<'a> {
    progress: &'a Progress,
    count: usize,
    tables: std::sync::Mutex<Vec<String>>,
    done: std::sync::atomic::AtomicUsize,
}

impl Writing<'_> {
    fn started(&self, table: &str) {
        let mut tables = self.tables.lock().expect("progress lock");
        tables.push(table.to_string());
        self.show(&tables);
    }

    fn ended(&self, table: &str) {
        let mut tables = self.tables.lock().expect("progress lock");
        tables.retain(|t| t != table);
        self.show(&tables);
    }

    fn show(&self, tables: &[String]) {
        if !tables.is_empty() {
            self.progress
                .message(format!("writing {}", tables.join(", ")));
        }
    }

    fn done(&self, what: String) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.progress.done(format!("{done}/{} {what}", self.count));
    }
}

/// `1234567` as `1,234,567`, for people reading a terminal.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// How many times each table is used: read by a step, or published.
fn step_uses(pipeline: &Pipeline) -> HashMap<&str, usize> {
    let mut uses = HashMap::new();
    let read = pipeline
        .steps
        .iter()
        .flat_map(|step| step.sql.tables.iter());
    let published = pipeline.outputs.iter().map(|output| &output.table);
    for table in read.chain(published) {
        *uses.entry(table.as_str()).or_insert(0) += 1;
    }
    uses
}
