//! `segflow cluster scheduler` and `segflow cluster executor`: Ballista's own services,
//! started from its crates with segflow's sessions (its stores and functions).

use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use super::session::{cluster_config, cluster_runtime, logical_codec, physical_codec};
use super::{ClusterError, ExecutorSettings, SchedulerSettings};
use crate::engine::{default_memory_limit, memory_pool};

/// Runs a scheduler until the process ends.
pub(super) async fn run_scheduler(settings: SchedulerSettings) -> Result<(), ClusterError> {
    let SchedulerSettings {
        bind,
        external_host,
        executor_timeout,
    } = settings;
    let failed = |source| ClusterError::Service {
        role: "scheduler",
        source,
    };
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host,
        executor_timeout_seconds: executor_timeout.as_secs(),
        // Dead executors are looked for often enough that the timeout is what a run waits.
        expire_dead_executor_interval_seconds: (executor_timeout.as_secs() / 4).clamp(1, 15),
        no_executors_grace_period_seconds: executor_timeout.as_secs(),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            Ok(SessionStateBuilder::new()
                .with_runtime_env(cluster_runtime(&config, None)?)
                .with_config(config)
                .with_default_features()
                .build())
        })),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(failed)?;
    tracing::info!(%bind, executor_timeout_seconds = executor_timeout.as_secs(), "Cluster scheduler starting.");
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(failed)
}

/// Runs an executor of the cluster at `settings.scheduler` until the process ends.
pub(super) async fn run_executor(settings: ExecutorSettings) -> Result<(), ClusterError> {
    let defaults = ExecutorProcessConfig::default();
    // One pool for all its tasks, as a run in process has, rather than Ballista's: a pool
    // per task of the limit's share per core, which refuses a repartition its memory and can
    // hang it (engine/pool.rs).
    let memory_limit = settings.memory_limit.or_else(default_memory_limit);
    let pool = memory_limit.map(memory_pool);
    let config = ExecutorProcessConfig {
        bind_host: settings.host.clone(),
        external_host: Some(settings.host.clone()),
        port: settings.flight_port,
        grpc_port: settings.grpc_port,
        scheduler_host: settings.scheduler.host.clone(),
        scheduler_port: settings.scheduler.port,
        work_dir: settings
            .work_dir
            .as_ref()
            .map(|dir| dir.display().to_string()),
        vcores: settings.concurrent_tasks.unwrap_or(defaults.vcores),
        executor_heartbeat_interval_seconds: settings.heartbeat.as_secs(),
        print_thread_info: false,
        override_config_producer: Some(Arc::new(cluster_config)),
        memory_pool_size: Some(0),
        override_runtime_producer: Some(Arc::new(move |config: &SessionConfig| {
            cluster_runtime(config, pool.clone())
        })),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        // Every function a session of this build has (Ballista's default registry leaves
        // out the array functions, which the shipped SQL uses).
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(
            &SessionStateBuilder::new().with_default_features().build(),
        ))),
        ..defaults
    };
    tracing::info!(scheduler = %settings.scheduler, host = %settings.host, flight_port = settings.flight_port, grpc_port = settings.grpc_port, memory_limit, "Cluster executor starting.");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|source| ClusterError::Service {
            role: "executor",
            source,
        })
}
