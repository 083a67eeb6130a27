use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod cli;

use cli::Cli;

/// Unless `GLIBC_TUNABLES` is set (even empty: the operator's choice stands), segflow runs with
/// glibc's malloc asking for transparent huge pages for what it maps. DataFusion's joins and
/// aggregations allocate buffers of tens of MiB per batch and operator, which glibc maps anew
/// in 4 KiB pages; a join's key array, read before it is written, faulted each page in twice,
/// the second time with a TLB flush on the other core: an eighth of the 1M night's CPU went
/// to page faults. With huge pages the night's time in the kernel fell by about a third, at
/// the same peak memory (BENCHMARKS.md, "Issue 35, fifth session").
///
/// glibc reads its tunables once, when a process starts, so segflow starts itself again with
/// them: the same program, arguments and process id. If it cannot, this process goes on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn run_again_with_huge_pages() {
    use std::os::unix::process::CommandExt;
    const HUGE_PAGES: &str = "glibc.malloc.hugetlb=1";
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // exec() returns only when it failed.
    let _ = command.args(args).env("GLIBC_TUNABLES", HUGE_PAGES).exec();
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    run_again_with_huge_pages();
    // A command line that does not parse is the user's mistake: exit 1, as for a bad spec;
    // 2 is kept for failures of the environment. --help and --version print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            for line in failure.lines() {
                eprintln!("{line}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Structured logs on stderr. On a terminal the progress display tells the story, so only
/// warnings are logged unless `SEGFLOW_LOG` (or `RUST_LOG`) asks for more; elsewhere (CI,
/// cron, the daemon) every decision is logged at info. `SEGFLOW_LOG_FORMAT=json` for
/// machine-read logs.
fn init_logging() {
    let default = if std::io::stderr().is_terminal() {
        format!("warn,{SAID_BY_SEGFLOW}")
    } else {
        format!("info,{CHATTY_AT_INFO},{SAID_BY_SEGFLOW}")
    };
    let filter = std::env::var("SEGFLOW_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(|asked| segflow_only(&asked))
        .unwrap_or(default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("SEGFLOW_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A bare `debug` would show the query engine's internals too (tens of thousands of lines
/// per run): a bare level below `info` applies to segflow's own events, and the rest stays
/// at `info`. A bare level leaves out what segflow says itself (`SAID_BY_SEGFLOW`).
/// `trace`, or any explicit filter (`datafusion=debug`), is taken as written.
fn segflow_only(asked: &str) -> String {
    match asked.trim() {
        level @ ("error" | "warn") => format!("{level},{SAID_BY_SEGFLOW}"),
        "info" => format!("info,{CHATTY_AT_INFO},{SAID_BY_SEGFLOW}"),
        "debug" => format!("info,{CHATTY_AT_INFO},{SAID_BY_SEGFLOW},segflow=debug"),
        other => other.to_string(),
    }
}

/// delta-rs and its kernel log every snapshot they load and every scan at info, a dozen
/// lines per Delta output and commit: at info, segflow's log keeps their warnings only.
const CHATTY_AT_INFO: &str = "buoyant_kernel=warn,deltalake_core=warn";

/// Ballista's client logs a failed job as an error line of nested Debug text, which the run
/// then says as a sentence (`ClusterError`); its other lines, a job's state at info, repeat
/// what `Waiting on the cluster.` says.
const SAID_BY_SEGFLOW: &str = "ballista_core::execution_plans::distributed_query=off";
