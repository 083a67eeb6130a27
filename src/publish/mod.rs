//! Publishing an output: one interface, [`Sink`], between a run and a table format, and one
//! [`Publication`] per output and run. A run claims its date in the [`journal`] and begins a
//! publication of each output before it computes anything, has the engine write every output
//! into its publication's staging folder, prepares them all (moves the files into the
//! date's partition, where readers do not see them yet), decides the date's publication in
//! the journal, and only then commits them, one by one. Readers see an output's previous
//! publication until its commit lands, and only the new one after. Today's format is Parquet
//! files listed by a JSON manifest ([`manifest`]), or a Delta Lake table ([`delta`]).

#[cfg(feature = "delta")]
mod delta;
mod files;
pub mod journal;
mod manifest;
mod staging;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::engine::ParquetTarget;
use crate::pipeline::{Output, OutputFormat};
use crate::storage::{Location, Storage, StorageError, SwapError};
pub use journal::{Fence, Journal};
use staging::{PublishedFile, Staged, Staging};

/// Where one output is published: what is live there, and how a decided publication is
/// made live.
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

    /// Something that changes whenever a publication is committed, cheaper to get than
    /// [`Sink::publications`] (one listing); None where there is no such thing, and the
    /// publications must be read again to know.
    async fn publications_fingerprint(&self) -> Result<Option<String>, PublishError> {
        Ok(None)
    }

    /// Every committed publication, oldest first: what `segflow serve` serves.
    async fn publications(&self) -> Result<Vec<Committed>, PublishError> {
        let mut all = Vec::new();
        for partition in self.partitions_before(NaiveDate::MAX, None).await? {
            all.extend(self.committed(partition.as_of).await?);
        }
        Ok(all)
    }

    /// Refuses, before any work, a store where two runs' commits could overwrite each other.
    async fn ready(&self, run: &PublishingRun) -> Result<(), PublishError>;

    /// Refuses rows of `schema` that the output cannot take, before the date is decided.
    async fn accepts(&self, schema: &SchemaRef) -> Result<(), PublishError>;

    /// Makes `prepared`, this output's part of `decision`, live for `run`'s date, unless
    /// what is live there holds a greater token (a newer decision): then
    /// [`PublishError::Overtaken`]. Committing what is already live succeeds. `run` is the
    /// run doing it, which may complete another run's decision.
    async fn apply(
        &self,
        run: &PublishingRun,
        decision: &Decision,
        prepared: &Prepared,
    ) -> Result<Committed, PublishError>;

    /// Deletes the files that no publication needs any more, or only lists them with
    /// `dry_run`: files that no commit lists and staged files, last written before `cutoff`,
    /// and for Delta the files that only versions older than `cutoff` list. Their URLs.
    async fn vacuum(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Location>, PublishError>;
}

/// The sink of `output`, in the format it is published in.
pub fn sink(storage: &Storage, output: &Output) -> Box<dyn Sink> {
    match output.format {
        OutputFormat::Parquet => Box::new(manifest::ManifestSink::new(storage.clone(), output)),
        #[cfg(feature = "delta")]
        OutputFormat::Delta => Box::new(delta::DeltaSink::new(storage.clone(), output)),
        #[cfg(not(feature = "delta"))]
        OutputFormat::Delta => {
            unreachable!("validation refuses Delta outputs to a build without the delta feature")
        }
    }
}

/// How many times a conditional write is tried again after another writer's landed in
/// between, before the run gives up: each retry means a commit by another run, and more
/// than a few means something keeps rewriting the object.
const WRITE_TRIES: usize = 20;

