//! The query engine of one run: a DataFusion session (built in `session`), the sources as
//! tables, the steps as views or as results materialised in the run's `scratch` folder.
//! Sources are registered only after their Parquet schema has been checked against
//! the declared columns; steps are planned with `as_of` and the vars as typed parameters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchema;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::MemTable;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::logical_expr::{
    BinaryExpr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::prelude::{
    DataFrame, Expr, ParquetReadOptions, SQLOptions, SessionContext, cast, lit,
};
use datafusion::scalar::ScalarValue;

#[cfg(feature = "cluster")]
use crate::cluster::ClusterUrl;
use crate::pipeline::{AS_OF, AS_OF_END, EngineSettings, RUN_PARAMETERS, Step, StepKind, VarValue};
use crate::segments::{self, CUSTOMER_ID, Members};
use crate::storage::{Location, Storage};

mod backend;
mod checks;
#[cfg(feature = "delta")]
mod delta;
/// Validation refuses Delta sources to a build without the `delta` feature; should one
/// come here anyway, it is refused in the same words.
#[cfg(not(feature = "delta"))]
mod delta {
    use std::sync::Arc;

    use object_store::{ObjectMeta, ObjectStore};

    use super::{Engine, EngineError};
    use crate::features::{Feature, NotBuilt};
    use crate::pipeline::Source;
    use crate::storage::Location;

    impl Engine {
        pub(super) async fn delta_files(
            &self,
            source: &Source,
            _location: &Location,
            _store: Arc<dyn ObjectStore>,
            _as_of: chrono::NaiveDate,
        ) -> Result<Vec<ObjectMeta>, EngineError> {
            Err(NotBuilt {
                needs: format!("source '{}' (format: delta)", source.name),
                feature: Feature::Delta,
            }
            .into())
        }
    }
}
mod error;
mod incremental;
mod joins;
mod params;
mod pool;
mod schema;
mod scratch;
mod session;
mod sources;
mod text;
mod unspillable;
mod versions;
mod write;

pub use backend::Backend;
pub use checks::{CheckInputs, CheckOutcome};
pub use error::{EngineError, TypeConflict, describe, is_environment_failure, is_unreadable_data};
pub use incremental::{CacheSpec, FilesDone, IncrementalMode};
pub use params::Params;
pub use scratch::Scratch;
#[cfg(feature = "cluster")]
pub(crate) use session::{default_memory_limit, memory_pool};
pub use versions::VersionCounts;
pub use write::{ParquetTarget, write_parquet};

/// Where a planned step's result goes: a view (planning only, or read once), or Parquet
/// files that later steps read (a step read several times: in the run's scratch folder, or
/// in its publication's staging folder when it is also an output, so that it is written
/// once).
pub enum StepResult {
    View,
    /// Only the step's columns, as a table without rows: all that planning the steps that
    /// read it needs (`segflow validate`), without its plan inlined into each of theirs, which
    /// made planning the last steps of the shipped pipeline take seconds.
    Columns,
    /// Kept in memory and counted against the memory pool: a small result, such as a
    /// segment's ids (at most 8 bytes per customer). Written to `fallback` instead when
    /// the pool cannot hold it.
    Memory {
        fallback: Box<ParquetTarget>,
    },
    Materialize(Box<ParquetTarget>),
}

pub struct Engine {
    ctx: SessionContext,
    storage: Storage,
    /// The pipeline's time zone, in which every timestamp column is shown.
    zone: Tz,
    /// Who may be a segment member.
    members: Members,
    /// Every file of every registered source, to find a damaged one after a failed query.
    source_files: std::sync::Mutex<Vec<sources::RegisteredFile>>,
    /// The pool's account of the results kept in memory, held until the run ends.
    kept_in_memory: std::sync::Mutex<Vec<MemoryReservation>>,
    /// The sources by name, as parts that incremental steps read file by file.
    source_parts: std::sync::Mutex<HashMap<String, Arc<sources::SourceParts>>>,
    /// What each incremental step had for each file of its source in this run.
    incremental_results: std::sync::Mutex<HashMap<String, Arc<incremental::FileResults>>>,
    /// The versioned sources' rows in force, by source, once resolved.
    in_force: std::sync::Mutex<HashMap<String, Arc<versions::InForce>>>,
    /// The cluster the queries run on, if any, and the watchdog of its jobs: its failures
    /// are its own, not the SQL's.
    #[cfg(feature = "cluster")]
    cluster: Option<(ClusterUrl, Arc<crate::cluster::Watchdog>)>,
}

