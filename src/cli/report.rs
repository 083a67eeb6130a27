//! `segflow report`: a publication as one HTML page, from the published tables and the run
//! history.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::storage::{Location, Storage};

use super::Failure;
use super::args::ReportArgs;
use super::hand_runner::open_history;

pub(super) async fn report_command(args: ReportArgs) -> Result<(), Failure> {
    let pipeline = Pipeline::load(&args.pipeline, &LoadOptions::default())?;
    let out = Location::parse(&args.out).map_err(|e| Failure::User(e.into()))?;
    let history = open_history(&args.state)?;
    let storage = Storage::new();
    let report = segflow::report::gather(&pipeline, &storage, &history, args.as_of).await?;
    segflow::report::write(&storage, &out, &Default::default(), report.html()).await?;
    match report.as_of {
        Some(as_of) => say!(
            "Wrote the report of {} as of {as_of} to {}",
            pipeline.name,
            args.out
        ),
        None => say!(
            "Wrote the report of {} to {}: it has published nothing yet",
            pipeline.name,
            args.out
        ),
    }
    Ok(())
}
