//! Storage by URL: every place segflow reads or writes is a [`Location`], and every
//! [`ObjectStore`] comes from one [`Storage`] registry. No other module names a backend.
//!
//! Supported: plain paths and `file://`, `memory://` (one in-process store, for tests and
//! dry runs), `s3://` (credentials and endpoint from the `AWS_*` environment variables, then
//! per-source `options`), and `gs://` / `az://` when built with the `gcp` / `azure` features.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

#[cfg(feature = "delta")]
mod delta_log;
mod disk;
mod footer;
mod location;
mod swap;

#[cfg(feature = "delta")]
pub use delta_log::register_delta_log_stores;
pub use disk::{DiskSpace, space_of};
pub use footer::parquet_footer;
pub use location::Location;
pub use swap::{SwapError, Versioned, read_versioned};

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
    #[error("could not reach {url}")]
    Unreachable {
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
    #[error("could not read {url}")]
    Read {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("could not write {url}")]
    Write {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

impl StorageError {
    /// A URL, scheme or store setting that is wrong is the user's to fix; a store that fails
    /// to list, read or delete is the environment's.
    pub fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            StorageError::InvalidUrl { .. }
            | StorageError::UnsupportedScheme { .. }
            | StorageError::UnknownOption { .. }
            | StorageError::Connect { .. } => Fault::User,
            StorageError::Delete { .. }
            | StorageError::List { .. }
            | StorageError::Read { .. }
            | StorageError::Write { .. }
            | StorageError::Unreachable { .. } => Fault::Environment,
        }
    }
}

/// The one registry of object stores of a process. Stores are built on first use of their
/// `scheme://bucket` and shared by every table on it.
#[derive(Debug, Default, Clone)]
pub struct Storage {
    stores: Arc<Mutex<HashMap<ObjectStoreUrl, Arc<dyn ObjectStore>>>>,
    /// The options each store was built with, or is to be built with when first used: what
    /// a cluster's scheduler and executors need to build the same stores.
    settings: Arc<Mutex<HashMap<ObjectStoreUrl, BTreeMap<String, String>>>>,
    /// Stores found to honour conditional writes: one probe per store and process.
    fenced: Arc<Mutex<HashSet<ObjectStoreUrl>>>,
}

/// Stores by `scheme://bucket/`, each with the options it is built with: what a run sends a
/// cluster so that its processes build the same stores.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoreSettings(pub BTreeMap<String, BTreeMap<String, String>>);

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

    /// A registry that builds each store in `settings` (by `scheme://bucket/`) with its
    /// options when first used, as another process's [`Storage::settings`] gave them.
    pub fn with_settings(settings: &StoreSettings) -> Result<Storage, StorageError> {
        let storage = Storage::new();
        {
            let mut known = storage.settings.lock().expect("storage settings lock");
            for (url, options) in &settings.0 {
                known.insert(Location::parse(url)?.store_url(), options.clone());
            }
        }
        Ok(storage)
    }

    /// Every store built so far, or to be built, with its options.
    pub fn settings(&self) -> StoreSettings {
        let known = self.settings.lock().expect("storage settings lock");
        StoreSettings(
            known
                .iter()
                .map(|(url, options)| (url.as_str().to_string(), options.clone()))
                .collect(),
        )
    }

    /// The store for `location`, built with `options` if it is the first use of its bucket
    /// (or, without options, with those this registry was given for it).
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
        let mut settings = self.settings.lock().expect("storage settings lock");
        let options = match settings.get(&key) {
            Some(given) if options.is_empty() => given.clone(),
            _ => options.clone(),
        };
        let store = build_store(location, &options)?;
        settings.insert(key.clone(), with_environment(location, options));
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }

    /// Normalises a source location: a local folder written without a trailing slash is
    /// still a folder; a remote name without one of the format's `extensions` is taken as
    /// a folder.
    pub fn source_location(&self, location: &Location, extensions: &[&str]) -> Location {
        if location.is_folder() {
            return location.clone();
        }
        let path = location.url.path();
        let named_file = extensions.iter().any(|ext| path.ends_with(ext));
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

    /// Lists the top of `location` with `options`, as `validate` does for outputs and the
    /// state store so that wrong credentials or endpoints show before a night depends on
    /// them. A folder that does not exist yet passes: the first run creates it.
    pub async fn probe(
        &self,
        location: &Location,
        options: &BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let store = self.store(location, options)?;
        let prefix = location.as_folder().path();
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        match store.list_with_delimiter(prefix.as_ref()).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Unreachable {
                url: location.to_string(),
                source,
            }),
        }
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

