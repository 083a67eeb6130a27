//! How delta-rs reaches a Delta table's log through segflow's stores: both Delta outputs
//! (publish) and Delta sources (engine) open tables this way.

use std::sync::{Arc, Once};

use deltalake::ObjectStore;
use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore};
use url::Url;

/// delta-rs keeps its log entries create-only through the object store's conditional put,
/// which segflow's S3, GCS and Azure stores do; delta-rs knows only local and in-memory
/// stores as such without its cloud crates (which would bring DynamoDB locking and a second
/// AWS client).
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Makes delta-rs open tables on the cloud stores segflow builds (once per process).
pub fn register_delta_log_stores() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let factories = deltalake::logstore::logstore_factories();
        for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"] {
            let scheme = Url::parse(scheme).expect("a scheme URL");
            factories.insert(scheme, Arc::new(ConditionalPutLogStores));
        }
    });
}
