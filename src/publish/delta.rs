//! An output published as a Delta Lake table partitioned by `as_of`, through delta-rs. A run
//! stages its files as for the manifest format and moves them into `as_of=YYYY-MM-DD/`; one
//! Delta commit then removes the files the date's partition held and adds the run's, so
//! every Delta reader sees the previous publication of the date or the new one, never a mix,
//! and other dates are not touched.
//!
//! The commit is fenced by two application transactions (Delta's `txn` action): one per date
//! (`segflow/token/as_of=<date>`), whose version is the fencing token of the decision last
//! committed there (see [`super::journal`]), and one per run
//! (`segflow/<pipeline>/as_of=<date>/run=<run id>`). A run commits only if the date's token is
//! not greater than its own, and two runs committing the same date at once conflict on it;
//! the run's own transaction tells whether its commit landed (by its own hand, or by a run
//! that completed its decision). Commits to object stores rely on conditional writes
//! (create-only), which delta-rs uses for each log entry; a store that ignores them is
//! refused before any work.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::logstore::LogStoreRef;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStoreExt;
use url::Url;

use super::staging::{self, PublishedFile, run_of_file};
use super::{
    Committed, Decision, OutputAt, Partition, Prepared, PublishError, PublishingRun, Sink,
    WRITE_TRIES,
};
use crate::pipeline::Output;
use crate::storage::{Location, Storage, SwapError, parquet_footer, register_delta_log_stores};

/// The partition column.
const AS_OF: &str = "as_of";

#[derive(Clone)]
pub(super) struct DeltaSink {
    at: OutputAt,
}

impl DeltaSink {
    pub(super) fn new(storage: Storage, output: &Output) -> DeltaSink {
        register_delta_log_stores();
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

    /// The date transaction's app id: its version is the token of the decision last
    /// committed for the date, by any pipeline that publishes to this table.
    fn date_app(&self, run: &PublishingRun) -> String {
        format!("segflow/token/{AS_OF}={}", run.as_of)
    }

    /// The run transaction's app id: its pipeline, date and run.
    fn run_app(&self, run: &PublishingRun, run_id: &str) -> String {
        format!(
            "segflow/{}/{AS_OF}={}/run={run_id}",
            run.pipeline, run.as_of
        )
    }

    /// The columns of a prepared file, from its footer, to create the table with.
    async fn schema_of(&self, file: &PublishedFile) -> Result<SchemaRef, PublishError> {
        let store = self.at.store()?;
        let path = self.at.location.join(&file.path).path();
        let failed = |e: parquet::errors::ParquetError| PublishError::Write {
            table: self.at.table.clone(),
            file: path.to_string(),
            source: e,
        };
        let meta = store
            .head(&path)
            .await
            .map_err(|source| super::store_error(&self.at.table, "read", &path, source))?;
        let footer = parquet_footer(store, &meta, false).await.map_err(failed)?;
        let file = footer.file_metadata();
        let schema =
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(failed)?;
        Ok(Arc::new(schema))
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

    /// Refuses a store that does not honour conditional writes: delta-rs's commits would
    /// silently overwrite each other there.
    async fn ready(&self, _run: &PublishingRun) -> Result<(), PublishError> {
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
        })
    }

    /// The run's rows must have the table's columns: Delta readers read every file with the
    /// table's schema.
    async fn accepts(&self, schema: &SchemaRef) -> Result<(), PublishError> {
        match self.open().await? {
            Some(table) => self.check_columns(&table, schema),
            None => Ok(()),
        }
    }

