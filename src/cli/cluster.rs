//! `segflow cluster scheduler|executor`: a Ballista service, until the process is stopped.

use segflow::cluster::{self, ExecutorSettings, SchedulerSettings, Service};

use super::Failure;
use super::args::ClusterCommand;

pub(super) async fn cluster_command(command: ClusterCommand) -> Result<(), Failure> {
    let service = match command {
        ClusterCommand::Scheduler(args) => {
            if args.executor_timeout_seconds == 0 {
                return Err(Failure::User(anyhow::anyhow!(
                    "--executor-timeout-seconds must be at least 1"
                )));
            }
            Service::Scheduler(SchedulerSettings {
                bind: args.bind,
                external_host: args.external_host,
                executor_timeout: std::time::Duration::from_secs(args.executor_timeout_seconds),
            })
        }
        ClusterCommand::Executor(args) => Service::Executor(ExecutorSettings {
            scheduler: args.scheduler,
            host: args.host,
            flight_port: args.flight_port,
            grpc_port: args.grpc_port,
            work_dir: args.work_dir,
            concurrent_tasks: args.concurrent_tasks,
            heartbeat: std::time::Duration::from_secs(args.heartbeat_seconds.max(1)),
            memory_limit: args.memory_limit,
        }),
    };
    Ok(cluster::serve(service).await?)
}