impl Engine {
    /// Sends every query from here on to the cluster at `url`, with the stores built so far
    /// (the sources', the outputs', ...) for its processes to build too, cut in `partitions`
    /// pieces per stage (the cluster's default when None).
    #[cfg(feature = "cluster")]
    async fn on_cluster(
        mut self,
        url: &ClusterUrl,
        partitions: Option<usize>,
    ) -> Result<Engine, EngineError> {
        let (ctx, watchdog) =
            crate::cluster::connect(url, self.ctx.state(), &self.storage, partitions).await?;
        self.ctx = ctx;
        self.cluster = Some((url.clone(), watchdog));
        Ok(self)
    }

    pub fn new(
        settings: &EngineSettings,
        zone: Tz,
        members: Members,
        storage: Storage,
    ) -> Result<Engine, EngineError> {
        Ok(Engine {
            ctx: session::build(settings, &storage).map_err(EngineError::Setup)?,
            storage,
            zone,
            members,
            source_files: Default::default(),
            kept_in_memory: Default::default(),
            source_parts: Default::default(),
            incremental_results: Default::default(),
            in_force: Default::default(),
            #[cfg(feature = "cluster")]
            cluster: None,
        })
    }

    /// Whether `table` is registered already.
    pub fn has_table(&self, table: &str) -> bool {
        self.ctx.table_exist(table).unwrap_or(false)
    }

    /// The Parquet files at `location` as a table of `file_schema`, plus the Hive partition
    /// columns of its folders when `partitions` is set. Each file's columns are converted to
    /// the schema's types as they are read.
    async fn listing(
        &self,
        table: &str,
        location: &Location,
        file_schema: SchemaRef,
        partitions: bool,
    ) -> Result<Arc<dyn TableProvider>, EngineError> {
        let register = |source| EngineError::Register {
            table: table.to_string(),
            url: location.to_string(),
            source,
        };
        let url = ListingTableUrl::parse(location.as_str()).map_err(register)?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let mut config = ListingTableConfig::new(url).with_listing_options(options);
        if partitions {
            config = config
                .infer_partitions_from_path(&self.ctx.state())
                .await
                .map_err(register)?;
        }
        let listing = ListingTable::try_new(config.with_schema(file_schema)).map_err(register)?;
        Ok(Arc::new(listing))
    }