    /// One Delta commit: the date's files out, the decision's in, both transactions, and the
    /// table itself when this is its first publication. Retried when another commit lands
    /// in between, after reading again whose it was.
    async fn apply(
        &self,
        run: &PublishingRun,
        decision: &Decision,
        prepared: &Prepared,
    ) -> Result<Committed, PublishError> {
        let committed = || {
            Committed::of(
                (&self.at.location, &self.at.table),
                run,
                decision,
                &prepared.files,
            )
        };
        let token = i64::try_from(decision.token).unwrap_or(i64::MAX);
        let date_app = self.date_app(run);
        let run_app = self.run_app(run, &decision.run_id);
        let adds: Vec<Action> = prepared
            .files
            .iter()
            .map(|file| add(run, file, decision.decided_at))
            .collect();
        let properties = CommitProperties::default()
            .with_application_transactions(vec![
                Transaction::new(date_app.clone(), token),
                Transaction::new(run_app.clone(), 1),
            ])
            .with_metadata([
                ("segflow.pipeline".to_string(), run.pipeline.clone().into()),
                ("segflow.run_id".to_string(), decision.run_id.clone().into()),
                ("segflow.as_of".to_string(), run.as_of.to_string().into()),
            ]);
        for _ in 0..WRITE_TRIES {
            let Some(table) = self.open().await? else {
                let first = prepared.files.first().expect("an output has a file");
                let schema = self.schema_of(first).await?;
                match self.create(&schema, adds.clone(), properties.clone()).await {
                    Ok(()) => return Ok(committed()),
                    // Another run created the table first: commit into it as into any.
                    Err(Created::ByAnother) => continue,
                    Err(Created::Failed(error)) => return Err(error),
                }
            };
            if self.transaction(&table, &run_app).await?.is_some() {
                return Ok(committed());
            }
            let mut dates = self.files_by_date(&table)?;
            let replaced = dates.remove(&run.as_of).unwrap_or_default();
            let live_token = self.transaction(&table, &date_app).await?.unwrap_or(0);
            if decision.fenced() && live_token > token {
                return Err(self.overtaken(run, &decision.run_id, &replaced));
            }
            // An unfenced run keeps the token it replaces (see the manifest sink).
            let properties = properties.clone().with_application_transactions(vec![
                Transaction::new(date_app.clone(), token.max(live_token)),
                Transaction::new(run_app.clone(), 1),
            ]);
            let mut actions: Vec<Action> = replaced.iter().map(|f| f.remove.clone()).collect();
            actions.extend(adds.iter().cloned());
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(vec![AS_OF.to_string()]),
                predicate: Some(format!("{AS_OF} = '{}'", run.as_of)),
            };
            let state = table
                .snapshot()
                .map_err(|e| self.error("read the table's log", e))?;
            let landed = CommitBuilder::from(properties.clone())
                .with_actions(actions)
                .build(Some(state), table.log_store(), operation)
                .await;
            match landed {
                Ok(_) => return Ok(committed()),
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_),
                }) => continue,
                // The log entry may have landed before the error: the run's transaction says.
                Err(error) => {
                    let now = self.open().await.ok().flatten();
                    let landed = match &now {
                        Some(now) => matches!(self.transaction(now, &run_app).await, Ok(Some(_))),
                        None => false,
                    };
                    if landed {
                        return Ok(committed());
                    }
                    return Err(self.error("commit", error));
                }
            }
        }
        Err(PublishError::Commit {
            table: self.at.table.clone(),
            source: SwapError::Changed {
                url: self.at.location.join("_delta_log/").to_string(),
            },
        })
    }
}

fn add(run: &PublishingRun, file: &PublishedFile, committed_at: DateTime<Utc>) -> Action {
    Action::Add(Add {
        path: file.path.clone(),
        partition_values: HashMap::from([(AS_OF.to_string(), Some(run.as_of.to_string()))]),
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

impl DeltaSink {
    fn check_columns(&self, table: &DeltaTable, schema: &SchemaRef) -> Result<(), PublishError> {
        let state = table
            .snapshot()
            .map_err(|e| self.error("read the table's log", e))?;
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
                return Err(self.error("describe the run's columns", DeltaTableError::from(e)));
            }
        };
        if table == ours {
            return Ok(());
        }
        Err(PublishError::DeltaColumns {
            table: self.at.table.clone(),
            url: self.at.location.to_string(),
            theirs: table.join(", "),
            ours: ours.join(", "),
        })
    }

    fn overtaken(&self, run: &PublishingRun, ours: &str, files: &[FileOfDate]) -> PublishError {
        let by = files
            .first()
            .map(|f| run_of_file(f.path.rsplit('/').next().unwrap_or_default()))
            .filter(|other| !other.is_empty() && *other != ours)
            .map(|other| format!(" (run {other})"))
            .unwrap_or_default();
        PublishError::Overtaken {
            table: self.at.table.clone(),
            as_of: run.as_of,
            by,
        }
    }
}

/// A Delta commit of a publication, as the run reports it.
impl Committed {
    fn of(
        (location, table): (&Location, &str),
        run: &PublishingRun,
        decision: &Decision,
        files: &[PublishedFile],
    ) -> Committed {
        Committed {
            table: table.to_string(),
            as_of: run.as_of,
            run_id: decision.run_id.clone(),
            committed_at: decision.decided_at,
            rows: files.iter().map(|f| f.rows).sum(),
            files: files.iter().map(|f| location.join(&f.path)).collect(),
        }
    }
}
