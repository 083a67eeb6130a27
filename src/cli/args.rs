//! The command line's shape: one `*Args` struct per subcommand, doc comments as the help
//! text, and the parsers of dates and `--var` values.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use segflow::pipeline::{Selector, parse_date};

use super::Failure;

/// segflow: customer segments from e-commerce Parquet, as a scheduled SQL pipeline.
#[derive(Debug, Parser)]
#[command(name = "segflow", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a pipeline once for one logical date and publish its outputs.
    Run(RunArgs),
    /// Check pipeline specs and plan every SQL step against the sources, reading no data.
    Validate(ValidateArgs),
    /// Write deterministic sample shop data (customers, orders, order_items, checkouts).
    Generate(GenerateArgs),
    /// Generate a small sample shop, run the shipped nightly pipeline on it, show the result.
    Demo(DemoArgs),
    /// Print the first rows of a step, segment or source as a run would compute them,
    /// computing only what it needs and publishing nothing.
    Show(ShowArgs),
    /// Print a step's SQL with $as_of and the vars bound, as the engine runs it.
    Render(RenderArgs),
    /// Start a project of your own from the shipped pipeline: its YAML, SQL, a .gitignore and
    /// a sample shop, ready for `segflow run` from inside the folder.
    Init(InitArgs),
    /// Run every scheduled pipeline in a folder at its slots, until stopped (SIGTERM/SIGINT).
    Schedule(ScheduleArgs),
    /// List recorded runs (newest last).
    Runs(RunsArgs),
    /// Run a pipeline for every date in a range, oldest first, skipping dates that already
    /// have a successful run unless --force. Stops at the first failure.
    Backfill(BackfillArgs),
    /// Run a pipeline's checks against the outputs published for a date (and the sources),
    /// computing no step and writing nothing: an audit of an earlier night.
    Check(CheckArgs),
    /// Delete the files of a pipeline's outputs that no publication needs any more: those
    /// killed runs left, and for Delta outputs those only older versions read.
    Vacuum(VacuumArgs),
    /// Print the pipeline's lineage (sources, steps, segments, outputs; each step's SQL file
    /// and the rows of the last successful run) as Mermaid or Graphviz DOT text.
    Graph(GraphArgs),
    /// Write one HTML page of a publication: the RFM grids, segment sizes and moves, their
    /// portraits, the win-back list, predictions, the last runs and the lineage.
    Report(ReportArgs),
    /// Serve the published outputs of pipelines over the PostgreSQL protocol, read-only and
    /// with passwords, to BI and reverse-ETL tools (docs/serve.md).
    Serve(ServeArgs),
    /// Run a service of an Apache DataFusion Ballista cluster: a scheduler, or an executor.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ServeArgs {
    #[command(subcommand)]
    pub(crate) command: Option<ServeCommand>,
    /// The pipeline YAML files whose outputs to serve; each pipeline is a schema of its own
    /// name, the first the one unqualified table names are looked up in.
    #[arg(required = true)]
    pub(crate) pipelines: Vec<PathBuf>,
    /// The address to listen on; loopback unless told otherwise. Port 0 takes a free port
    /// (the log says which).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub(crate) listen: std::net::SocketAddr,
    #[command(flatten)]
    pub(crate) options: ServeOptions,
}

/// How `segflow serve`, or the daemon's `--serve`, serves.
#[derive(Debug, Args)]
pub(crate) struct ServeOptions {
    /// The users file, written by `segflow serve passwd`; no one logs in without one.
    #[arg(long, env = "SEGFLOW_SERVE_USERS")]
    pub(crate) users: Option<PathBuf>,
    /// A PEM certificate chain for TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Refuse connections that do not use TLS.
    #[arg(long)]
    pub(crate) require_tls: bool,
    /// The longest a statement may take, planning, running and sending its rows (`30s`,
    /// `10m`); a session's statement_timeout may only shorten it.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) statement_timeout: std::time::Duration,
    /// The memory each query may use (`512MiB`, `2GiB`); a query that needs more fails.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub(crate) query_memory: usize,
    /// Connections served at a time; one more is refused with PostgreSQL's "too many
    /// clients".
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub(crate) max_connections: u32,
    /// A connection that sends nothing for this long is closed.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub(crate) idle_timeout: std::time::Duration,
    /// How often the outputs' manifests are read for new publications: a night's
    /// publication is served at most this long after it is committed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) refresh: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Add a user to the users file, or give one a new password, read from standard input
    /// (one line). The file is created readable by its owner only.
    Passwd {
        /// The users file.
        users: PathBuf,
        /// The user's name.
        user: String,
    },
}

