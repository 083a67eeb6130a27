//! The Parquet files an output is written as: zstd, row groups small enough to skip by
//! statistics, a new file every so many rows so that readers can split work.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{PublishError, store_error, write_error};

/// Rows per row group: small enough for readers to skip by statistics, large enough to
/// compress well (DuckDB writes 122,880; Spark targets about 128 MiB).
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per file before a new file is started, so that readers can split work.
pub(super) const FILE_ROWS: u64 = 4 * 1024 * 1024;

/// A written file: its name, rows and size.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WrittenFile {
    pub(super) path: Path,
    pub(super) name: String,
    pub(super) rows: u64,
    pub(super) bytes: u64,
}

/// A file being written.
pub(super) struct OpenFile {
    name: String,
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
    pub(super) rows: u64,
}

impl OpenFile {
    /// Starts `name` in `folder`, a file of `table`'s rows.
    pub(super) fn create(
        table: &str,
        store: &Arc<dyn ObjectStore>,
        folder: &crate::storage::Location,
        name: String,
        schema: &SchemaRef,
    ) -> Result<OpenFile, PublishError> {
        let path = folder.join(&name).path();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("level 3 is valid"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("segflow {}", env!("CARGO_PKG_VERSION")))
            .build();
        let sink = BufWriter::new(Arc::clone(store), path.clone());
        let writer = AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(properties))
            .map_err(|e| write_error(table, &path, e))?;
        Ok(OpenFile {
            name,
            path,
            writer,
            rows: 0,
        })
    }

    pub(super) async fn write(
        &mut self,
        table: &str,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> Result<(), PublishError> {
        self.writer
            .write(batch)
            .await
            .map_err(|e| write_error(table, &self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub(super) async fn close(
        self,
        table: &str,
        store: &dyn ObjectStore,
    ) -> Result<WrittenFile, PublishError> {
        let OpenFile {
            name,
            path,
            writer,
            rows,
        } = self;
        writer
            .close()
            .await
            .map_err(|e| write_error(table, &path, e))?;
        let bytes = store
            .head(&path)
            .await
            .map_err(|source| store_error(table, "read back", &path, source))?
            .size;
        Ok(WrittenFile {
            path,
            name,
            rows,
            bytes,
        })
    }
}
