//! The kept results of incremental steps, in the state store: each named after what made
//! it (the version of the SQL, the file, the latest time among its rows), each version's
//! folder marked when a run last used it, and what no run has used for a while removed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use object_store::{ObjectMeta, ObjectStoreExt};

use super::super::sources::SourceParts;
use super::super::{Engine, EngineError, Params};
use crate::pipeline::Step;
use crate::storage::Location;

/// Where a run keeps the results of its incremental steps, and whether it may reuse them.
#[derive(Debug, Clone)]
pub struct CacheSpec {
    /// The pipeline's folder in the state store: `<state>/cache/<pipeline>/`.
    pub root: Location,
    /// Compute every file again (`--full`), replacing what is kept.
    pub full: bool,
}

impl CacheSpec {
    /// The pipeline's folder under `cache/` in the state store `state`.
    pub fn in_state(state: &Location, pipeline: &str, full: bool) -> CacheSpec {
        CacheSpec {
            root: state.as_folder().join(&format!("cache/{pipeline}/")),
            full,
        }
    }
}

/// Results made by other versions of a step's SQL (or its vars) are kept this long after a
/// run last used that version, so that a run with a var changed for once does not throw away
/// what the nightly runs reuse.
const KEEP_OTHER_VERSIONS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A settled fold replaced by a newer one is kept this long, for a run of another date that
/// may still be reading it.
const KEEP_REPLACED_FOLDS: Duration = Duration::from_secs(3600);

/// The object in a version's folder whose time says when a run last used that version.
const USED: &str = "_used";

/// One kept result: the version of the SQL and the file it was made from, and the latest
/// time among the file's rows (None when it has no rows with a time).
pub(super) struct Kept {
    pub(super) version: String,
    pub(super) file: String,
    pub(super) latest: Option<i64>,
    pub(super) location: Location,
}

/// The folder of a version's settled folds, in the step's folder of the cache.
pub(super) const FOLDS: &str = "fold";

/// A kept fold of one version of the step: its data, and the list of the files it covers.
pub(super) struct KeptFold {
    pub(super) version: String,
    pub(super) digest: String,
    pub(super) data: Location,
    pub(super) list: Location,
    /// When its list was written.
    pub(super) written: chrono::DateTime<chrono::Utc>,
}

impl KeptFold {
    /// A fold's object, from its path relative to the step's folder:
    /// `<version>/fold/<digest>.parquet` (its data) or `<version>/fold/<digest>.files` (its
    /// list, written after the data).
    pub(super) fn parse(root: &Location, relative: &str, meta: &ObjectMeta) -> Option<KeptFold> {
        let (version, rest) = relative.split_once('/')?;
        let name = rest.strip_prefix(FOLDS)?.strip_prefix('/')?;
        let digest = name
            .strip_suffix(".files")
            .or_else(|| name.strip_suffix(".parquet"))?;
        Some(KeptFold {
            version: version.to_string(),
            digest: digest.to_string(),
            data: root.join(&format!("{version}/{FOLDS}/{digest}.parquet")),
            list: root.join(&format!("{version}/{FOLDS}/{digest}.files")),
            written: meta.last_modified,
        })
    }

    /// Adds a fold's object to those listed: the data and the list of one fold are one
    /// entry, as new as the newer of them.
    pub(super) fn add_to(self, folds: &mut Vec<KeptFold>) {
        match folds
            .iter_mut()
            .find(|f| f.version == self.version && f.digest == self.digest)
        {
            Some(listed) => listed.written = listed.written.max(self.written),
            None => folds.push(self),
        }
    }
}

/// What a step's folder in the cache holds: its results, and when each version was last used
/// (the time of its `_used` object).
#[derive(Default)]
pub(super) struct StepFolder {
    pub(super) kept: Vec<Kept>,
    /// The settled folds of a folded step (see [`super::fold`]).
    pub(super) folds: Vec<KeptFold>,
    pub(super) used: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

impl Engine {
    /// Lists what a step's folder in the cache holds (its results, named by version, file and
    /// latest time, and each version's `_used` mark), and marks `version` as used now.
    pub(super) async fn step_folder(
        &self,
        root: &Location,
        version: &str,
    ) -> Result<StepFolder, EngineError> {
        let store = self.storage.store(root, &Default::default())?;
        let mut folder = StepFolder::default();
        for meta in self.storage.list(root, store.as_ref()).await? {
            let relative = root.relative(&meta.location);
            let Some((version, name)) = relative.split_once('/') else {
                continue;
            };
            if name == USED {
                folder.used.insert(version.to_string(), meta.last_modified);
                continue;
            }
            if name.starts_with(FOLDS) {
                if let Some(fold) = KeptFold::parse(root, &relative, &meta) {
                    fold.add_to(&mut folder.folds);
                }
                continue;
            }
            let Some((file, latest)) = name
                .strip_suffix(".parquet")
                .and_then(|n| n.split_once('.'))
            else {
                continue;
            };
            let latest = match latest {
                "none" => None,
                micros => match micros.parse() {
                    Ok(micros) => Some(micros),
                    Err(_) => continue,
                },
            };
            folder.kept.push(Kept {
                version: version.to_string(),
                file: file.to_string(),
                latest,
                location: root.join(&relative),
            });
        }
        let mark = root.join(&format!("{version}/{USED}"));
        store
            .put(&mark.path(), object_store::PutPayload::new())
            .await
            .map_err(|source| crate::storage::StorageError::Write {
                url: mark.to_string(),
                source,
            })?;
        Ok(folder)
    }