    /// A table of exactly `files` under `location` (a Delta table's files at one version,
    /// which a listing of the folder would not tell from the files other versions removed).
    fn listing_of(
        &self,
        table: &str,
        location: &Location,
        files: &[object_store::ObjectMeta],
        file_schema: SchemaRef,
    ) -> Result<Arc<dyn TableProvider>, EngineError> {
        let register = |source| EngineError::Register {
            table: table.to_string(),
            url: location.to_string(),
            source,
        };
        let urls = files
            .iter()
            .map(|meta| ListingTableUrl::parse(text::file_url(location, meta)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(register)?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(file_schema);
        Ok(Arc::new(ListingTable::try_new(config).map_err(register)?))
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
            }
            let urls: Vec<String> = files.iter().map(ToString::to_string).collect();
            let mut frame = self
                .ctx
                .read_parquet(urls, ParquetReadOptions::default())
                .await
                .map_err(failed)?;
            if frame.schema().field_with_unqualified_name(AS_OF).is_err() {
                let date = ScalarValue::Date32(Some(crate::pipeline::days_since_epoch(as_of)));
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
                    Err(_) => vec![Field::new(CUSTOMER_ID, DataType::Int64, true)],
                };
                if !fields.iter().any(|f| f.name() == AS_OF) {
                    fields.insert(0, Field::new(AS_OF, DataType::Date32, true));
                }
                // No rows, as a plan rather than an in-memory table: a plan serialises, so a
                // cluster runs it too.
                let columns: Vec<Expr> = fields
                    .iter()
                    .map(|f| cast(lit(ScalarValue::Null), f.data_type().clone()).alias(f.name()))
                    .collect();
                LogicalPlanBuilder::empty(false)
                    .build()
                    .map(|empty| DataFrame::new(self.ctx.state(), empty))
                    .and_then(|empty| empty.select(columns))
                    .map_err(failed)?
                    .into_view()
            }
        };
        self.ctx.register_table(table, provider).map_err(failed)?;
        Ok(())
    }

    /// Plans a step's SQL with its parameters bound, and registers its result under the
    /// step's name. Nothing is scanned unless the result is materialised; then its rows are
    /// counted.
    pub async fn add_step(
        &self,
        step: &Step,
        params: &Params,
        result: StepResult,
    ) -> Result<Option<u64>, EngineError> {
        let mut frame = self.plan(step, params).await?;
        if step.kind == StepKind::Segment
            && let Some(problem) = segments::check_segment_result(frame.schema())
        {
            return Err(self.plan_message(step, problem));
        }
        if step.kind == StepKind::Membership {
            frame = self.known_customers_only(frame, params).await?;
        }
        if matches!(
            result,
            StepResult::Memory { .. } | StepResult::Materialize(_)
        ) {
            self.log_unspillable(&step.name, &frame).await;
        }
        match result {
            StepResult::View => {
                self.ctx
                    .register_table(step.name.as_str(), frame.into_view())
                    .map_err(|e| self.plan_error(step, e))?;
                Ok(None)
            }
            StepResult::Columns => {
                let schema = Arc::new(frame.schema().as_arrow().clone());
                self.ctx
                    .register_table(step.name.as_str(), Arc::new(EmptyTable::new(schema)))
                    .map_err(|e| self.plan_error(step, e))?;
                Ok(None)
            }
            StepResult::Memory { fallback } => {
                let schema = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame
                    .collect()
                    .await
                    .map_err(|e| self.execute_error(step, e))?;
                // Copied into one batch: the collected batches can be slices of much larger
                // buffers (a union's, a join's), which they would keep alive, and count.
                let whole = concat_batches(&schema, &batches).map_err(|e| {
                    self.plan_error(step, DataFusionError::ArrowError(Box::new(e), None))
                })?;
                let rows = whole.num_rows() as u64;
                let bytes = whole.get_array_memory_size();
                let batch_size = self.ctx.state().config().batch_size();
                let batches: Vec<RecordBatch> = (0..whole.num_rows())
                    .step_by(batch_size)
                    .map(|offset| whole.slice(offset, batch_size.min(whole.num_rows() - offset)))
                    .collect();
                let reservation =
                    MemoryConsumer::new(format!("{} {}", step.kind.noun(), step.name))
                        .register(&self.ctx.runtime_env().memory_pool);
                if reservation.try_grow(bytes).is_ok() {
                    self.kept_in_memory
                        .lock()
                        .expect("memory account lock")
                        .push(reservation);
                    let table = MemTable::try_new(schema, vec![batches])
                        .map_err(|e| self.plan_error(step, e))?;
                    self.ctx
                        .register_table(step.name.as_str(), Arc::new(table))
                        .map_err(|e| self.plan_error(step, e))?;
                } else {
                    tracing::info!(step = %step.name, bytes, "The memory pool is full: the result goes to scratch files instead.");
                    let frame = self
                        .ctx
                        .read_batches(batches)
                        .map_err(|e| self.plan_error(step, e))?;
                    self.materialize(step, frame, &fallback).await?;
                }
                Ok(Some(rows))
            }
            StepResult::Materialize(target) => {
                Ok(Some(self.materialize(step, frame, &target).await?))
            }
        }
    }

    /// At debug level, the operators of `frame`'s plan that cannot spill (see
    /// [`unspillable`]), as the table `name` is computed.
    async fn log_unspillable(&self, name: &str, frame: &DataFrame) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        // A plan that fails here fails again when it runs, which reports it.
        if let Ok(plan) = frame.clone().create_physical_plan().await {
            let operators = unspillable::unspillable_operators(&plan);
            if !operators.is_empty() {
                tracing::debug!(table = name, operators = %operators.join(", "), "Operators that hold what they read in memory and cannot spill.");
            }
        }
    }

    /// Writes a step's result into `target`, and registers those files as the step's table.
    async fn materialize(
        &self,
        step: &Step,
        frame: DataFrame,
        target: &ParquetTarget,
    ) -> Result<u64, EngineError> {
        // Later steps read the files with the types the engine computed with.
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let (_, rows) = write_parquet(frame, target)
            .await
            .map_err(|e| self.execute_error(step, e))?;
        let listing = self
            .listing(&step.name, &target.folder, schema, false)
            .await?;
        self.ctx
            .register_table(step.name.as_str(), listing)
            .map_err(|e| self.plan_error(step, e))?;
        Ok(rows)
    }

    /// The memberships of known customers (see [`segments::known_only`]), once for all
    /// segments: one join of every membership costs a fraction of one join per segment
    /// (BENCHMARKS.md).
    async fn known_customers_only(
        &self,
        frame: DataFrame,
        params: &Params,
    ) -> Result<DataFrame, EngineError> {
        let table = &self.members.table;
        let problem = |problem: String| EngineError::Members {
            table: table.clone(),
            problem,
        };
        let members = self
            .ctx
            .table(table.as_str())
            .await
            .map_err(|e| problem(describe(&e)))?;
        let as_of = params.values[AS_OF].to_scalar();
        let as_of_end = params.values[AS_OF_END].to_scalar();
        segments::known_only(frame, members, &self.members, as_of, as_of_end).map_err(|e| {
            problem(match e {
                segments::MembersProblem::Rule(text) => text,
                segments::MembersProblem::Plan(error) => describe(&error),
            })
        })
    }

    async fn plan(&self, step: &Step, params: &Params) -> Result<DataFrame, EngineError> {
        self.plan_in(&self.ctx, step, params).await
    }

    /// Plans `step` against the tables of `ctx` (the run's session, or one file's).
    async fn plan_in(
        &self,
        ctx: &SessionContext,
        step: &Step,
        params: &Params,
    ) -> Result<DataFrame, EngineError> {
        // Steps were already checked to be queries; refusing statements here too keeps that
        // promise even if a caller skips the spec checks.
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx
            .sql_with_options(&step.sql.text, read_only)
            .await
            .map_err(|e| self.plan_error(step, e))?;
        if step.incremental.is_some()
            && let Some(function) = incremental::unfixed_function(frame.logical_plan())
        {
            return Err(self.plan_message(step, incremental::uses_unfixed_function(&function)));
        }
        let own_type = |id: &str| {
            params
                .get(id)
                .ok()
                .map(|value| value.to_scalar().data_type())
        };
        let used = parameter_types(frame.logical_plan(), own_type)
            .map_err(|e| self.plan_error(step, e))?;
        let mut bound: HashMap<String, ScalarValue> = HashMap::new();
        for (id, wanted) in used {
            let name = id.trim_start_matches('$');
            if step.incremental.is_some() && RUN_PARAMETERS.contains(&name) {
                return Err(self.plan_message(step, incremental::uses_run_parameter(&id)));
            }
            let value = params
                .get(&id)
                .map_err(|message| self.plan_message(step, message))?;
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
            if let (VarValue::Float(float), ScalarValue::Decimal128(Some(units), _, places)) =
                (value, &scalar)
                && (*units as f64 / 10f64.powi(i32::from(*places)) - float).abs()
                    > float.abs() * 1e-12
            {
                // Arrow would round it: 0.106 against a decimal(12,2) column would be 0.11.
                return Err(self.plan_message(
                    step,
                    format!(
                        "uses {id} where it expects {} with {places} decimal places, but \
                         {name} is {float}, which has more",
                        scalar.data_type()
                    ),
                ));
            }
            bound.insert(name.to_string(), scalar);
        }
        let frame = frame
            .with_param_values(ParamValues::from(bound))
            .map_err(|e| self.plan_error(step, e))?;
        // Type checking happens in the analyzer; run it now so that a mistyped parameter or
        // column is reported as the step's problem before any data is read.
        ctx.state()
            .create_physical_plan(frame.logical_plan())
            .await
            .map_err(|e| self.plan_error(step, e))?;
        Ok(frame)
    }

    /// The first `limit` rows of a registered table.
    pub async fn head(&self, table: &str, limit: usize) -> Result<Vec<RecordBatch>, EngineError> {
        let failed = |error| {
            self.query_error(table, error, |error| EngineError::Query {
                table: table.to_string(),
                message: describe(&error),
            })
        };
        let frame = self.ctx.table(table).await.map_err(failed)?;
        frame
            .limit(0, Some(limit))
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)
    }

    fn plan_message(&self, step: &Step, message: String) -> EngineError {
        EngineError::Plan {
            what: step.kind.noun(),
            step: step.name.clone(),
            file: step.sql_file.display().to_string(),
            message,
        }
    }

    fn plan_error(&self, step: &Step, error: DataFusionError) -> EngineError {
        self.plan_message(step, describe(&error))
    }

    fn execute_error(&self, step: &Step, error: DataFusionError) -> EngineError {
        self.query_error(&step.name, error, |error| self.plan_error(step, error))
    }

    /// Whose fault a failed query over `table` is: a source file's (found later by
    /// [`Engine::find_damaged_file`]), the environment's, or the SQL's (`sql_error`).
    fn query_error(
        &self,
        table: &str,
        error: DataFusionError,
        sql_error: impl FnOnce(DataFusionError) -> EngineError,
    ) -> EngineError {
        if let Some(fault) = self.cluster_fault(table, &error) {
            fault.into()
        } else if is_unreadable_data(&error) {
            EngineError::UnreadableData {
                step: table.to_string(),
                message: describe(&error),
            }
        } else if let DataFusionError::ResourcesExhausted(message) = error.find_root() {
            let limit = match self.ctx.runtime_env().memory_pool.memory_limit() {
                MemoryLimit::Finite(bytes) => {
                    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
                }
                MemoryLimit::Infinite | MemoryLimit::Unknown => "no limit".to_string(),
            };
            EngineError::OutOfMemory {
                step: table.to_string(),
                limit,
                message: message.clone(),
            }
        } else if is_environment_failure(&error) {
            EngineError::Execute {
                step: table.to_string(),
                source: error,
            }
        } else if self.reads_text() && error::is_unreadable_text(&error) {
            EngineError::UnparsedText {
                otherwise: Box::new(sql_error(error)),
            }
        } else {
            sql_error(error)
        }
    }

    /// The cluster's failure behind a failed query over `table`, if it ran on one that
    /// stalled or broke off.
    #[cfg(feature = "cluster")]
    fn cluster_fault(
        &self,
        table: &str,
        error: &DataFusionError,
    ) -> Option<crate::cluster::ClusterError> {
        let (url, watchdog) = self.cluster.as_ref()?;
        if let Some(stall) = watchdog.stalled() {
            return Some(crate::cluster::ClusterError::Stalled {
                url: url.to_string(),
                table: table.to_string(),
                job: stall.job,
                seconds: stall.seconds,
                stages: stall.stages,
                executors: stall.executors.map_or_else(
                    || "the scheduler did not say how many executors it has".to_string(),
                    |n| format!("{n} executors registered"),
                ),
                limit: watchdog.limit().as_secs(),
            });
        }
        if let DataFusionError::Execution(job) = error.find_root()
            && let Some(message) = crate::cluster::memory_refusal(job)
        {
            return Some(crate::cluster::ClusterError::OutOfMemory {
                url: url.to_string(),
                table: table.to_string(),
                partitions: self.ctx.state().config().target_partitions(),
                message,
            });
        }
        error::is_cluster_failure(error).then(|| crate::cluster::ClusterError::Failed {
            url: url.to_string(),
            table: table.to_string(),
            reason: describe(error),
        })
    }

    /// A build without the `cluster` feature runs every query here.
    #[cfg(not(feature = "cluster"))]
    fn cluster_fault(
        &self,
        _table: &str,
        _error: &DataFusionError,
    ) -> Option<crate::cluster::ClusterError> {
        None
    }
}

