//! Publishing an output: stream its rows into run-unique Parquet files in a staging folder,
//! then, once every output of the run is staged, move them into `as_of=YYYY-MM-DD/` and write
//! the manifest. The manifest put is the one commit point: a reader that follows the manifest
//! sees the previous run's files until it lands, and only this run's files after. Files of an
//! earlier run of the same `as_of` are deleted only after the commit.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::storage::{Location, Storage, StorageError, read_object};

/// Rows per row group: small enough for readers to skip by statistics, large enough to
/// compress well (DuckDB writes 122,880; Spark targets about 128 MiB).
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per file before a new file is started, so that readers can split work.
const FILE_ROWS: u64 = 4 * 1024 * 1024;
const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("output '{table}': computing its rows failed: {message}")]
    Query { table: String, message: String },
    #[error("output '{table}': the query engine failed while computing its rows")]
    Engine {
        table: String,
        #[source]
        source: DataFusionError,
    },
    #[error("output '{table}': could not write {file}")]
    Write {
        table: String,
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("output '{table}': could not {action} {file}")]
    Store {
        table: String,
        action: &'static str,
        file: String,
        // Boxed: object_store's error is large, and this enum travels up every call.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("output '{table}': the manifest {file} is not valid: {reason}")]
    BadManifest {
        table: String,
        file: String,
        reason: String,
    },
}

impl PublishError {
    /// A query that fails while streaming (a cast of bad data, a division by zero) is the
    /// user's to fix; everything else here is the environment's.
    pub fn is_user_fault(&self) -> bool {
        matches!(self, PublishError::Query { .. })
    }
}

/// The record of one published output of one run. Readers that want an atomic view read
/// this file and then exactly the files it lists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub pipeline: String,
    pub table: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    pub rows: u64,
    /// Paths relative to the output URL.
    pub files: Vec<ManifestFile>,
    pub schema: Vec<ManifestColumn>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestColumn {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// Where segflow keeps its own files under an output URL; the leading `_` makes Hive-style
/// readers (Spark, Trino, DataFusion, pyarrow's dataset) skip it.
const META_DIR: &str = "_segflow";

pub fn manifest_location(output: &Location, as_of: NaiveDate) -> Location {
    output.join(&format!("{META_DIR}/manifests/as_of={as_of}.json"))
}

pub fn partition_dir(as_of: NaiveDate) -> String {
    format!("as_of={as_of}")
}

/// Identifies the run whose files are being published.
#[derive(Debug, Clone)]
pub struct RunIdentity {
    pub pipeline: String,
    pub as_of: NaiveDate,
    pub run_id: String,
}

/// An output whose files are written to staging but not yet live.
pub struct Staged {
    table: String,
    location: Location,
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    files: Vec<(Path, ManifestFile)>,
}

impl Staged {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|(_, f)| f.rows).sum()
    }
}

pub struct Publisher {
    storage: Storage,
    run: RunIdentity,
    file_rows: u64,
}

impl Publisher {
    pub fn new(storage: Storage, run: RunIdentity) -> Publisher {
        Publisher {
            storage,
            run,
            file_rows: FILE_ROWS,
        }
    }

    /// Starts a new file after this many rows (a file may exceed it by one batch).
    pub fn with_file_rows(self, file_rows: u64) -> Publisher {
        Publisher {
            file_rows: file_rows.max(1),
            ..self
        }
    }

    fn staging(&self, output: &Location) -> Location {
        output.join(&format!("{META_DIR}/staging/{}/", self.run.run_id))
    }

