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
    /// Dictionary-encode the string columns only. Ids, amounts, counts and times compress
    /// smaller with zstd, and sooner, written plain: the 1M shop's segment_membership took
    /// 13.0 MB in 0.27 s instead of 24.6 MB in 0.39 s, customer_profile 36.7 MB in 0.67 s
    /// instead of 45.3 MB in 0.81 s (BENCHMARKS.md, "Issue 35"). A dictionary of strings
    /// (segment names, countries) is what readers group and filter by without reading each
    /// value.
    pub dictionary_strings_only: bool,
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
    let mut options = target.options.clone();
    if target.dictionary_strings_only {
        for field in schema.fields() {
            if !is_text(field.data_type()) {
                let column = options
                    .column_specific_options
                    .entry(field.name().clone())
                    .or_default();
                column.dictionary_enabled = Some(false);
            }
        }
    }
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
            Some(options),
        )
        .await?;
    Ok((schema, rows_written(&written)))
}

/// Strings, and lists of them (a list's values are a column of their own in the file).
fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            true
        }
        DataType::List(item) | DataType::LargeList(item) => is_text(item.data_type()),
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// Each column of the one file written into `folder`, and whether it has a dictionary.
    fn dictionaries(folder: &std::path::Path) -> Vec<(String, bool)> {
        let file = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "parquet"))
            .expect("a Parquet file");
        let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn published_files_keep_dictionaries_for_strings_only() {
        let ctx = SessionContext::new();
        let sql = "SELECT CAST(v % 7 AS BIGINT) AS customer_id, \
                   CASE WHEN v % 2 = 0 THEN 'a' ELSE 'b' END AS segment, \
                   [CASE WHEN v % 2 = 0 THEN 'x' ELSE 'y' END] AS tags \
                   FROM unnest(range(1000)) AS t(v)";
        for strings_only in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let folder = Location::parse(&format!("{}/", dir.path().display())).unwrap();
            let target = ParquetTarget {
                folder,
                options: TableParquetOptions::default(),
                file_rows: Some(10_000),
                plain_strings: true,
                dictionary_strings_only: strings_only,
            };
            let frame = ctx.sql(sql).await.unwrap();
            let (_, rows) = write_parquet(frame, &target).await.unwrap();
            assert_eq!(rows, 1000);
            let expected = [
                ("customer_id".to_string(), !strings_only),
                ("segment".to_string(), true),
                ("tags.list.item".to_string(), true),
            ];
            assert_eq!(
                dictionaries(dir.path()),
                expected,
                "strings only: {strings_only}"
            );
        }
    }
}
