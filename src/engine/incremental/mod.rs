//! Incremental steps (docs/incremental.md): a step's SQL runs on each file of its
//! source alone, and the step's table is the union of the files' results. A file whose rows
//! are all before the end of the as_of day gives the same result on every later date, so
//! that result is kept in the state store, named after what made it (the file as listed:
//! URL, size, ETag and time; the SQL as rendered with its vars; the source's columns; the
//! time zones; segflow's version), and reused until one of those changes. A file with rows
//! after the as_of day is cut off at its end and computed again by every run.

mod cache;
mod fold;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::common::Column;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{LogicalPlan, Volatility};
use datafusion::prelude::{DataFrame, Expr, SessionContext, cast, col, lit};
use datafusion::scalar::ScalarValue;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::ObjectMeta;

use super::sources::{PartsReader, SourceParts};
use super::{Engine, EngineError, Params, Scratch};
use crate::functions::in_zone;
use crate::pipeline::{AS_OF_END, Incremental, Step};
use crate::storage::Location;
pub use cache::CacheSpec;
use cache::{Kept, StepFolder, version_of};

/// How the files of an incremental step were had: computed by this run, or kept from
/// earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilesDone {
    pub computed: u64,
    pub reused: u64,
}

/// What [`Engine::add_incremental`] does.
pub enum IncrementalMode<'a> {
    /// Plans only: the step is the union of every file's plan, computed when read
    /// (`validate`, `show`).
    View,
    /// Computes each file that nothing kept answers, keeps what may be kept in `cache`, and
    /// registers the step as the files of the results. With no cache, every file is computed
    /// into `scratch`.
    Compute {
        cache: Option<&'a CacheSpec>,
        scratch: &'a Scratch,
    },
}

/// Files computed at once: each is its own query, and small files leave a core idle.
const CONCURRENT_FILES: usize = 2;

/// The message for an incremental step whose SQL uses a run parameter.
pub(super) fn uses_run_parameter(placeholder: &str) -> String {
    format!(
        "is incremental, so its SQL cannot use {placeholder}: each file's result is kept for \
         later runs and must not depend on the date. segflow already leaves out the rows at \
         or after the end of the as_of day (incremental.time); compute what depends on the \
         date in the step that reads this one"
    )
}

/// The message for an incremental step whose SQL calls a function whose result is not fixed
/// by its arguments.
pub(super) fn uses_unfixed_function(function: &str) -> String {
    format!(
        "is incremental, so its SQL cannot use {function}(): its value changes from run to \
         run, and each file's result is kept for later runs. Compute it in the step that \
         reads this one"
    )
}

