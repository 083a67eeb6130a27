//! Tables written as Parquet: a step's result materialised for later steps, or an output
//! into its staging folder, with the files' plain types and a count of their rows.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Column;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, Expr, cast, col};

use super::{Engine, EngineError, describe};
use crate::storage::Location;

/// A folder the engine writes a table into as Parquet files, and how.
#[derive(Debug, Clone)]
pub struct ParquetTarget {
    pub folder: Location,
    pub options: TableParquetOptions,
    /// Write the files one after another, in the rows' order, starting a new one every so
    /// many rows; without it DataFusion writes several files at once, in no order.
    pub file_rows: Option<usize>,
    /// Write strings as plain UTF-8 columns, the type every Parquet reader knows, rather
    /// than as the string views the engine computes with (files that others read).
    pub plain_strings: bool,
}

impl Engine {
    /// Writes the rows of a registered table (an output) into `target`; returns their
    /// schema as written, and how many there were.
    pub async fn write(
        &self,
        table: &str,
        target: &ParquetTarget,
    ) -> Result<(SchemaRef, u64), EngineError> {
        let failed = |error| {
            self.query_error(table, error, |error| EngineError::Output {
                table: table.to_string(),
                message: describe(&error),
            })
        };
        let frame = self.ctx.table(table).await.map_err(failed)?;
        self.log_unspillable(table, &frame).await;
        write_parquet(frame, target).await.map_err(failed)
    }

    /// The schema of a registered table as it is published (see [`ParquetTarget`]).
    pub async fn published_schema(&self, table: &str) -> Result<SchemaRef, EngineError> {
        let frame = self.ctx.table(table).await.and_then(plain_strings);
        let frame = frame.map_err(|e| EngineError::Output {
            table: table.to_string(),
            message: describe(&e),
        })?;
        Ok(Arc::new(frame.schema().as_arrow().clone()))
    }
}

/// Writes `frame` into `target` with DataFusion's Parquet writer (which encodes the columns
/// of a row group in parallel); returns the schema written and the rows.
pub async fn write_parquet(
    frame: DataFrame,
    target: &ParquetTarget,
) -> Result<(SchemaRef, u64), DataFusionError> {
    let frame = if target.plain_strings {
        plain_strings(frame)?
    } else {
        frame
    };
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let (mut state, plan) = frame.into_parts();
    if let Some(rows) = target.file_rows {
        let options = state.config_mut().options_mut();
        options.set("datafusion.execution.minimum_parallel_output_files", "1")?;
        options.set(
            "datafusion.execution.soft_max_rows_per_output_file",
            &rows.to_string(),
        )?;
    }
    let written = DataFrame::new(state, plan)
        .write_parquet(
            target.folder.as_str(),
            DataFrameWriteOptions::new(),
            Some(target.options.clone()),
        )
        .await?;
    Ok((schema, rows_written(&written)))
}

/// `frame` with its string-view columns (and lists of them) cast to plain strings.
pub(super) fn plain_strings(frame: DataFrame) -> Result<DataFrame, DataFusionError> {
    fn plain(data_type: &DataType) -> DataType {
        match data_type {
            DataType::Utf8View => DataType::Utf8,
            DataType::List(item) => DataType::List(Arc::new(
                item.as_ref()
                    .clone()
                    .with_data_type(plain(item.data_type())),
            )),
            other => other.clone(),
        }
    }
    let columns = frame.schema().fields().iter().map(|field| {
        let column = col(Column::new_unqualified(field.name()));
        let wanted = plain(field.data_type());
        if wanted == *field.data_type() {
            column
        } else {
            cast(column, wanted).alias(field.name())
        }
    });
    let columns: Vec<Expr> = columns.collect();
    frame.select(columns)
}

/// The row count that DataFusion's writers return, one `count` column.
fn rows_written(batches: &[RecordBatch]) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::UInt64Type;
    batches
        .iter()
        .filter_map(|batch| batch.columns().first()?.as_primitive_opt::<UInt64Type>())
        .flat_map(|counts| counts.iter().flatten())
        .sum()
}
