//! The command line, one file per command (as uv does). `anyhow` is used here and in
//! main.rs only; the library's errors are typed.

/// Prints a line of a command's output (see [`say_text`]).
macro_rules! say {
    () => {
        $crate::cli::say_text("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::say_text(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod args;
mod backfill;
mod check;
mod cluster;
mod demo;
mod failure;
mod generate;
mod graph;
mod hand_runner;
mod init;
mod outcome;
mod render;
mod report;
mod run;
mod runs;
mod schedule;
mod serve;
mod shipped;
mod show;
mod vacuum;
mod validate;

use chrono::{NaiveDate, Utc};
use segflow::pipeline::{LoadOptions, Pipeline};

pub(crate) use args::Cli;
use args::Command;
pub(crate) use failure::Failure;

pub(crate) async fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run::run_command(args).await,
        Command::Validate(args) => validate::validate_command(args).await,
        Command::Generate(args) => generate::generate_command(args).await,
        Command::Demo(args) => demo::demo_command(args).await,
        Command::Show(args) => show::show_command(args).await,
        Command::Render(args) => render::render_command(args).await,
        Command::Init(args) => init::init_command(args).await,
        Command::Runs(args) => runs::runs_command(args).await,
        Command::Schedule(args) => schedule::schedule_command(args).await,
        Command::Backfill(args) => backfill::backfill_command(args).await,
        Command::Check(args) => check::check_command(args).await,
        Command::Vacuum(args) => vacuum::vacuum_command(args).await,
        Command::Graph(args) => graph::graph_command(args).await,
        Command::Report(args) => report::report_command(args).await,
        Command::Cluster(command) => cluster::cluster_command(command).await,
        Command::Serve(args) => serve::serve_command(args).await,
    }
}

/// A pipeline loaded with `--var` overrides, and the date a run would use: `--as-of`, or
/// yesterday in the pipeline's time zone.
fn load_with_values(
    path: &std::path::Path,
    values: args::RunValues,
) -> Result<(Pipeline, NaiveDate), Failure> {
    let options = LoadOptions {
        var_overrides: values.vars,
        ..LoadOptions::default()
    };
    let pipeline = Pipeline::load(path, &options)?;
    let as_of = values.as_of.unwrap_or_else(|| yesterday(pipeline.timezone));
    Ok((pipeline, as_of))
}

/// Writes a command's output to stdout. A reader that stops reading (`segflow runs --json |
/// head -1`) ends the command quietly, as it ends `cat`, rather than with a panic about a
/// broken pipe (Rust ignores SIGPIPE, so every write after that fails).
pub(crate) fn say_text(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Output that cannot be written (a full disk behind a redirect) is the environment's
        // failure.
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(2);
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
