//! An output published as a Delta Lake table partitioned by `as_of`, through delta-rs. A run
//! stages its files as for the manifest format and moves them into `as_of=YYYY-MM-DD/`; one
//! Delta commit then removes the files the date's partition held and adds the run's, so
//! every Delta reader sees the previous publication of the date or the new one, never a mix,
//! and other dates are not touched.
//!
//! The commit is fenced by two application transactions (Delta's `txn` action): one per date
//! (`segflow/as_of=<date>`), whose version counts the date's publications, and one per run
//! (`segflow/<pipeline>/as_of=<date>/run=<run id>`). A run commits only if the date's count is still what
//! it was when the run began, and two runs committing the same date at once conflict on it;
//! after an error that leaves the commit's fate unknown, the run's own transaction tells
//! whether it landed. Commits to object stores rely on conditional writes (create-only), which
//! delta-rs uses for each log entry; a store that ignores them is refused before any work.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::logstore::{
    LogStore, LogStoreFactory, LogStoreRef, StorageConfig, default_logstore,
};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use url::Url;

use super::staging::{self, PublishedFile, Staged, Staging, run_of_file};
use super::{Committed, OutputAt, Partition, Publication, PublishError, PublishingRun, Sink};
use crate::engine::ParquetTarget;
use crate::pipeline::Output;
use crate::storage::{Location, Storage, SwapError};

/// The partition column.
const AS_OF: &str = "as_of";

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

fn register_log_stores() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let factories = deltalake::logstore::logstore_factories();
        for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"] {
            let scheme = Url::parse(scheme).expect("a scheme URL");
            factories.insert(scheme, Arc::new(ConditionalPutLogStores));
        }
    });
}

#[derive(Clone)]
pub(super) struct DeltaSink {
    at: OutputAt,
}

impl DeltaSink {
    pub(super) fn new(storage: Storage, output: &Output) -> DeltaSink {
        register_log_stores();
        DeltaSink {
            at: OutputAt::new(storage, output),
        }
    }

    fn error(&self, action: &'static str, source: DeltaTableError) -> PublishError {
        PublishError::Delta {
            table: self.at.table.clone(),
            url: self.at.location.to_string(),
            action,
            source: Box::new(source),
        }
    }

    fn builder(&self) -> Result<DeltaTableBuilder, PublishError> {
        let url = Url::parse(self.at.location.as_str()).expect("a location is a URL");
        let builder = DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| self.error("open the table", e))?;
        Ok(builder.with_storage_backend(self.at.store()?, url))
    }

    /// The table's latest version; None before its first publication.
    async fn open(&self) -> Result<Option<DeltaTable>, PublishError> {
        let exists = self
            .log_store()?
            .is_delta_table_location()
            .await
            .map_err(|e| self.error("look for the table's log", e))?;
        if !exists {
            return Ok(None);
        }
        let table = self.builder()?.load().await;
        Ok(Some(
            table.map_err(|e| self.error("read the table's log", e))?,
        ))
    }

    fn log_store(&self) -> Result<LogStoreRef, PublishError> {
        self.builder()?
            .build_storage()
            .map_err(|e| self.error("open the table", e))
    }

    /// The date transaction's app id: its version counts the date's publications, by any
    /// pipeline that publishes to this table.
    fn date_app(&self, run: &PublishingRun) -> String {
        format!("segflow/{AS_OF}={}", run.as_of)
    }

    /// The run transaction's app id: its pipeline, date and run.
    fn run_app(&self, run: &PublishingRun) -> String {
        format!(
            "segflow/{}/{AS_OF}={}/run={}",
            run.pipeline, run.as_of, run.run_id
        )
    }

    async fn transaction(
        &self,
        table: &DeltaTable,
        app_id: &str,
    ) -> Result<Option<i64>, PublishError> {
        let log_store = table.log_store();
        let state = table
            .snapshot()
            .map_err(|e| self.error("read the table's log", e))?;
        state
            .transaction_version(log_store.as_ref(), app_id)
            .await
            .map_err(|e| self.error("read the table's transactions", e))
    }

    /// Creates the table, partitioned by `as_of`, with the columns of `schema`, in the same
    /// commit as its first publication (`actions`).
    async fn create(
        &self,
        schema: &SchemaRef,
        actions: Vec<Action>,
        properties: CommitProperties,
    ) -> Result<(), Created> {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        // Outputs that carry their date as a column (segment_membership) partition on it.
        if !fields.iter().any(|f| f.name().eq_ignore_ascii_case(AS_OF)) {
            fields.push(Field::new(AS_OF, DataType::Date32, false));
        }
        let arrow = Schema::new(fields);
        let kernel: StructType = (&arrow).try_into_kernel().map_err(|e| {
            Created::Failed(self.error("describe the table's columns", DeltaTableError::from(e)))
        })?;
        let created = deltalake::operations::create::CreateBuilder::new()
            .with_log_store(self.log_store().map_err(Created::Failed)?)
            .with_table_name(&self.at.table)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns([AS_OF])
            // Old transactions of runs leave the table's state at checkpoints after this.
            .with_configuration_property(
                deltalake::TableProperty::SetTransactionRetentionDuration,
                Some("interval 30 days"),
            )
            .with_actions(actions)
            .with_commit_properties(properties)
            .with_save_mode(SaveMode::ErrorIfExists)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(DeltaTableError::Transaction {
                source:
                    TransactionError::CommitConflict(_) | TransactionError::VersionAlreadyExists(_),
            }) => Err(Created::ByAnother),
            Err(DeltaTableError::GenericError { source })
                if source.to_string().contains("already exists") =>
            {
                Err(Created::ByAnother)
            }
            Err(error) => Err(Created::Failed(self.error("create the table", error))),
        }
    }

    /// The files of each date's partition in `snapshot`.
    fn files_by_date(
        &self,
        table: &DeltaTable,
    ) -> Result<BTreeMap<NaiveDate, Vec<FileOfDate>>, PublishError> {
        let state = table
            .snapshot()
            .map_err(|e| self.error("read the table's log", e))?;
        let mut dates: BTreeMap<NaiveDate, Vec<FileOfDate>> = BTreeMap::new();
        for file in state.log_data().iter() {
            let values = file.partition_values_map();
            let Some(date) = values
                .get(AS_OF)
                .and_then(|v| v.as_deref())
                .and_then(crate::pipeline::parse_date)
            else {
                continue;
            };
            dates.entry(date).or_default().push(FileOfDate {
                path: file.path().to_string(),
                rows: file.num_records().map_or(0, |n| n as u64),
                modified: file.modification_datetime().ok(),
                remove: Action::Remove(file.remove_action(true)),
            });
        }
        Ok(dates)
    }

    fn partition(&self, as_of: NaiveDate, files: &[FileOfDate]) -> Partition {
        Partition {
            as_of,
            files: files
                .iter()
                .map(|f| self.at.location.join(&f.path))
                .collect(),
        }
    }
}