    /// Streams `rows` into Parquet files in this run's staging folder of `output`.
    /// `on_rows` is told the running row count (for progress display).
    pub async fn stage(
        &self,
        table: &str,
        output: &Location,
        options: &std::collections::BTreeMap<String, String>,
        mut rows: SendableRecordBatchStream,
        on_rows: &(dyn Fn(u64) + Sync),
    ) -> Result<Staged, PublishError> {
        let store = self.storage.store(output, options)?;
        let schema = rows.schema();
        let staging = self.staging(output);
        let mut staged = Staged {
            table: table.to_string(),
            location: output.clone(),
            store: Arc::clone(&store),
            schema: Arc::clone(&schema),
            files: Vec::new(),
        };
        let mut file = self.open_file(&staged, &staging, 0)?;
        let mut total = 0u64;
        while let Some(batch) = rows.next().await {
            let batch = batch.map_err(|e| query_error(table, e))?;
            total += batch.num_rows() as u64;
            file.writer
                .write(&batch)
                .await
                .map_err(|e| write_error(table, &file.path, e))?;
            file.rows += batch.num_rows() as u64;
            on_rows(total);
            if file.rows >= self.file_rows {
                let next = self.open_file(&staged, &staging, staged.files.len() + 1)?;
                let full = std::mem::replace(&mut file, next);
                staged.files.push(full.close(table, store.as_ref()).await?);
            }
        }
        staged.files.push(file.close(table, store.as_ref()).await?);
        Ok(staged)
    }

    fn open_file(
        &self,
        staged: &Staged,
        staging: &Location,
        index: usize,
    ) -> Result<OpenFile, PublishError> {
        let name = format!("part-{}-{index:05}.zstd.parquet", self.run.run_id);
        let path = staging.join(&name).path();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("level 3 is valid"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("segflow {}", env!("CARGO_PKG_VERSION")))
            .build();
        let sink = BufWriter::new(Arc::clone(&staged.store), path.clone());
        let writer = AsyncArrowWriter::try_new(sink, Arc::clone(&staged.schema), Some(properties))
            .map_err(|e| write_error(&staged.table, &path, e))?;
        Ok(OpenFile {
            name,
            path,
            writer,
            rows: 0,
        })
    }

