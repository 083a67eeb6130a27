//! Storage by URL: every place segflow reads or writes is a [`Location`], and every
//! [`ObjectStore`] comes from one [`Storage`] registry. No other module names a backend.
//!
//! Supported: plain paths and `file://`, `memory://` (one in-process store, for tests and
//! dry runs), `s3://` (credentials and endpoint from the `AWS_*` environment variables, then
//! per-source `options`), and `gs://` / `az://` when built with the `gcp` / `azure` features.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("'{url}' is not a valid URL or path: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("'{url}' uses the scheme '{scheme}', which segflow does not support{hint}")]
    UnsupportedScheme {
        url: String,
        scheme: String,
        hint: String,
    },
    #[error("option '{key}' for {url} is not a known setting of that store")]
    UnknownOption { url: String, key: String },
    #[error("could not set up the object store for {url}")]
    Connect {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("could not delete {url}")]
    Delete {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("could not list {url}")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

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

impl StorageError {
    /// A URL, scheme or store setting that is wrong is the user's to fix; a store that fails
    /// to list or delete is the environment's.
    pub fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            StorageError::InvalidUrl { .. }
            | StorageError::UnsupportedScheme { .. }
            | StorageError::UnknownOption { .. }
            | StorageError::Connect { .. } => Fault::User,
            StorageError::Delete { .. } | StorageError::List { .. } => Fault::Environment,
        }
    }
}

/// Where a table lives: an absolute URL. Folders end with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    url: Url,
}

