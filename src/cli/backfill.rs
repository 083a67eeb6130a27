//! `segflow backfill`: one hand run per day of a range, skipping days that succeeded.

use segflow::pipeline::{LoadOptions, Pipeline};

use super::args::BackfillArgs;
use super::hand_runner::HandRunner;
use super::{Failure, yesterday};

pub(super) async fn backfill_command(args: BackfillArgs) -> Result<(), Failure> {
    if args.from > args.to {
        return Err(Failure::User(anyhow::anyhow!(
            "--from {} is after --to {}",
            args.from,
            args.to
        )));
    }
    let options = LoadOptions {
        var_overrides: args.vars,
        ..LoadOptions::default()
    };
    let pipeline = Pipeline::load(&args.pipeline, &options)?;
    let last_complete = yesterday(pipeline.timezone);
    if args.to > last_complete && !args.allow_future {
        return Err(Failure::User(anyhow::anyhow!(
            "--to {} is after {last_complete}, the last complete day in {}: the orders of a \
             later day are not all in yet, and its publication would count as done. Use \
             --to {last_complete}, or --allow-future to run it anyway",
            args.to,
            pipeline.timezone
        )));
    }
    let hand = HandRunner::new(&args.hand)?;
    let done = hand.history.succeeded(&pipeline.name).await?;
    let mut as_of = args.from;
    while as_of <= args.to {
        if done.contains(&as_of) && !args.force {
            println!("{as_of}: already succeeded, skipped (--force to run it again)");
        } else {
            let report = hand.run(&pipeline, as_of).await?;
            let rows: u64 = report.outputs.iter().map(|o| o.committed.rows).sum();
            println!(
                "{as_of}: published {} outputs, {rows} rows (run {})",
                report.outputs.len(),
                report.run_id
            );
        }
        as_of = as_of.succ_opt().expect("a next day");
    }
    Ok(())
}