/// Why a table was not created.
enum Created {
    /// Another run created it first.
    ByAnother,
    Failed(PublishError),
}

/// A file of a date's partition, as the log lists it.
struct FileOfDate {
    path: String,
    rows: u64,
    modified: Option<DateTime<Utc>>,
    remove: Action,
}

#[async_trait]
impl Sink for DeltaSink {
    async fn committed(&self, as_of: NaiveDate) -> Result<Option<Committed>, PublishError> {
        let Some(table) = self.open().await? else {
            return Ok(None);
        };
        let mut dates = self.files_by_date(&table)?;
        let Some(files) = dates.remove(&as_of) else {
            return Ok(None);
        };
        let name = |f: &FileOfDate| f.path.rsplit('/').next().unwrap_or_default().to_string();
        Ok(Some(Committed {
            table: self.at.table.clone(),
            as_of,
            run_id: files
                .first()
                .map(|f| run_of_file(&name(f)).to_string())
                .unwrap_or_default(),
            committed_at: files
                .iter()
                .filter_map(|f| f.modified)
                .max()
                .unwrap_or_default(),
            rows: files.iter().map(|f| f.rows).sum(),
            files: files
                .iter()
                .map(|f| self.at.location.join(&f.path))
                .collect(),
        }))
    }

    async fn partitions_before(
        &self,
        as_of: NaiveDate,
        newest: Option<usize>,
    ) -> Result<Vec<Partition>, PublishError> {
        let Some(table) = self.open().await? else {
            return Ok(Vec::new());
        };
        let mut partitions: Vec<Partition> = self
            .files_by_date(&table)?
            .range(..as_of)
            .map(|(date, files)| self.partition(*date, files))
            .collect();
        if let Some(newest) = newest {
            partitions.drain(..partitions.len().saturating_sub(newest));
        }
        Ok(partitions)
    }

    async fn latest_before(&self, as_of: NaiveDate) -> Result<Option<Partition>, PublishError> {
        Ok(self.partitions_before(as_of, Some(1)).await?.pop())
    }