/// What to do about a storage failure whose causes (`chain`, outermost first) show a known
/// misconfiguration, in words a data engineer can act on.
pub fn advice<'a>(mut chain: impl Iterator<Item = &'a str>) -> Option<&'static str> {
    // object_store asks the instance metadata service (its token, then its credentials)
    // only when no other source of S3 credentials was configured; off EC2 that request is
    // refused or times out.
    chain
        .any(|cause| {
            cause.contains("/latest/api/token")
                || cause.contains("/latest/meta-data/iam/security-credentials")
        })
        .then_some(
            "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
         AWS_SESSION_TOKEN for temporary ones) or the options aws_access_key_id and \
         aws_secret_access_key, set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or run where \
         the instance metadata service provides credentials; a public bucket needs \
         aws_skip_signature: true",
        )
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

/// The S3 settings under their canonical names, for a guess at a misspelt one (object_store
/// also takes each without its `aws_` prefix).
const S3_OPTIONS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
    "aws_default_region",
    "aws_bucket",
    "aws_endpoint",
    "aws_endpoint_url",
    "aws_allow_http",
    "aws_virtual_hosted_style_request",
    "aws_s3_express",
    "aws_imdsv1_fallback",
    "aws_metadata_endpoint",
    "aws_unsigned_payload",
    "aws_checksum_algorithm",
    "aws_container_credentials_relative_uri",
    "aws_container_credentials_full_uri",
    "aws_web_identity_token_file",
    "aws_role_arn",
    "aws_role_session_name",
    "aws_skip_signature",
    "aws_copy_if_not_exists",
    "aws_conditional_put",
    "aws_disable_tagging",
    "aws_request_payer",
    "aws_server_side_encryption",
    "aws_sse_kms_key_id",
    "aws_sse_bucket_key_enabled",
];

/// When the store of `location` has no setting `key`: the settings it has, for a guess.
/// None when it has that setting, or when its settings are not checked here.
pub fn unknown_option(location: &Location, key: &str) -> Option<&'static [&'static str]> {
    match location.url.scheme() {
        "s3" | "s3a" => key
            .to_ascii_lowercase()
            .parse::<object_store::aws::AmazonS3ConfigKey>()
            .is_err()
            .then_some(S3_OPTIONS),
        _ => None,
    }
}

/// `options` and the settings an S3 store also takes from the environment (`AWS_ENDPOINT`,
/// keys, region, as `AmazonS3Builder::from_env` reads them): the whole of how this process
/// reaches the store, for another process that has none of its variables.
fn with_environment(
    location: &Location,
    mut options: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    if !matches!(location.url.scheme(), "s3" | "s3a") {
        return options;
    }
    for (name, value) in std::env::vars() {
        let key = name.to_ascii_lowercase();
        let known =
            key.starts_with("aws_") && key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok();
        if known && !options.contains_key(&key) {
            options.insert(key, value);
        }
    }
    options
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
        "gs" | "az" | "abfs" | "abfss" => cloud_store(location, options),
        scheme => Err(StorageError::UnsupportedScheme {
            url,
            scheme: scheme.to_string(),
            hint: String::new(),
        }),
    }
}

/// Google Cloud Storage and Azure through object_store's own URL parsing.
fn cloud_store(
    location: &Location,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let (store, _) =
        object_store::parse_url_opts(&location.url, options.iter()).map_err(|source| {
            StorageError::Connect {
                url: location.to_string(),
                source,
            }
        })?;
    Ok(Arc::from(store))
}