    /// Makes a staged output live: move its files into the `as_of` partition, write the
    /// manifest (the commit point), then delete what an earlier run of this `as_of` left.
    pub async fn commit(&self, staged: Staged) -> Result<Manifest, PublishError> {
        let table = staged.table.as_str();
        let store = staged.store.as_ref();
        let partition = partition_dir(self.run.as_of);
        let mut files = Vec::new();
        for (staged_path, file) in &staged.files {
            let relative = format!("{partition}/{}", file.path);
            let target = staged.location.join(&relative).path();
            store
                .rename(staged_path, &target)
                .await
                .map_err(|source| store_error(table, "move a staged file to", &target, source))?;
            files.push(ManifestFile {
                path: relative,
                ..file.clone()
            });
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            pipeline: self.run.pipeline.clone(),
            table: table.to_string(),
            as_of: self.run.as_of,
            run_id: self.run.run_id.clone(),
            committed_at: Utc::now(),
            rows: staged.rows(),
            files,
            schema: staged
                .schema
                .fields()
                .iter()
                .map(|f| ManifestColumn {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
        };
        let manifest_path = manifest_location(&staged.location, self.run.as_of).path();
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        store
            .put(&manifest_path, PutPayload::from(body))
            .await
            .map_err(|source| store_error(table, "write the manifest", &manifest_path, source))?;
        self.remove_superseded(&staged, &manifest).await?;
        self.storage
            .remove_folder(&self.staging(&staged.location), store)
            .await?;
        Ok(manifest)
    }

    /// Deletes the files in the partition that the new manifest does not list: those of an
    /// earlier run of the same `as_of`, or of a run that died after moving its files.
    async fn remove_superseded(
        &self,
        staged: &Staged,
        manifest: &Manifest,
    ) -> Result<(), PublishError> {
        let partition = staged
            .location
            .join(&format!("{}/", partition_dir(self.run.as_of)));
        let live: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let objects = self.storage.list(&partition, staged.store.as_ref()).await?;
        for object in objects {
            let relative = staged.location.relative(&object.location);
            if !live.contains(relative.as_str()) {
                staged
                    .store
                    .delete(&object.location)
                    .await
                    .map_err(|source| {
                        store_error(
                            &staged.table,
                            "delete the superseded file",
                            &object.location,
                            source,
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// Best-effort removal of a failed run's staging files; they are invisible to readers
    /// either way, so a failure here is only logged.
    pub async fn discard_run(&self, outputs: &[crate::spec::Output]) {
        for output in outputs {
            let staging = self.staging(&output.location);
            let removed = match self.storage.store(&output.location, &output.options) {
                Ok(store) => self.storage.remove_folder(&staging, store.as_ref()).await,
                Err(error) => Err(error),
            };
            if let Err(error) = removed {
                tracing::warn!(%staging, %error, "Could not remove a failed run's staging files.");
            }
        }
    }
}

/// Reads the manifest of `output` for `as_of`, if one has been committed.
pub async fn read_manifest(
    storage: &Storage,
    table: &str,
    output: &Location,
    options: &std::collections::BTreeMap<String, String>,
    as_of: NaiveDate,
) -> Result<Option<Manifest>, PublishError> {
    let store = storage.store(output, options)?;
    let location = manifest_location(output, as_of);
    let bytes = match read_object(store.as_ref(), &location.path()).await {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(store_error(
                table,
                "read the manifest",
                &location.path(),
                source,
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PublishError::BadManifest {
            table: table.to_string(),
            file: location.to_string(),
            reason: e.to_string(),
        })
}

/// Every committed partition of an output dated before `as_of`, oldest first, each with the
/// files its manifest lists.
pub async fn published_before(
    storage: &Storage,
    table: &str,
    output: &Location,
    options: &std::collections::BTreeMap<String, String>,
    as_of: NaiveDate,
) -> Result<Vec<(NaiveDate, Vec<Location>)>, PublishError> {
    let store = storage.store(output, options)?;
    let folder = output.join(&format!("{META_DIR}/manifests/"));
    let mut dates: Vec<NaiveDate> = storage
        .list(&folder, store.as_ref())
        .await?
        .iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?;
            let date = name.strip_prefix("as_of=")?.strip_suffix(".json")?;
            crate::spec::parse_date(date)
        })
        .filter(|date| *date < as_of)
        .collect();
    dates.sort();
    let mut partitions = Vec::new();
    for date in dates {
        if let Some(manifest) = read_manifest(storage, table, output, options, date).await? {
            let files = manifest
                .files
                .iter()
                .map(|f| output.join(&f.path))
                .collect();
            partitions.push((date, files));
        }
    }
    Ok(partitions)
}

struct OpenFile {
    name: String,
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
}

impl OpenFile {
    async fn close(
        self,
        table: &str,
        store: &dyn ObjectStore,
    ) -> Result<(Path, ManifestFile), PublishError> {
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
        Ok((
            path,
            ManifestFile {
                path: name,
                rows,
                bytes,
            },
        ))
    }
}

fn query_error(table: &str, error: DataFusionError) -> PublishError {
    if crate::engine::is_environment_failure(&error) {
        PublishError::Engine {
            table: table.to_string(),
            source: error,
        }
    } else {
        PublishError::Query {
            table: table.to_string(),
            message: crate::engine::describe(&error),
        }
    }
}

fn write_error(table: &str, path: &Path, source: parquet::errors::ParquetError) -> PublishError {
    PublishError::Write {
        table: table.to_string(),
        file: path.to_string(),
        source,
    }
}

fn store_error(
    table: &str,
    action: &'static str,
    path: &Path,
    source: object_store::Error,
) -> PublishError {
    PublishError::Store {
        table: table.to_string(),
        action,
        file: path.to_string(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{SessionConfig, SessionContext};

    #[tokio::test]
    async fn large_outputs_are_split_into_distinct_files() {
        let storage = Storage::new();
        let output = Location::parse("memory:///publish-test/numbers/").unwrap();
        let as_of = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        let publisher = Publisher::new(
            storage.clone(),
            RunIdentity {
                pipeline: "test".into(),
                as_of,
                run_id: "run1".into(),
            },
        )
        .with_file_rows(1000);
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(300));
        let rows = ctx
            .sql("SELECT * FROM generate_series(1, 3500) AS t(n)")
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        let staged = publisher
            .stage("numbers", &output, &Default::default(), rows, &|_| {})
            .await
            .unwrap();
        let manifest = publisher.commit(staged).await.unwrap();
        assert_eq!(manifest.rows, 3500);
        let names: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names.len(), manifest.files.len(), "file names are distinct");
        assert!(manifest.files.len() >= 3, "{:?}", manifest.files);
        assert_eq!(manifest.files.iter().map(|f| f.rows).sum::<u64>(), 3500);
        let read = read_manifest(&storage, "numbers", &output, &Default::default(), as_of)
            .await
            .unwrap();
        assert_eq!(read, Some(manifest));
    }
}