fn parse_size(text: &str) -> Result<usize, String> {
    segflow::pipeline::parse_bytes(text)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("'{text}' is not a size; write it like 512MiB or 2GiB"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// The scheduler: plans jobs into stages and hands their tasks to executors.
    Scheduler(SchedulerArgs),
    /// An executor: runs tasks, keeps their shuffle files and serves them to the others.
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub(crate) bind: std::net::SocketAddr,
    /// The name executors and clients reach this scheduler by.
    #[arg(long, default_value = "localhost")]
    pub(crate) external_host: String,
    /// Seconds without a heartbeat after which an executor counts as dead and its tasks
    /// run elsewhere: how long a run waits on a killed executor. Longer than the executors'
    /// --heartbeat-seconds.
    #[arg(long, default_value_t = 180)]
    pub(crate) executor_timeout_seconds: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler: df://HOST:PORT.
    #[arg(long, env = "SEGFLOW_CLUSTER")]
    pub(crate) scheduler: segflow::cluster::ClusterUrl,
    /// The address to listen on, by which the scheduler and other executors reach it.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// The Arrow Flight port, which serves shuffle files to other executors.
    #[arg(long, default_value_t = 50051)]
    pub(crate) flight_port: u16,
    /// The gRPC port, on which the scheduler hands it tasks.
    #[arg(long, default_value_t = 50052)]
    pub(crate) grpc_port: u16,
    /// Where shuffle files go (default: a temporary folder).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Tasks run at once (default: the number of cores).
    #[arg(long)]
    pub(crate) concurrent_tasks: Option<usize>,
    /// Seconds between heartbeats to the scheduler; shorter than its
    /// --executor-timeout-seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) heartbeat_seconds: u64,
    /// Memory its tasks may hold together before they spill, such as 4GiB (default: three
    /// quarters of the machine's).
    #[arg(long, value_parser = parse_size)]
    pub(crate) memory_limit: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// The date and vars the checks use.
    #[command(flatten)]
    pub(crate) values: RunValues,
    /// Print each check's outcome as one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VacuumArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// Keep what was written, or what versions read, this recently (`7d`, `36h`). Longer
    /// than the longest run, so that no running run loses its files, and than the longest
    /// read of a Delta version.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub(crate) retain: std::time::Duration,
    /// List what would be deleted, and delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// mermaid (for Markdown) or dot (for `dot -Tsvg`).
    #[arg(long, value_enum, default_value = "mermaid")]
    pub(crate) format: GraphFormat,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// The publication to show (YYYY-MM-DD); the latest one when left out.
    #[arg(long, value_parser = date_arg)]
    pub(crate) as_of: Option<NaiveDate>,
    /// Where to write the page: a path, or a URL (s3://bucket/report.html).
    #[arg(long, default_value = "report.html")]
    pub(crate) out: String,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    /// Where run history is kept: a folder or URL (s3://... in production).
    #[arg(long = "state", env = "SEGFLOW_STATE", default_value = "segflow-state")]
    pub(crate) url: String,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleArgs {
    /// The folder of pipeline YAML files; those with a `schedule` run.
    #[arg(long, default_value = "pipelines")]
    pub(crate) pipelines: PathBuf,
    /// Run whatever is due now and exit (for cron or Kubernetes CronJobs).
    #[arg(long)]
    pub(crate) once: bool,
    /// Seconds a running run may go on after a stop is asked for, before it is cancelled.
    #[arg(long, default_value_t = 30)]
    pub(crate) grace_seconds: u64,
    /// Serve the status page (/), /healthz and /metrics (Prometheus) on this address, such as
    /// 127.0.0.1:9090; off unless given. Port 0 takes a free port (the log says which).
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// Seconds between the status page's checks that the state store answers; /healthz
    /// fails when the last answer is older than two of these.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) health_seconds: u64,
    /// Also serve the folder's pipelines' published outputs over the PostgreSQL protocol on
    /// this address, as `segflow serve` does (its options below); the status page and
    /// /metrics show its connections and queries. Pipelines are read when the daemon starts.
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    pub(crate) serve: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) serve_options: ServeOptions,
    /// Confine the pipelines to these folders and buckets (repeat, or comma-separate in
    /// SEGFLOW_ROOTS): a pipeline that reads or writes anywhere else does not load.
    #[arg(
        long = "root",
        value_name = "URL",
        env = "SEGFLOW_ROOTS",
        value_delimiter = ','
    )]
    pub(crate) roots: Vec<String>,
    #[command(flatten)]
    pub(crate) lease: LeaseArgs,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

