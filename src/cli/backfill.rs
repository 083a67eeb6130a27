//! `segflow backfill`: one hand run per day of a range, skipping days that succeeded.

use chrono::NaiveDate;
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
    let done: std::collections::BTreeSet<_> = (hand.runner.history())
        .succeeded(&pipeline.name)
        .await?
        .into_iter()
        .map(|r| r.as_of)
        .collect();
    let mut changed_history = false;
    let mut as_of = args.from;
    while as_of <= args.to {
        if done.contains(&as_of) && !args.force {
            say!("{as_of}: already succeeded, skipped (--force to run it again)");
        } else {
            run_one(&hand, &pipeline, as_of, "published").await?;
            changed_history = true;
        }
        as_of = as_of.succ_opt().expect("a next day");
    }
    let later: Vec<NaiveDate> = done.range(as_of..).copied().collect();
    if !changed_history || later.is_empty() || !pipeline.reads_earlier_publications() {
        return Ok(());
    }
    if args.through_latest {
        for as_of in later {
            run_one(&hand, &pipeline, as_of, "re-published after the backfill").await?;
        }
    } else {
        let (first, last) = (later[0], later[later.len() - 1]);
        eprintln!(
            "warning: {} later dates ({first} to {last}) were computed from the publications \
             before this backfill, which it changed: their segment changes and win-back \
             cooldown may be out of date. Run them again with --through-latest, or with \
             `segflow backfill {} --from {first} --to {last} --force`.",
            later.len(),
            args.pipeline.display()
        );
    }
    Ok(())
}

async fn run_one(
    hand: &HandRunner,
    pipeline: &Pipeline,
    as_of: NaiveDate,
    done: &str,
) -> Result<(), Failure> {
    let report = hand.run(pipeline, as_of).await?;
    let rows: u64 = report.outputs.iter().map(|o| o.committed.rows).sum();
    say!(
        "{as_of}: {done} {} outputs, {rows} rows (run {})",
        report.outputs.len(),
        report.run_id
    );
    Ok(())
}
