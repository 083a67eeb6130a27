//! Ballista's stock scheduler or executor, configured as Ballista's own binaries
//! (`ballista-scheduler` and `ballista-executor` 55, the ones in its container images)
//! configure themselves: one S3 store from the `s3.*` settings a client sends and the
//! process's environment, Ballista's default functions, nothing of segflow's. segflow's tests
//! start a stock cluster with it (tests/it/cluster.rs), since the images cannot run where the
//! tests run.
//!
//! ```text
//! stock_ballista scheduler PORT
//! stock_ballista executor SCHEDULER_PORT FLIGHT_PORT GRPC_PORT WORK_DIR
//! ```

use std::sync::Arc;

use ballista_core::object_store::{
    runtime_env_with_s3_support, session_config_with_s3_support, session_state_with_s3_support,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

const HOST: &str = "127.0.0.1";

#[tokio::main]
async fn main() -> ballista_core::error::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = |n: usize| -> u16 { args[n].parse().expect("a port number") };
    match args.first().map(String::as_str) {
        Some("scheduler") => {
            let config = SchedulerConfig {
                bind_host: HOST.to_string(),
                bind_port: port(1),
                external_host: HOST.to_string(),
                ..SchedulerConfig::default()
            }
            .with_override_config_producer(Arc::new(session_config_with_s3_support))
            .with_override_session_builder(Arc::new(session_state_with_s3_support));
            let cluster = BallistaCluster::new_from_config(&config).await?;
            let addr = format!("{HOST}:{}", port(1)).parse().expect("an address");
            start_server(cluster, addr, Arc::new(config)).await
        }
        Some("executor") => {
            let config = ExecutorProcessConfig {
                bind_host: HOST.to_string(),
                external_host: Some(HOST.to_string()),
                scheduler_host: HOST.to_string(),
                scheduler_port: port(1),
                port: port(2),
                grpc_port: port(3),
                work_dir: Some(args[4].clone()),
                override_config_producer: Some(Arc::new(session_config_with_s3_support)),
                override_runtime_producer: Some(Arc::new(runtime_env_with_s3_support)),
                ..ExecutorProcessConfig::default()
            };
            start_executor_process(Arc::new(config)).await
        }
        _ => {
            eprintln!(
                "usage: stock_ballista scheduler PORT | executor SCHEDULER_PORT FLIGHT_PORT GRPC_PORT WORK_DIR"
            );
            std::process::exit(2)
        }
    }
}
