//! The pipelines folder as the daemon sees it: re-read every tick, each file kept at its
//! last version that loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::pipeline::{LoadOptions, Pipeline};
use crate::storage::Location;

pub(super) struct Loaded {
    pub(super) pipeline: Arc<Pipeline>,
    fingerprint: Fingerprint,
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>)>;

/// Loads every `*.yaml` in the folder that changed since the last look; a file that no longer
/// loads keeps its last good version. `unloadable` holds the files whose last edit is broken,
/// with the error: they are tried again every tick (the fix may be in a file they name, such
/// as a missing SQL file), and reported again only when the error changes. A pipeline whose
/// sources the state store `state` lies in does not load, nor one with a location outside
/// `roots` (when there are roots).
pub(super) fn reload(
    (folder, state, roots): (&Path, &Location, &[Location]),
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
        let load = Pipeline::load(&file, &LoadOptions::default())
            .map_err(|error| error.to_string())
            .and_then(|pipeline| match clash(&pipeline, &file, loaded) {
                Some(clash) => Err(clash),
                None => Ok(pipeline),
            })
            .and_then(|pipeline| confined(pipeline, state, roots));
        match load {
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
                if unloadable.get(&file) != Some(&error) {
                    let keeps = last_good.is_some();
                    tracing::error!(file = %file.display(), error = %error, keeps_last_good = keeps, "Pipeline does not load.");
                }
                unloadable.insert(file, error);
            }
        }
    }
}

/// Why `pipeline` (from `file`) cannot run beside the pipelines already loaded from other
/// files: the same name (they would share one lease, run history and set of slots), or the
/// same report URL (each run would overwrite the other's page). The file loaded first keeps
/// running; this one is reported until the clash is gone.
/// `pipeline`, unless it would write into what it reads through the state store `state`, or
/// reads or writes outside `roots`.
fn confined(pipeline: Pipeline, state: &Location, roots: &[Location]) -> Result<Pipeline, String> {
    let collisions = pipeline.collisions(Some(state));
    if !collisions.is_empty() {
        return Err(crate::run::RunError::Collisions(collisions).to_string());
    }
    let outside = pipeline.outside(roots);
    if !outside.is_empty() {
        let roots: Vec<&str> = roots.iter().map(Location::as_str).collect();
        return Err(format!(
            "it reads or writes outside the roots this daemon confines its pipelines to \
             (--root {}):{}",
            roots.join(", "),
            outside
                .iter()
                .map(|o| format!("\n  {o}"))
                .collect::<String>()
        ));
    }
    Ok(pipeline)
}

fn clash(pipeline: &Pipeline, file: &Path, loaded: &BTreeMap<PathBuf, Loaded>) -> Option<String> {
    let others = loaded
        .iter()
        .filter(|(path, _)| path.as_path() != file)
        .map(|(path, entry)| (path, &entry.pipeline));
    for (path, other) in others {
        if other.name == pipeline.name {
            return Some(format!(
                "{}: the pipeline name '{}' is taken by {}; two pipelines in one folder would                  share a lease, a run history and their slots: give this one another name",
                file.display(),
                pipeline.name,
                path.display()
            ));
        }
        let same_report = match (&pipeline.report, &other.report) {
            (Some(mine), Some(theirs)) => mine.location == theirs.location,
            _ => false,
        };
        if same_report {
            return Some(format!(
                "{}: report.url {} is where pipeline '{}' ({}) writes its report too; each                  run would overwrite the other's page: give this one its own report.url",
                file.display(),
                pipeline
                    .report
                    .as_ref()
                    .map_or(String::new(), |r| r.location.to_string()),
                other.name,
                path.display()
            ));
        }
    }
    None
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
