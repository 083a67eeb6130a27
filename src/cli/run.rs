//! `segflow run`: one run of a pipeline, by hand, under its lease.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::storage::Location;

use super::args::RunArgs;
use super::hand_runner::HandRunner;
use super::outcome::print_report;
use super::{Failure, yesterday};

pub(super) async fn run_command(mut args: RunArgs) -> Result<(), Failure> {
    let options = LoadOptions {
        var_overrides: args.vars,
        ..LoadOptions::default()
    };
    let mut pipeline = Pipeline::load(&args.pipeline, &options)?;
    if !args.select.is_empty() {
        if args.preview.is_none() {
            return Err(Failure::User(anyhow::anyhow!(
                "--select needs --preview DIR: a run of part of the pipeline would publish \
                 some outputs of the date and not others, and the history would count the \
                 date as done. Try it with `--preview DIR`, or run the whole pipeline"
            )));
        }
        pipeline = pipeline.select(&args.select)?;
        if pipeline.outputs.is_empty() {
            let names: Vec<&str> = args.select.iter().map(|s| s.name.as_str()).collect();
            return Err(Failure::User(anyhow::anyhow!(
                "--select {} publishes no output: no selected table is an output of the \
                 pipeline. Add + to select what is computed from it, or look at a table \
                 with `segflow show`",
                names.join(", ")
            )));
        }
    }
    if let Some(preview) = &args.preview {
        // The preview's own history and lease: it may run beside the real runs, which
        // never read it.
        let dir = Location::parse(preview)?.as_folder();
        args.hand.state.url = dir.join("state/").to_string();
        pipeline = pipeline.preview_into(&dir);
        say!("Preview into {dir}: the pipeline's outputs and history are only read.");
    }
    let hand = HandRunner::new(&args.hand)?;
    let report = hand
        .run(
            &pipeline,
            args.as_of.unwrap_or_else(|| yesterday(pipeline.timezone)),
        )
        .await?;
    print_report(&report);
    Ok(())
}