/// How runs keep other runs of the same pipeline out.
#[derive(Debug, Args)]
pub(crate) struct LeaseArgs {
    /// Seconds a lease lasts without renewal; a crashed process's lease expires after this.
    #[arg(long, default_value_t = 30)]
    pub(crate) lease_seconds: u64,
    /// Publish with plain writes to a store that cannot write conditionally, promising that
    /// nothing else publishes the same outputs at the same time (without it, segflow refuses
    /// such a store, since two writers could overwrite each other's publication).
    #[arg(long, env = "SEGFLOW_SINGLE_WRITER")]
    pub(crate) single_writer: bool,
}

/// Where a run computes, over the pipeline's `engine:` settings, so that one pipeline file
/// runs in process or on a cluster unedited.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Run the queries on this Ballista cluster (df://HOST:PORT) instead of the pipeline's
    /// `engine.cluster`, or in this process when neither is set (validate: check the
    /// pipelines as runs there would be checked).
    #[arg(long, env = "SEGFLOW_CLUSTER")]
    pub(crate) cluster: Option<segflow::cluster::ClusterUrl>,
    /// Keep the results of steps that several steps read at this URL instead of the
    /// pipeline's `engine.scratch`: on a cluster, one every executor reaches (s3://...).
    #[arg(long, env = "SEGFLOW_SCRATCH")]
    pub(crate) scratch: Option<String>,
}

impl EngineArgs {
    pub(crate) fn overrides(&self) -> Result<segflow::pipeline::EngineOverrides, Failure> {
        let scratch = self
            .scratch
            .as_deref()
            .map(|url| {
                segflow::storage::Location::parse(url)
                    .map_err(|e| Failure::User(anyhow::anyhow!("--scratch / SEGFLOW_SCRATCH: {e}")))
            })
            .transpose()?;
        Ok(segflow::pipeline::EngineOverrides {
            cluster: self.cluster.clone(),
            scratch,
        })
    }
}

/// Runs started by hand share the pipeline's lease with the scheduler.
#[derive(Debug, Args)]
pub(crate) struct HandRunArgs {
    /// Seconds to wait when another run of the pipeline holds its lease, before giving up.
    #[arg(long, default_value_t = 600)]
    pub(crate) wait_for_lease: u64,
    /// Compute incremental steps from every file of their sources again, replacing the
    /// results kept from earlier runs (which it does not read).
    #[arg(long)]
    pub(crate) full: bool,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) lease: LeaseArgs,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only this pipeline's runs (its name).
    pub(crate) pipeline: Option<String>,
    /// Print each run's whole record (rows per output, slot, end time) as one JSON line.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// First logical date (YYYY-MM-DD), included.
    #[arg(long, value_parser = date_arg)]
    pub(crate) from: NaiveDate,
    /// Last logical date (YYYY-MM-DD), included.
    #[arg(long, value_parser = date_arg)]
    pub(crate) to: NaiveDate,
    /// Run dates that already succeeded too.
    #[arg(long)]
    pub(crate) force: bool,
    /// Allow dates after the last complete day in the pipeline's time zone.
    #[arg(long)]
    pub(crate) allow_future: bool,
    /// After the range, run again every later date that has a successful run: when the
    /// pipeline reads earlier publications (previous_t, history_t), those dates were
    /// computed from the history this backfill changed.
    #[arg(long)]
    pub(crate) through_latest: bool,
    /// Override a pipeline var: --var name=value (repeatable).
    #[arg(long = "var", value_parser = var_arg)]
    pub(crate) vars: Vec<(String, String)>,
    #[command(flatten)]
    pub(crate) hand: HandRunArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// The run's logical date (YYYY-MM-DD); orders after the end of this day are ignored.
    /// Defaults to yesterday in the pipeline's time zone, the last complete day.
    #[arg(long, value_parser = date_arg)]
    pub(crate) as_of: Option<NaiveDate>,
    /// Override a pipeline var: --var name=value (repeatable). The value must fit the
    /// var's declared type.
    #[arg(long = "var", value_parser = var_arg)]
    pub(crate) vars: Vec<(String, String)>,
    /// Run only NAME (a step, segment or source) and the steps it reads, publishing the
    /// outputs of selected tables; NAME+ adds everything computed from NAME. Repeatable.
    /// Needs --preview: a partial run must not stand for the date in the real outputs.
    #[arg(long = "select", value_name = "NAME[+]")]
    pub(crate) select: Vec<Selector>,
    /// Publish into this folder or URL instead (one folder per output, the run's record in
    /// DIR/state), reading earlier publications from the real outputs: a try-out that BI
    /// tools, the run history and the win-back cooldown never see.
    #[arg(long, value_name = "DIR")]
    pub(crate) preview: Option<String>,
    #[command(flatten)]
    pub(crate) hand: HandRunArgs,
}

