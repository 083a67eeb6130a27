//! How a hash join is built when one side is much larger than the other: one table of the
//! smaller side, which every partition of the larger side probes where it stands, as DuckDB
//! does.
//!
//! DataFusion 55 builds one shared table only for a side under 1 MB (or 128k rows), and
//! otherwise hashes both sides into partitions first. The joins that decide a night join a
//! table per customer with one per membership or order: `segment_summary` joins 17M
//! memberships with 3M customers at 3M customers, and moving the 17M rows between
//! partitions costs more than building the 3M on one core (the step took 0.38x the time;
//! BENCHMARKS.md, "Issue 35"). Between sides of like size, repartitioning both still wins,
//! and DataFusion's own choice stands: raising its thresholds for every join made the 3M
//! night no faster, with `paid_orders` and `segment_changes` slower.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

/// The larger side has at least this many times the rows of the smaller one.
const LARGER_BY: usize = 4;
/// The smaller side has at most this many rows: one core builds its table while the others
/// wait, so a side of hundreds of millions is still split.
const MOST_ROWS_BUILT_ONCE: usize = 50_000_000;

/// Runs before DataFusion's `join_selection`, which builds on the smaller side of a join
/// this rule decides (it swaps the inputs when the smaller one is on the right).
#[derive(Debug, Default)]
pub(super) struct OneTableForLopsidedJoins;

impl PhysicalOptimizerRule for OneTableForLopsidedJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if *join.partition_mode() != PartitionMode::Auto || !is_lopsided(join)? {
                return Ok(Transformed::no(node));
            }
            let collect_left = join
                .builder()
                .with_partition_mode(PartitionMode::CollectLeft)
                .build()?;
            Ok(Transformed::yes(Arc::new(collect_left)))
        })
        .data()
    }

    fn name(&self) -> &str {
        "segflow_one_table_for_lopsided_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether the join's sides are known (exactly) to differ by [`LARGER_BY`] in rows, the smaller one
/// within [`MOST_ROWS_BUILT_ONCE`], and the smaller one can be the side that is built.
fn is_lopsided(join: &HashJoinExec) -> Result<bool> {
    // Only counts that are known, a table's or a file's: DataFusion estimates a grouping's
    // rows as its input's, which would take a table per customer for one per order.
    let rows = |side: &Arc<dyn ExecutionPlan>| -> Result<Option<usize>> {
        let statistics = StatisticsContext::new().compute(side.as_ref(), &StatisticsArgs::new())?;
        Ok(match statistics.num_rows {
            Precision::Exact(rows) => Some(rows),
            Precision::Inexact(_) | Precision::Absent => None,
        })
    };
    let (Some(left), Some(right)) = (rows(join.left())?, rows(join.right())?) else {
        return Ok(false);
    };
    let can_swap = join.join_type().supports_swap() && !join.null_aware;
    let (smaller, larger) = if left <= right || !can_swap {
        (left, right)
    } else {
        (right, left)
    };
    Ok(smaller <= MOST_ROWS_BUILT_ONCE && larger >= smaller.saturating_mul(LARGER_BY))
}

/// DataFusion's physical optimizer rules, with [`OneTableForLopsidedJoins`] just before
/// `join_selection`.
pub(super) fn optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|rule| rule.name() == "join_selection")
        .unwrap_or(0);
    rules.insert(at, Arc::new(OneTableForLopsidedJoins));
    rules
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::pipeline::EngineSettings;
    use crate::storage::Storage;

    fn ids(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    /// The hash join of `large JOIN small`, with `small` of `small_rows` ids and `large` of
    /// `large_rows` (both over DataFusion's 1 MB threshold): its mode, the rows of the side
    /// it builds, and the rows it finds.
    async fn join_of(small_rows: i64, large_rows: i64) -> (PartitionMode, usize, i64) {
        let settings = EngineSettings {
            target_partitions: Some(2),
            ..EngineSettings::default()
        };
        let ctx: SessionContext =
            super::super::session::build(&settings, &Storage::default()).unwrap();
        ctx.register_batch("small", ids(small_rows)).unwrap();
        ctx.register_batch("large", ids(large_rows)).unwrap();
        let frame = ctx
            .sql("SELECT COUNT(*) AS n FROM large JOIN small ON large.id = small.id")
            .await
            .unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let mut joins = Vec::new();
        plan.apply(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>() {
                let built = StatisticsContext::new()
                    .compute(join.left().as_ref(), &StatisticsArgs::new())?
                    .num_rows;
                joins.push((*join.partition_mode(), built.get_value().copied()));
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref()).indent(true);
        let [(mode, Some(built))] = joins[..] else {
            panic!("one hash join of known sides expected, found {joins:?} in\n{text}")
        };
        let found = frame.collect().await.unwrap()[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        (mode, built, found)
    }

    #[tokio::test]
    async fn a_side_four_times_larger_probes_one_table_of_the_smaller() {
        let (mode, built, found) = join_of(200_000, 800_000).await;
        assert_eq!(mode, PartitionMode::CollectLeft);
        assert_eq!(built, 200_000, "the table is built of the smaller side");
        assert_eq!(found, 200_000);
    }

    #[tokio::test]
    async fn sides_under_four_times_apart_are_both_repartitioned() {
        let (mode, built, found) = join_of(200_000, 799_999).await;
        assert_eq!(mode, PartitionMode::Partitioned);
        assert_eq!(built, 200_000);
        assert_eq!(found, 200_000);
    }
}
