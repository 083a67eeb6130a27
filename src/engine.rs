//! The DataFusion session of one run, set up the datafusion-cli way: all cores, a spilling
//! memory pool with a limit, a disk manager, and every object store from the [`Storage`]
//! registry. Sources are registered only after their Parquet schema has been checked against
//! the declared columns; steps are planned with `as_of` and the vars as typed parameters.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{
    DataFrame, ParquetReadOptions, SQLOptions, SessionConfig, SessionContext, lit,
};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::spec::{AS_OF, EngineSettings, RUN_ID, Source, Step, StepKind, VarValue, did_you_mean};
use crate::storage::{Location, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not start the query engine")]
    Setup(#[source] DataFusionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("source '{table}': no Parquet files at {url}")]
    NoFiles { table: String, url: String },
    #[error("source '{table}': {file} is not a readable Parquet file")]
    UnreadableFile {
        table: String,
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("source '{table}': {file} has no column '{column}' (declared as {expected}){hint}")]
    MissingColumn {
        table: String,
        file: String,
        column: String,
        expected: String,
        hint: String,
    },
    #[error(
        "source '{table}': column '{column}' in {file} is {found}, but is declared as {expected}"
    )]
    WrongType {
        table: String,
        file: String,
        column: String,
        expected: String,
        found: DataType,
    },
    #[error("table '{table}': could not register {url}")]
    Register {
        table: String,
        url: String,
        #[source]
        source: DataFusionError,
    },
    #[error("step '{step}' ({file}): {message}")]
    Plan {
        step: String,
        file: String,
        message: String,
    },
    #[error("step '{step}': could not run")]
    Execute {
        step: String,
        #[source]
        source: DataFusionError,
    },
}

impl EngineError {
    /// Whether the user's spec or data is at fault (exit 1), rather than the environment.
    pub fn is_user_fault(&self) -> bool {
        match self {
            EngineError::Setup(_) | EngineError::Execute { .. } => false,
            EngineError::Storage(e) => !matches!(e, StorageError::List { .. }),
            EngineError::Register { .. } => false,
            _ => true,
        }
    }
}

/// The values a step's SQL sees as `$name`: `as_of` and the pipeline vars.
#[derive(Debug, Clone)]
pub struct Params {
    values: BTreeMap<String, VarValue>,
}

impl Params {
    pub fn new(as_of: NaiveDate, run_id: &str, vars: &BTreeMap<String, VarValue>) -> Params {
        let mut values = vars.clone();
        values.insert(AS_OF.to_string(), VarValue::Date(as_of));
        values.insert(RUN_ID.to_string(), VarValue::String(run_id.to_string()));
        Params { values }
    }
}

/// Where a planned step's result goes: a view (planning only, or read once), or a
/// materialised Parquet copy in the run's scratch folder (read by several later steps).
pub enum StepResult<'a> {
    View,
    Materialize { scratch: &'a Path },
}

pub struct Engine {
    ctx: SessionContext,
    storage: Storage,
}

const FOOTER_READS_IN_FLIGHT: usize = 16;