    /// Delta's own vacuum, in full (files no version lists go too, as a killed run leaves
    /// them), keeping what versions newer than `cutoff` read; then the staging leftovers,
    /// which Delta's vacuum does not look at.
    async fn vacuum(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Location>, PublishError> {
        let store = self.at.store()?;
        let mut removed = Vec::new();
        if let Some(table) = self.open().await? {
            let retention = Utc::now() - cutoff;
            let (_, metrics) = table
                .vacuum()
                .with_retention_period(retention.max(chrono::Duration::zero()))
                .with_enforce_retention_duration(false)
                .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
                .with_dry_run(dry_run)
                .await
                .map_err(|e| self.error("vacuum the table", e))?;
            removed.extend(
                metrics
                    .files_deleted
                    .iter()
                    .map(|file| self.at.location.join(file.trim_start_matches('/'))),
            );
        }
        let leftovers =
            staging::leftovers(&self.at.storage, store.as_ref(), &self.at.location, cutoff).await?;
        let doomed = leftovers
            .into_iter()
            .map(|object| object.location)
            .collect();
        let output = (self.at.table.as_str(), &self.at.location);
        removed.extend(staging::delete_all(store.as_ref(), output, doomed, dry_run).await?);
        Ok(removed)
    }

    /// Refuses a store that does not honour conditional writes (delta-rs's commits would
    /// silently overwrite each other there), and remembers how many times the date was
    /// published, for the commit to fence on.
    async fn begin(&self, run: &PublishingRun) -> Result<Box<dyn Publication>, PublishError> {
        let store = self.at.store()?;
        let fenced = self
            .at
            .storage
            .check_swap(&self.at.location, store.as_ref())
            .await;
        fenced.map_err(|source| match source {
            SwapError::Unsupported { reason, .. } => PublishError::DeltaUnfenced {
                table: self.at.table.clone(),
                url: self.at.location.to_string(),
                reason,
            },
            source => PublishError::Commit {
                table: self.at.table.clone(),
                source,
            },
        })?;
        let seen = match self.open().await? {
            Some(table) => self.transaction(&table, &self.date_app(run)).await?,
            None => None,
        };
        let output = (self.at.table.as_str(), &self.at.location);
        Ok(Box::new(DeltaPublication {
            staging: Staging::begin(&self.at.storage, store, output, run).await,
            sink: self.clone(),
            run: run.clone(),
            seen,
            staged: None,
        }))
    }
}

struct DeltaPublication {
    sink: DeltaSink,
    staging: Staging,
    run: PublishingRun,
    /// The version of the date's transaction when the run began: how many times the date had
    /// been published (None: never).
    seen: Option<i64>,
    staged: Option<Staged>,
}

#[async_trait]
impl Publication for DeltaPublication {
    fn staging(&self) -> &ParquetTarget {
        self.staging.target()
    }

