//! The command line, one file per command (as uv does). `anyhow` is used here and in
//! main.rs only; the library's errors are typed.

mod args;
mod backfill;
mod demo;
mod failure;
mod generate;
mod hand_runner;
mod init;
mod report;
mod run;
mod runs;
mod schedule;
mod shipped;
mod validate;

use chrono::{NaiveDate, Utc};

pub(crate) use args::Cli;
use args::Command;
pub(crate) use failure::Failure;

pub(crate) async fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run::run_command(args).await,
        Command::Validate(args) => validate::validate_command(args).await,
        Command::Generate(args) => generate::generate_command(args).await,
        Command::Demo(args) => demo::demo_command(args).await,
        Command::Init(args) => init::init_command(args).await,
        Command::Runs(args) => runs::runs_command(args).await,
        Command::Schedule(args) => schedule::schedule_command(args).await,
        Command::Backfill(args) => backfill::backfill_command(args).await,
    }
}

/// The last complete day in `zone`.
fn yesterday(zone: chrono_tz::Tz) -> NaiveDate {
    Utc::now()
        .with_timezone(&zone)
        .date_naive()
        .pred_opt()
        .expect("yesterday exists")
}
