//! `segflow graph`: the pipeline's lineage as Mermaid or DOT text, with the rows of its last
//! successful run when the run history has one.

use segflow::history::RunStatus;
use segflow::lineage::Lineage;
use segflow::pipeline::{LoadOptions, Pipeline};

use super::Failure;
use super::args::{GraphArgs, GraphFormat};
use super::hand_runner::open_history;

pub(super) async fn graph_command(args: GraphArgs) -> Result<(), Failure> {
    let pipeline = Pipeline::load(&args.pipeline, &LoadOptions::default())?;
    let history = open_history(&args.state)?;
    let records = history.list(Some(&pipeline.name)).await?;
    let last_success = records
        .iter()
        .rev()
        .find(|r| r.status == RunStatus::Succeeded);
    let lineage = Lineage::of(&pipeline, last_success);
    match args.format {
        GraphFormat::Mermaid => super::say_text(&lineage.mermaid()),
        GraphFormat::Dot => super::say_text(&lineage.dot(&pipeline.name)),
    }
    Ok(())
}
