//! Delta Lake sources (`format: delta`): the Parquet files a table's log lists at the version
//! in force at the end of the as_of day, read as any Parquet source's files are (footers
//! typed, versions, incremental steps file by file). A Fivetran data lake or any Delta table
//! updates rows in place by rewriting files, so a listing of the folder would also read
//! every file that later versions removed; the log says which files make the table.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::{DeltaTableBuilder, DeltaTableError};
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

use super::{Engine, EngineError};
use crate::pipeline::Source;
use crate::storage::{Location, register_delta_log_stores};

impl Engine {
    /// The files of the Delta source at `location` that make its version in force at the end
    /// of the `as_of` day.
    pub(super) async fn delta_files(
        &self,
        source: &Source,
        location: &Location,
        store: Arc<dyn ObjectStore>,
        as_of: chrono::NaiveDate,
    ) -> Result<Vec<ObjectMeta>, EngineError> {
        let night_end = super::params::start_of_day(
            as_of.succ_opt().expect("as_of is within segflow's dates"),
            self.zone,
        )
        .with_timezone(&Utc);
        files_as_of(source, location, store, night_end).await
    }
}

/// The files of the table at `location` in its version as of `night_end`: the latest version
/// committed by then, or, where the log does not reach back that far (a table created later,
/// or whose older log entries were cleaned up), the oldest version it keeps, with a warning.
async fn files_as_of(
    source: &Source,
    location: &Location,
    store: Arc<dyn ObjectStore>,
    night_end: DateTime<Utc>,
) -> Result<Vec<ObjectMeta>, EngineError> {
    register_delta_log_stores();
    let url = Url::parse(location.as_str()).expect("a location is a URL");
    let failed = |error: DeltaTableError| EngineError::DeltaLog {
        table: source.name.clone(),
        url: location.to_string(),
        not_a_table: matches!(
            error,
            DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_)
        ),
        reason: error.to_string(),
    };
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(failed)?
        .with_storage_backend(store, url)
        .build()
        .map_err(failed)?;
    table.load_with_datetime(night_end).await.map_err(failed)?;
    let version = table.version().unwrap_or_default();
    let snapshot = table.snapshot().map_err(failed)?;
    let unsupported = |reason: String| EngineError::DeltaUnsupported {
        table: source.name.clone(),
        url: location.to_string(),
        reason,
    };
    if let Some(mode) = snapshot
        .metadata()
        .configuration()
        .get("delta.columnMapping.mode")
        .filter(|mode| mode.as_str() != "none")
    {
        return Err(unsupported(format!(
            "maps its columns to other names in its files (delta.columnMapping.mode = {mode}), \
             which segflow does not read yet"
        )));
    }
    let partitions = snapshot.metadata().partition_columns();
    if !partitions.is_empty() {
        return Err(unsupported(format!(
            "is partitioned (by {}), which segflow does not read yet: partition values live \
             in the log, not in the files",
            partitions.join(", ")
        )));
    }
    let mut files = Vec::new();
    for file in snapshot.log_data().iter() {
        if file.deletion_vector_descriptor().is_some() {
            return Err(unsupported(format!(
                "marks deleted rows of {} in a deletion vector, which segflow does not read \
                 yet: purge them (REORG TABLE ... APPLY (PURGE)) or turn deletion vectors off",
                file.path()
            )));
        }
        let path = file.path();
        if path.contains("://") {
            return Err(unsupported(format!(
                "lists a file outside its own folder ({path}), as a shallow clone does"
            )));
        }
        let relative = file.object_store_path();
        files.push(ObjectMeta {
            location: location.path().parts().chain(relative.parts()).collect(),
            last_modified: file.modification_datetime().map_err(failed)?,
            size: u64::try_from(file.size()).unwrap_or_default(),
            e_tag: None,
            version: None,
        });
    }
    // When the version was committed, as the search above judged it: by its log entry's
    // last modification.
    let committed = snapshot
        .version_timestamp(version)
        .and_then(DateTime::from_timestamp_millis);
    if committed.is_some_and(|at| at > night_end) {
        tracing::warn!(
            source = %source.name,
            url = %location,
            version,
            night_end = %night_end,
            "The Delta log does not reach back to the end of the night: reading the oldest version it keeps."
        );
    } else {
        tracing::info!(source = %source.name, url = %location, version, files = files.len(), "Delta table read at the night's version.");
    }
    Ok(files)
}
