//! The command line: one `*Args` struct per subcommand, doc comments as the help text,
//! and one exit status per kind of failure (1: the user's spec or data, 2: environment or
//! internal).

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};

use crate::cancel::{Cancel, CancelReason};
use crate::fault::Fault;
use crate::generate::{self, ShopSize};
use crate::history::{self, RunHistory};
use crate::lease::{Lease, Leases};
use crate::pipeline::{LoadOptions, Pipeline, SpecError, parse_date};
use crate::progress::Progress;
use crate::run::{self, RunReport, RunRequest};
use crate::storage::{Location, Storage};

/// segflow: customer segments from e-commerce Parquet, as a scheduled SQL pipeline.
#[derive(Debug, Parser)]
#[command(name = "segflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline once for one logical date and publish its outputs.
    Run(RunArgs),
    /// Check pipeline specs and plan every SQL step against the sources, reading no data.
    Validate(ValidateArgs),
    /// Write deterministic sample shop data (customers, orders, order_items, checkouts).
    Generate(GenerateArgs),
    /// Generate a small sample shop, run the shipped nightly pipeline on it, show the result.
    Demo(DemoArgs),
    /// Run every scheduled pipeline in a folder at its slots, until stopped (SIGTERM/SIGINT).
    Schedule(ScheduleArgs),
    /// List recorded runs (newest last).
    Runs(RunsArgs),
    /// Run a pipeline for every date in a range, oldest first, skipping dates that already
    /// have a successful run unless --force. Stops at the first failure.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where run history is kept: a folder or URL (s3://... in production).
    #[arg(long = "state", env = "SEGFLOW_STATE", default_value = "segflow-state")]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The folder of pipeline YAML files; those with a `schedule` run.
    #[arg(long, default_value = "pipelines")]
    pub pipelines: PathBuf,
    /// Run whatever is due now and exit (for cron or Kubernetes CronJobs).
    #[arg(long)]
    pub once: bool,
    /// Seconds a running run may go on after a stop is asked for, before it is cancelled.
    #[arg(long, default_value_t = 30)]
    pub grace_seconds: u64,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// How runs keep other runs of the same pipeline out.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Seconds a lease lasts without renewal; a crashed process's lease expires after this.
    #[arg(long, default_value_t = 30)]
    pub lease_seconds: u64,
    /// Publish with plain writes to a store that cannot write conditionally, promising that
    /// nothing else publishes the same outputs at the same time (without it, segflow refuses
    /// such a store, since two writers could overwrite each other's publication).
    #[arg(long, env = "SEGFLOW_SINGLE_WRITER")]
    pub single_writer: bool,
}

/// Runs started by hand share the pipeline's lease with the scheduler.
#[derive(Debug, Args)]
pub struct HandRunArgs {
    /// Seconds to wait when another run of the pipeline holds its lease, before giving up.
    #[arg(long, default_value_t = 600)]
    pub wait_for_lease: u64,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this pipeline's runs (its name).
    pub pipeline: Option<String>,
    /// Print each run's whole record (rows per output, slot, end time) as one JSON line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The pipeline YAML file.
    pub pipeline: PathBuf,
    /// First logical date (YYYY-MM-DD), included.
    #[arg(long, value_parser = date_arg)]
    pub from: NaiveDate,
    /// Last logical date (YYYY-MM-DD), included.
    #[arg(long, value_parser = date_arg)]
    pub to: NaiveDate,
    /// Run dates that already succeeded too.
    #[arg(long)]
    pub force: bool,
    /// Override a pipeline var: --var name=value (repeatable).
    #[arg(long = "var", value_parser = var_arg)]
    pub vars: Vec<(String, String)>,
    #[command(flatten)]
    pub hand: HandRunArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline YAML file.
    pub pipeline: PathBuf,
    /// The run's logical date (YYYY-MM-DD); orders after the end of this day are ignored.
    /// Defaults to yesterday in the pipeline's time zone, the last complete day.
    #[arg(long, value_parser = date_arg)]
    pub as_of: Option<NaiveDate>,
    /// Override a pipeline var: --var name=value (repeatable). The value must fit the
    /// var's declared type.
    #[arg(long = "var", value_parser = var_arg)]
    pub vars: Vec<(String, String)>,
    #[command(flatten)]
    pub hand: HandRunArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline YAML files.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Number of orders (exact).
    #[arg(long, default_value_t = 50_000)]
    pub orders: u64,
    /// Where to write: a folder path or URL; each table goes in a subfolder.
    #[arg(long)]
    pub out: String,
    /// Random seed; the same seed, sizes and end date give the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The last day of the generated history (YYYY-MM-DD). Defaults to yesterday (UTC).
    #[arg(long, value_parser = date_arg)]
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's data, pipeline and outputs.
    #[arg(long, default_value = "segflow-demo")]
    pub dir: PathBuf,
    /// Number of customers in the sample shop.
    #[arg(long, default_value_t = 20_000)]
    pub customers: u64,
    /// Number of orders in the sample shop.
    #[arg(long, default_value_t = 80_000)]
    pub orders: u64,
}

