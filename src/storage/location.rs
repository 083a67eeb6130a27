//! Where things live: an absolute URL, folders ending with `/`.

use std::fmt;

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::path::Path;
use url::Url;

use super::StorageError;

/// Where a table lives: an absolute URL. Folders end with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub(super) url: Url,
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

    /// Whether only this machine (or this process) reaches it: a path, or `memory://`.
    pub fn is_local(&self) -> bool {
        matches!(self.url.scheme(), "file" | "memory")
    }

    pub fn is_folder(&self) -> bool {
        self.url.path().ends_with('/')
    }

    /// Whether one of the two is the other or lies inside it (taken as a folder): what is
    /// written at one would be read, or deleted, at the other.
    pub fn overlaps(&self, other: &Location) -> bool {
        self.is_within(other) || other.is_within(self)
    }

    /// Whether this is `folder` or lies inside it.
    pub fn is_within(&self, folder: &Location) -> bool {
        self.as_folder()
            .as_str()
            .starts_with(folder.as_folder().as_str())
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
    pub(super) fn is_local_dir(&self) -> bool {
        self.local_path()
            .is_some_and(|p| std::path::Path::is_dir(&p))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_overlap_when_one_holds_the_other() {
        let at = |text: &str| Location::parse(text).unwrap();
        assert!(at("s3://lake/orders/").overlaps(&at("s3://lake/orders")));
        assert!(at("s3://lake/").overlaps(&at("s3://lake/orders/2026.parquet")));
        assert!(at("s3://lake/orders/as_of=1/").overlaps(&at("s3://lake/orders/")));
        assert!(!at("s3://lake/orders/").overlaps(&at("s3://lake/orders_2024/")));
        assert!(!at("s3://lake/orders/").overlaps(&at("s3://other/orders/")));
        assert!(!at("s3://lake/out/rfm/").overlaps(&at("s3://lake/data/orders/")));
    }

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
