//! A run's files of one output before its commit, in either format: the engine writes them
//! into `_segflow/staging/<run id>/` under the output's URL, the publication takes stock of
//! them, and the commit moves them into the date's partition as
//! `part-<run id>-<index>.zstd.parquet` before it makes them live. Readers do not see
//! staged files, nor moved ones until a commit lists them.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::files::{self, WrittenFile};
use super::{PublishError, PublishingRun, store_error};
use crate::engine::ParquetTarget;
use crate::storage::{Location, Storage, StorageError};

/// Where segflow keeps its own files under an output URL; the leading `_` makes Hive-style
/// readers (Spark, Trino, DataFusion, pyarrow's dataset) and Delta's vacuum skip it.
pub(super) const META_DIR: &str = "_segflow";

pub(super) fn partition_dir(as_of: NaiveDate) -> String {
    format!("as_of={as_of}")
}

/// The run id in the name of a published file (`part-<run id>-00000.zstd.parquet`).
pub(super) fn run_of_file(name: &str) -> &str {
    name.strip_prefix("part-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_default()
}

/// Whether `name` is one a run publishes a file under: `part-<run id>-<n>.zstd.parquet`.
pub(super) fn is_published_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|rest| rest.strip_suffix(".zstd.parquet"))
        .and_then(|rest| rest.rsplit_once('-'))
        .is_some_and(|(run, index)| {
            !run.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())
        })
}

/// A file in its partition, by its path relative to the output URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct PublishedFile {
    pub(super) path: String,
    pub(super) rows: u64,
    pub(super) bytes: u64,
}

/// An output whose files are written to staging but not yet live.
pub(super) struct Staged {
    pub(super) schema: SchemaRef,
    pub(super) files: Vec<WrittenFile>,
}

impl Staged {
    pub(super) fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// One run's staging folder of one output.
pub(super) struct Staging {
    storage: Storage,
    pub(super) store: Arc<dyn ObjectStore>,
    table: String,
    /// The output's URL.
    location: Location,
    run: PublishingRun,
    target: ParquetTarget,
}

impl Staging {
    /// `run`'s staging of the output `table` at `location`, once what ended runs left in
    /// staging there is swept.
    pub(super) async fn begin(
        storage: &Storage,
        store: Arc<dyn ObjectStore>,
        (table, location): (&str, &Location),
        run: &PublishingRun,
    ) -> Staging {
        sweep(storage, store.as_ref(), (table, location), &run.ended_runs).await;
        Staging::new(storage.clone(), store, table, location, run)
    }

    fn new(
        storage: Storage,
        store: Arc<dyn ObjectStore>,
        table: &str,
        location: &Location,
        run: &PublishingRun,
    ) -> Staging {
        let folder = location.join(&format!("{META_DIR}/staging/{}/", run.run_id));
        Staging {
            storage,
            store,
            table: table.to_string(),
            location: location.clone(),
            run: run.clone(),
            target: files::target(folder),
        }
    }

    /// Where, and how, the engine writes the output's files.
    pub(super) fn target(&self) -> &ParquetTarget {
        &self.target
    }

    pub(super) fn table(&self) -> &str {
        &self.table
    }

    /// The output's URL.
    pub(super) fn location(&self) -> &Location {
        &self.location
    }

    /// Lists the staging folder: the engine's files, in the order it wrote them, each to be
    /// published as `part-<run id>-<index>.zstd.parquet`. An output without rows gets one
    /// empty file, so that readers still find its columns.
    pub(super) async fn take_stock(&self, schema: SchemaRef) -> Result<Staged, PublishError> {
        let mut written = self
            .storage
            .list(&self.target.folder, self.store.as_ref())
            .await?;
        written.sort_by_key(|object| {
            files::write_index(object.location.filename().unwrap_or_default())
        });
        let mut staged = Staged {
            schema: Arc::clone(&schema),
            files: Vec::new(),
        };
        for object in written {
            staged.files.push(WrittenFile {
                name: self.file_name(staged.files.len()),
                rows: files::rows_of(&self.table, &self.store, &object).await?,
                bytes: object.size,
                path: object.location,
            });
        }
        if staged.files.is_empty() {
            let name = self.file_name(0);
            let path = self.target.folder.join(&name).path();
            let bytes =
                files::write_empty(&self.table, &self.store, &path, &schema, &self.target).await?;
            staged.files.push(WrittenFile {
                path,
                name,
                rows: 0,
                bytes,
            });
        }
        Ok(staged)
    }

    /// The name the `index`th file is published under.
    fn file_name(&self, index: usize) -> String {
        format!("part-{}-{index:05}.zstd.parquet", self.run.run_id)
    }

