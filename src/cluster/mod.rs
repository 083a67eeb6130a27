//! `segflow cluster`: an Apache DataFusion Ballista scheduler or executor in this process
//! (docs/cluster.md). Both are Ballista's own services, started from its
//! crates; segflow starts them so that one binary is the client and the cluster both.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::error::BallistaError;
use ballista_core::object_store::S3Options;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

mod watchdog;

pub use watchdog::{Stall, Watchdog};

use crate::functions::{LogicalCodec, PhysicalCodec};
use crate::storage::{Storage, StoreSettings};

/// The stores a client's queries read and write, with their options (JSON of
/// [`StoreSettings`]), carried in the session's settings (`segflow.stores`) to the scheduler
/// and the executors, which build the same stores from them. Credentials travel with them,
/// as Ballista's own `s3.*` settings do: keep the cluster's network private.
#[derive(Debug, Clone, Default)]
pub struct ClusterStores {
    pub stores: String,
}

const STORES: &str = "stores";

impl ConfigExtension for ClusterStores {
    const PREFIX: &'static str = "segflow";
}

// By hand rather than with DataFusion's `extensions_options!`, whose entries leave out the
// prefix: the settings a client sends are those entries, and the cluster's processes set
// them back by their full name.
impl ExtensionOptions for ClusterStores {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        match key {
            STORES => {
                self.stores = value.to_string();
                Ok(())
            }
            other => Err(DataFusionError::Configuration(format!(
                "segflow.{other} is not a setting; segflow.{STORES} is"
            ))),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: format!("{}.{STORES}", Self::PREFIX),
            value: Some(self.stores.clone()),
            description: "The client's object stores and their options, as JSON.",
        }]
    }
}

/// How long a run waits for the scheduler to answer before it gives up.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A session config that can carry [`ClusterStores`], as every process of the cluster
/// builds it.
fn cluster_config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_option_extension(ClusterStores::default())
}

/// Ballista's plan codecs with segflow's functions, as the client, the scheduler and the
/// executors all need them: a plan that reads a CSV source or wall-clock timestamps calls
/// them.
fn logical_codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(LogicalCodec::wrapping(Arc::new(
        BallistaLogicalExtensionCodec::default(),
    )))
}

fn physical_codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(PhysicalCodec::wrapping(Arc::new(
        BallistaPhysicalExtensionCodec::default(),
    )))
}

/// The runtime of one session in a scheduler or executor: its stores are those the
/// client's settings name.
fn cluster_runtime(config: &SessionConfig) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let settings = match config.options().extensions.get::<ClusterStores>() {
        Some(given) if !given.stores.is_empty() => serde_json::from_str(&given.stores)
            .map_err(|e| DataFusionError::External(Box::new(e)))?,
        _ => StoreSettings::default(),
    };
    let storage =
        Storage::with_settings(&settings).map_err(|e| DataFusionError::External(Box::new(e)))?;
    RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(storage))
        .build_arc()
}

