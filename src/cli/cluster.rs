//! `segflow cluster scheduler|executor`: a Ballista service, until the process is stopped.

use segflow::cluster::{self, ExecutorSettings};

use super::Failure;
use super::args::ClusterCommand;

pub(super) async fn cluster_command(command: ClusterCommand) -> Result<(), Failure> {
    let served = match command {
        ClusterCommand::Scheduler(args) => {
            if args.executor_timeout_seconds == 0 {
                return Err(Failure::User(anyhow::anyhow!(
                    "--executor-timeout-seconds must be at least 1"
                )));
            }
            let timeout = std::time::Duration::from_secs(args.executor_timeout_seconds);
            cluster::run_scheduler(args.bind, &args.external_host, timeout).await
        }
        ClusterCommand::Executor(args) => {
            cluster::run_executor(ExecutorSettings {
                scheduler: args.scheduler,
                host: args.host,
                flight_port: args.flight_port,
                grpc_port: args.grpc_port,
                work_dir: args.work_dir,
                concurrent_tasks: args.concurrent_tasks,
                heartbeat: std::time::Duration::from_secs(args.heartbeat_seconds.max(1)),
            })
            .await
        }
    };
    Ok(served?)
}
