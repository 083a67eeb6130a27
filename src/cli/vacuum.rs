//! `segflow vacuum`: the files of a pipeline's outputs that no publication needs, deleted.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::publish;
use segflow::storage::Storage;

use super::Failure;
use super::args::VacuumArgs;

pub(super) async fn vacuum_command(args: VacuumArgs) -> Result<(), Failure> {
    let pipeline = Pipeline::load(&args.pipeline, &LoadOptions::default())?;
    let retain = chrono::Duration::from_std(args.retain)
        .map_err(|e| Failure::User(anyhow::anyhow!("--retain {:?}: {e}", args.retain)))?;
    let cutoff = chrono::Utc::now() - retain;
    let storage = Storage::new();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for output in &pipeline.outputs {
        let removed = publish::sink(&storage, output)
            .vacuum(cutoff, args.dry_run)
            .await?;
        say!("{}: {verb} {} files", output.table, removed.len());
        if args.dry_run {
            for file in &removed {
                say!("  {file}");
            }
        }
    }
    Ok(())
}