/// The logical dates segflow runs for. SQL may turn `$as_of` into a TIMESTAMP, whose
/// nanoseconds reach from 1677-09-21 to 2262-04-11; a date outside these bounds would fail
/// deep inside a query instead of here.
const FIRST_DATE: (i32, u32, u32) = (1900, 1, 1);
const LAST_DATE: (i32, u32, u32) = (2261, 12, 31);

fn date_arg(text: &str) -> Result<NaiveDate, String> {
    let date = parse_date(text)
        .ok_or_else(|| format!("'{text}' is not a date; write it as YYYY-MM-DD"))?;
    let bound = |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("a valid bound");
    let (first, last) = (bound(FIRST_DATE), bound(LAST_DATE));
    if date < first || date > last {
        return Err(format!(
            "{date} is outside the dates segflow runs for, {first} to {last} (SQL timestamps \
             in nanoseconds end in 2262)"
        ));
    }
    Ok(date)
}

fn var_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not name=value"))
}

/// A failed command: the error to print, and whose fault it was.
pub enum Failure {
    User(anyhow::Error),
    Environment(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::User(_) => 1,
            Failure::Environment(_) => 2,
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::User(e) | Failure::Environment(e) => e,
        }
    }
}

impl From<SpecError> for Failure {
    fn from(error: SpecError) -> Self {
        match error {
            SpecError::Read { .. } => Failure::User(error.into()),
            SpecError::Invalid { .. } => Failure::User(error.into()),
        }
    }
}

impl Failure {
    fn of(fault: Fault, error: impl Into<anyhow::Error>) -> Failure {
        match fault {
            Fault::User => Failure::User(error.into()),
            Fault::Environment => Failure::Environment(error.into()),
        }
    }
}