/// A session that reads published tables with the stores and functions of a run, here and
/// with the default settings (`segflow report`).
pub fn reading_session(storage: &Storage) -> Result<SessionContext, DataFusionError> {
    session::build(&EngineSettings::default(), storage)
}

/// The parameters a plan uses, with the type each place expects where DataFusion can tell
/// (from the column it is compared with or assigned to), sorted by name.
fn parameter_types(
    plan: &LogicalPlan,
    own_type: impl Fn(&str) -> Option<DataType>,
) -> Result<Vec<(String, Option<DataType>)>, DataFusionError> {
    let inferred = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            let schema = Arc::clone(node.schema());
            node.map_expressions(|expr| {
                let expr = moved_by_intervals_keep_their_type(expr, &schema, &own_type)?;
                let (expr, _) = expr.infer_placeholder_types(&schema)?;
                Ok(Transformed::yes(expr))
            })
        })?
        .data;
    let mut types: Vec<_> = inferred.get_parameter_types()?.into_iter().collect();
    types.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(types)
}

/// DataFusion's SQL planner gives a parameter the type of the other side of any operator, so
/// in `$as_of_end - INTERVAL '8 days'` the instant is taken for an interval, and clashes
/// with its other uses. A parameter moved by an interval has its own type instead (no var
/// is an interval).
fn moved_by_intervals_keep_their_type(
    expr: Expr,
    schema: &DFSchema,
    own_type: &impl Fn(&str) -> Option<DataType>,
) -> Result<Expr, DataFusionError> {
    let is_interval = |expr: &Expr| {
        expr.get_type(schema)
            .is_ok_and(|data_type| matches!(data_type, DataType::Interval(_)))
    };
    let keep_own_type = |side: &mut Expr, other: &Expr| {
        if let Expr::Placeholder(placeholder) = side
            && is_interval(other)
        {
            placeholder.field = own_type(&placeholder.id)
                .map(|data_type| Arc::new(Field::new(&placeholder.id, data_type, true)));
        }
    };
    expr.transform(|mut expr| {
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Plus | Operator::Minus,
            right,
        }) = &mut expr
        {
            keep_own_type(left, right);
            keep_own_type(right, left);
        }
        Ok(Transformed::yes(expr))
    })
    .data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::EngineSettings;

    /// A segment step whose result is read more than once: 10,000 ids with a note of 1 KB
    /// each, 10 MB in memory but a few KB as Parquet (one value, dictionary-encoded).
    fn evens() -> Step {
        Step {
            name: "evens".to_string(),
            kind: StepKind::Segment,
            sql_file: "evens.sql".into(),
            sql: crate::sql::analyze(
                "SELECT value AS customer_id, repeat('x', 1000) AS note \
                 FROM generate_series(2, 20000, 2)",
            )
            .unwrap(),
            line: None,
            incremental: None,
        }
    }

    #[tokio::test]
    async fn an_instant_moved_by_an_interval_stays_an_instant() {
        // Oslo: the as_of day ends at 22:00 UTC, and two days before that is 22:00 UTC too.
        let sql = "WITH points AS (
                SELECT column1 AS customer_id,
                       arrow_cast(arrow_cast(column2, 'Timestamp(µs, \"UTC\")'),
                                  'Timestamp(µs, \"Europe/Oslo\")') AS at
                FROM (VALUES (1, '2026-06-28T21:59:59Z'), (2, '2026-06-28T22:00:00Z'),
                             (3, '2026-06-30T21:59:59Z'), (4, '2026-06-30T22:00:00Z')))
            SELECT customer_id FROM points
            WHERE at >= $as_of_end - INTERVAL '2 days' AND at < $as_of_end
            ORDER BY customer_id";
        let step = Step {
            name: "recent".to_string(),
            sql_file: "recent.sql".into(),
            sql: crate::sql::analyze(sql).unwrap(),
            ..evens()
        };
        let zone = chrono_tz::Europe::Oslo;
        let engine = Engine::new(
            &EngineSettings::default(),
            zone,
            Members::default(),
            Storage::new(),
        )
        .unwrap();
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let params = Params::new(as_of, zone, "run", &BTreeMap::new());
        let batches = engine
            .plan(&step, &params)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>();
                column.unwrap().values().to_vec()
            })
            .collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[tokio::test]
    async fn a_small_result_stays_in_memory_unless_the_pool_is_too_small() {
        // 4 MiB holds the Parquet writer's buffers, but not the rows.
        for (limit, in_memory) in [(64 << 20, true), (4 << 20, false)] {
            let settings = EngineSettings {
                memory_limit: Some(limit),
                target_partitions: Some(2),
                ..EngineSettings::default()
            };
            let engine = Engine::new(
                &settings,
                chrono_tz::UTC,
                Members::default(),
                Storage::new(),
            )
            .unwrap();
            let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
            let params = Params::new(as_of, chrono_tz::UTC, "run", &BTreeMap::new());
            let scratch = Scratch::create(None, "run").unwrap();
            let fallback = Box::new(scratch.target_of("evens"));
            let folder = fallback.folder.local_path().unwrap();
            let rows = engine
                .add_step(&evens(), &params, StepResult::Memory { fallback })
                .await
                .unwrap();
            assert_eq!(rows, Some(10_000), "limit {limit}");
            let kept = engine.kept_in_memory.lock().unwrap().len();
            assert_eq!(kept == 1, in_memory, "limit {limit}");
            assert_eq!(folder.exists(), !in_memory, "limit {limit}: {folder:?}");
            let frame = engine.ctx.table("evens").await.unwrap();
            let sum = frame
                .aggregate(
                    vec![],
                    vec![datafusion::functions_aggregate::expr_fn::sum(
                        datafusion::prelude::col(CUSTOMER_ID),
                    )],
                )
                .unwrap()
                .collect()
                .await
                .unwrap();
            let sum = ScalarValue::try_from_array(sum[0].column(0), 0).unwrap();
            assert_eq!(sum, ScalarValue::Int64(Some(100_010_000)), "limit {limit}");
        }
    }
}
