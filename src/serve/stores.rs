//! What a served query may read: the served outputs' folders and nothing else. The query
//! session's object store registry hands out only stores confined to those folders, which
//! refuse every write and every path outside them, so that no SQL, whatever gets past the
//! statement guard, reads `/etc/passwd` or another bucket.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

use crate::storage::{Location, Storage};

/// The stores of the served outputs, by `scheme://bucket/`, each confined to the outputs'
/// folders in it.
#[derive(Debug)]
pub(super) struct ServedStores {
    stores: BTreeMap<String, Arc<dyn ObjectStore>>,
}

impl ServedStores {
    /// Confines reads to `folders` (each output's URL, with the store options it is read
    /// with), built from `storage`'s stores.
    pub(super) fn new(
        storage: &Storage,
        folders: &[(Location, BTreeMap<String, String>)],
    ) -> Result<ServedStores, crate::storage::StorageError> {
        let mut grouped: BTreeMap<String, (Arc<dyn ObjectStore>, Vec<Path>)> = BTreeMap::new();
        for (folder, options) in folders {
            let store = storage.store(folder, options)?;
            let key = folder.store_url().as_str().to_string();
            grouped
                .entry(key)
                .or_insert_with(|| (store, Vec::new()))
                .1
                .push(folder.path());
        }
        let stores = grouped
            .into_iter()
            .map(|(key, (inner, folders))| {
                let confined: Arc<dyn ObjectStore> = Arc::new(Confined { inner, folders });
                (key, confined)
            })
            .collect();
        Ok(ServedStores { stores })
    }
}

impl ObjectStoreRegistry for ServedStores {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        // Nothing a query does may add a store; the served ones are fixed when serving starts.
        None
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?;
        self.stores.get(key.as_str()).cloned().ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!(
                "{url} is not a served output: segflow serve reads only the published outputs \
                 of the pipelines it serves"
            ))
        })
    }
}

/// A store that reads only under `folders` and writes nothing.
struct Confined {
    inner: Arc<dyn ObjectStore>,
    folders: Vec<Path>,
}

impl fmt::Debug for Confined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Confined({}, {:?})", self.inner, self.folders)
    }
}

impl fmt::Display for Confined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (read only, served outputs)", self.inner)
    }
}

impl Confined {
    fn check(&self, path: &Path) -> object_store::Result<()> {
        if self
            .folders
            .iter()
            .any(|folder| path.prefix_matches(folder))
        {
            Ok(())
        } else {
            Err(denied(path, "it is not under a served output"))
        }
    }
}

fn denied(path: &Path, why: &str) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: format!("segflow serve refuses this: {why}").into(),
    }
}

#[async_trait]
impl ObjectStore for Confined {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(denied(location, "it is read-only"))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(denied(location, "it is read-only"))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations
            .map(|location| Err(denied(&location?, "it is read-only")))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = Path::default();
        let prefix = prefix.unwrap_or(&root);
        match self.check(prefix) {
            Ok(()) => self.inner.list(Some(prefix)),
            Err(error) => futures::stream::once(async { Err(error) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let root = Path::default();
        let prefix = prefix.unwrap_or(&root);
        self.check(prefix)?;
        self.inner.list_with_delimiter(Some(prefix)).await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(denied(to, "it is read-only"))
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn reads_only_under_the_served_folders_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let served = root.path().join("out/segments");
        std::fs::create_dir_all(&served).unwrap();
        std::fs::write(served.join("a.parquet"), b"rows").unwrap();
        std::fs::write(root.path().join("secret"), b"no").unwrap();
        let folder = Location::parse(&format!("{}/", served.display())).unwrap();
        let stores = ServedStores::new(&Storage::new(), &[(folder, BTreeMap::new())]).unwrap();
        let store = stores.get_store(&Url::parse("file:///").unwrap()).unwrap();

        let inside = Path::from_absolute_path(served.join("a.parquet")).unwrap();
        assert_eq!(
            &store.get(&inside).await.unwrap().bytes().await.unwrap()[..],
            b"rows"
        );
        let outside = Path::from_absolute_path(root.path().join("secret")).unwrap();
        let error = store.get(&outside).await.unwrap_err().to_string();
        assert!(error.contains("not under a served output"), "{error}");
        let error = store
            .put(&inside, PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("read-only"), "{error}");
        assert_eq!(std::fs::read(served.join("a.parquet")).unwrap(), b"rows");

        let elsewhere = stores.get_store(&Url::parse("s3://other-bucket/x").unwrap());
        assert!(
            elsewhere
                .unwrap_err()
                .to_string()
                .contains("is not a served output")
        );
    }
}
