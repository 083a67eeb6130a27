//! Where a run keeps the results of steps that several later steps read: a folder per run,
//! under `engine.scratch` when the pipeline sets it (a URL, so that executors on other
//! machines can read it), else in a local temporary folder.

use datafusion::common::config::TableParquetOptions;

use super::ParquetTarget;
use crate::storage::{Location, Storage, StorageError};

pub struct Scratch {
    folder: Location,
    /// The local temporary folder, removed when the run's scratch is dropped.
    temporary: Option<tempfile::TempDir>,
}

impl Scratch {
    /// The run's scratch folder: `<base>/<run id>/`, or a new temporary folder.
    pub fn create(base: Option<&Location>, run_id: &str) -> std::io::Result<Scratch> {
        if let Some(base) = base {
            return Ok(Scratch {
                folder: base.as_folder().join(&format!("{run_id}/")),
                temporary: None,
            });
        }
        let temporary = tempfile::Builder::new()
            .prefix(&local_prefix(run_id))
            .tempdir()?;
        let folder = Location::parse(&format!("{}/", temporary.path().display()))
            .map_err(std::io::Error::other)?;
        Ok(Scratch {
            folder,
            temporary: Some(temporary),
        })
    }

    /// Where a step's materialised result is written: uncompressed, since it is written
    /// once, read back from the page cache a few times and deleted with the run, so that
    /// compressing it costs more time than it saves (zstd took a third of the time of
    /// materialising 10M paid orders); several files at once, in no order.
    pub fn target_of(&self, step: &str) -> ParquetTarget {
        let mut options = TableParquetOptions::default();
        options.global.compression = Some("uncompressed".to_string());
        ParquetTarget {
            folder: self.folder.join(&format!("{step}/")),
            options,
            file_rows: None,
            plain_strings: false,
            dictionary_strings_only: false,
        }
    }

    /// Removes what the run `run_id`, which died, left in its scratch: `<base>/<run id>/`, or
    /// else its local temporary folder where it ran on this machine (a run killed elsewhere
    /// left its own there). A killed run removes nothing itself, and its intermediate results
    /// can be as large as its sources.
    pub async fn remove_left_by(
        base: Option<&Location>,
        run_id: &str,
        storage: &Storage,
    ) -> Result<(), StorageError> {
        if let Some(base) = base {
            let folder = base.as_folder().join(&format!("{run_id}/"));
            let store = storage.store(&folder, &Default::default())?;
            return storage.remove_folder(&folder, store.as_ref()).await;
        }
        let temp = std::env::temp_dir();
        let prefix = local_prefix(run_id);
        let failed = |error: std::io::Error| StorageError::Delete {
            url: format!("{}/{prefix}*", temp.display()),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(error),
            },
        };
        for entry in std::fs::read_dir(&temp).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_dir_all(entry.path()).map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Removes the run's folder; a local temporary one goes when it is dropped as well.
    pub async fn remove(self, storage: &Storage) -> Result<(), StorageError> {
        if self.temporary.is_some() {
            return Ok(());
        }
        let store = storage.store(&self.folder, &Default::default())?;
        storage.remove_folder(&self.folder, store.as_ref()).await
    }
}

/// The start of the name of a run's local temporary folder: its run id, so that the run that
/// settles it after it died finds it.
fn local_prefix(run_id: &str) -> String {
    format!("segflow-run-{run_id}-")
}

impl std::fmt::Display for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.folder.fmt(f)
    }
}