impl Engine {
    pub fn new(settings: &EngineSettings, storage: Storage) -> Result<Engine, EngineError> {
        let mut config = SessionConfig::from_env()
            .map_err(EngineError::Setup)?
            .with_information_schema(true);
        if let Some(partitions) = settings.target_partitions {
            config = config.with_target_partitions(partitions);
        }
        // Plain Utf8 strings: every Parquet reader understands them, while the string-view
        // type DataFusion prefers would leak into published files' Arrow schema.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let memory_limit = settings.memory_limit.or_else(default_memory_limit);
        let mut runtime =
            RuntimeEnvBuilder::new().with_disk_manager_builder(DiskManagerBuilder::default());
        if let Some(limit) = memory_limit {
            let pool = FairSpillPool::new(limit);
            let top_consumers = NonZeroUsize::new(5).expect("5 is not zero");
            runtime =
                runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(pool, top_consumers)));
        }
        let runtime = runtime.build_arc().map_err(EngineError::Setup)?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        Ok(Engine {
            ctx: SessionContext::new_with_state(state),
            storage,
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Checks a source's files against its declared columns, then registers it as a table.
    pub async fn register_source(&self, source: &Source) -> Result<(), EngineError> {
        let store = self.storage.store(&source.location, &source.options)?;
        self.storage.register_all(self.ctx.runtime_env().as_ref());
        let location = self.storage.source_location(&source.location);
        let files = self
            .parquet_files(&source.name, &location, store.as_ref())
            .await?;
        self.check_columns(source, &location, &files, &store)
            .await?;
        self.register_listing(&source.name, &location, None).await
    }

    async fn parquet_files(
        &self,
        table: &str,
        location: &Location,
        store: &dyn ObjectStore,
    ) -> Result<Vec<object_store::ObjectMeta>, EngineError> {
        let listed = self.storage.list(location, store).await?;
        // The files DataFusion will read: `.parquet` files directly in the folder or in
        // Hive partition folders (`key=value/`), not hidden ones (`.x`, `_SUCCESS`), and not
        // other subfolders such as segflow's own `_segflow/`. A URL naming one object is
        // taken as it is.
        let files: Vec<_> = if location.is_folder() {
            listed
                .into_iter()
                .filter(|meta| {
                    let relative = location.relative(&meta.location);
                    let mut parts: Vec<&str> = relative.split('/').collect();
                    let name = parts.pop().unwrap_or_default();
                    name.ends_with(".parquet")
                        && !name.starts_with(['.', '_'])
                        && parts.iter().all(|part| part.contains('='))
                })
                .collect()
        } else {
            listed
        };
        if files.is_empty() {
            return Err(EngineError::NoFiles {
                table: table.to_string(),
                url: location.to_string(),
            });
        }
        Ok(files)
    }

    /// Reads every file's footer (not its data) and compares it with the declared columns,
    /// so that a wrong file is named before any SQL runs. Hive partition keys in the path
    /// count as columns.
    async fn check_columns(
        &self,
        source: &Source,
        location: &Location,
        files: &[object_store::ObjectMeta],
        store: &Arc<dyn ObjectStore>,
    ) -> Result<(), EngineError> {
        let schemas: Vec<_> = futures::stream::iter(files.iter().cloned())
            .map(|meta| {
                let store = Arc::clone(store);
                async move {
                    let schema = read_footer_schema(store, &meta).await;
                    (meta, schema)
                }
            })
            .buffered(FOOTER_READS_IN_FLIGHT)
            .collect()
            .await;
        for (meta, schema) in schemas {
            let file = location
                .join(&location.relative(&meta.location))
                .to_string();
            let file = if location.is_folder() {
                file
            } else {
                location.to_string()
            };
            let schema = schema.map_err(|source_err| EngineError::UnreadableFile {
                table: source.name.clone(),
                file: file.clone(),
                source: source_err,
            })?;
            let relative = location.relative(&meta.location);
            let partition_keys: Vec<&str> = relative
                .split('/')
                .filter_map(|part| part.split_once('=').map(|(key, _)| key))
                .collect();
            for (column, expected) in &source.columns {
                if partition_keys.contains(&column.as_str()) {
                    continue;
                }
                match schema.field_with_name(column) {
                    Ok(field) if expected.matches(field.data_type()) => {}
                    Ok(field) => {
                        return Err(EngineError::WrongType {
                            table: source.name.clone(),
                            file,
                            column: column.clone(),
                            expected: expected.to_string(),
                            found: field.data_type().clone(),
                        });
                    }
                    Err(_) => {
                        let names = schema.fields().iter().map(|f| f.name().as_str());
                        return Err(EngineError::MissingColumn {
                            table: source.name.clone(),
                            file,
                            column: column.clone(),
                            expected: expected.to_string(),
                            hint: did_you_mean(column, names),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Registers the Parquet files at `location` as `table`. The schema is inferred from the
    /// files (and Hive partition folders) unless `known` gives it, as for a materialised
    /// step whose result may be empty and so have no files at all.
    async fn register_listing(
        &self,
        table: &str,
        location: &Location,
        known: Option<datafusion::arrow::datatypes::SchemaRef>,
    ) -> Result<(), EngineError> {
        let register = |source| EngineError::Register {
            table: table.to_string(),
            url: location.to_string(),
            source,
        };
        let url = ListingTableUrl::parse(location.as_str()).map_err(register)?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let state = self.ctx.state();
        let config = ListingTableConfig::new(url).with_listing_options(options);
        let config = match known {
            Some(schema) => config.with_schema(schema),
            None => config
                .infer_partitions_from_path(&state)
                .await
                .map_err(register)?
                .infer_schema(&state)
                .await
                .map_err(register)?,
        };
        let listing = ListingTable::try_new(config).map_err(register)?;
        self.ctx
            .register_table(table, Arc::new(listing))
            .map_err(register)?;
        Ok(())
    }

    /// Registers earlier publications of an output as `table` (`previous_t`, `history_t`):
    /// the files each manifest lists, with the partition's date as an `as_of` column. With
    /// nothing published yet it is an empty table, with the columns of `like` when that table
    /// is already planned in this run, else just `as_of` and `customer_id`.
    pub async fn register_published(
        &self,
        table: &str,
        partitions: Vec<(NaiveDate, Vec<Location>)>,
        options: &BTreeMap<String, String>,
        like: &str,
    ) -> Result<(), EngineError> {
        let failed = |source| EngineError::Register {
            table: table.to_string(),
            url: String::from("earlier publications"),
            source,
        };
        let mut combined: Option<DataFrame> = None;
        for (as_of, files) in partitions {
            if let Some(first) = files.first() {
                self.storage.store(first, options)?;
                self.storage.register_all(self.ctx.runtime_env().as_ref());
            }
            let urls: Vec<String> = files.iter().map(ToString::to_string).collect();
            let mut frame = self
                .ctx
                .read_parquet(urls, ParquetReadOptions::default())
                .await
                .map_err(failed)?;
            if frame.schema().field_with_unqualified_name(AS_OF).is_err() {
                let date = ScalarValue::Date32(Some(crate::spec::days_since_epoch(as_of)));
                frame = frame.with_column(AS_OF, lit(date)).map_err(failed)?;
            }
            combined = Some(match combined {
                None => frame,
                Some(earlier) => earlier.union(frame).map_err(failed)?,
            });
        }
        let provider = match combined {
            Some(frame) => frame.into_view(),
            None => {
                let mut fields: Vec<Field> = match self.ctx.table(like).await {
                    Ok(frame) => frame
                        .schema()
                        .as_arrow()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect(),
                    Err(_) => vec![Field::new("customer_id", DataType::Int64, true)],
                };
                if !fields.iter().any(|f| f.name() == AS_OF) {
                    fields.insert(0, Field::new(AS_OF, DataType::Date32, true));
                }
                let schema = Arc::new(Schema::new(fields));
                Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(failed)?)
            }
        };
        self.ctx.register_table(table, provider).map_err(failed)?;
        Ok(())
    }

    /// Plans a step's SQL with its parameters bound, and registers its result under the
    /// step's name. Nothing is scanned unless the result is materialised.
    pub async fn add_step(
        &self,
        step: &Step,
        params: &Params,
        result: StepResult<'_>,
    ) -> Result<(), EngineError> {
        let frame = self.plan(step, params).await?;
        if step.kind == StepKind::Segment
            && frame
                .schema()
                .field_with_unqualified_name("customer_id")
                .is_err()
        {
            return Err(self.plan_message(
                step,
                "a segment's query must return a customer_id column".to_string(),
            ));
        }
        match result {
            StepResult::View => {
                self.ctx
                    .register_table(step.name.as_str(), frame.into_view())
                    .map_err(|e| self.plan_error(step, e))?;
            }
            StepResult::Materialize { scratch } => {
                let folder = scratch.join(&step.name);
                let path = format!("{}/", folder.display());
                let schema = Arc::new(frame.schema().as_arrow().clone());
                std::fs::create_dir_all(&folder)
                    .map_err(|e| self.execute_error(step, DataFusionError::IoError(e)))?;
                frame
                    .write_parquet(&path, Default::default(), None)
                    .await
                    .map_err(|e| self.execute_error(step, e))?;
                let location = Location::parse(&path)?;
                self.register_listing(&step.name, &location, Some(schema))
                    .await?;
            }
        }
        Ok(())
    }

    async fn plan(&self, step: &Step, params: &Params) -> Result<DataFrame, EngineError> {
        // Steps were already checked to be queries; refusing statements here too keeps that
        // promise even if a caller skips the spec checks.
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(&step.sql.text, read_only)
            .await
            .map_err(|e| self.plan_error(step, e))?;
        let used = parameter_types(frame.logical_plan()).map_err(|e| self.plan_error(step, e))?;
        let mut bound: HashMap<String, ScalarValue> = HashMap::new();
        for (id, wanted) in used {
            let name = id.trim_start_matches('$');
            let Some(value) = params.values.get(name) else {
                let hint = did_you_mean(name, params.values.keys().map(String::as_str));
                return Err(self.plan_message(
                    step,
                    format!("uses the parameter {id}, which is not a pipeline var or as_of{hint}"),
                ));
            };
            let scalar = value.to_scalar();
            let scalar = match wanted {
                Some(wanted) if wanted != scalar.data_type() => value
                    .fits(&wanted)
                    .then(|| scalar.cast_to(&wanted).ok())
                    .flatten()
                    .ok_or_else(|| {
                        self.plan_message(
                            step,
                            format!(
                                "uses {id} where it expects {wanted}, but {name} is a {} ({value})",
                                value.var_type()
                            ),
                        )
                    })?,
                _ => scalar,
            };
            bound.insert(name.to_string(), scalar);
        }
        let frame = frame
            .with_param_values(ParamValues::from(bound))
            .map_err(|e| self.plan_error(step, e))?;
        // Type checking happens in the analyzer; run it now so that a mistyped parameter or
        // column is reported as the step's problem before any data is read.
        self.ctx
            .state()
            .create_physical_plan(frame.logical_plan())
            .await
            .map_err(|e| self.plan_error(step, e))?;
        Ok(frame)
    }

    /// The rows of a registered table, as a stream (nothing is collected in memory).
    pub async fn stream(&self, table: &str) -> Result<SendableRecordBatchStream, EngineError> {
        let failed = |source| EngineError::Execute {
            step: table.to_string(),
            source,
        };
        let frame = self.ctx.table(table).await.map_err(failed)?;
        frame.execute_stream().await.map_err(failed)
    }

    fn plan_message(&self, step: &Step, message: String) -> EngineError {
        EngineError::Plan {
            step: step.name.clone(),
            file: step.sql_file.display().to_string(),
            message,
        }
    }

    fn plan_error(&self, step: &Step, error: DataFusionError) -> EngineError {
        self.plan_message(step, describe(&error))
    }

    fn execute_error(&self, step: &Step, error: DataFusionError) -> EngineError {
        if is_environment_failure(&error) {
            EngineError::Execute {
                step: step.name.clone(),
                source: error,
            }
        } else {
            self.plan_error(step, error)
        }
    }
}

/// The parameters a plan uses, with the type each place expects where DataFusion can tell
/// (from the column it is compared with or assigned to), sorted by name.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<(String, Option<DataType>)>, DataFusionError> {
    let inferred = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            let schema = Arc::clone(node.schema());
            node.map_expressions(|expr| {
                let (expr, _) = expr.infer_placeholder_types(&schema)?;
                Ok(Transformed::yes(expr))
            })
        })?
        .data;
    let mut types: Vec<_> = inferred.get_parameter_types()?.into_iter().collect();
    types.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(types)
}

/// The Arrow schema of a Parquet file, from its footer alone.
async fn read_footer_schema(
    store: Arc<dyn ObjectStore>,
    meta: &object_store::ObjectMeta,
) -> Result<datafusion::arrow::datatypes::SchemaRef, ParquetError> {
    let mut footer = Footer {
        store,
        path: meta.location.clone(),
    };
    let metadata = ParquetMetaDataReader::new()
        .with_prefetch_hint(Some(FOOTER_PREFETCH))
        .load_and_finish(&mut footer, meta.size)
        .await?;
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    Ok(Arc::new(schema))
}

/// Most footers fit in one read of this size.
const FOOTER_PREFETCH: usize = 64 * 1024;

struct Footer {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
}

impl MetadataFetch for &mut Footer {
    fn fetch(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}

/// Whether a query failed for want of memory, disk or storage rather than because of
/// its SQL or data.
pub fn is_environment_failure(error: &DataFusionError) -> bool {
    matches!(
        error.find_root(),
        DataFusionError::ResourcesExhausted(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::Internal(_)
    )
}

/// DataFusion's message without its category prefix and backtrace noise.
pub fn describe(error: &DataFusionError) -> String {
    let root = error.find_root();
    let text = match root {
        DataFusionError::SchemaError(e, _) => e.to_string(),
        DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
        other => other.to_string(),
    };
    text.trim().to_string()
}

/// Three quarters of physical memory, so that large sorts and joins spill instead of being
/// killed; None where the total is unknown (no limit, as DataFusion's own default).
fn default_memory_limit() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024 / 4 * 3)
}
