//! The Parquet files an output is written as: zstd, row groups small enough to skip by
//! statistics, a new file every so many rows so that readers can split work. The engine
//! writes them into a publication's staging folder with these settings (DataFusion's
//! writer, which encodes the columns of a row group in parallel); this module takes stock of
//! what it wrote.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::file_options::parquet_writer::ParquetWriterOptions;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;

use super::{PublishError, store_error, write_error};
use crate::engine::ParquetTarget;
use crate::storage::{Location, parquet_footer};

/// Rows per row group: small enough for readers to skip by statistics, large enough to
/// compress well (DuckDB writes 122,880; Spark targets about 128 MiB).
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per file before a new file is started, so that readers can split work.
const FILE_ROWS: usize = 4 * 1024 * 1024;

/// How an output's files are written into `folder`.
pub(super) fn target(folder: Location) -> ParquetTarget {
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("zstd(3)".to_string());
    options.global.max_row_group_size = ROW_GROUP_ROWS;
    options.global.statistics_enabled = Some("page".to_string());
    options.global.created_by = format!("segflow {}", env!("CARGO_PKG_VERSION"));
    ParquetTarget {
        folder,
        options,
        file_rows: Some(FILE_ROWS),
        plain_strings: true,
        dictionary_strings_only: true,
    }
}

/// A written file: where it is staged, the name it is published under, its rows and size.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WrittenFile {
    pub(super) path: Path,
    pub(super) name: String,
    pub(super) rows: u64,
    pub(super) bytes: u64,
}

/// The rows of a written file, from its footer.
pub(super) async fn rows_of(
    table: &str,
    store: &Arc<dyn ObjectStore>,
    file: &ObjectMeta,
) -> Result<u64, PublishError> {
    let metadata = parquet_footer(Arc::clone(store), file, false)
        .await
        .map_err(|e| write_error(table, &file.location, e))?;
    Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or_default())
}

/// Writes a file of `schema` with no rows at `path`, so that an empty output is still a
/// file that readers open, with its columns.
pub(super) async fn write_empty(
    table: &str,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    schema: &SchemaRef,
    target: &ParquetTarget,
) -> Result<u64, PublishError> {
    let mut options = target.options.clone();
    options.arrow_schema(schema);
    let properties = ParquetWriterOptions::try_from(&options)
        .map_err(|e| {
            write_error(
                table,
                path,
                parquet::errors::ParquetError::External(e.into()),
            )
        })?
        .writer_options()
        .clone();
    let sink = BufWriter::new(Arc::clone(store), path.clone());
    let writer = AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(properties))
        .map_err(|e| write_error(table, path, e))?;
    writer
        .close()
        .await
        .map_err(|e| write_error(table, path, e))?;
    let bytes = store
        .head(path)
        .await
        .map_err(|source| store_error(table, "read back", path, source))?
        .size;
    Ok(bytes)
}

/// The order DataFusion wrote a folder's files in: its names end in `_<index>.parquet`.
pub(super) fn write_index(name: &str) -> u64 {
    name.strip_suffix(".parquet")
        .and_then(|stem| stem.rsplit('_').next())
        .and_then(|index| index.parse().ok())
        .unwrap_or(u64::MAX)
}