/// The date and var values a run would use, for commands that compute without publishing.
#[derive(Debug, Args)]
pub(crate) struct RunValues {
    /// The logical date (YYYY-MM-DD); defaults to yesterday in the pipeline's time zone.
    #[arg(long, value_parser = date_arg)]
    pub(crate) as_of: Option<NaiveDate>,
    /// Override a pipeline var: --var name=value (repeatable).
    #[arg(long = "var", value_parser = var_arg)]
    pub(crate) vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// The step, segment or source to show.
    pub(crate) table: String,
    /// How many rows to print.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    #[command(flatten)]
    pub(crate) values: RunValues,
}

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// The pipeline YAML file.
    pub(crate) pipeline: PathBuf,
    /// The step or segment whose SQL to print.
    pub(crate) step: String,
    #[command(flatten)]
    pub(crate) values: RunValues,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Pipeline YAML files.
    #[arg(required = true)]
    pub(crate) pipelines: Vec<PathBuf>,
    /// The date and vars to plan with, as a run would use them.
    #[command(flatten)]
    pub(crate) values: RunValues,
    /// Check the spec and parse the SQL without touching storage: no source schemas, no
    /// reachability of outputs and the state store.
    #[arg(long)]
    pub(crate) offline: bool,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) state: StateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) customers: u64,
    /// Number of orders (exact).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) orders: u64,
    /// Where to write: a folder path or URL; each table goes in a subfolder.
    #[arg(long)]
    pub(crate) out: String,
    /// Random seed; the same seed, sizes and end date give the same files.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// The last day of the generated history (YYYY-MM-DD). Defaults to yesterday (UTC).
    #[arg(long, value_parser = date_arg)]
    pub(crate) end: Option<NaiveDate>,
    /// Export each order refunded or cancelled after it was placed twice, as connectors
    /// do: as placed, and again when it changed (in orders/changes-*.parquet).
    #[arg(long)]
    pub(crate) reexport_changes: bool,
    /// Share of orders, 0 to 1, delivered a second time alike (in orders/duplicates-*.parquet).
    #[arg(long, default_value_t = 0.0, value_parser = share_arg)]
    pub(crate) duplicates: f64,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Folder for the demo's data, pipeline and outputs.
    #[arg(long, default_value = "segflow-demo")]
    pub(crate) dir: PathBuf,
    /// Number of customers in the sample shop.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) customers: u64,
    /// Number of orders in the sample shop.
    #[arg(long, default_value_t = 80_000)]
    pub(crate) orders: u64,
    /// Read a landing as it lands: the pipeline's sources are that landing's streams or
    /// tables, mapped by steps of their own to what the segments read. No sample shop is
    /// written: the landing's own files go into data/ (or SEGFLOW_DATA).
    #[arg(long, value_name = "LANDING")]
    pub(crate) from: Option<super::shipped::Layout>,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project folder (created if missing). Files already in it are kept.
    pub(crate) dir: PathBuf,
    /// Write no sample shop: your own exports go into data/ (or SEGFLOW_DATA).
    #[arg(long)]
    pub(crate) no_sample_data: bool,
    /// Number of customers in the sample shop.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) customers: u64,
    /// Number of orders in the sample shop.
    #[arg(long, default_value_t = 80_000)]
    pub(crate) orders: u64,
    /// Read a landing as it lands: the pipeline's sources are that landing's streams or
    /// tables, mapped by steps of their own to what the segments read. No sample shop is
    /// written: the landing's own files go into data/ (or SEGFLOW_DATA).
    #[arg(long, value_name = "LANDING")]
    pub(crate) from: Option<super::shipped::Layout>,
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

fn share_arg(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("'{text}' is not a share from 0 to 1 (0.02 = 2 %)")),
    }
}

fn var_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not name=value"))
}
