//! `segflow render`: a step's SQL as the engine runs it, parameters bound (`dbt compile`).

use segflow::hint::did_you_mean;
use segflow::run::RunRequest;

use super::args::RenderArgs;
use super::{Failure, load_with_values};

pub(super) async fn render_command(args: RenderArgs) -> Result<(), Failure> {
    let (pipeline, as_of) = load_with_values(&args.pipeline, args.values)?;
    let name = args.step.to_lowercase();
    let Some(step) = pipeline.steps.iter().find(|s| s.name == name) else {
        let what = if pipeline.sources.iter().any(|s| s.name == name) {
            format!("'{name}' is a source, which has no SQL; render prints a step's")
        } else {
            format!(
                "pipeline '{}' has no step or segment named '{name}'{}",
                pipeline.name,
                did_you_mean(&name, pipeline.steps.iter().map(|s| s.name.as_str()))
            )
        };
        return Err(Failure::User(anyhow::anyhow!(what)));
    };
    let request = RunRequest {
        run_id: "render".to_string(),
        ..RunRequest::new(as_of)
    };
    let sql = request
        .params(&pipeline)
        .render(step)
        .map_err(|e| Failure::from(segflow::run::RunError::from(e)))?;
    say!(
        "-- {} {} ({}) as of {as_of}, parameters bound",
        step.kind.noun(),
        step.name,
        step.sql_file.display()
    );
    say!("{}", sql.trim_end());
    Ok(())
}
