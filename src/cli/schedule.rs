//! `segflow schedule`: the daemon, until stopped or, with `--once`, after what is due now.

use segflow::storage::Location;

use super::Failure;
use super::args::ScheduleArgs;
use super::hand_runner::stop_requested;

pub(super) async fn schedule_command(args: ScheduleArgs) -> Result<(), Failure> {
    if !args.pipelines.is_dir() {
        return Err(Failure::User(anyhow::anyhow!(
            "the pipelines folder {} does not exist",
            args.pipelines.display()
        )));
    }
    let config = segflow::daemon::DaemonConfig {
        pipelines: args.pipelines,
        state: Location::parse(&args.state.url)?,
        once: args.once,
        grace: std::time::Duration::from_secs(args.grace_seconds),
        lease_ttl: std::time::Duration::from_secs(args.lease.lease_seconds.max(1)),
        single_writer: args.lease.single_writer,
        tick: std::time::Duration::from_millis(500),
        clock: segflow::clock::Clock::System,
        roots: args
            .roots
            .iter()
            .map(|root| Location::parse(root).map(|l| l.as_folder()))
            .collect::<Result<_, _>>()?,
    };
    let served = match args.serve {
        None => None,
        Some(address) => {
            let pipelines = pipelines_in(&config.pipelines);
            Some(super::serve::start(&pipelines, address, args.serve_options).await?)
        }
    };
    let serving = served.as_ref().map(super::serve::Started::serving);
    let server = match args.http {
        None => None,
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                Failure::Environment(anyhow::anyhow!(
                    "cannot serve the status page on {address}: {e}"
                ))
            })?;
            let bound = listener.local_addr().unwrap_or(address);
            tracing::info!(url = %format!("http://{bound}/"), "Serving the status page, /healthz and /metrics.");
            Some(segflow::daemon::StatusServer {
                listener,
                interval: std::time::Duration::from_secs(args.health_seconds),
                serving,
            })
        }
    };
    let stop_serving = tokio_util::sync::CancellationToken::new();
    let protocol = served.map(|server| tokio::spawn(server.run(stop_serving.clone())));
    let tally = segflow::daemon::run_serving(config, server, stop_requested()).await;
    stop_serving.cancel();
    if let Some(protocol) = protocol {
        let _ = protocol.await;
    }
    // For cron and Kubernetes CronJobs, which see only the exit code, and for a person at
    // a terminal, who sees nothing else.
    if args.once {
        say!("{}", once_report(&tally));
        let mut problems = Vec::new();
        if tally.failed > 0 {
            problems.push(format!(
                "{} of {} scheduled runs failed (`segflow runs` shows why)",
                tally.failed,
                tally.failed + tally.published
            ));
        }
        if tally.interrupted > 0 {
            problems.push(format!(
                "{} scheduled runs were interrupted before they finished",
                tally.interrupted
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

/// The folder's pipelines that load, for `--serve`: one that does not is left out, and the
/// daemon says why as it loads the folder.
fn pipelines_in(folder: &std::path::Path) -> Vec<segflow::pipeline::Pipeline> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|file| {
            segflow::pipeline::Pipeline::load(file, &segflow::pipeline::LoadOptions::default()).ok()
        })
        .collect()
}

/// What `schedule --once` did, in one line.
fn once_report(tally: &segflow::daemon::Tally) -> String {
    let mut parts = Vec::new();
    if tally.published + tally.failed + tally.interrupted == 0 {
        parts.push("nothing was due".to_string());
    } else {
        parts.push(format!("{} scheduled runs published", tally.published));
        parts.push(format!("{} failed", tally.failed));
        if tally.interrupted > 0 {
            parts.push(format!("{} interrupted", tally.interrupted));
        }
    }
    if tally.unloadable > 0 {
        parts.push(format!("{} pipeline files do not load", tally.unloadable));
    }
    format!("schedule --once: {}.", parts.join(", "))
}
