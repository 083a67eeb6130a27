//! The run's memory pool: DataFusion's fair spilling pool, except that a repartition's
//! buffers are counted and never refused.
//!
//! DataFusion 55's `RepartitionExec` writes a batch it cannot reserve memory for into a
//! spill pool, whose reader can wait forever on the oldest of two open files while the batch
//! it needs is in the newer one: every thread parks, the query neither ends nor fails
//! (apache/datafusion#24883, fixed after 55). A 10M-customer night under an 8 GiB limit
//! stopped that way for good while settling the orders' versions. Refusing nothing to the
//! repartitions is what DataFusion did before their buffers could spill: the batches they
//! hold still count against the limit, so the joins, sorts and aggregations that hold the
//! volume spill earlier instead.

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Wraps `inner`: every request of a repartition's consumer is granted (`grow`), every
/// other one is asked of `inner` as usual (`try_grow`).
#[derive(Debug)]
pub(super) struct RepartitionsUnrefused<P> {
    inner: P,
}

impl<P: MemoryPool> RepartitionsUnrefused<P> {
    pub(super) fn new(inner: P) -> Self {
        RepartitionsUnrefused { inner }
    }
}

/// `RepartitionExec[0]`, `RepartitionExec[Merge 0]`: the names DataFusion 55 gives a
/// repartition's reservations.
fn is_repartition(consumer: &MemoryConsumer) -> bool {
    consumer.name().starts_with("RepartitionExec[")
}

impl<P: MemoryPool> std::fmt::Display for RepartitionsUnrefused<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, repartitions unrefused", self.inner)
    }
}

impl<P: MemoryPool> MemoryPool for RepartitionsUnrefused<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if is_repartition(reservation.consumer()) {
            self.inner.grow(reservation, additional);
            return Ok(());
        }
        self.inner.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::execution::disk_manager::DiskManagerBuilder;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// The reproduction in apache/datafusion#24883: a two-level aggregation on two
    /// partitions under a 2 MB limit, whose repartitions must spill. On DataFusion 55's own
    /// fair pool one of the first attempts never returns; here each must finish, and still
    /// give the right answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spilling_aggregation_finishes_under_a_tiny_limit() {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(64);
        let ctx = SessionContext::new_with_config(config);
        ctx.sql(
            "CREATE TABLE t AS SELECT v % 13 AS g, md5(CAST(v % 337 AS VARCHAR)) AS trace_id \
             FROM generate_series(1, 40000) AS s(v)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let table = ctx.table_provider("t").await.unwrap();
        let pool = RepartitionsUnrefused::new(FairSpillPool::new(2 * 1024 * 1024));
        let runtime = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(DiskManagerBuilder::default())
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .unwrap();
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(ctx.copied_config())
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let limited = SessionContext::new_with_state(state);
        limited.register_table("t", table).unwrap();
        for attempt in 0..12 {
            let query = limited
                .sql("SELECT g, count(DISTINCT trace_id) AS n FROM t GROUP BY g")
                .await
                .unwrap()
                .collect();
            let batches = tokio::time::timeout(Duration::from_secs(20), query)
                .await
                .unwrap_or_else(|_| panic!("attempt {attempt} still running after 20 s"))
                .unwrap();
            // 13 and 337 share no factor, so every g meets every v % 337.
            let counts: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            assert_eq!(counts, vec![337; 13], "attempt {attempt}");
        }
    }
}
