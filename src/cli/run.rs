//! `segflow run`: one run of a pipeline, by hand, under its lease.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::storage::Location;

use super::args::RunArgs;
use super::hand_runner::HandRunner;
use super::report::print_report;
use super::{Failure, yesterday};

pub(super) async fn run_command(mut args: RunArgs) -> Result<(), Failure> {
    let options = LoadOptions {
        var_overrides: args.vars,
        ..LoadOptions::default()
    };
    let mut pipeline = Pipeline::load(&args.pipeline, &options)?;
    if let Some(preview) = &args.preview {
        // The preview's own history and lease: it may run beside the real runs, which
        // never read it.
        let dir = Location::parse(preview)?.as_folder();
        args.hand.state.url = dir.join("state/").to_string();
        pipeline = pipeline.preview_into(&dir);
        println!("Preview into {dir}: the pipeline's outputs and history are only read.");
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