/// Commits what `decision`, the last decided publication of `run`'s date, has not committed
/// yet: its run was killed or frozen between its commits. An output no longer in `outputs`,
/// or whose files are gone, is left as it is, with a warning. Returns how many outputs it
/// committed.
pub async fn complete(
    storage: &Storage,
    outputs: &[Output],
    run: &PublishingRun,
    decision: &Decision,
) -> Result<usize, PublishError> {
    let mut completed = 0;
    for prepared in &decision.outputs {
        let output = outputs
            .iter()
            .find(|o| o.table == prepared.table && o.location.as_str() == prepared.url);
        let Some(output) = output else {
            tracing::warn!(pipeline = %run.pipeline, table = %prepared.table, url = %prepared.url, run_id = %decision.run_id, "An output of the date's last decided publication is no longer in the pipeline; it is left as it is.");
            continue;
        };
        let sink = sink(storage, output);
        match sink.committed(run.as_of).await {
            Ok(Some(live)) if live.run_id == decision.run_id => continue,
            // A manifest that does not parse is replaced, as by any commit.
            Ok(_) | Err(PublishError::BadManifest { .. }) => {}
            Err(error) => return Err(error),
        }
        if let Some(missing) = missing_file(storage, output, prepared).await? {
            tracing::warn!(pipeline = %run.pipeline, table = %output.table, file = %missing, run_id = %decision.run_id, "The date's last decided publication cannot be completed: one of its files is gone. The output keeps what it has until the date is run again.");
            continue;
        }
        tracing::warn!(pipeline = %run.pipeline, table = %output.table, run_id = %decision.run_id, "Completing the date's last decided publication: its run stopped before it committed this output.");
        match sink.apply(run, decision, prepared).await {
            Ok(_) => completed += 1,
            Err(error) if error.is_overtaken() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(completed)
}

/// The first of `prepared`'s files that is not where the decision says.
async fn missing_file(
    storage: &Storage,
    output: &Output,
    prepared: &Prepared,
) -> Result<Option<Location>, PublishError> {
    use object_store::ObjectStoreExt;
    let store = storage.store(&output.location, &output.options)?;
    for file in &prepared.files {
        let location = output.location.join(&file.path);
        match store.head(&location.path()).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(Some(location)),
            Err(source) => {
                return Err(store_error(
                    &output.table,
                    "look for",
                    &location.path(),
                    source,
                ));
            }
        }
    }
    Ok(None)
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

    fn store(&self) -> Result<Arc<dyn object_store::ObjectStore>, PublishError> {
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

/// A run's publication of a date, decided: every output's files are in their partitions,
/// and only the commits are left, which any later run completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub run_id: String,
    /// The run's fencing token (see [`journal`]); 0 for a run without a lease.
    pub token: u64,
    pub decided_at: DateTime<Utc>,
    pub outputs: Vec<Prepared>,
}

impl Decision {
    /// Whether the run holds a lease whose epoch fences it. An unfenced run (the demo, a
    /// library caller: the only writer, token 0) replaces whatever is live.
    pub fn fenced(&self) -> bool {
        self.token > 0
    }
}

/// One output's part of a decision: the files it publishes, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub table: String,
    pub url: String,
    files: Vec<PublishedFile>,
    columns: Vec<Column>,
}

impl Prepared {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// A column of a published output, as manifests and decisions describe it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Column {
    name: String,
    data_type: String,
    nullable: bool,
}

fn columns_of(schema: &SchemaRef) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// One run's publication of one output: staged, prepared, then committed or discarded.
pub struct Publication {
    sink: Box<dyn Sink>,
    staging: Staging,
    run: PublishingRun,
    staged: Option<Staged>,
    /// The files moved into the partition by [`Publication::prepare`].
    moved: Vec<PublishedFile>,
}

impl Publication {
    /// Starts `run`'s publication of `output`: refuses a store that cannot fence, and
    /// removes what ended runs left in staging.
    pub async fn begin(
        storage: &Storage,
        output: &Output,
        run: &PublishingRun,
    ) -> Result<Publication, PublishError> {
        let sink = sink(storage, output);
        sink.ready(run).await?;
        let store = storage.store(&output.location, &output.options)?;
        let staging = Staging::begin(storage, store, (&output.table, &output.location), run).await;
        Ok(Publication {
            sink,
            staging,
            run: run.clone(),
            staged: None,
            moved: Vec::new(),
        })
    }

    /// Where, and in what form, the engine writes this output's rows before the commit;
    /// readers do not see them there.
    pub fn staging(&self) -> &ParquetTarget {
        self.staging.target()
    }

    /// Takes what the engine wrote into [`Publication::staging`], rows of `schema`, as this
    /// publication's rows; returns how many there are.
    pub async fn staged(&mut self, schema: SchemaRef) -> Result<u64, PublishError> {
        let staged = self.staging.take_stock(schema).await?;
        let rows = staged.rows();
        self.staged = Some(staged);
        Ok(rows)
    }

    /// Moves the staged files into the date's partition, where no reader looks until a
    /// commit lists them; returns this output's part of the decision.
    pub async fn prepare(&mut self) -> Result<Prepared, PublishError> {
        let staged = self
            .staged
            .as_ref()
            .expect("an output is staged before it is prepared");
        self.sink.accepts(&staged.schema).await?;
        self.moved = self.staging.move_into_partition(staged).await?;
        Ok(Prepared {
            table: self.staging.table().to_string(),
            url: self.staging.location().to_string(),
            files: self.moved.clone(),
            columns: columns_of(&staged.schema),
        })
    }

    /// Makes this output's part of `decision` live. Overtaken by a newer decision, it
    /// withdraws its files; after an error that leaves the commit's fate unknown, they stay
    /// (a manifest may list them) for the next run to sweep if none does.
    pub async fn commit(self, decision: &Decision) -> Result<Committed, PublishError> {
        let prepared = decision
            .outputs
            .iter()
            .find(|p| p.table == self.staging.table())
            .expect("a decision lists every prepared output");
        let outcome = self.sink.apply(&self.run, decision, prepared).await;
        if outcome.as_ref().is_err_and(PublishError::is_overtaken) {
            self.staging.withdraw(&self.moved).await;
        }
        self.staging.remove().await;
        outcome
    }

    /// Removes what was staged and prepared; nothing live changes. Failures are only logged.
    pub async fn discard(self) {
        self.staging.withdraw(&self.moved).await;
        self.staging.remove().await;
    }

    /// Removes what was staged, but leaves prepared files, which a decision whose write
    /// may have landed lists.
    pub async fn abandon(self) {
        self.staging.remove().await;
    }
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
    #[error(
        "{by} took over the pipeline's lease from this run and claimed {as_of}, so this run \
         published nothing and left the date to it"
    )]
    Claimed { as_of: NaiveDate, by: String },
    #[error("could not keep the date's record in the state store: {source}")]
    Journal {
        #[source]
        source: SwapError,
    },
    #[error(
        "the date record {file} is not valid ({reason}); it says which run's publication the \
         date is. Restore it from a backup, or delete it if no run of this date is going on"
    )]
    BadJournal { file: String, reason: String },
    #[error("output '{table}': {source}")]
    Commit {
        table: String,
        #[source]
        source: SwapError,
    },
    #[cfg(feature = "delta")]
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
         the new columns to a new URL (docs/outputs.md, \"Delta Lake outputs\")"
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
            PublishError::Overtaken { .. }
                | PublishError::TakenOver { .. }
                | PublishError::Claimed { .. }
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
