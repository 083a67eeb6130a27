//! `segflow validate`: the spec checked and every step planned, nothing scanned.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::run;

use super::args::ValidateArgs;
use super::{Failure, yesterday};

pub(super) async fn validate_command(args: ValidateArgs) -> Result<(), Failure> {
    let mut failures = Vec::new();
    for path in &args.pipelines {
        let checked = match Pipeline::load(path, &LoadOptions::default()) {
            Ok(pipeline) => run::plan_only(&pipeline, yesterday(pipeline.timezone))
                .await
                .map(|()| pipeline.steps.len())
                .map_err(Failure::from),
            Err(error) => Err(Failure::from(error)),
        };
        match checked {
            Ok(steps) => println!("{}: ok ({steps} steps planned)", path.display()),
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
