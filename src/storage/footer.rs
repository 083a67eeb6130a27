//! The footer of a Parquet object: its schema, row counts and (optionally) page index, read
//! with ranged GETs, without the rest of the file.

use std::sync::Arc;

use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// Bytes read from a file's end in the first request: most footers fit, so one GET does.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// The metadata of the Parquet object `meta`, with its page index where it has one when
/// `page_index` is set.
pub async fn parquet_footer(
    store: Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    page_index: bool,
) -> Result<ParquetMetaData, ParquetError> {
    let mut footer = Footer {
        store,
        path: meta.location.clone(),
    };
    let policy = if page_index {
        PageIndexPolicy::Optional
    } else {
        PageIndexPolicy::Skip
    };
    ParquetMetaDataReader::new()
        .with_page_index_policy(policy)
        .with_prefetch_hint(Some(FOOTER_PREFETCH))
        .load_and_finish(&mut footer, meta.size)
        .await
}

struct Footer {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
}

impl MetadataFetch for &mut Footer {
    fn fetch(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}
