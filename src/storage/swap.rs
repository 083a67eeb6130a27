//! Conditional writes: an object replaced only if it is still the version its writer read.
//! The commit of every publication and every lease goes through here.

use std::path::Path as FsPath;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{Location, Storage};

/// Why a conditional write ([`Storage::swap`]) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("{url} changed since it was read: another writer replaced it")]
    Changed { url: String },
    #[error(
        "the store of {url} cannot replace an object only if it is unchanged ({reason}); \
         two runs could then overwrite each other's publication. Use a store with \
         conditional writes (S3 and most S3-compatible servers have them: keep \
         `aws_conditional_put` at its default, `etag`), or promise that one writer at a time \
         publishes there with --single-writer"
    )]
    Unsupported { url: String, reason: String },
    #[error(
        "another process has held the commit lock of {folder} for over {seconds}s; a segflow \
         process stopped or frozen in the middle of a commit keeps it until it resumes or exits"
    )]
    Locked { folder: String, seconds: u64 },
    #[error("could not write {url}")]
    Store {
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// A small object with the version a later [`Storage::swap`] can expect.
pub struct Versioned {
    pub bytes: bytes::Bytes,
    pub version: UpdateVersion,
}

/// Reads a small object and its version; `None` when there is none.
pub async fn read_versioned(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<Versioned>, object_store::Error> {
    let found = match store.get(path).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let version = UpdateVersion {
        e_tag: found.meta.e_tag.clone(),
        version: found.meta.version.clone(),
    };
    let bytes = found.bytes().await?;
    Ok(Some(Versioned { bytes, version }))
}

impl Storage {
    /// Writes `body` at `location` only if the object there is still `expected` (`None`:
    /// only if there is none). This is the commit of a publication: a writer that was
    /// overtaken gets [`SwapError::Changed`] instead of overwriting its successor.
    ///
    /// Object stores do it in one request (`If-None-Match: *` / `If-Match` on S3). A local
    /// disk has no such request, so the check and the write happen under an exclusive lock
    /// (`flock`) on the object's folder, which every segflow process on the machine honours.
    pub async fn swap(
        &self,
        location: &Location,
        store: &dyn ObjectStore,
        body: Vec<u8>,
        expected: Option<&UpdateVersion>,
    ) -> Result<(), SwapError> {
        let url = location.to_string();
        let path = location.path();
        let failed = |source: object_store::Error| match source {
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => SwapError::Changed { url: url.clone() },
            object_store::Error::NotImplemented { operation, .. } => SwapError::Unsupported {
                url: url.clone(),
                reason: operation,
            },
            source => SwapError::Store {
                url: url.clone(),
                source: Box::new(source),
            },
        };
        let Some(file) = location.local_path() else {
            let mode = match expected {
                None => PutMode::Create,
                Some(version) => PutMode::Update(version.clone()),
            };
            let options = PutOptions {
                mode,
                ..Default::default()
            };
            return store
                .put_opts(&path, PutPayload::from(body), options)
                .await
                .map(|_| ())
                .map_err(failed);
        };
        swap_local(&file, &path, store, body, expected, &url).await
    }

    /// [`Storage::swap`], or a plain put for a `single_writer` (a store that cannot write
    /// conditionally, on the user's promise that nothing else writes there at once).
    pub async fn write(
        &self,
        location: &Location,
        store: &dyn ObjectStore,
        body: Vec<u8>,
        (expected, single_writer): (Option<&UpdateVersion>, bool),
    ) -> Result<(), SwapError> {
        if !single_writer {
            return self.swap(location, store, body, expected).await;
        }
        store
            .put(&location.path(), PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|source| SwapError::Store {
                url: location.to_string(),
                source: Box::new(source),
            })
    }

    /// Whether the store of `folder` honours conditional writes; some S3-compatible servers
    /// accept `If-Match` and ignore it, which only a write can reveal. Local disks and
    /// memory always do (see [`Storage::swap`]).
    pub async fn check_swap(
        &self,
        folder: &Location,
        store: &dyn ObjectStore,
    ) -> Result<(), SwapError> {
        if matches!(folder.url.scheme(), "file" | "memory") {
            return Ok(());
        }
        let store_url = folder.store_url();
        if self
            .fenced
            .lock()
            .expect("fenced stores lock")
            .contains(&store_url)
        {
            return Ok(());
        }
        let probe = folder.join(&format!(
            "_segflow/swap-check/{}",
            uuid::Uuid::now_v7().simple()
        ));
        self.swap(&probe, store, b"probe".to_vec(), None).await?;
        let stale = UpdateVersion {
            e_tag: Some("\"segflow-stale-version\"".to_string()),
            version: None,
        };
        let outcome = match self
            .swap(&probe, store, b"overwrite".to_vec(), Some(&stale))
            .await
        {
            Err(SwapError::Changed { .. }) => Ok(()),
            Ok(()) => Err(SwapError::Unsupported {
                url: probe.to_string(),
                reason: "it accepted a write that expected a version the object never had"
                    .to_string(),
            }),
            Err(other) => Err(other),
        };
        let _ = store.delete(&probe.path()).await;
        if outcome.is_ok() {
            self.fenced
                .lock()
                .expect("fenced stores lock")
                .insert(store_url);
        }
        outcome
    }
}

/// How long a commit on a local disk waits for another process's commit to the same folder.
/// The lock is held for a stat and a rename, so only a process frozen in between (SIGSTOP, a
/// suspended machine) holds it longer.
const LOCAL_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// [`Storage::swap`] on a local disk: the new content is written beside the target first, so
/// that only a stat (the check) and a rename (the write) happen under the folder's lock.
async fn swap_local(
    file: &FsPath,
    path: &Path,
    store: &dyn ObjectStore,
    body: Vec<u8>,
    expected: Option<&UpdateVersion>,
    url: &str,
) -> Result<(), SwapError> {
    let io_failed = |source: std::io::Error| SwapError::Store {
        url: url.to_string(),
        source: Box::new(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        }),
    };
    let folder = file
        .parent()
        .ok_or_else(|| io_failed(std::io::Error::other("a file at the root has no folder")))?
        .to_path_buf();
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    // A leading dot keeps the half-written file out of every listing segflow reads.
    let temp = folder.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = {
        let (folder, temp) = (folder.clone(), temp.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&folder)?;
            std::fs::write(&temp, body)?;
            std::fs::File::open(&folder)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|opened| opened)
    };
    let outcome = match written {
        Ok(lock) => {
            let target = (file, path);
            swap_under_lock(&lock, &folder, target, &temp, store, expected, url).await
        }
        Err(error) => Err(io_failed(error)),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    outcome
}

async fn swap_under_lock(
    lock: &std::fs::File,
    folder: &FsPath,
    (file, path): (&FsPath, &Path),
    temp: &FsPath,
    store: &dyn ObjectStore,
    expected: Option<&UpdateVersion>,
    url: &str,
) -> Result<(), SwapError> {
    let started = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCAL_LOCK_WAIT => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SwapError::Locked {
                    folder: folder.display().to_string(),
                    seconds: LOCAL_LOCK_WAIT.as_secs(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(SwapError::Store {
                    url: url.to_string(),
                    source: Box::new(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(source),
                    }),
                });
            }
        }
    }
    let current = match store.head(path).await {
        Ok(meta) => Some(meta.e_tag),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(source) => {
            return Err(SwapError::Store {
                url: url.to_string(),
                source: Box::new(source),
            });
        }
    };
    if current != expected.map(|v| v.e_tag.clone()) {
        return Err(SwapError::Changed {
            url: url.to_string(),
        });
    }
    std::fs::rename(temp, file).map_err(|source| SwapError::Store {
        url: url.to_string(),
        source: Box::new(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        }),
    })
    // The lock goes with the folder's handle, when the caller drops it.
}
