//! Earlier publications as tables a step reads: `previous_<output>`, the latest before the
//! run's date, and `history_<output>`, every one before it.

use chrono::NaiveDate;

use crate::engine::Engine;
use crate::pipeline::{Pipeline, Published, Step};
use crate::publish;
use crate::storage::Storage;

use super::error::RunError;

/// Makes the earlier publications that `step` reads (`previous_t`, `history_t`) available.
pub(super) async fn register_published(
    pipeline: &Pipeline,
    engine: &Engine,
    storage: &Storage,
    step: &Step,
    as_of: NaiveDate,
) -> Result<(), RunError> {
    for table in &step.sql.tables {
        let Some((kind, name)) = Published::parse(table) else {
            continue;
        };
        let Some(earlier) = pipeline.earlier_publications_of(name) else {
            continue;
        };
        if engine.has_table(table) {
            continue;
        }
        let sink = publish::sink(storage, &earlier);
        let partitions = match kind {
            Published::Previous => sink.latest_before(as_of).await?.into_iter().collect(),
            Published::History => sink.partitions_before(as_of, None).await?,
        };
        let partitions: Vec<_> = partitions.into_iter().map(|p| (p.as_of, p.files)).collect();
        tracing::info!(pipeline = %pipeline.name, table = %table, partitions = partitions.len(), "Reading earlier publications.");
        engine
            .register_published(table, partitions, &earlier.options, name)
            .await?;
    }
    Ok(())
}