impl Location {
    /// Parses a URL, or a plain path (taken relative to the working directory).
    pub fn parse(text: &str) -> Result<Location, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: text.to_string(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let url = if text.contains("://") {
            Url::parse(text).map_err(|e| invalid(e.to_string()))?
        } else {
            let absolute = std::path::absolute(text).map_err(|e| invalid(e.to_string()))?;
            let mut url = Url::from_file_path(&absolute)
                .map_err(|()| invalid("it is not an absolute path".into()))?;
            if text.ends_with('/') && !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            url
        };
        match url.scheme() {
            "file" | "memory" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => {}
            other => {
                return Err(StorageError::UnsupportedScheme {
                    url: text.to_string(),
                    scheme: other.to_string(),
                    hint: " (use a path, file://, memory://, s3://, gs:// or az://)".into(),
                });
            }
        }
        if matches!(url.scheme(), "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss")
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(invalid("it names no bucket".into()));
        }
        Ok(Location { url })
    }

    /// The same place, as a folder (ends with `/`).
    pub fn as_folder(&self) -> Location {
        let mut url = self.url.clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Location { url }
    }

    pub fn is_folder(&self) -> bool {
        self.url.path().ends_with('/')
    }

    /// A location inside this folder; `relative` may contain `/`.
    pub fn join(&self, relative: &str) -> Location {
        let base = self.as_folder();
        let mut url = base.url.clone();
        url.set_path(&format!("{}{}", base.url.path(), relative));
        Location { url }
    }

    /// The store part of the URL (`s3://bucket`), as DataFusion registers stores.
    pub fn store_url(&self) -> ObjectStoreUrl {
        let text = format!("{}://{}", self.url.scheme(), self.url.authority());
        ObjectStoreUrl::parse(text).expect("scheme://authority is a valid store URL")
    }

    /// The object path inside the store.
    pub fn path(&self) -> Path {
        let decoded = percent_decode(self.url.path());
        Path::from(decoded.trim_matches('/'))
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// The relative path of `object` under this folder (`as_of=2026-01-01/part-0.parquet`).
    pub fn relative(&self, object: &Path) -> String {
        let prefix = self.path();
        let object = object.as_ref();
        let prefix = prefix.as_ref();
        if prefix.is_empty() {
            object.to_string()
        } else {
            object
                .strip_prefix(prefix)
                .map(|rest| rest.trim_start_matches('/').to_string())
                .unwrap_or_else(|| object.to_string())
        }
    }

    /// Whether the location names a local folder on disk (used to normalise `data/orders`
    /// into `data/orders/` when the user leaves off the slash).
    fn is_local_dir(&self) -> bool {
        self.local_path().is_some_and(|p| FsPath::is_dir(&p))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The one registry of object stores of a process. Stores are built on first use of their
/// `scheme://bucket` and shared by every table on it.
#[derive(Debug, Default, Clone)]
pub struct Storage {
    stores: Arc<Mutex<HashMap<ObjectStoreUrl, Arc<dyn ObjectStore>>>>,
    /// Stores found to honour conditional writes: one probe per store and process.
    fenced: Arc<Mutex<HashSet<ObjectStoreUrl>>>,
}

/// The process-wide `memory://` store, so that a pipeline can write there and a later
/// run in the same process (a test, the scheduler) can read it back.
fn memory_store() -> Arc<dyn ObjectStore> {
    static MEMORY: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    Arc::clone(MEMORY.get_or_init(|| Arc::new(InMemory::new())))
}

impl Storage {
    pub fn new() -> Storage {
        Storage::default()
    }

    /// The store for `location`, built with `options` if it is the first use of its bucket.
    pub fn store(
        &self,
        location: &Location,
        options: &BTreeMap<String, String>,
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let key = location.store_url();
        let mut stores = self.stores.lock().expect("storage registry lock");
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store = build_store(location, options)?;
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }

    /// Normalises a source location: a local folder written without a trailing slash is
    /// still a folder; a remote name without a `.parquet` suffix is taken as a folder.
    pub fn source_location(&self, location: &Location) -> Location {
        if location.is_folder() {
            return location.clone();
        }
        let named_file = location.url.path().ends_with(".parquet");
        if location.is_local_dir() || (!named_file && location.local_path().is_none()) {
            location.as_folder()
        } else {
            location.clone()
        }
    }

    /// Every object under `location` (or the one object it names).
    pub async fn list(
        &self,
        location: &Location,
        store: &dyn ObjectStore,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        let list_err = |source| StorageError::List {
            url: location.to_string(),
            source,
        };
        if !location.is_folder() {
            return match store.head(&location.path()).await {
                Ok(meta) => Ok(vec![meta]),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(source) => Err(list_err(source)),
            };
        }
        let prefix = location.path();
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut objects: Vec<ObjectMeta> = store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(list_err)?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Deletes every object under a folder; on a local disk also the emptied directories,
    /// which object stores do not have.
    pub async fn remove_folder(
        &self,
        folder: &Location,
        store: &dyn ObjectStore,
    ) -> Result<(), StorageError> {
        let folder = folder.as_folder();
        for object in self.list(&folder, store).await? {
            store
                .delete(&object.location)
                .await
                .map_err(|source| StorageError::Delete {
                    url: folder.join(&folder.relative(&object.location)).to_string(),
                    source,
                })?;
        }
        if let Some(dir) = folder.local_path() {
            remove_empty_dirs(&dir);
        }
        Ok(())
    }
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

/// DataFusion asks the same registry for the store of every URL a query reads, so a store is
/// built once, with the options of the source or output that first named its bucket (as
/// datafusion-cli installs its own registry). A URL no table named gets a store from the
/// environment's settings alone.
impl ObjectStoreRegistry for Storage {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = Location { url: url.clone() }.store_url();
        let mut stores = self.stores.lock().expect("storage registry lock");
        stores.insert(key, store)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let location = Location::parse(url.as_str())
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        self.store(&location, &BTreeMap::new())
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }
}

/// The whole content of one object (run records, leases, manifests: small JSON files).
pub async fn read_object(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<bytes::Bytes, object_store::Error> {
    store.get(path).await?.bytes().await
}

/// Removes `dir` and the directories below it that hold no files. A file that appeared
/// meanwhile (another writer's) keeps its directories alive, which is the safe outcome.
pub(crate) fn remove_empty_dirs(dir: &FsPath) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn build_store(
    location: &Location,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let url = location.as_str().to_string();
    let connect = |source| StorageError::Connect {
        url: url.clone(),
        source,
    };
    match location.url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        "memory" => Ok(memory_store()),
        "s3" | "s3a" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut builder = AmazonS3Builder::from_env().with_url(location.as_str());
            for (key, value) in options {
                let config: AmazonS3ConfigKey =
                    key.to_ascii_lowercase()
                        .parse()
                        .map_err(|_| StorageError::UnknownOption {
                            url: url.clone(),
                            key: key.clone(),
                        })?;
                builder = builder.with_config(config, value);
            }
            Ok(Arc::new(builder.build().map_err(connect)?))
        }
        scheme @ ("gs" | "az" | "abfs" | "abfss") => cloud_store(location, options, scheme),
        scheme => Err(StorageError::UnsupportedScheme {
            url,
            scheme: scheme.to_string(),
            hint: String::new(),
        }),
    }
}

/// Google Cloud Storage and Azure through object_store's own URL parsing; compiled in only
/// with the `gcp` / `azure` features so that the default build carries no unused SDK code.
fn cloud_store(
    location: &Location,
    options: &BTreeMap<String, String>,
    scheme: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let enabled = match scheme {
        "gs" => cfg!(feature = "gcp"),
        _ => cfg!(feature = "azure"),
    };
    if !enabled {
        let feature = if scheme == "gs" { "gcp" } else { "azure" };
        return Err(StorageError::UnsupportedScheme {
            url: location.to_string(),
            scheme: scheme.to_string(),
            hint: format!(" in this build (rebuild with `--features {feature}`)"),
        });
    }
    let (store, _) =
        object_store::parse_url_opts(&location.url, options.iter()).map_err(|source| {
            StorageError::Connect {
                url: location.to_string(),
                source,
            }
        })?;
    Ok(Arc::from(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls() {
        let loc = Location::parse("data/orders/").unwrap();
        assert!(loc.as_str().starts_with("file:///"));
        assert!(loc.is_folder());
        assert!(loc.path().as_ref().ends_with("data/orders"));
    }

    #[test]
    fn s3_urls_keep_bucket_and_prefix() {
        let loc = Location::parse("s3://lake/raw/orders/").unwrap();
        assert_eq!(loc.store_url().as_str(), "s3://lake/");
        assert_eq!(loc.path().as_ref(), "raw/orders");
        let part = loc.join("as_of=2026-01-01/part-0.parquet");
        assert_eq!(
            loc.relative(&part.path()),
            "as_of=2026-01-01/part-0.parquet"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let err = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("scheme 'ftp'"), "{err}");
        let err = Location::parse("s3:///nobucket").unwrap_err().to_string();
        assert!(err.contains("bucket"), "{err}");
        assert!(Location::parse("").is_err());
    }
}