    async fn staged(
        &mut self,
        schema: datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<u64, PublishError> {
        let staged = self.staging.take_stock(schema).await?;
        let rows = staged.rows();
        self.staged = Some(staged);
        Ok(rows)
    }

    async fn commit(self: Box<Self>) -> Result<Committed, PublishError> {
        let staged = self
            .staged
            .as_ref()
            .expect("an output is staged before its commit");
        let moved = self.staging.move_into_partition(staged).await?;
        let outcome = self.publish(staged, &moved).await;
        match &outcome {
            Ok(_) => self.tidy().await,
            Err(_) => {
                self.staging.withdraw(&moved).await;
                self.staging.remove().await;
            }
        }
        outcome
    }

    async fn discard(self: Box<Self>) {
        self.staging.remove().await;
    }
}

impl DeltaPublication {
    /// One Delta commit: the date's files out, the run's in, both transactions, and the
    /// table itself when this is its first publication.
    async fn publish(
        &self,
        staged: &Staged,
        moved: &[PublishedFile],
    ) -> Result<Committed, PublishError> {
        let sink = &self.sink;
        let committed_at = Utc::now();
        let adds: Vec<Action> = moved
            .iter()
            .map(|file| self.add(file, committed_at))
            .collect();
        let date_app = sink.date_app(&self.run);
        let properties = CommitProperties::default()
            .with_application_transactions(vec![
                Transaction::new(date_app.clone(), self.seen.map_or(1, |v| v + 1)),
                Transaction::new(sink.run_app(&self.run), 1),
            ])
            .with_metadata([
                (
                    "segflow.pipeline".to_string(),
                    self.run.pipeline.clone().into(),
                ),
                ("segflow.run_id".to_string(), self.run.run_id.clone().into()),
                (
                    "segflow.as_of".to_string(),
                    self.run.as_of.to_string().into(),
                ),
            ]);
        let table = match sink.open().await? {
            Some(table) => table,
            None if self.seen.is_none() => {
                match sink
                    .create(&staged.schema, adds.clone(), properties.clone())
                    .await
                {
                    Ok(()) => return Ok(self.committed(moved, committed_at)),
                    // Another run created the table first: commit into it as into any.
                    Err(Created::ByAnother) => sink.open().await?.ok_or_else(|| {
                        sink.error("read the table's log", DeltaTableError::NotInitialized)
                    })?,
                    Err(Created::Failed(error)) => return Err(error),
                }
            }
            // The table this run saw at its start is gone.
            None => return Err(self.overtaken(&[])),
        };
        self.check_columns(&table, &staged.schema)?;
        let mut dates = sink.files_by_date(&table)?;
        let replaced = dates.remove(&self.run.as_of).unwrap_or_default();
        if sink.transaction(&table, &date_app).await? != self.seen {
            return Err(self.overtaken(&replaced));
        }
        let mut actions: Vec<Action> = replaced.iter().map(|f| f.remove.clone()).collect();
        actions.extend(adds);
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![AS_OF.to_string()]),
            predicate: Some(format!("{AS_OF} = '{}'", self.run.as_of)),
        };
        let state = table
            .snapshot()
            .map_err(|e| sink.error("read the table's log", e))?;
        let landed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(state), table.log_store(), operation)
            .await;
        match landed {
            Ok(_) => Ok(self.committed(moved, committed_at)),
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_),
            }) => {
                let winner = sink.open().await.ok().flatten();
                let files = winner
                    .and_then(|w| sink.files_by_date(&w).ok())
                    .and_then(|mut d| d.remove(&self.run.as_of))
                    .unwrap_or_default();
                Err(self.overtaken(&files))
            }
            // The log entry may have landed before the error: this run's transaction says.
            Err(error) => match sink.open().await.ok().flatten() {
                Some(now)
                    if matches!(
                        sink.transaction(&now, &sink.run_app(&self.run)).await,
                        Ok(Some(_))
                    ) =>
                {
                    Ok(self.committed(moved, committed_at))
                }
                _ => Err(sink.error("commit", error)),
            },
        }
    }

    fn add(&self, file: &PublishedFile, committed_at: DateTime<Utc>) -> Action {
        Action::Add(Add {
            path: file.path.clone(),
            partition_values: HashMap::from([(
                AS_OF.to_string(),
                Some(self.run.as_of.to_string()),
            )]),
            size: i64::try_from(file.bytes).unwrap_or(i64::MAX),
            modification_time: committed_at.timestamp_millis(),
            data_change: true,
            stats: Some(format!("{{\"numRecords\":{}}}", file.rows)),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        })
    }

    fn committed(&self, moved: &[PublishedFile], committed_at: DateTime<Utc>) -> Committed {
        Committed {
            table: self.sink.at.table.clone(),
            as_of: self.run.as_of,
            run_id: self.run.run_id.clone(),
            committed_at,
            rows: moved.iter().map(|f| f.rows).sum(),
            files: moved
                .iter()
                .map(|f| self.sink.at.location.join(&f.path))
                .collect(),
        }
    }

    /// The run's rows must have the table's columns: Delta readers read every file with the
    /// table's schema.
    fn check_columns(&self, table: &DeltaTable, schema: &SchemaRef) -> Result<(), PublishError> {
        let state = table
            .snapshot()
            .map_err(|e| self.sink.error("read the table's log", e))?;
        let table: Vec<String> = state
            .schema()
            .fields()
            .filter(|f| f.name() != AS_OF)
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let kernel: Result<StructType, _> = schema.as_ref().try_into_kernel();
        let ours: Vec<String> = match kernel {
            Ok(ours) => ours
                .fields()
                .filter(|f| f.name() != AS_OF)
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect(),
            Err(e) => {
                return Err(self
                    .sink
                    .error("describe the run's columns", DeltaTableError::from(e)));
            }
        };
        if table == ours {
            return Ok(());
        }
        Err(PublishError::DeltaColumns {
            table: self.sink.at.table.clone(),
            url: self.sink.at.location.to_string(),
            theirs: table.join(", "),
            ours: ours.join(", "),
        })
    }

    fn overtaken(&self, files: &[FileOfDate]) -> PublishError {
        let by = files
            .first()
            .map(|f| run_of_file(f.path.rsplit('/').next().unwrap_or_default()))
            .filter(|run| !run.is_empty() && *run != self.run.run_id)
            .map(|run| format!(" (run {run})"))
            .unwrap_or_default();
        PublishError::Overtaken {
            table: self.sink.at.table.clone(),
            as_of: self.run.as_of,
            by,
        }
    }

    /// After the commit only the staging folder goes. The replaced files stay for time
    /// travel, and so do files that a killed run moved into the partition but never
    /// committed: no Delta reader sees them, and telling them from files that older versions
    /// list takes the whole log, which is Delta's vacuum's job.
    async fn tidy(&self) {
        self.staging.remove().await;
    }
}
