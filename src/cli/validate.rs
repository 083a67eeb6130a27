//! `segflow validate`: the spec checked and every step planned, nothing scanned.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::run::{self, RunRequest};

use super::args::ValidateArgs;
use super::{Failure, yesterday};

pub(super) async fn validate_command(args: ValidateArgs) -> Result<(), Failure> {
    let mut failures = Vec::new();
    let options = LoadOptions {
        var_overrides: args.vars.clone(),
        ..LoadOptions::default()
    };
    for path in &args.pipelines {
        let checked = match Pipeline::load(path, &options) {
            Ok(pipeline) => {
                let as_of = args.as_of.unwrap_or_else(|| yesterday(pipeline.timezone));
                let request = RunRequest {
                    run_id: "validate".to_string(),
                    ..RunRequest::new(as_of)
                };
                run::plan_only(&pipeline, &request)
                    .await
                    .map_err(Failure::from)
            }
            Err(error) => Err(Failure::from(error)),
        };
        match checked {
            Ok(planned) => println!(
                "{}: ok ({} steps and {} segments planned)",
                path.display(),
                planned.steps,
                planned.segments
            ),
            Err(failure) => {
                println!("{}: failed", path.display());
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
