//! The steps of a run: where each result goes (planned into its reader, kept in memory,
//! or written once as Parquet), each step added to the engine in order, and the earlier
//! publications a step reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::engine::{
    Backend, Engine, IncrementalMode, ParquetTarget, Scratch, StepResult, VersionCounts,
};
use crate::pipeline::{Check, Pipeline, Step, StepKind};
use crate::progress::{Progress, thousands};
use crate::publish::Publication;
use crate::segments::Unmatched;
use crate::storage::Storage;

use super::checks::plan_ready_checks;
use super::earlier::register_published;
use super::error::RunError;
use super::{RunRequest, Timing};

/// What [`plan_steps`] did: each step's timing, per source the rows that belong to no
/// known customer, and per versioned source the rows not in force.
pub(super) struct StepsDone {
    pub(super) steps: Vec<Timing>,
    pub(super) unmatched: BTreeMap<String, Unmatched>,
    pub(super) versions: BTreeMap<String, VersionCounts>,
}

/// Where each step that is used twice or more is materialised: into the staging folder of
/// its publication when it is an output (so that its files are written once, as published),
/// else into the run's scratch folder.
pub(super) struct Targets<'a> {
    uses: HashMap<&'a str, usize>,
    /// The staging of each published table's first output, by its index among the outputs.
    outputs: HashMap<&'a str, (usize, ParquetTarget)>,
    scratch: &'a Scratch,
    /// On a cluster, results live where executors can read them: never in this process.
    in_memory: bool,
}

impl<'a> Targets<'a> {
    pub(super) fn new(
        pipeline: &'a Pipeline,
        publications: &[Publication],
        scratch: &'a Scratch,
        backend: &Backend,
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
            in_memory: backend.keeps_results_in_memory(),
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
    pub(super) fn outputs_written(&self, steps: &[Timing]) -> BTreeSet<usize> {
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
pub(super) async fn plan_steps(
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
