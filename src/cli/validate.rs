//! `segflow validate`: the spec checked, every step planned and every store reached,
//! nothing scanned.

use std::collections::BTreeMap;

use segflow::engine::CacheSpec;
use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::run::{self, RunRequest};
use segflow::storage::{Location, Storage};

use super::args::ValidateArgs;
use super::{Failure, yesterday};

pub(super) async fn validate_command(args: ValidateArgs) -> Result<(), Failure> {
    let mut failures = Vec::new();
    let engine = args.engine.overrides()?;
    let options = LoadOptions {
        var_overrides: args.values.vars.clone(),
        ..LoadOptions::default()
    };
    for path in &args.pipelines {
        let loaded = Pipeline::load(path, &options).map(|pipeline| pipeline.with_engine(&engine));
        let checked = match loaded {
            Ok(pipeline) if args.offline => Ok(format!(
                "{} steps and {} segments read; storage not checked (--offline)",
                pipeline.query_steps().count(),
                pipeline.segments.len()
            )),
            Ok(pipeline) => check_against_storage(&pipeline, &args).await,
            Err(error) => Err(Failure::from(error)),
        };
        match checked {
            Ok(summary) => say!("{}: ok ({summary})", path.display()),
            Err(failure) => {
                say!("{}: failed", path.display());
                failures.push(failure);
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.pop().expect("one failure")),
        _ => {
            let environment = failures
                .iter()
                .any(|f| matches!(f, Failure::Environment(_)));
            let text: Vec<String> = failures
                .iter()
                .map(|f| format!("{:#}", f.error()))
                .collect();
            let error =
                anyhow::anyhow!("{} pipelines failed:\n{}", failures.len(), text.join("\n"));
            Err(if environment {
                Failure::Environment(error)
            } else {
                Failure::User(error)
            })
        }
    }
}

/// Reaches each output and the state store, which a run otherwise needs only at its end
/// (a wrong endpoint or missing credentials there would show after the night's work), then
/// plans every step against the sources' schemas.
async fn check_against_storage(
    pipeline: &Pipeline,
    args: &ValidateArgs,
) -> Result<String, Failure> {
    let state = Location::parse(&args.state.url)?;
    // Before the probes, which write where the run would.
    let collisions = pipeline.collisions(Some(&state));
    if !collisions.is_empty() {
        return Err(run::RunError::Collisions(collisions).into());
    }
    let storage = Storage::new();
    for output in &pipeline.outputs {
        storage.probe(&output.location, &output.options).await?;
    }
    storage.probe(&state, &BTreeMap::new()).await?;
    let as_of = args
        .values
        .as_of
        .unwrap_or_else(|| yesterday(pipeline.timezone));
    let request = RunRequest {
        run_id: "validate".to_string(),
        // Where a run keeps incremental results: on a cluster, its executors write there.
        cache: Some(CacheSpec::in_state(&state, &pipeline.name, false)),
        state: Some(state.clone()),
        ..RunRequest::new(as_of)
    };
    let planned = run::plan_only(pipeline, &request).await?;
    Ok(format!(
        "{} steps and {} segments planned; {} outputs and the state store reached",
        planned.steps,
        planned.segments,
        pipeline.outputs.len()
    ))
}