/// The first function that `plan` calls whose result its arguments do not fix (now(),
/// current_date, random(), ...): what a kept result must not depend on.
pub(super) fn unfixed_function(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                if let Expr::ScalarFunction(call) = expr
                    && call.func.signature().volatility != Volatility::Immutable
                {
                    found = Some(call.func.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// What an incremental step had for each file of its source in this run (by file key): the
/// result's location and the latest time among the file's rows. A later incremental step
/// over the same source reads a file's result from here rather than computing it again.
pub(super) struct FileResults {
    files: HashMap<String, (Location, Option<i64>)>,
    schema: SchemaRef,
}

impl Engine {
    /// Registers an incremental step (see the module's comment). Returns how many files
    /// were computed and reused, unless it only planned.
    pub async fn add_incremental(
        &self,
        step: &Step,
        steps: &[Step],
        params: &Params,
        mode: IncrementalMode<'_>,
    ) -> Result<Option<FilesDone>, EngineError> {
        let incremental = step.incremental.as_ref().expect("an incremental step");
        let source = self.source_parts(step, incremental)?;
        let chain = chain_of(step, steps);
        let as_of_end = params.as_of_end_micros();
        let (cache, scratch) = match mode {
            IncrementalMode::View => {
                let mut union: Option<DataFrame> = None;
                for file in &source.files {
                    let key = self.file_key(&source, file);
                    let frame = self.file_plan(&source, file, &key, &chain, params).await?;
                    union = Some(match union {
                        None => frame,
                        Some(earlier) => {
                            earlier.union(frame).map_err(|e| self.plan_error(step, e))?
                        }
                    });
                }
                let union = union.expect("a source has files");
                let view = match step.fold_step() {
                    None => union.into_view(),
                    Some(fold) => {
                        let schema = Arc::new(union.schema().as_arrow().clone());
                        self.folded(&fold, &schema, Ok(union), params)
                            .await?
                            .into_view()
                    }
                };
                self.ctx
                    .register_table(step.name.as_str(), view)
                    .map_err(|e| self.plan_error(step, e))?;
                return Ok(None);
            }
            IncrementalMode::Compute { cache, scratch } => (cache, scratch),
        };
        let version = version_of(&source, &chain, params, self.zone)?;
        if incremental.fold.is_some() {
            let files = self
                .add_folded(step, &source, &chain, params, &version, (cache, scratch))
                .await?;
            tracing::info!(step = %step.name, computed = files.computed, reused = files.reused, "Incremental step ready: its settled files folded.");
            return Ok(Some(files));
        }
        let step_root = cache.map(|c| c.root.join(&format!("{}/", step.name)));
        let folder = match &step_root {
            Some(root) => self.step_folder(root, &version).await?,
            None => StepFolder::default(),
        };
        let reusable: HashMap<&str, &Kept> = folder
            .kept
            .iter()
            .filter(|k| k.version == version && !cache.is_some_and(|c| c.full))
            .filter(|k| k.latest.is_none_or(|latest| latest < as_of_end))
            .map(|k| (k.file.as_str(), k))
            .collect();
        let keys: Vec<String> = source
            .files
            .iter()
            .map(|file| self.file_key(&source, file))
            .collect();
        let schema = {
            let first = self
                .file_plan(&source, &source.files[0], &keys[0], &chain, params)
                .await?;
            Arc::new(first.schema().as_arrow().clone())
        };
        let mut results: Vec<Option<(Location, Option<i64>)>> = keys
            .iter()
            .map(|key| {
                reusable
                    .get(key.as_str())
                    .map(|k| (k.location.clone(), k.latest))
            })
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| results[i].is_none()).collect();
        let computed = missing.len() as u64;
        let reused = keys.len() as u64 - computed;
        let computing = missing.iter().map(|&index| {
            let (source, chain, keys) = (&source, &chain, &keys);
            let step_root = step_root.as_ref();
            let version = version.as_str();
            async move {
                let file = &source.files[index];
                let key = &keys[index];
                let url = super::text::file_url(&source.location, file);
                let in_file = |error: EngineError| in_file(error, &url);
                let latest = match self.latest_known(key) {
                    Some(latest) => latest,
                    None => {
                        let rows = self
                            .file_frame(source, file)
                            .map_err(|e| in_file(self.plan_error(step, e)))?;
                        latest_time(rows, &incremental.time)
                            .await
                            .map_err(|e| in_file(self.execute_error(step, e)))?
                    }
                };
                let frame = self
                    .file_plan(source, file, key, chain, params)
                    .await
                    .map_err(in_file)?;
                let keep = latest.is_none_or(|latest| latest < as_of_end);
                let location = match step_root {
                    Some(root) if keep => root.join(&format!(
                        "{version}/{key}.{}.parquet",
                        latest.map_or_else(|| "none".to_string(), |t| t.to_string())
                    )),
                    _ => scratch
                        .target_of(&step.name)
                        .folder
                        .join(&format!("{key}.parquet")),
                };
                write_one_file(frame, &location)
                    .await
                    .map_err(|e| in_file(self.execute_error(step, e)))?;
                Ok::<_, EngineError>((index, (location, latest)))
            }
            .boxed()
        });
        let computing: Vec<_> = computing.collect();
        let written: Vec<(usize, (Location, Option<i64>))> = futures::stream::iter(computing)
            .buffer_unordered(CONCURRENT_FILES)
            .try_collect()
            .await?;
        for (index, result) in written {
            results[index] = Some(result);
        }
        let results: Vec<(Location, Option<i64>)> = results
            .into_iter()
            .map(|result| result.expect("every file has its result"))
            .collect();
        let urls: Vec<&str> = results
            .iter()
            .map(|(location, _)| location.as_str())
            .collect();
        let listing = files_table(&urls, Arc::new(ParquetFormat::default()), &schema)
            .map_err(|e| self.plan_error(step, e))?;
        self.remember_kept(
            &step.name,
            reusable.values().map(|kept| kept.location.to_string()),
        );
        self.incremental_results
            .lock()
            .expect("incremental results lock")
            .insert(
                step.name.clone(),
                Arc::new(FileResults {
                    files: keys.iter().cloned().zip(results).collect(),
                    schema,
                }),
            );
        self.ctx
            .register_table(step.name.as_str(), listing)
            .map_err(|e| self.plan_error(step, e))?;
        if let Some(root) = &step_root {
            let current: HashSet<&str> = keys.iter().map(String::as_str).collect();
            self.forget_stale(root, &folder, &version, &current).await;
        }
        tracing::info!(step = %step.name, computed, reused, "Incremental step ready.");
        Ok(Some(FilesDone { computed, reused }))
    }

    /// The registered source an incremental step reads, with a time column that is a
    /// timestamp.
    fn source_parts(
        &self,
        step: &Step,
        incremental: &Incremental,
    ) -> Result<Arc<SourceParts>, EngineError> {
        let source = self
            .source_parts
            .lock()
            .expect("source parts lock")
            .get(&incremental.source)
            .cloned()
            .ok_or_else(|| {
                self.plan_message(
                    step,
                    format!(
                        "is incremental over '{}', which is not a source of the pipeline",
                        incremental.source
                    ),
                )
            })?;
        match source.schema.field_with_name(&incremental.time) {
            Ok(field) if matches!(field.data_type(), DataType::Timestamp(..)) => Ok(source),
            Ok(field) => Err(self.plan_message(
                step,
                format!(
                    "is incremental with time '{}', a {} column of '{}'; it must be a timestamp",
                    incremental.time,
                    field.data_type(),
                    incremental.source
                ),
            )),
            Err(_) => {
                let names = source.schema.fields().iter().map(|f| f.name().as_str());
                let hint = crate::hint::did_you_mean(&incremental.time, names);
                Err(self.plan_message(
                    step,
                    format!(
                        "is incremental with time '{}', which is not a column of '{}'{hint}",
                        incremental.time, incremental.source
                    ),
                ))
            }
        }
    }

    /// One file of a source as a table with the whole source's columns and types: a
    /// Parquet file's Hive partition keys (from its folders) as constant columns, its
    /// timestamps in the pipeline's zone, as the source's table has them.
    pub(super) fn file_frame(
        &self,
        source: &SourceParts,
        file: &ObjectMeta,
    ) -> Result<DataFrame, DataFusionError> {
        let url = super::text::file_url(&source.location, file);
        match &source.reader {
            PartsReader::Parquet {
                file_schema,
                table_schema,
                wall_clock,
            } => {
                let format = Arc::new(ParquetFormat::default());
                let frame = self
                    .ctx
                    .read_table(files_table(&[&url], format, file_schema)?)?;
                // Folder values as DataFusion's listing reads them: percent-decoded.
                let relative = source.location.relative(&file.location);
                let folders: HashMap<&str, String> = relative
                    .split('/')
                    .filter_map(|part| part.split_once('='))
                    .map(|(key, value)| {
                        let value = percent_encoding::percent_decode_str(value);
                        (key, value.decode_utf8_lossy().into_owned())
                    })
                    .collect();
                let columns = table_schema.fields().iter().map(|field| {
                    let name = field.name().as_str();
                    if file_schema.field_with_name(name).is_ok() {
                        col(Column::new_unqualified(name))
                    } else {
                        let value = ScalarValue::Utf8(folders.get(name).cloned());
                        cast(lit(value), field.data_type().clone()).alias(name)
                    }
                });
                let frame = frame.select(columns.collect::<Vec<_>>())?;
                in_zone(frame, self.zone, source.zone, wall_clock)
            }
            PartsReader::Text { format, columns } => {
                let table = files_table(&[&url], Arc::clone(format), &columns.schema)?;
                columns.convert(self.ctx.read_table(table)?, self.zone)
            }
        }
    }

    /// The latest time of a file's rows, when an incremental step over its source found it
    /// already in this run.
    fn latest_known(&self, key: &str) -> Option<Option<i64>> {
        let results = self
            .incremental_results
            .lock()
            .expect("incremental results lock");
        results
            .values()
            .find_map(|steps| steps.files.get(key).map(|(_, latest)| *latest))
    }

    /// The last step of `chain` planned on one file (`key` names it): see [`Self::files_plan`].
    async fn file_plan(
        &self,
        source: &SourceParts,
        file: &ObjectMeta,
        key: &str,
        chain: &[&Step],
        params: &Params,
    ) -> Result<DataFrame, EngineError> {
        self.files_plan(source, &[(file, key)], chain, params).await
    }

    /// The last step of `chain` planned on some files of the source together (each named by
    /// its key): their rows before the end of the as_of day stand for the source, each
    /// earlier step of the chain for itself: its results for the files when this run has
    /// them all, else its plan.
    pub(super) async fn files_plan(
        &self,
        source: &SourceParts,
        files: &[(&ObjectMeta, &str)],
        chain: &[&Step],
        params: &Params,
    ) -> Result<DataFrame, EngineError> {
        let last = chain.last().expect("a chain ends with its step");
        let incremental = last.incremental.as_ref().expect("an incremental step");
        let as_of_end = params.values[AS_OF_END].to_scalar();
        let time = col(Column::new_unqualified(&incremental.time));
        let mut rows: Option<DataFrame> = None;
        for (file, _) in files {
            let cut = self
                .file_in_force(source, file)
                .and_then(|frame| frame.filter(time.clone().lt(lit(as_of_end.clone()))));
            let both = match rows {
                None => cut,
                Some(earlier) => cut.and_then(|cut| earlier.union(cut)),
            };
            rows = Some(both.map_err(|e| self.plan_error(last, e))?);
        }
        let rows = rows.expect("files to plan on");
        let ctx = self.file_context();
        ctx.register_table(incremental.source.as_str(), rows.into_view())
            .map_err(|e| self.plan_error(last, e))?;
        let keys: Vec<&str> = files.iter().map(|(_, key)| *key).collect();
        let mut planned = None;
        for (position, step) in chain.iter().enumerate() {
            let had = (position + 1 < chain.len())
                .then(|| self.files_result(step, &keys))
                .flatten();
            let frame = match had {
                Some(provider) => ctx.read_table(provider),
                None => Ok(self.plan_in(&ctx, step, params).await?),
            };
            let frame = frame.map_err(|e| self.plan_error(step, e))?;
            ctx.register_table(step.name.as_str(), frame.clone().into_view())
                .map_err(|e| self.plan_error(step, e))?;
            planned = Some(frame);
        }
        Ok(planned.expect("a chain has a step"))
    }

    /// The results this run has of `step` for some files, as one table; None unless it has
    /// every one of them.
    fn files_result(&self, step: &Step, keys: &[&str]) -> Option<Arc<ListingTable>> {
        let results = self
            .incremental_results
            .lock()
            .expect("incremental results lock");
        let had = results.get(&step.name)?;
        let locations: Option<Vec<&str>> = keys
            .iter()
            .map(|key| had.files.get(*key).map(|(location, _)| location.as_str()))
            .collect();
        let format = Arc::new(ParquetFormat::default());
        files_table(&locations?, format, &had.schema).ok()
    }

    /// A session with the run's settings, memory pool, stores and planner (on a cluster, its
    /// queries go to the cluster too) but no tables: one file's tables are registered under
    /// the names the SQL reads.
    fn file_context(&self) -> SessionContext {
        let state = self.ctx.state();
        let config = state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(true);
        let file_state = SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
            .build();
        SessionContext::new_with_state(file_state)
    }
}

/// The incremental steps that `step` reads over the same source (all the way down), then
/// `step`: what runs on each file, in the pipeline's order.
fn chain_of<'a>(step: &'a Step, steps: &'a [Step]) -> Vec<&'a Step> {
    let mut needed: HashSet<&str> = HashSet::from([step.name.as_str()]);
    let mut chain: Vec<&Step> = Vec::new();
    for candidate in steps.iter().rev() {
        if candidate.incremental.is_some() && needed.contains(candidate.name.as_str()) {
            needed.extend(candidate.sql.tables.iter().map(String::as_str));
            chain.push(candidate);
        }
    }
    chain.reverse();
    chain
}

/// The latest value of `time` among `rows`, in microseconds since the epoch.
async fn latest_time(rows: DataFrame, time: &str) -> Result<Option<i64>, DataFusionError> {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let batches = rows
        .aggregate(
            vec![],
            vec![max(cast(col(Column::new_unqualified(time)), utc))],
        )?
        .collect()
        .await?;
    let value = match batches.iter().find(|b| b.num_rows() > 0) {
        Some(batch) => ScalarValue::try_from_array(batch.column(0), 0)?,
        None => return Ok(None),
    };
    Ok(match value {
        ScalarValue::TimestampMicrosecond(latest, _) => latest,
        _ => None,
    })
}

/// Writes `frame` as the one Parquet file `location`; the file appears whole or not at all.
/// Uncompressed, as the run's scratch files: later steps read these files several times a
/// night, and zstd made the first night 10 % slower for 0.42x the size (BENCHMARKS.md).
async fn write_one_file(frame: DataFrame, location: &Location) -> Result<(), DataFusionError> {
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("uncompressed".to_string());
    frame
        .write_parquet(
            location.as_str(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(options),
        )
        .await?;
    Ok(())
}

/// The files at `urls` as one table of `schema`, read with `format`.
fn files_table(
    urls: &[&str],
    format: Arc<dyn FileFormat>,
    schema: &SchemaRef,
) -> Result<Arc<ListingTable>, DataFusionError> {
    let urls = urls
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(ListingOptions::new(format).with_file_extension(""))
        .with_schema(Arc::clone(schema));
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// A computing error about one file of the source names the file.
fn in_file(error: EngineError, url: &str) -> EngineError {
    match error {
        EngineError::Plan {
            what,
            step,
            file,
            message,
        } => EngineError::Plan {
            what,
            step,
            file,
            message: format!("on {url}: {message}"),
        },
        other => other,
    }
}