    /// Moves the staged files into the run's partition. A file that is gone means that a run
    /// which took over from this one removed it: then nothing stays moved.
    pub(super) async fn move_into_partition(
        &self,
        staged: &Staged,
    ) -> Result<Vec<PublishedFile>, PublishError> {
        let partition = partition_dir(self.run.as_of);
        let mut moved = Vec::new();
        for file in &staged.files {
            let relative = format!("{partition}/{}", file.name);
            let target = self.location.join(&relative).path();
            if let Err(source) = self.store.rename(&file.path, &target).await {
                self.withdraw(&moved).await;
                return Err(match source {
                    object_store::Error::NotFound { .. } => PublishError::TakenOver {
                        table: self.table.clone(),
                    },
                    source => store_error(&self.table, "move a staged file to", &target, source),
                });
            }
            moved.push(PublishedFile {
                path: relative,
                rows: file.rows,
                bytes: file.bytes,
            });
        }
        Ok(moved)
    }

    /// Deletes files this run moved into a partition but could not make live.
    pub(super) async fn withdraw(&self, moved: &[PublishedFile]) {
        for file in moved {
            let path = self.location.join(&file.path).path();
            if let Err(error) = self.store.delete(&path).await {
                tracing::warn!(file = %path, %error, "Could not withdraw a file of an overtaken run.");
            }
        }
    }

    /// Best-effort removal of this run's staging folder; it is invisible to readers either
    /// way, so a failure here is only logged.
    pub(super) async fn remove(&self) {
        let staging = &self.target.folder;
        if let Err(error) = self
            .storage
            .remove_folder(staging, self.store.as_ref())
            .await
        {
            tracing::warn!(%staging, %error, "Could not remove the run's staging files.");
        }
    }
}

/// Best-effort removal of the staging folders that ended runs left (runs killed while
/// staging) under the output at `location`. Safe at any time: a run whose staged files are
/// gone fails to move them and withdraws. Invisible to readers either way, so failures are
/// only logged.
async fn sweep(
    storage: &Storage,
    store: &dyn ObjectStore,
    (table, location): (&str, &Location),
    ended_runs: &BTreeSet<String>,
) {
    let swept = async {
        let staging = location.join(&format!("{META_DIR}/staging/"));
        let mut removed = 0;
        for object in storage.list(&staging, store).await? {
            let relative = staging.relative(&object.location);
            let run = relative.split('/').next().unwrap_or_default();
            if !ended_runs.contains(run) {
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
            tracing::info!(%table, files, "Removed what ended runs left in staging.")
        }
        Err(error) => {
            tracing::warn!(%table, %error, "Could not remove what ended runs left in staging.")
        }
    }
}

/// The files in `as_of`'s partition that ended runs moved there but no commit made live
/// (a run killed between moving and committing): safe to delete after a commit.
pub(super) async fn stranded_in_partition(
    storage: &Storage,
    store: &dyn ObjectStore,
    (location, run): (&Location, &PublishingRun),
    live: &BTreeSet<&str>,
) -> Result<Vec<object_store::path::Path>, StorageError> {
    let partition = location.join(&format!("{}/", partition_dir(run.as_of)));
    Ok(storage
        .list(&partition, store)
        .await?
        .into_iter()
        .filter(|object| {
            let relative = location.relative(&object.location);
            let ended = run
                .ended_runs
                .contains(run_of_file(object.location.filename().unwrap_or_default()));
            ended && !live.contains(relative.as_str())
        })
        .map(|object| object.location)
        .collect())
}

/// What killed runs left under the output's `_segflow/` (staged files, conditional-write
/// probes), last written before `cutoff`: no run still going wrote them, if `cutoff` is
/// older than the longest run.
pub(super) async fn leftovers(
    storage: &Storage,
    store: &dyn ObjectStore,
    location: &Location,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
    let mut found = Vec::new();
    for folder in ["staging/", "swap-check/"] {
        let folder = location.join(&format!("{META_DIR}/{folder}"));
        found.extend(
            storage
                .list(&folder, store)
                .await?
                .into_iter()
                .filter(|object| object.last_modified < cutoff),
        );
    }
    Ok(found)
}

/// Deletes `doomed` (unless `dry_run`); their URLs under the output at `location`. On a
/// local disk the staging folders left empty go too.
pub(super) async fn delete_all(
    store: &dyn ObjectStore,
    (table, location): (&str, &Location),
    doomed: Vec<object_store::path::Path>,
    dry_run: bool,
) -> Result<Vec<Location>, PublishError> {
    let deleted = delete_each(store, (table, location), doomed, dry_run).await?;
    if !dry_run && let Some(staging) = location.join(&format!("{META_DIR}/staging/")).local_path() {
        crate::storage::remove_empty_dirs(&staging);
    }
    Ok(deleted)
}

async fn delete_each(
    store: &dyn ObjectStore,
    (table, location): (&str, &Location),
    doomed: Vec<object_store::path::Path>,
    dry_run: bool,
) -> Result<Vec<Location>, PublishError> {
    let mut deleted = Vec::with_capacity(doomed.len());
    for path in doomed {
        if !dry_run {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(store_error(table, "delete", &path, source)),
            }
        }
        deleted.push(location.join(&location.relative(&path)));
    }
    Ok(deleted)
}