/// Checks, within a bound, that the scheduler at `url` answers as a Ballista scheduler and
/// has executors to run on; returns how many. Ballista's client connects at the first query,
/// and then only says that the transport failed, or waits without a word for an executor.
/// Ballista's scheduler answers `/readyz` on its gRPC port (stock images too): 200 with the
/// executors registered, 503 while there are too few.
pub async fn reach(url: &ClusterUrl) -> Result<usize, ClusterError> {
    let unreachable = |reason: String| ClusterError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()
        .expect("an HTTP client builds");
    let answered = client
        .get(format!("http://{}:{}/readyz", url.host, url.port))
        .send()
        .await;
    let response = match answered {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return Err(unreachable(format!(
                "it accepted the connection but did not answer within {} s (a scheduler \
                 stopped, frozen or overloaded does that)",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Err(error) if error.is_connect() => {
            return Err(unreachable(crate::fault::one_line(&error)));
        }
        Err(error) => {
            return Err(ClusterError::NotAScheduler {
                url: url.to_string(),
                reason: crate::fault::one_line(&error),
            });
        }
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let executors = body
        .split_whitespace()
        .find_map(|word| word.split('/').next()?.parse::<usize>().ok());
    match (status.as_u16(), executors) {
        (200, Some(executors)) if executors > 0 => Ok(executors),
        (200 | 503, Some(_)) => Err(ClusterError::NoExecutors {
            url: url.to_string(),
        }),
        _ => Err(ClusterError::NotAScheduler {
            url: url.to_string(),
            reason: format!("/readyz answered HTTP {status}: {}", body.trim()),
        }),
    }
}

/// A client session on the cluster at `url`: `state`'s settings, with the stores of
/// `storage` for the cluster's processes to build; and the watchdog of its jobs.
pub async fn connect(
    url: &ClusterUrl,
    state: SessionState,
    storage: &Storage,
) -> Result<(SessionContext, Arc<Watchdog>), ClusterError> {
    let executors = reach(url).await?;
    tracing::info!(%url, executors, "The cluster's scheduler answers.");
    let settings = storage.settings();
    let stores = serde_json::to_string(&settings).expect("store settings serialise");
    // The state's catalog, with the tables registered so far, stays: a new default one
    // would replace it.
    let mut config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(false)
        .with_option_extension(ClusterStores { stores })
        .with_option_extension(stock_s3_settings(&settings))
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec());
    // Ballista's own settings, for a state that was not built for the cluster.
    if config
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_none()
    {
        config = config.with_option_extension(ballista_core::config::BallistaConfig::default());
    }
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let ctx = SessionContext::remote_with_state(&url.to_string(), state)
        .await
        .map_err(|source| ClusterError::Connect {
            url: url.to_string(),
            source,
        })?;
    let watchdog = Watchdog::start(url);
    let state = ctx.state();
    let planner = watchdog::WatchedPlanner {
        inner: Arc::clone(state.query_planner()),
        watchdog: Arc::clone(&watchdog),
    };
    let ctx = SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(state)
            .with_query_planner(Arc::new(planner))
            .build(),
    );
    // Ballista replaces the state's functions with its own list: segflow's go back in.
    crate::functions::register(&ctx);
    Ok((ctx, watchdog))
}

/// The `s3.*` settings that Ballista's stock scheduler and executors build their one S3
/// store from, when the run's S3 buckets share one endpoint and one set of keys: a cluster
/// of stock images then reads and writes them too (segflow's own processes use
/// `segflow.stores`, and ignore these).
fn stock_s3_settings(settings: &StoreSettings) -> S3Options {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let mut s3 = S3Options::default();
    let s3_stores: Vec<&BTreeMap<String, String>> = settings
        .0
        .iter()
        .filter(|(url, _)| url.starts_with("s3://") || url.starts_with("s3a://"))
        .map(|(_, options)| options)
        .collect();
    let shared = |option: &Key| {
        let values: BTreeSet<Option<&String>> = s3_stores
            .iter()
            .map(|options| {
                options
                    .iter()
                    .find(|(key, _)| key.parse::<Key>().ok().as_ref() == Some(option))
                    .map(|(_, value)| value)
            })
            .collect();
        match Vec::from_iter(values).as_slice() {
            [Some(value)] => Some((*value).clone()),
            _ => None,
        }
    };
    let stock = [
        (Key::AccessKeyId, "access_key_id"),
        (Key::SecretAccessKey, "secret_access_key"),
        (Key::Token, "session_token"),
        (Key::Region, "region"),
        (Key::Endpoint, "endpoint"),
        (
            Key::Client(object_store::ClientConfigKey::AllowHttp),
            "allow_http",
        ),
    ];
    for (option, name) in stock {
        if let Some(value) = shared(&option) {
            s3.set(name, &value).expect("a stock S3 setting");
        }
    }
    s3
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("'{0}' is not a cluster address: write df://HOST:PORT (the scheduler's)")]
    BadUrl(String),
    #[error(
        "cannot reach the cluster's scheduler at {url}: {reason}. Is `segflow cluster \
         scheduler` running there, and is the port open from here?"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "{url} does not answer as a Ballista scheduler ({reason}). Is it the scheduler's port \
         (50050 unless set), not an executor's?"
    )]
    NotAScheduler { url: String, reason: String },
    #[error(
        "the cluster's scheduler at {url} has no executor registered, so a run would wait \
         for one without end. Start executors (`segflow cluster executor --scheduler {url}`), \
         or see why they left in their logs"
    )]
    NoExecutors { url: String },
    #[error(
        "the cluster at {url} made no progress on '{table}' for {seconds} s (job {job}; \
         {stages}; {executors}), so the run cancelled it. Ballista can lose a stage after a \
         failed shuffle fetch, wait on an executor that died, or have its executors stopped \
         by a scheduler that froze past their timeout; the scheduler's and executors' logs \
         say which. Nothing was published: run again. SEGFLOW_CLUSTER_STALL_SECONDS sets how \
         long a job may go without a finished stage ({limit} s now)"
    )]
    Stalled {
        url: String,
        table: String,
        job: String,
        seconds: u64,
        stages: String,
        executors: String,
        limit: u64,
    },
    #[error(
        "the cluster at {url} failed while computing '{table}': {reason}. The scheduler or an \
         executor stopped answering or broke off; their logs say why. Nothing was published: \
         run again once the cluster is up"
    )]
    Failed {
        url: String,
        table: String,
        reason: String,
    },
    #[error("cannot start a session on the cluster at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: DataFusionError,
    },
    #[error("the Ballista {role} stopped: {source}")]
    Service {
        role: &'static str,
        #[source]
        source: BallistaError,
    },
}

