//! `segflow cluster scheduler|executor`: a Ballista service, until the process is stopped.

use segflow::cluster::{self, ExecutorSettings};

use super::Failure;
use super::args::ClusterCommand;

pub(super) async fn cluster_command(command: ClusterCommand) -> Result<(), Failure> {
    let served = match command {
        ClusterCommand::Scheduler(args) => {
            cluster::run_scheduler(args.bind, &args.external_host).await
        }
        ClusterCommand::Executor(args) => {
            cluster::run_executor(ExecutorSettings {
                scheduler: args.scheduler,
                host: args.host,
                flight_port: args.flight_port,
                grpc_port: args.grpc_port,
                work_dir: args.work_dir,
                concurrent_tasks: args.concurrent_tasks,
            })
            .await
        }
    };
    Ok(served?)
}