impl From<run::RunError> for Failure {
    fn from(error: run::RunError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<history::HistoryError> for Failure {
    fn from(error: history::HistoryError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<crate::lease::LeaseError> for Failure {
    fn from(error: crate::lease::LeaseError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<history::RecordedRunError> for Failure {
    fn from(error: history::RecordedRunError) -> Self {
        match error {
            history::RecordedRunError::Run(error) => error.into(),
            history::RecordedRunError::History(error) => error.into(),
        }
    }
}

impl From<generate::GenerateError> for Failure {
    fn from(error: generate::GenerateError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<crate::storage::StorageError> for Failure {
    fn from(error: crate::storage::StorageError) -> Self {
        Failure::of(error.fault(), error)
    }
}

pub async fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run_command(args).await,
        Command::Validate(args) => validate_command(args).await,
        Command::Generate(args) => generate_command(args).await,
        Command::Demo(args) => demo_command(args).await,
        Command::Runs(args) => runs_command(args).await,
        Command::Schedule(args) => schedule_command(args).await,
        Command::Backfill(args) => backfill_command(args).await,
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

async fn run_command(args: RunArgs) -> Result<(), Failure> {
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

/// Runs started from the command line (not schedule slots): each recorded in the history and
/// run under the pipeline's lease, like the scheduler's, so that a hand run never runs
/// alongside the daemon's run of the same pipeline or another hand run.
struct HandRunner {
    storage: Storage,
    history: RunHistory,
    leases: Leases,
    wait: std::time::Duration,
    single_writer: bool,
    /// Cancelled by the first SIGINT or SIGTERM.
    stop: Cancel,
}

impl HandRunner {
    fn new(args: &HandRunArgs) -> Result<HandRunner, Failure> {
        let storage = Storage::new();
        let state = Location::parse(&args.state.url)?;
        Ok(HandRunner {
            history: RunHistory::new(storage.clone(), state.clone()),
            leases: Leases::new(
                storage.clone(),
                &state,
                crate::lease::unique_holder(),
                std::time::Duration::from_secs(args.lease.lease_seconds.max(1)),
                crate::clock::Clock::System,
            ),
            storage,
            wait: std::time::Duration::from_secs(args.wait_for_lease),
            single_writer: args.lease.single_writer,
            stop: stop_signals(),
        })
    }

    async fn run(&self, pipeline: &Pipeline, as_of: NaiveDate) -> Result<RunReport, Failure> {
        let progress = Progress::for_terminal();
        let (mut lease, records) = loop {
            let lease = self.take_lease(&pipeline.name, &progress).await?;
            let mut records = match self.history.list(Some(&pipeline.name)).await {
                Ok(records) => records,
                Err(error) => {
                    let _ = lease.release().await;
                    return Err(error.into());
                }
            };
            history::settle_unfinished(&self.history, &self.storage, pipeline, &mut records).await;
            if lease.has_a_third_left() {
                break (lease, records);
            }
            tracing::warn!(pipeline = %pipeline.name, "The lease ran low while the history was read; taking it again.");
            let _ = lease.release().await;
        };
        let request = RunRequest {
            ended_runs: history::ended_runs(&records),
            single_writer: self.single_writer,
            ..RunRequest::new(as_of)
        };
        // Ctrl-C cancels cleanly: the run removes what it staged, is recorded `interrupted`,
        // and gives the lease back instead of leaving it to expire.
        let (outcome, lease_lost) = history::run_leased(
            &self.history,
            pipeline,
            &request,
            &progress,
            &mut lease,
            &self.stop,
        )
        .await;
        if !lease_lost && let Err(error) = lease.release().await {
            tracing::warn!(pipeline = %pipeline.name, %error, "Could not release the lease.");
        }
        Ok(outcome?)
    }

    /// Takes the pipeline's lease, waiting up to `--wait-for-lease` while another run holds
    /// it; then fails naming the holder.
    async fn take_lease(&self, pipeline: &str, progress: &Progress) -> Result<Lease, Failure> {
        let started = std::time::Instant::now();
        loop {
            if let Some(lease) = self.leases.acquire(pipeline).await? {
                return Ok(lease);
            }
            let holder = self.leases.holder_of(pipeline).await?;
            let holder = holder.map_or_else(|| "another process".to_string(), |h| h.to_string());
            if started.elapsed() >= self.wait {
                return Err(Failure::Environment(anyhow::anyhow!(
                    "pipeline '{pipeline}' is being run by {holder}; gave up after waiting \
                     {}s (--wait-for-lease). Two runs of one pipeline never run at once: try \
                     again when it is done (`segflow runs {pipeline}` shows it), or wait longer",
                    self.wait.as_secs()
                )));
            }
            progress.message(format!("waiting for the lease: {holder}"));
            tracing::info!(%pipeline, %holder, "Waiting for the pipeline's lease.");
            let left = self.wait.saturating_sub(started.elapsed());
            tokio::select! {
                _ = self.stop.cancelled() => {
                    return Err(Failure::Environment(anyhow::anyhow!(
                        "stopped by SIGINT or SIGTERM while waiting for the lease of pipeline '{pipeline}'"
                    )));
                }
                () = tokio::time::sleep(left.min(std::time::Duration::from_millis(500))) => {}
            }
        }
    }
}

fn open_history(state: &StateArgs) -> Result<RunHistory, Failure> {
    Ok(RunHistory::new(
        Storage::new(),
        Location::parse(&state.url)?,
    ))
}

async fn schedule_command(args: ScheduleArgs) -> Result<(), Failure> {
    if !args.pipelines.is_dir() {
        return Err(Failure::User(anyhow::anyhow!(
            "the pipelines folder {} does not exist",
            args.pipelines.display()
        )));
    }
    let config = crate::daemon::DaemonConfig {
        pipelines: args.pipelines,
        state: Location::parse(&args.state.url)?,
        once: args.once,
        grace: std::time::Duration::from_secs(args.grace_seconds),
        lease_ttl: std::time::Duration::from_secs(args.lease.lease_seconds.max(1)),
        single_writer: args.lease.single_writer,
        tick: std::time::Duration::from_millis(500),
        clock: crate::clock::Clock::System,
    };
    let tally = crate::daemon::run(config, stop_requested()).await;
    // For cron and Kubernetes CronJobs, which see only the exit code.
    if args.once {
        let mut problems = Vec::new();
        if tally.failed > 0 {
            problems.push(format!(
                "{} of {} scheduled runs failed (`segflow runs` shows why)",
                tally.failed,
                tally.failed + tally.published
            ));
        }
        if tally.unloadable > 0 {
            problems.push(format!(
                "{} pipeline files do not load (the log above says where)",
                tally.unloadable
            ));
        }
        if !problems.is_empty() {
            return Err(Failure::User(anyhow::anyhow!(problems.join("; "))));
        }
    }
    Ok(())
}

/// Cancelled at the first SIGINT or SIGTERM, for hand runs to stop cleanly. The second
/// exits at once (130, as a shell reports Ctrl-C): what is published stays consistent, since
/// each output's commit is one write, and the next run removes what this one left.
fn stop_signals() -> Cancel {
    let stop = Cancel::new();
    let signalled = stop.clone();
    tokio::spawn(async move {
        stop_requested().await;
        signalled.cancel(CancelReason::Signal);
        stop_requested().await;
        std::process::exit(130);
    });
    stop
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn runs_command(args: RunsArgs) -> Result<(), Failure> {
    let history = open_history(&args.state)?;
    let records = history.list(args.pipeline.as_deref()).await?;
    if args.json {
        for record in &records {
            println!(
                "{}",
                serde_json::to_string(record).expect("a run record serialises")
            );
        }
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<16} {:>7} {:<11} {:<20} {:>8} {:>10}  {:<32}  error",
        "pipeline",
        "as_of",
        "slot (UTC)",
        "attempt",
        "status",
        "started (UTC)",
        "seconds",
        "rows",
        "run id"
    );
    for r in records {
        let seconds = r
            .ended_at
            .map(|end| format!("{:.1}", (end - r.started_at).as_seconds_f64()))
            .unwrap_or_default();
        let status = format!("{:?}", r.status).to_lowercase();
        let slot = r.slot.map_or_else(
            || "by hand".to_string(),
            |slot| slot.format("%Y-%m-%d %H:%M").to_string(),
        );
        println!(
            "{:<20} {:<10} {:<16} {:>7} {:<11} {:<20} {:>8} {:>10}  {:<32}  {}",
            r.pipeline,
            r.as_of,
            slot,
            r.attempt,
            status,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            seconds,
            r.rows.values().sum::<u64>(),
            r.run_id,
            r.error.unwrap_or_default()
        );
    }
    Ok(())
}

async fn backfill_command(args: BackfillArgs) -> Result<(), Failure> {
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

async fn validate_command(args: ValidateArgs) -> Result<(), Failure> {
    let mut failures = Vec::new();
    for path in &args.pipelines {
        let checked = match Pipeline::load(path, &LoadOptions::default()) {
            Ok(pipeline) => run::plan_only(&pipeline, yesterday(pipeline.timezone))
                .await
                .map(|()| pipeline.steps.len())
                .map_err(Failure::from),
            Err(error) => Err(Failure::from(error)),
        };
        match checked {
            Ok(steps) => println!("{}: ok ({steps} steps planned)", path.display()),
            Err(failure) => {
                println!("{}: failed", path.display());
                failures.push(failure);
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.pop().expect("one failure")),
        _ => {
            let environment = failures
                .iter()
                .any(|f| matches!(f, Failure::Environment(_)));
            let text: Vec<String> = failures
                .iter()
                .map(|f| format!("{:#}", f.error()))
                .collect();
            let error =
                anyhow::anyhow!("{} pipelines failed:\n{}", failures.len(), text.join("\n"));
            Err(if environment {
                Failure::Environment(error)
            } else {
                Failure::User(error)
            })
        }
    }
}

async fn generate_command(args: GenerateArgs) -> Result<(), Failure> {
    let out = Location::parse(&args.out)?.as_folder();
    let size = ShopSize {
        customers: args.customers,
        orders: args.orders,
        seed: args.seed,
        end: args.end.unwrap_or_else(|| yesterday(chrono_tz::Tz::UTC)),
    };
    let started = std::time::Instant::now();
    let made = generate::generate(&size, &out, &Storage::new(), &Progress::for_terminal()).await?;
    println!(
        "Wrote {} customers, {} orders, {} order items and {} checkouts to {out} in {:.1}s.",
        made.customers,
        made.orders,
        made.order_items,
        made.checkouts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The shipped pipelines and SQL, embedded so that `segflow demo` works from any folder and
/// from an installed binary.
static SHIPPED_PIPELINES: include_dir::Dir =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/pipelines");
static SHIPPED_QUERIES: include_dir::Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/queries");

fn write_shipped(dir: &Path) -> Result<(), Failure> {
    for (folder, tree) in [
        ("pipelines", &SHIPPED_PIPELINES),
        ("queries", &SHIPPED_QUERIES),
    ] {
        let target = dir.join(folder);
        std::fs::create_dir_all(&target)
            .and_then(|()| tree.extract(&target))
            .map_err(|e| {
                Failure::Environment(anyhow::anyhow!(
                    "cannot write the demo files to {}: {e}",
                    dir.display()
                ))
            })?;
    }
    Ok(())
}

async fn demo_command(args: DemoArgs) -> Result<(), Failure> {
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Failure::User(anyhow::anyhow!("cannot use {}: {e}", args.dir.display())))?;
    write_shipped(&dir)?;
    let data = dir.join("data");
    let out = dir.join("out");
    let as_of = yesterday(chrono_tz::Tz::UTC);
    println!("Generating a sample shop in {} ...", data.display());
    let size = ShopSize {
        customers: args.customers,
        orders: args.orders,
        seed: 42,
        end: as_of,
    };
    let data_location = Location::parse(&format!("{}/", data.display()))?;
    generate::generate(
        &size,
        &data_location,
        &Storage::new(),
        &Progress::for_terminal(),
    )
    .await?;

    let env_data = data.display().to_string();
    let env_out = out.display().to_string();
    let env = move |name: &str| match name {
        "SEGFLOW_DATA" => Some(env_data.clone()),
        "SEGFLOW_OUT" => Some(env_out.clone()),
        _ => std::env::var(name).ok(),
    };
    let options = LoadOptions {
        var_overrides: Vec::new(),
        env: &env,
    };
    let pipeline_file = dir.join("pipelines/nightly_segments.yaml");
    let pipeline = Pipeline::load(&pipeline_file, &options)?;
    println!("Running {} for as_of {as_of} ...", pipeline_file.display());
    let report = run::run(
        &pipeline,
        &RunRequest::new(as_of),
        &Progress::for_terminal(),
    )
    .await?;
    print_report(&report);
    if let Some(summary) = report
        .outputs
        .iter()
        .find(|o| o.committed.table == "segment_summary")
    {
        print_segment_summary(summary).await?;
    }
    let first = report
        .outputs
        .first()
        .map(|o| o.committed.table.clone())
        .unwrap_or_default();
    println!(
        "\nQuery the result, for example with DuckDB:\n  duckdb -c \"SELECT * FROM read_parquet('{}/{first}/as_of=*/*.parquet', hive_partitioning=true) LIMIT 10\"",
        out.display()
    );
    Ok(())
}

/// The demo's closing view: each segment's portrait, largest first.
async fn print_segment_summary(summary: &run::PublishedOutput) -> Result<(), Failure> {
    let files: Vec<String> = summary
        .committed
        .files
        .iter()
        .map(ToString::to_string)
        .collect();
    let text = crate::segments::summary_text(files).await.map_err(|e| {
        Failure::Environment(anyhow::anyhow!("cannot read back the segment summary: {e}"))
    })?;
    println!("\nSegments as of {}:\n{text}", summary.committed.as_of);
    Ok(())
}

fn print_report(report: &RunReport) {
    println!(
        "Published {} for as_of {} (run {}) in {:.1}s:",
        report.pipeline,
        report.as_of,
        report.run_id,
        report.elapsed.as_secs_f64()
    );
    let width = report
        .outputs
        .iter()
        .map(|o| o.committed.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("  {:<width$}  {:>10}  location", "table", "rows");
    for output in &report.outputs {
        println!(
            "  {:<width$}  {:>10}  {}as_of={}/",
            output.committed.table, output.committed.rows, output.url, report.as_of
        );
    }
}