impl ClusterError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            ClusterError::BadUrl(_) => crate::fault::Fault::User,
            ClusterError::Service { .. }
            | ClusterError::Connect { .. }
            | ClusterError::Unreachable { .. }
            | ClusterError::NotAScheduler { .. }
            | ClusterError::NoExecutors { .. }
            | ClusterError::Failed { .. }
            | ClusterError::Stalled { .. } => crate::fault::Fault::Environment,
        }
    }
}

/// A scheduler's address, as clients and executors are given it: `df://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for ClusterUrl {
    type Err = ClusterError;

    fn from_str(text: &str) -> Result<ClusterUrl, ClusterError> {
        let bad = || ClusterError::BadUrl(text.to_string());
        let address = text.strip_prefix("df://").ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port = port.trim_end_matches('/').parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(ClusterUrl {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

/// Runs a scheduler listening on `bind` until the process ends. `external_host` is the
/// name executors and clients reach it by.
pub async fn run_scheduler(
    bind: SocketAddr,
    external_host: &str,
    executor_timeout: std::time::Duration,
) -> Result<(), ClusterError> {
    let failed = |source| ClusterError::Service {
        role: "scheduler",
        source,
    };
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: external_host.to_string(),
        executor_timeout_seconds: executor_timeout.as_secs(),
        // Dead executors are looked for often enough that the timeout is what a run waits.
        expire_dead_executor_interval_seconds: (executor_timeout.as_secs() / 4).clamp(1, 15),
        no_executors_grace_period_seconds: executor_timeout.as_secs(),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            Ok(SessionStateBuilder::new()
                .with_runtime_env(cluster_runtime(&config)?)
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

/// Where an executor listens and works.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub scheduler: ClusterUrl,
    /// The address it listens on, and by which the scheduler and the other executors
    /// reach it.
    pub host: String,
    /// Arrow Flight, which serves its shuffle files.
    pub flight_port: u16,
    /// gRPC, which takes its tasks.
    pub grpc_port: u16,
    /// Where its shuffle files go; a temporary folder when unset.
    pub work_dir: Option<PathBuf>,
    /// Tasks it runs at once; the number of cores when unset.
    pub concurrent_tasks: Option<usize>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: std::time::Duration,
}

/// Runs an executor of the cluster at `settings.scheduler` until the process ends.
pub async fn run_executor(settings: ExecutorSettings) -> Result<(), ClusterError> {
    let defaults = ExecutorProcessConfig::default();
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
        override_runtime_producer: Some(Arc::new(cluster_runtime)),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        // Every function a session of this build has (Ballista's default registry leaves
        // out the array functions, which the shipped SQL uses).
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(
            &SessionStateBuilder::new().with_default_features().build(),
        ))),
        ..defaults
    };
    tracing::info!(scheduler = %settings.scheduler, host = %settings.host, flight_port = settings.flight_port, grpc_port = settings.grpc_port, "Cluster executor starting.");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|source| ClusterError::Service {
            role: "executor",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_df_host_port() {
        let url: ClusterUrl = "df://scheduler.internal:50050".parse().unwrap();
        assert_eq!(url.host, "scheduler.internal");
        assert_eq!(url.port, 50050);
        assert_eq!(url.to_string(), "df://scheduler.internal:50050");
        for bad in [
            "scheduler:50050",
            "df://scheduler",
            "df://:50050",
            "df://host:port",
        ] {
            assert!(bad.parse::<ClusterUrl>().is_err(), "{bad}");
        }
    }
}