    /// Deletes kept results that no run will use again: those of files no longer listed
    /// (or changed), and those of other versions of the SQL that no run used for a week.
    /// Best effort: what stays behind costs space, not correctness.
    pub(super) async fn forget_stale(
        &self,
        root: &Location,
        folder: &StepFolder,
        version: &str,
        current: &HashSet<&str>,
    ) {
        let old = chrono::Duration::from_std(KEEP_OTHER_VERSIONS).expect("a week fits");
        let unused = |other: &str| {
            folder
                .used
                .get(other)
                .is_none_or(|used| chrono::Utc::now() - *used > old)
        };
        let stale_results = folder.kept.iter().filter(|kept| {
            if kept.version == version {
                !current.contains(kept.file.as_str())
            } else {
                unused(&kept.version)
            }
        });
        let stale_marks = folder
            .used
            .keys()
            .filter(|other| *other != version && unused(other))
            .map(|other| root.join(&format!("{other}/{USED}")));
        let stale: Vec<Location> = stale_results
            .map(|kept| kept.location.clone())
            .chain(stale_marks)
            .collect();
        self.delete_stale(root, stale).await;
    }

    /// Deletes the settled folds that no run will use again: in `version`, all but
    /// `current` (the one this run used or made) once they are an hour old, since a run of
    /// another date may be reading one; in other versions, those no run used for a week.
    /// Best effort, as [`Self::forget_stale`].
    pub(super) async fn forget_stale_folds(
        &self,
        root: &Location,
        folder: &StepFolder,
        version: &str,
        current: Option<&str>,
    ) {
        let old = chrono::Duration::from_std(KEEP_OTHER_VERSIONS).expect("a week fits");
        let replaced = chrono::Duration::from_std(KEEP_REPLACED_FOLDS).expect("an hour fits");
        let stale: Vec<Location> = folder
            .folds
            .iter()
            .filter(|fold| {
                if fold.version == version {
                    current != Some(fold.digest.as_str())
                        && chrono::Utc::now() - fold.written > replaced
                } else {
                    folder
                        .used
                        .get(&fold.version)
                        .is_none_or(|used| chrono::Utc::now() - *used > old)
                }
            })
            // The list first: a fold whose list is gone is not used, whatever of it is left.
            .flat_map(|fold| [fold.list.clone(), fold.data.clone()])
            .collect();
        self.delete_stale(root, stale).await;
    }

    async fn delete_stale(&self, root: &Location, stale: Vec<Location>) {
        for location in stale {
            let deleted = match self.storage.store(&location, &Default::default()) {
                // Gone already: a fold whose run died before its list was written.
                Ok(store) => store
                    .delete(&location.path())
                    .await
                    .err()
                    .filter(|e| !matches!(e, object_store::Error::NotFound { .. }))
                    .map(|e| e.to_string()),
                Err(error) => Some(error.to_string()),
            };
            if let Some(error) = deleted {
                tracing::warn!(url = %location, %error, "Could not delete a stale kept result.");
            }
        }
        // A local disk keeps the folders that object stores do not have.
        if let Some(dir) = root.local_path() {
            crate::storage::remove_empty_dirs(&dir);
        }
    }
}

/// What the results of a chain depend on besides the file: segflow's version, the zones,
/// how the source's files are read and its columns as reconciled, and each step's SQL with
/// its vars' values.
pub(super) fn version_of(
    source: &SourceParts,
    chain: &[&Step],
    params: &Params,
    zone: chrono_tz::Tz,
) -> Result<String, EngineError> {
    let mut hasher = blake3::Hasher::new();
    let mut add = |part: &str| {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    };
    add(env!("CARGO_PKG_VERSION"));
    add(zone.name());
    add(source.zone.name());
    add(&source.format);
    add(&format!("{:?}", source.schema.fields()));
    for step in chain {
        let incremental = step.incremental.as_ref().expect("an incremental step");
        add(&step.name);
        add(&incremental.source);
        add(&incremental.time);
        add(&params.render(step)?);
        if let Some(fold) = step.fold_step() {
            add(&params.render(&fold)?);
        }
    }
    Ok(short_hex(hasher.finalize()))
}

impl Engine {
    /// What names a file's results: the file as listed (its URL, size, ETag and modification
    /// time; a file rewritten in place, a refund changing its month, gets another key) and,
    /// for a versioned source, its versions that this run set aside.
    pub(super) fn file_key(&self, source: &SourceParts, file: &ObjectMeta) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(super::super::text::file_url(&source.location, file).as_bytes());
        hasher.update(&file.size.to_le_bytes());
        hasher.update(file.e_tag.as_deref().unwrap_or_default().as_bytes());
        hasher.update(&file.last_modified.timestamp_micros().to_le_bytes());
        hasher.update(self.set_aside_digest(source, file).as_bytes());
        short_hex(hasher.finalize())
    }
}

/// 128 bits of a hash, as 32 hex digits: names that do not collide by chance.
pub(super) fn short_hex(hash: blake3::Hash) -> String {
    hash.to_hex()[..32].to_string()
}
