//! A client session whose queries Ballista's scheduler plans and its executors run, and what
//! the client, the scheduler and the executors share to build the same sessions: the stores
//! and their options, segflow's functions in the plan codecs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::object_store::S3Options;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use super::reach::reach;
use super::watchdog::{self, Watchdog};
use super::{ClusterError, ClusterUrl};
use crate::functions::{LogicalCodec, PhysicalCodec};
use crate::storage::{Storage, StoreSettings};

/// The stores a client's queries read and write, with their options (JSON of
/// [`StoreSettings`]), carried in the session's settings (`segflow.stores`) to the scheduler
/// and the executors, which build the same stores from them. Credentials travel with them,
/// as Ballista's own `s3.*` settings do: keep the cluster's network private.
#[derive(Debug, Clone, Default)]
struct ClusterStores {
    stores: String,
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

/// A session config that can carry [`ClusterStores`], as every process of the cluster
/// builds it.
pub(super) fn cluster_config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_option_extension(ClusterStores::default())
}

/// Ballista's plan codecs with segflow's functions, as the client, the scheduler and the
/// executors all need them: a plan that reads a CSV source or wall-clock timestamps calls
/// them.
pub(super) fn logical_codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(LogicalCodec::wrapping(Arc::new(
        BallistaLogicalExtensionCodec::default(),
    )))
}

pub(super) fn physical_codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(PhysicalCodec::wrapping(Arc::new(
        BallistaPhysicalExtensionCodec::default(),
    )))
}

/// The runtime of one session in a scheduler or executor: its stores are those the
/// client's settings name; an executor's tasks share its memory `pool`.
pub(super) fn cluster_runtime(
    config: &SessionConfig,
    pool: Option<Arc<dyn MemoryPool>>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let settings = match config.options().extensions.get::<ClusterStores>() {
        Some(given) if !given.stores.is_empty() => serde_json::from_str(&given.stores)
            .map_err(|e| DataFusionError::External(Box::new(e)))?,
        _ => StoreSettings::default(),
    };
    let storage =
        Storage::with_settings(&settings).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(storage));
    if let Some(pool) = pool {
        runtime = runtime.with_memory_pool(pool);
    }
    runtime.build_arc()
}

/// The smallest file whose scan a cluster session cuts into pieces, one per partition.
const SMALLEST_FILE_CUT: usize = 256 << 20;

/// A client session on the cluster at `url`: `state`'s settings, with the stores of
/// `storage` for the cluster's processes to build, and stages cut in `partitions` pieces
/// (Ballista's default when None); and the watchdog of its jobs.
pub async fn connect(
    url: &ClusterUrl,
    state: SessionState,
    storage: &Storage,
    partitions: Option<usize>,
) -> Result<(SessionContext, Arc<Watchdog>), ClusterError> {
    let executors = reach(url).await?;
    tracing::info!(%url, executors, "The cluster's scheduler answers.");
    let settings = storage.settings();
    let stores = serde_json::to_string(&settings).expect("store settings serialise");
    // The state's catalog, with the tables registered so far, stays: a new default one
    // would replace it.
    let config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(false)
        .with_option_extension(ClusterStores { stores })
        .with_option_extension(stock_s3_settings(&settings))
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec())
        // The client's cores say nothing of the cluster's: a hash join's table is built
        // per partition and cannot spill, so two partitions of a 10M-customer join (1.9 and
        // 1.6 GB) went to one executor and exceeded its 4 GiB (BENCHMARKS.md, issue 35).
        // Ballista's own default cuts each stage in 16, pieces that executors' slots share.
        .with_target_partitions(
            partitions.unwrap_or_else(|| SessionConfig::new_with_ballista().target_partitions()),
        );
    // Ballista's own settings and its DataFusion defaults, for a state that was not built
    // for the cluster: sort-merge joins, which spill, where a hash join's table cannot; no
    // dynamic filters, which cannot cross a stage (a 10M-customer night stalled when the
    // scheduler's adaptive planner swapped a join that had one: "Cannot swap HashJoinExec
    // inputs after dynamic filters have been constructed").
    let config = config
        .upgrade_for_ballista()
        // The job's id, by which the watchdog asks how a job is doing, reaches the client
        // when the scheduler queues it if the client pulls the job's status; pushed (the
        // default), it arrived only with the job's end, and the watchdog cancelled a 1M
        // night's first job of over 15 s (SEGFLOW_CLUSTER_STALL_SECONDS=15) that was running.
        .set_bool("ballista.client.pull", true)
        // A versioned source is a union of its files' scans (`engine/versions.rs`), and
        // DataFusion cuts each file of over 1 MiB into a piece per partition: the 10M
        // shop's 200 files of customers (1.3 MB each) made a stage of 3,200 tasks of 85 KB,
        // each one the scheduler hands out and a read of the file's footer. A file is cut
        // only when it is larger than this.
        .set_usize(
            "datafusion.optimizer.repartition_file_min_size",
            SMALLEST_FILE_CUT,
        );
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
