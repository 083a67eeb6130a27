//! The one place a DataFusion session is built, the datafusion-cli way: all cores, a spilling
//! memory pool with a limit, a disk manager, and the [`Storage`] registry as the object store
//! registry. On a cluster (`backend.rs`), this session's settings and stores are what
//! the cluster's session is built from.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::pool::RepartitionsUnrefused;
use crate::pipeline::EngineSettings;
use crate::storage::Storage;

/// The least share of a join's key range its built side must fill for an array to replace
/// the hash table, unless the run's memory is limited.
const SPARSEST_KEY_ARRAY: f64 = 0.05;

pub(super) fn build(
    settings: &EngineSettings,
    storage: &Storage,
) -> Result<SessionContext, DataFusionError> {
    let mut config = SessionConfig::from_env()?.with_information_schema(true);
    if let Some(partitions) = settings.target_partitions {
        config = config.with_target_partitions(partitions);
    }
    // Spark, Hive and Impala write timestamps as INT96 by default: instants in UTC, whose
    // dates reach past what nanoseconds hold. Read as every other timestamp is (see
    // `schema::read_footer_schema`, which types the files' columns the same way).
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.coerce_int96 = Some("us".to_string());
    parquet.coerce_int96_tz = Some("UTC".to_string());
    // DataFusion 55's pushdown of struct field reads (`customer['id']`) towards the scans
    // plans a landing's nested refunds (queries/layouts/airbyte_shopify/orders.sql: unnest,
    // then fields of what it unnested) for minutes and then fails, naming a column it made
    // twice (`__datafusion_extracted_N ... would be ambiguous`). Off, they plan in
    // milliseconds; flat tables never had anything for it to push.
    config
        .options_mut()
        .optimizer
        .enable_leaf_expression_pushdown = false;
    // A join on integer keys finds its matches by the key's place in an array of the built
    // side's key range (4 bytes a slot) instead of a hash table when the keys are dense.
    // DataFusion 55 wants 15% of the slots used, where the array is no larger than the
    // table; the product segments' joins (1.2M order items' order ids out of 10M, halved
    // per partition) are at 6%, and at 5% they took 0.2 of the time and the night 0.93
    // (BENCHMARKS.md, issue 35). The array then takes up to three times the table's
    // memory and cannot spill, so a run with `engine.memory_limit` set keeps the default.
    if settings.memory_limit.is_none() {
        config
            .options_mut()
            .execution
            .perfect_hash_join_min_key_density = SPARSEST_KEY_ARRAY;
    }
    // DataFusion reads strings as string views (the nightly run takes 0.96x the time of
    // plain strings, BENCHMARKS.md); published files get plain strings
    // (`ParquetTarget::plain_strings`), which every reader knows.
    let memory_limit = settings.memory_limit.or_else(default_memory_limit);
    let mut runtime = RuntimeEnvBuilder::new()
        .with_disk_manager_builder(DiskManagerBuilder::default())
        .with_object_store_registry(Arc::new(storage.clone()));
    if let Some(limit) = memory_limit {
        runtime = runtime.with_memory_pool(memory_pool(limit));
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .with_physical_optimizer_rules(super::joins::optimizer_rules())
        .build();
    let ctx = SessionContext::new_with_state(state);
    crate::functions::register(&ctx);
    Ok(ctx)
}

/// The spilling pool of `limit` bytes a run's queries share (a cluster executor's tasks
/// too): fair between the operators that spill, never refusing a repartition (see
/// `pool.rs`), and naming the five largest consumers when it refuses.
pub(crate) fn memory_pool(limit: usize) -> Arc<dyn MemoryPool> {
    let pool = RepartitionsUnrefused::new(FairSpillPool::new(limit));
    let top_consumers = NonZeroUsize::new(5).expect("5 is not zero");
    Arc::new(TrackConsumersPool::new(pool, top_consumers))
}

/// Three quarters of the memory this process may use (the machine's, or its container's
/// when that is less), so that large sorts and joins spill instead of being killed; None
/// where it is unknown (no limit, as DataFusion's own default).
pub(crate) fn default_memory_limit() -> Option<usize> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let machine = system.total_memory();
    let container = system.cgroup_limits().map(|limits| limits.total_memory);
    let total = container
        .filter(|&c| c > 0)
        .map_or(machine, |c| c.min(machine));
    usize::try_from(total / 4 * 3)
        .ok()
        .filter(|&bytes| bytes > 0)
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;

    use super::*;

    /// How many of a join's built sides became key arrays, joining every `step`th of 100,000
    /// ids (the side built: the left one, as neither side's size is known) with all of them.
    async fn key_arrays(memory_limit: Option<usize>, step: usize) -> usize {
        let settings = EngineSettings {
            memory_limit,
            target_partitions: Some(1),
            ..EngineSettings::default()
        };
        let ctx = build(&settings, &Storage::default()).unwrap();
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT value AS id FROM generate_series(1, 100000, {step})) \
             AS small JOIN (SELECT value AS id FROM generate_series(1, 100000)) AS large \
             ON large.id = small.id"
        );
        let plan = ctx
            .sql(&sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let mut arrays = 0;
        datafusion::common::tree_node::TreeNode::apply(&plan, |node| {
            if let Some(metrics) = node.metrics() {
                arrays += metrics
                    .sum_by_name("array_map_created_count")
                    .map_or(0, |count| count.as_usize());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        arrays
    }

    #[tokio::test]
    async fn joins_look_keys_up_in_an_array_unless_memory_is_limited() {
        // One key in ten: under DataFusion's 15%, over segflow's 5%.
        assert_eq!(key_arrays(None, 10).await, 1);
        assert_eq!(key_arrays(Some(1 << 30), 10).await, 0);
        // One in 25 (4%): a hash table either way.
        assert_eq!(key_arrays(None, 25).await, 0);
    }

    #[test]
    fn the_memory_default_is_known_here() {
        let limit = super::default_memory_limit().expect("this machine reports its memory");
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: Option<usize> = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if let Some(kib) = kib {
            assert!(
                limit <= kib * 1024 / 4 * 3,
                "{limit} exceeds 3/4 of MemTotal"
            );
        }
        assert!(limit > 16 * 1024 * 1024, "{limit}");
    }
}
