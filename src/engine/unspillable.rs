//! The operators of a plan that hold what they read in memory and cannot spill it under
//! `engine.memory_limit` (DataFusion 55): a run's debug log names them per step, so that a
//! night that outgrows its limit shows where.
//!
//! Sorts, grouped aggregations and repartitions spill. A hash join's built side, a cross
//! join's side and a window's partition (all of it for a frame over the whole table,
//! `COUNT(*) OVER ()`) do not, and windows are not even counted against the limit. (A top-N
//! sort and a sorted merge do not spill either, but hold a few batches, not a table.)

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;

/// Each operator of `plan` that cannot spill, as `HashJoinExec(CollectLeft, Inner)`, in the
/// plan's order from its root.
pub(super) fn unspillable_operators(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut found = Vec::new();
    plan.apply(|node| {
        let name = node.name();
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            found.push(format!(
                "{name}({:?}, {})",
                join.partition_mode(),
                join.join_type()
            ));
        } else if matches!(
            name,
            "CrossJoinExec" | "WindowAggExec" | "BoundedWindowAggExec"
        ) {
            found.push(name.to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("listing a plan's operators does not fail");
    found
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn a_join_and_a_whole_table_window_are_named_and_a_grouping_is_not() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ids =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        ctx.register_batch("a", ids.clone()).unwrap();
        ctx.register_batch("b", ids).unwrap();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                ctx.sql(sql)
                    .await
                    .unwrap()
                    .create_physical_plan()
                    .await
                    .unwrap()
            }
        };
        let joined =
            plan("SELECT a.id, COUNT(*) OVER () AS everyone FROM a JOIN b ON a.id = b.id").await;
        let named = unspillable_operators(&joined);
        assert!(
            named.iter().any(|n| n.starts_with("HashJoinExec(")),
            "{named:?}"
        );
        assert!(named.iter().any(|n| n == "WindowAggExec"), "{named:?}");
        let grouped = plan("SELECT id, COUNT(*) FROM a GROUP BY id").await;
        assert_eq!(unspillable_operators(&grouped), Vec::<String>::new());
    }
}
