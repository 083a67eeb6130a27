//! The pipelines folder as the daemon sees it: re-read every tick, each file kept at its
//! last version that loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::pipeline::{LoadOptions, Pipeline};

pub(super) struct Loaded {
    pub(super) pipeline: Arc<Pipeline>,
    fingerprint: Fingerprint,
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>)>;

/// Loads every `*.yaml` in the folder that changed since the last look; a file that no longer
/// loads keeps its last good version. `unloadable` holds the files whose last edit is broken,
/// with the error: they are tried again every tick (the fix may be in a file they name, such
/// as a missing SQL file), and reported again only when the error changes.
pub(super) fn reload(
    folder: &Path,
    loaded: &mut BTreeMap<PathBuf, Loaded>,
    unloadable: &mut BTreeMap<PathBuf, String>,
) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        tracing::error!(folder = %folder.display(), "Cannot read the pipelines folder.");
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    loaded.retain(|path, _| files.contains(path));
    unloadable.retain(|path, _| files.contains(path));
    for file in files {
        let last_good = loaded.get(&file);
        let unchanged = !unloadable.contains_key(&file)
            && last_good.is_some_and(|l| l.fingerprint == fingerprint(&file, Some(&l.pipeline)));
        if unchanged {
            continue;
        }
        match Pipeline::load(&file, &LoadOptions::default()) {
            Ok(pipeline) => {
                tracing::info!(file = %file.display(), pipeline = %pipeline.name, scheduled = pipeline.schedule.is_some(), "Pipeline loaded.");
                unloadable.remove(&file);
                let fingerprint = fingerprint(&file, Some(&pipeline));
                loaded.insert(
                    file,
                    Loaded {
                        pipeline: Arc::new(pipeline),
                        fingerprint,
                    },
                );
            }
            Err(error) => {
                let error = error.to_string();
                if unloadable.get(&file) != Some(&error) {
                    let keeps = last_good.is_some();
                    tracing::error!(file = %file.display(), error = %error, keeps_last_good = keeps, "Pipeline does not load.");
                }
                unloadable.insert(file, error);
            }
        }
    }
}

/// The modification times of a pipeline file and of the SQL files it uses.
fn fingerprint(file: &Path, pipeline: Option<&Pipeline>) -> Fingerprint {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut parts = vec![(file.to_path_buf(), mtime(file))];
    for step in pipeline.map(|p| p.steps.as_slice()).unwrap_or_default() {
        if step.sql_file != file {
            parts.push((step.sql_file.clone(), mtime(&step.sql_file)));
        }
    }
    parts
}
