//! `segflow run`: one run of a pipeline, by hand, under its lease.

use segflow::pipeline::{LoadOptions, Pipeline};

use super::args::RunArgs;
use super::hand_runner::HandRunner;
use super::report::print_report;
use super::{Failure, yesterday};

pub(super) async fn run_command(args: RunArgs) -> Result<(), Failure> {
    let options = LoadOptions {
        var_overrides: args.vars,
        ..LoadOptions::default()
    };
    let pipeline = Pipeline::load(&args.pipeline, &options)?;
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
