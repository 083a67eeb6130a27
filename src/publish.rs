//! Publishing an output: stream its rows into run-unique Parquet files in a staging folder,
//! then, once every output of the run is staged, move them into `as_of=YYYY-MM-DD/` and write
//! the manifest. The manifest write is the one commit point: a reader that follows the
//! manifest sees the previous run's files until it lands, and only this run's files after.
//!
//! The manifest write is fenced: it succeeds only if the manifest is still the version the
//! run saw when it began (create-only when there was none). A run overtaken by another, say
//! one that stalled past its lease while a successor published, fails its commit instead of
//! overwriting, and withdraws the files it moved. After a commit, the files that the replaced
//! manifest listed are deleted, and those that ended runs moved but never listed; never a
//! file that a manifest this commit did not replace may list.
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

use object_store::UpdateVersion;

use crate::storage::{Location, Storage, StorageError, SwapError, read_versioned};

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
    #[error("output '{table}': a source file could not be read: {message}")]
    UnreadableData { table: String, message: String },
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
    #[error(
        "output '{table}': another run{by} published {as_of} while this one was running, so \
         this run withdrew its files and left that publication in place"
    )]
    Overtaken {
        table: String,
        as_of: NaiveDate,
        /// ` (run <id>)` when the other run is known.
        by: String,
    },
    #[error(
        "output '{table}': this run's staged files were removed by a run that took over from \
         it after its lease expired, so it published nothing of this output"
    )]
    TakenOver { table: String },
    #[error("output '{table}': {source}")]
    Commit {
        table: String,
        #[source]
        source: SwapError,
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
    /// user's to fix, as is a wrong output URL; the rest is the environment's.
    pub fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            PublishError::Query { .. } | PublishError::UnreadableData { .. } => Fault::User,
            PublishError::Storage(e) => e.fault(),
            _ => Fault::Environment,
        }
    }

    /// Another run published the same date first: not a failure of this run's work.
    pub fn is_overtaken(&self) -> bool {
        matches!(
            self,
            PublishError::Overtaken { .. } | PublishError::TakenOver { .. }
        )
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

/// An output's manifest for the run's date as it was when the run began: the version its
/// commit expects to replace, and the files that commit supersedes.
#[derive(Debug, Default)]
pub struct Current {
    version: Option<UpdateVersion>,
    manifest: Option<Manifest>,
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
    single_writer: bool,
    /// Runs of the pipeline that had ended when this run began: their leftovers may go.
    ended_runs: BTreeSet<String>,
}

impl Publisher {
    pub fn new(storage: Storage, run: RunIdentity) -> Publisher {
        Publisher {
            storage,
            run,
            file_rows: FILE_ROWS,
            single_writer: false,
            ended_runs: BTreeSet::new(),
        }
    }

    /// Runs that had ended when this run began (recorded so, or settled as abandoned under
    /// the lease), whose leftovers this run removes.
    pub fn with_ended_runs(self, ended_runs: BTreeSet<String>) -> Publisher {
        Publisher { ended_runs, ..self }
    }

    /// Writes manifests with plain puts, for stores that cannot write conditionally, on the
    /// user's promise that nothing else publishes there at the same time.
    pub fn with_single_writer(self, single_writer: bool) -> Publisher {
        Publisher {
            single_writer,
            ..self
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
    /// manifest if it is still `current` (the commit point), then delete the files of the
    /// manifest it replaced.
    pub async fn commit(
        &self,
        staged: Staged,
        current: &Current,
    ) -> Result<Manifest, PublishError> {
        let table = staged.table.as_str();
        let store = staged.store.as_ref();
        let partition = partition_dir(self.run.as_of);
        let mut files = Vec::new();
        for (staged_path, file) in &staged.files {
            let relative = format!("{partition}/{}", file.path);
            let target = staged.location.join(&relative).path();
            if let Err(source) = store.rename(staged_path, &target).await {
                self.withdraw(&staged, &files).await;
                return Err(match source {
                    // Only a run that took over from this one removes its staged files.
                    object_store::Error::NotFound { .. } => PublishError::TakenOver {
                        table: table.to_string(),
                    },
                    source => store_error(table, "move a staged file to", &target, source),
                });
            }
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
        let location = manifest_location(&staged.location, self.run.as_of);
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let written = if self.single_writer {
            store
                .put(&location.path(), PutPayload::from(body))
                .await
                .map(|_| ())
                .map_err(|source| SwapError::Store {
                    url: location.to_string(),
                    source: Box::new(source),
                })
        } else {
            self.storage
                .swap(&location, store, body, current.version.as_ref())
                .await
        };
        match written {
            Ok(()) => {}
            Err(SwapError::Changed { .. }) => {
                let now = read_current(table, &staged.location, store, self.run.as_of).await;
                let winner = now.ok().and_then(|(current, _)| current.manifest);
                // A retried write whose first attempt landed finds its own manifest.
                let ours = winner
                    .as_ref()
                    .is_some_and(|m| m.run_id == self.run.run_id && m.files == manifest.files);
                if !ours {
                    self.withdraw(&staged, &manifest.files).await;
                    return Err(PublishError::Overtaken {
                        table: table.to_string(),
                        as_of: self.run.as_of,
                        by: winner.map_or_else(String::new, |m| format!(" (run {})", m.run_id)),
                    });
                }
            }
            Err(refused @ (SwapError::Unsupported { .. } | SwapError::Locked { .. })) => {
                self.withdraw(&staged, &manifest.files).await;
                return Err(PublishError::Commit {
                    table: table.to_string(),
                    source: refused,
                });
            }
            // The write may have landed or not: the moved files stay, since a manifest may
            // list them; if it does not, the next run sweeps them.
            Err(SwapError::Store { url, source }) => {
                return Err(PublishError::Store {
                    table: table.to_string(),
                    action: "write the manifest",
                    file: url,
                    source,
                });
            }
        }
        self.tidy(&staged, current, &manifest).await;
        Ok(manifest)
    }

    /// After a commit: deletes the files of the manifest it replaced, the files of ended runs
    /// in the partition that no manifest lists (a run killed between moving and committing),
    /// and this run's staging folder. Safe only now: every run that began before this
    /// commit fenced on an older version, so none of them can come to list these files. The
    /// publication is live whatever happens here, so failures are only logged.
    async fn tidy(&self, staged: &Staged, current: &Current, manifest: &Manifest) {
        let store = staged.store.as_ref();
        let live: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let replaced = current.manifest.iter().flat_map(|m| m.files.iter());
        let mut doomed: Vec<Path> = replaced
            .filter(|f| !live.contains(f.path.as_str()))
            .map(|f| staged.location.join(&f.path).path())
            .collect();
        let partition = staged
            .location
            .join(&format!("{}/", partition_dir(self.run.as_of)));
        match self.storage.list(&partition, store).await {
            Ok(objects) => doomed.extend(
                objects
                    .into_iter()
                    .filter(|object| {
                        let relative = staged.location.relative(&object.location);
                        let run = run_of_file(object.location.filename().unwrap_or_default());
                        self.ended_runs.contains(run) && !live.contains(relative.as_str())
                    })
                    .map(|object| object.location),
            ),
            Err(error) => {
                tracing::warn!(table = %staged.table, %error, "Could not list the partition to tidy it.")
            }
        }
        for path in doomed {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(file = %path, %error, "Could not delete a superseded file; readers that follow the manifest do not see it.");
                }
            }
        }
        if let Err(error) = self
            .storage
            .remove_folder(&self.staging(&staged.location), store)
            .await
        {
            tracing::warn!(table = %staged.table, %error, "Could not remove the run's staging folder.");
        }
    }

    /// Deletes the files this run moved into a partition but could not list in a manifest.
    async fn withdraw(&self, staged: &Staged, moved: &[ManifestFile]) {
        for file in moved {
            let path = staged.location.join(&file.path).path();
            if let Err(error) = staged.store.delete(&path).await {
                tracing::warn!(file = %path, %error, "Could not withdraw a file of an overtaken run.");
            }
        }
    }

    /// Best-effort removal of the staging folders that ended runs left under `output` (runs
    /// killed while staging). Safe at any time: a run whose staged files are gone fails to
    /// move them and withdraws. Invisible to readers either way, so failures are only logged.
    pub async fn sweep_staging(&self, output: &crate::pipeline::Output) {
        let swept = async {
            let store = self.storage.store(&output.location, &output.options)?;
            let staging = output.location.join(&format!("{META_DIR}/staging/"));
            let mut removed = 0;
            for object in self.storage.list(&staging, store.as_ref()).await? {
                let relative = staging.relative(&object.location);
                let run = relative.split('/').next().unwrap_or_default();
                if !self.ended_runs.contains(run) {
                    continue;
                }
                match store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(source) => {
                        return Err(StorageError::Delete {
                            url: object.location.to_string(),
                            source,
                        });
                    }
                }
            }
            if let Some(dir) = staging.local_path() {
                crate::storage::remove_empty_dirs(&dir);
            }
            Ok::<usize, StorageError>(removed)
        };
        match swept.await {
            Ok(0) => {}
            Ok(files) => {
                tracing::info!(table = %output.table, files, "Removed what ended runs left in staging.")
            }
            Err(error) => {
                tracing::warn!(table = %output.table, %error, "Could not remove what ended runs left in staging.")
            }
        }
    }

    /// Best-effort removal of a failed run's staging files; they are invisible to readers
    /// either way, so a failure here is only logged.
    pub async fn discard_run(&self, outputs: &[crate::pipeline::Output]) {
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

/// The run id in the name of a published file (`part-<run id>-00000.zstd.parquet`).
fn run_of_file(name: &str) -> &str {
    name.strip_prefix("part-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_default()
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
    match read_current(table, output, store.as_ref(), as_of).await? {
        (_, Some(problem)) => Err(problem),
        (current, None) => Ok(current.manifest),
    }
}

/// The manifest of `output` for `as_of` now, with its version, for a later commit to fence on.
/// A manifest that does not parse (a hand edit, a store that lost half a write) is replaced
/// all the same (its files go if their runs had ended): a re-run is how it gets repaired.
pub async fn observe(
    storage: &Storage,
    table: &str,
    output: &Location,
    options: &std::collections::BTreeMap<String, String>,
    as_of: NaiveDate,
) -> Result<Current, PublishError> {
    let store = storage.store(output, options)?;
    let (current, problem) = read_current(table, output, store.as_ref(), as_of).await?;
    if let Some(error) = problem {
        tracing::warn!(%error, "The run replaces a manifest that is not valid.");
    }
    Ok(current)
}

async fn read_current(
    table: &str,
    output: &Location,
    store: &dyn ObjectStore,
    as_of: NaiveDate,
) -> Result<(Current, Option<PublishError>), PublishError> {
    let location = manifest_location(output, as_of);
    let found = read_versioned(store, &location.path())
        .await
        .map_err(|source| store_error(table, "read the manifest", &location.path(), source))?;
    let Some(found) = found else {
        return Ok((Current::default(), None));
    };
    let (manifest, problem) = match serde_json::from_slice(&found.bytes) {
        Ok(manifest) => (Some(manifest), None),
        Err(e) => (
            None,
            Some(PublishError::BadManifest {
                table: table.to_string(),
                file: location.to_string(),
                reason: e.to_string(),
            }),
        ),
    };
    let current = Current {
        version: Some(found.version),
        manifest,
    };
    Ok((current, problem))
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
            crate::pipeline::parse_date(date)
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
    if crate::engine::is_unreadable_data(&error) {
        PublishError::UnreadableData {
            table: table.to_string(),
            message: crate::engine::describe(&error),
        }
    } else if crate::engine::is_environment_failure(&error) {
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
        let manifest = publisher.commit(staged, &Current::default()).await.unwrap();
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
