//! Publishing an output: one interface, [`Sink`], between a run and a table format. A run
//! begins a [`Publication`] of each output before it computes anything (so that its commit
//! can be fenced on what was live then), has the engine write every output into its
//! publication's staging folder, and only then commits them, one by one. Readers see an output's previous publication until its commit lands, and only
//! the new one after. Today's format is Parquet files listed by a JSON manifest
//! ([`manifest`]), or a Delta Lake table ([`delta`]).

mod delta;
mod files;
mod manifest;
mod staging;

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use object_store::path::Path;

use crate::engine::ParquetTarget;
use crate::pipeline::{Output, OutputFormat};
use crate::storage::{Location, Storage, StorageError, SwapError};

/// Where one output is published: what is live there, and how a run adds to it.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The publication live for `as_of`, if any.
    async fn committed(&self, as_of: NaiveDate) -> Result<Option<Committed>, PublishError>;

    /// The partitions committed before `as_of`, oldest first, with the files each holds: all
    /// of them, or the `newest` so many.
    async fn partitions_before(
        &self,
        as_of: NaiveDate,
        newest: Option<usize>,
    ) -> Result<Vec<Partition>, PublishError>;

    /// The latest partition committed before `as_of`: the previous publication.
    async fn latest_before(&self, as_of: NaiveDate) -> Result<Option<Partition>, PublishError>;

    /// Starts `run`'s publication: remembers what is live for its date, for the commit to
    /// fence on, and removes what ended runs left behind.
    async fn begin(&self, run: &PublishingRun) -> Result<Box<dyn Publication>, PublishError>;

    /// Deletes the files that no publication needs any more, or only lists them with
    /// `dry_run`: files that no commit lists and staged files, last written before `cutoff`,
    /// and for Delta the files that only versions older than `cutoff` list. Their URLs.
    async fn vacuum(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Location>, PublishError>;
}

/// One run's publication of one output: staged, then committed or discarded.
#[async_trait]
pub trait Publication: Send + Sync {
    /// Where, and in what form, the engine writes this output's rows before the commit;
    /// readers do not see them there.
    fn staging(&self) -> &ParquetTarget;

    /// Takes what the engine wrote into [`Publication::staging`], rows of `schema`, as this
    /// publication's rows; returns how many there are.
    async fn staged(&mut self, schema: SchemaRef) -> Result<u64, PublishError>;

    /// Makes the staged rows live, unless another run published the date since `begin`.
    async fn commit(self: Box<Self>) -> Result<Committed, PublishError>;

    /// Removes what was staged; nothing live changes. Failures are only logged.
    async fn discard(self: Box<Self>);
}

/// The sink of `output`, in the format it is published in.
pub fn sink(storage: &Storage, output: &Output) -> Box<dyn Sink> {
    match output.format {
        OutputFormat::Parquet => Box::new(manifest::ManifestSink::new(storage.clone(), output)),
        OutputFormat::Delta => Box::new(delta::DeltaSink::new(storage.clone(), output)),
    }
}

/// An output's place, as both formats' sinks keep it: its table, URL and store options.
#[derive(Clone)]
struct OutputAt {
    storage: Storage,
    table: String,
    location: Location,
    options: std::collections::BTreeMap<String, String>,
}

impl OutputAt {
    fn new(storage: Storage, output: &Output) -> OutputAt {
        OutputAt {
            storage,
            table: output.table.clone(),
            location: output.location.clone(),
            options: output.options.clone(),
        }
    }

    fn store(&self) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, PublishError> {
        Ok(self.storage.store(&self.location, &self.options)?)
    }
}

/// What a publication of a run is part of.
#[derive(Debug, Clone)]
pub struct PublishingRun {
    pub pipeline: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    /// Runs of the pipeline that had ended when this run began: their leftovers may go.
    pub ended_runs: BTreeSet<String>,
    /// Write with plain puts, for stores that cannot write conditionally, on the user's
    /// promise that nothing else publishes there at the same time.
    pub single_writer: bool,
}

/// A publication that is live.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub table: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    pub rows: u64,
    /// The files that hold the rows.
    pub files: Vec<Location>,
}

/// One date's publication of an output, as earlier publications are read back.
#[derive(Debug, Clone)]
pub struct Partition {
    pub as_of: NaiveDate,
    pub files: Vec<Location>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("output '{table}': could not write {file}")]
    Write {
        table: String,
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("output '{table}': could not {action} {file}")]
    Store {
        table: String,
        action: &'static str,
        file: String,
        // Boxed: object_store's error is large, and this enum travels up every call.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error(
        "output '{table}': another run{by} published {as_of} while this one was running, so \
         this run withdrew its files and left that publication in place"
    )]
    Overtaken {
        table: String,
        as_of: NaiveDate,
        /// ` (run <id>)` when the other run is known.
        by: String,
    },
    #[error(
        "output '{table}': this run's staged files were removed by a run that took over from \
         it after its lease expired, so it published nothing of this output"
    )]
    TakenOver { table: String },
    #[error("output '{table}': {source}")]
    Commit {
        table: String,
        #[source]
        source: SwapError,
    },
    #[error("output '{table}' (the Delta table at {url}): could not {action}: {source}")]
    Delta {
        table: String,
        url: String,
        action: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error(
        "output '{table}': the Delta table at {url} has the columns {theirs}, but this run's \
         rows have {ours}; Delta readers read every date with the table's columns, so publish \
         the new columns to a new URL (README, \"Delta Lake outputs\")"
    )]
    DeltaColumns {
        table: String,
        url: String,
        theirs: String,
        ours: String,
    },
    #[error(
        "output '{table}': the store of the Delta table at {url} does not honour conditional \
         writes ({reason}), so two commits could overwrite each other's log entry. Use a store \
         that does (S3 and most S3-compatible servers: keep `aws_conditional_put` at its \
         default, `etag`); --single-writer does not apply to Delta outputs"
    )]
    DeltaUnfenced {
        table: String,
        url: String,
        reason: String,
    },
    #[error("output '{table}': the manifest {file} is not valid: {reason}")]
    BadManifest {
        table: String,
        file: String,
        reason: String,
    },
}

impl PublishError {
    /// A wrong output URL is the user's to fix; the rest is the environment's.
    pub fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            PublishError::Storage(e) => e.fault(),
            PublishError::DeltaColumns { .. } => Fault::User,
            _ => Fault::Environment,
        }
    }

    /// Another run published the same date first: not a failure of this run's work.
    pub fn is_overtaken(&self) -> bool {
        matches!(
            self,
            PublishError::Overtaken { .. } | PublishError::TakenOver { .. }
        )
    }
}

fn write_error(table: &str, path: &Path, source: parquet::errors::ParquetError) -> PublishError {
    PublishError::Write {
        table: table.to_string(),
        file: path.to_string(),
        source,
    }
}

fn store_error(
    table: &str,
    action: &'static str,
    path: &Path,
    source: object_store::Error,
) -> PublishError {
    PublishError::Store {
        table: table.to_string(),
        action,
        file: path.to_string(),
        source: Box::new(source),
    }
}
