//! The side doors: what `segflow check`, `segflow validate` and `segflow show` ask of a
//! pipeline, each reading what a run would and publishing nothing.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;

use crate::engine::{Engine, IncrementalMode, StepResult};
use crate::pipeline::{Check, Pipeline, Selector};
use crate::progress::Progress;
use crate::publish;
use crate::storage::Storage;

use super::checks::{evaluate_checks, plan_ready_checks};
use super::earlier::register_published;
use super::error::{RunError, name_damaged_file};
use super::{AuditReport, Planned, RunRequest, check_locations, prepare};

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
    plan_steps(pipeline, request, &engine, &storage, StepsAs::Columns).await?;
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
    plan_steps(&pipeline, request, &engine, &storage, StepsAs::Views).await?;
    match engine.head(&table.name, limit).await {
        Ok(rows) => Ok(rows),
        Err(error) => Err(name_damaged_file(&engine, error.into()).await),
    }
}

/// What [`plan_steps`] registers each step as.
#[derive(Clone, Copy)]
enum StepsAs {
    /// Views, to be computed: what `segflow show` reads.
    Views,
    /// Their columns alone: what checking that every step plans needs.
    Columns,
}

/// Plans every step and registers it as `steps_as` says. Every step that fails is reported;
/// a step that reads a failed one is not planned (its errors would only repeat the cause).
async fn plan_steps(
    pipeline: &Pipeline,
    request: &RunRequest,
    engine: &Engine,
    storage: &Storage,
    steps_as: StepsAs,
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
                let result = match steps_as {
                    StepsAs::Views => StepResult::View,
                    StepsAs::Columns => StepResult::Columns,
                };
                engine.add_step(step, &params, result).await?;
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
