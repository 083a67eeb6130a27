//! Sources whose rows are versions (docs/sources.md, "Rows that change"): connectors export an order
//! again when it is refunded or cancelled, deliver rows twice, and mark deletions. Each run
//! sees, per key, the version in force at the end of its as_of day, whatever was exported
//! later, so a night, its backfill and an incremental run agree.
//!
//! A run resolves a versioned source once, from an index of its versions read file by file
//! (key, version time, deletion, the file's place in the listing). What it finds is, per
//! file, the versions set aside (superseded, stamped after the winner, or deletions in force).
//! Every reader of a file (the source's table, each file of an incremental step) reads it
//! without them; a file's set-aside versions are part of what names its kept results, so a
//! refund exported a month later computes the month's file again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Int32Type, TimeUnit, UInt64Type};
use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_window::expr_fn::{rank, row_number};
use datafusion::logical_expr::{ExprFunctionExt, when};
use datafusion::prelude::{DataFrame, Expr, cast, col, lit};
use object_store::ObjectMeta;

use super::sources::SourceParts;
use super::{Engine, EngineError};
use crate::pipeline::{Source, SourceKey, Versions};

const FILE: &str = "__segflow_file";
const TIME: &str = "__segflow_version";
const DELETED: &str = "__segflow_deleted";
const RANK: &str = "__segflow_rank";
const ROW: &str = "__segflow_row";
const ROWS: &str = "__segflow_rows";
const REPEATED: &str = "__segflow_repeated";

/// A version without a time is older than every version with one.
const NO_TIME: i64 = i64::MIN;

/// What a run found of a versioned source.
pub(super) struct InForce {
    /// Each file's place in the listing, by URL: of two versions of a key stamped with the
    /// same time, the one in the file listed later wins.
    ranks: HashMap<String, i32>,
    /// Per file (by place): the versions not in force, as the key columns and the time.
    set_aside: HashMap<i32, RecordBatch>,
    /// Files where a key's version in force is on more than one row: they are read with
    /// alike rows counted once.
    tied: HashSet<i32>,
}

/// How many rows of a versioned source a run set aside, reported with each run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionCounts {
    /// Rows that are not the version in force of their key (superseded, or later than it).
    pub set_aside: u64,
    /// Rows that are deletions in force, which take their key away.
    pub deleted: u64,
}

impl InForce {
    /// What names a file's kept results besides the file itself: its versions set aside.
    pub(super) fn digest_of(&self, url: &str) -> Option<String> {
        let batch = self.set_aside.get(self.ranks.get(url)?)?;
        let mut hasher = blake3::Hasher::new();
        for column in batch.columns() {
            let data = column.to_data();
            for buffer in data.buffers() {
                hasher.update(buffer.as_slice());
            }
            if let Some(nulls) = data.nulls() {
                hasher.update(nulls.validity());
            }
        }
        Some(hasher.finalize().to_hex()[..32].to_string())
    }
}

impl Engine {
    /// Settles a keyed source before any step reads it: fails on rows with a missing key,
    /// reduces a versioned source to its rows in force at `as_of_end` (microseconds), then
    /// fails on keys that are on more than one row. Reads the source's data.
    pub async fn settle_key(
        &self,
        source: &Source,
        as_of_end: i64,
    ) -> Result<Option<VersionCounts>, EngineError> {
        let Some(key) = &source.key else {
            return Ok(None);
        };
        self.check_missing_key(source, key).await?;
        let Some(versions) = &key.versions else {
            self.check_repeated_key(source, key).await?;
            return Ok(None);
        };
        let counts = self
            .resolve_versions(source, key, versions, as_of_end)
            .await?;
        // Once resolved, only rows that share a key's time in one file can repeat it.
        if self.has_ties(&source.name) {
            self.check_repeated_key(source, key).await?;
        }
        Ok(Some(counts))
    }

    /// Finds each key's version in force at `as_of_end` (microseconds) and registers the
    /// source's table as those rows only.
    pub(super) async fn resolve_versions(
        &self,
        source: &Source,
        key: &SourceKey,
        versions: &Versions,
        as_of_end: i64,
    ) -> Result<VersionCounts, EngineError> {
        let parts = self.parts_of(&source.name);
        let failed = |error| {
            self.query_error(&source.name, error, |error| {
                super::sources::scan_error(source, error)
            })
        };
        let mut files: Vec<&ObjectMeta> = parts.files.iter().collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let mut ranks = HashMap::new();
        let mut index: Option<DataFrame> = None;
        for (rank, file) in files.iter().enumerate() {
            let rank = rank as i32;
            ranks.insert(super::text::file_url(&parts.location, file), rank);
            let frame = self.file_frame(&parts, file).map_err(failed)?;
            let columns = index_columns(source, key, versions, &frame, rank)?;
            let frame = frame.select(columns).map_err(failed)?;
            index = Some(match index {
                None => frame,
                Some(earlier) => earlier.union(frame).map_err(failed)?,
            });
        }
        let index = index.expect("a source has files");
        let repeated = repeated_keys(index.clone(), key)
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let candidates = self.to_rank(index, key, repeated).map_err(failed)?;
        let found = not_in_force(candidates, key, as_of_end)
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let (in_force, counts) = sort_out(key, ranks, &found).map_err(failed)?;
        let in_force = Arc::new(in_force);
        self.in_force
            .lock()
            .expect("in force lock")
            .insert(source.name.clone(), Arc::clone(&in_force));
        let mut table: Option<DataFrame> = None;
        for file in &parts.files {
            let frame = self.file_in_force(&parts, file).map_err(failed)?;
            table = Some(match table {
                None => frame,
                Some(earlier) => earlier.union(frame).map_err(failed)?,
            });
        }
        let table = table.expect("a source has files");
        self.ctx
            .deregister_table(source.name.as_str())
            .and_then(|_| {
                self.ctx
                    .register_table(source.name.as_str(), table.into_view())
            })
            .map_err(failed)?;
        tracing::info!(
            source = %source.name,
            set_aside = counts.set_aside,
            deleted = counts.deleted,
            tied_files = in_force.tied.len(),
            "Rows in force found."
        );
        Ok(counts)
    }

    /// Whether a versioned source has files where two rows share a key's version in force,
    /// the only place where a key can repeat once versions are resolved.
    /// The rows of `index` whose key has several (`repeated`, collected), and deletions: the
    /// only ones that can be set aside.
    fn to_rank(
        &self,
        index: DataFrame,
        key: &SourceKey,
        repeated: Vec<RecordBatch>,
    ) -> datafusion::error::Result<DataFrame> {
        let repeated: Vec<RecordBatch> =
            repeated.into_iter().filter(|b| b.num_rows() > 0).collect();
        if repeated.is_empty() {
            return index.filter(col(DELETED));
        }
        let columns: Vec<Expr> = index
            .schema()
            .fields()
            .iter()
            .map(|f| col(f.name()))
            .collect();
        let on: Vec<Expr> = (0..key.columns.len())
            .map(|i| col(repeated_alias(i)).eq(col(key_alias(i))))
            .collect();
        let marked: Vec<Expr> = (0..key.columns.len())
            .map(|i| col(repeated_alias(i)))
            .chain([lit(true).alias(REPEATED)])
            .collect();
        // The few repeated keys are the side of the join that is built; every row of the
        // index comes through it once, marked when its key is repeated.
        self.ctx
            .read_batches(repeated)?
            .select(marked)?
            .join_on(index, JoinType::Right, on)?
            .filter(col(REPEATED).is_true().or(col(DELETED)))?
            .select(columns)
    }

    pub(super) fn has_ties(&self, source: &str) -> bool {
        self.in_force
            .lock()
            .expect("in force lock")
            .get(source)
            .is_some_and(|found| !found.tied.is_empty())
    }

    /// One file of a source as its readers see it: without its versions that are not in
    /// force, when the source is versioned.
    pub(super) fn file_in_force(
        &self,
        parts: &SourceParts,
        file: &ObjectMeta,
    ) -> Result<DataFrame, DataFusionError> {
        let frame = self.file_frame(parts, file)?;
        let Some(found) = self.found_for(&parts.name) else {
            return Ok(frame);
        };
        let Some(key) = &parts.key else {
            return Ok(frame);
        };
        let versions = key
            .versions
            .as_ref()
            .expect("a resolved source has versions");
        let url = super::text::file_url(&parts.location, file);
        let Some(rank) = found.ranks.get(&url) else {
            return Ok(frame);
        };
        let columns: Vec<Expr> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name()))
            .collect();
        let mut frame = frame;
        if let Some(aside) = found.set_aside.get(rank) {
            let aside = self.ctx.read_batch(aside.clone())?;
            let mut on: Vec<Expr> = key
                .columns
                .iter()
                .enumerate()
                .map(|(i, name)| column(name).eq(col(key_alias(i))))
                .collect();
            on.push(version_time(versions, frame.schema()).eq(col(TIME)));
            frame = frame
                .join_on(aside, JoinType::LeftAnti, on)?
                .select(columns)?;
        }
        if found.tied.contains(rank) {
            frame = frame.distinct()?;
        }
        Ok(frame)
    }

    /// What names a file's kept results besides the file: its versions set aside this run.
    pub(super) fn set_aside_digest(&self, parts: &SourceParts, file: &ObjectMeta) -> String {
        let url = super::text::file_url(&parts.location, file);
        self.found_for(&parts.name)
            .and_then(|found| found.digest_of(&url))
            .unwrap_or_default()
    }

    fn found_for(&self, source: &str) -> Option<Arc<InForce>> {
        self.in_force
            .lock()
            .expect("in force lock")
            .get(source)
            .cloned()
    }
}

/// The index columns of one file: the key as `__segflow_key_<i>`, the version time in
/// microseconds (NULL as the oldest), whether the row is a deletion, and the file's place.
fn index_columns(
    source: &Source,
    key: &SourceKey,
    versions: &Versions,
    frame: &DataFrame,
    rank: i32,
) -> Result<Vec<Expr>, EngineError> {
    let schema = frame.schema();
    let type_of = |name: &str| {
        schema
            .field_with_unqualified_name(name)
            .map(|f| f.data_type().clone())
            .ok()
    };
    let wrong = |column: &str, role: &'static str, expected: &'static str, found: DataType| {
        EngineError::VersionColumn {
            table: source.name.clone(),
            column: column.to_string(),
            role,
            expected,
            found,
        }
    };
    match type_of(&versions.by) {
        Some(DataType::Timestamp(..)) | None => {}
        Some(other) => return Err(wrong(&versions.by, "version", "a timestamp", other)),
    }
    let deleted = match &versions.deleted {
        None => lit(false),
        Some(name) => match type_of(name) {
            Some(DataType::Boolean) => column(name).is_true(),
            Some(DataType::Timestamp(..)) => column(name).is_not_null(),
            Some(other) => {
                return Err(wrong(name, "deleted", "a bool or a timestamp", other));
            }
            None => lit(false),
        },
    };
    let mut columns: Vec<Expr> = key
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| column(name).alias(key_alias(i)))
        .collect();
    columns.push(version_time(versions, schema).alias(TIME));
    columns.push(deleted.alias(DELETED));
    columns.push(lit(rank).alias(FILE));
    Ok(columns)
}

/// A row's version time in microseconds since the epoch. A deletion without one is stamped
/// by its deletion time, when that is a timestamp (Airbyte's deletion stubs have
/// `deleted_at` and no `updated_at`); else no time is the oldest.
fn version_time(versions: &Versions, schema: &DFSchema) -> Expr {
    let micros = |name: &str| {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        cast(cast(column(name), utc), DataType::Int64)
    };
    let mut times = vec![micros(&versions.by)];
    if let Some(deleted) = &versions.deleted
        && let Ok(field) = schema.field_with_unqualified_name(deleted)
        && matches!(field.data_type(), DataType::Timestamp(..))
    {
        times.push(micros(deleted));
    }
    times.push(lit(NO_TIME));
    datafusion::functions::expr_fn::coalesce(times)
}

/// The keys of `index` with more than one row, as `__segflow_repeated_key_<i>`.
///
/// Ranking sorts the rows by key, which took longer than the rest of a night on 10M orders
/// (BENCHMARKS.md, "Issue 30"). Most keys have one row, which is in force unless it is a
/// deletion: only the rows of keys with several, and deletions, are ranked. Counting each
/// key's rows is one hash aggregation. It is a query of its own, collected, rather than a
/// join of the index with itself: a Ballista 55 cluster stalls on a plan that reads one
/// scan twice.
fn repeated_keys(index: DataFrame, key: &SourceKey) -> datafusion::error::Result<DataFrame> {
    let keys: Vec<Expr> = (0..key.columns.len()).map(|i| col(key_alias(i))).collect();
    index
        .aggregate(keys, vec![count(lit(1_i64)).alias(ROWS)])?
        .filter(col(ROWS).gt(lit(1_i64)))?
        .select(
            (0..key.columns.len())
                .map(|i| col(key_alias(i)).alias(repeated_alias(i)))
                .collect::<Vec<_>>(),
        )
}

/// The rows of `index` that are not their key's version in force, and the rows that share
/// it with another row of the same file (marked by a row number over 1). `index` holds the
/// rows to rank: those of repeated keys, and deletions.
///
/// The version in force is the latest one stamped before `as_of_end`; a key with none
/// before it (first exported later, or from an export that keeps only the newest row)
/// counts by its earliest version. Ties in time go to the file listed later.
fn not_in_force(
    index: DataFrame,
    key: &SourceKey,
    as_of_end: i64,
) -> datafusion::error::Result<DataFrame> {
    let keys: Vec<Expr> = (0..key.columns.len()).map(|i| col(key_alias(i))).collect();
    let before = col(TIME).lt(lit(as_of_end));
    let order = when(before.clone(), col(TIME)).otherwise(lit(0_i64) - col(TIME))?;
    let sort = vec![
        before.sort(false, false),
        order.sort(false, false),
        col(FILE).sort(false, false),
    ];
    let ranked = rank()
        .partition_by(keys.clone())
        .order_by(sort.clone())
        .build()?
        .alias(RANK);
    let numbered = row_number()
        .partition_by(keys)
        .order_by(sort)
        .build()?
        .alias(ROW);
    let first = col(RANK).eq(lit(1_u64));
    index.window(vec![ranked, numbered])?.filter(
        col(RANK)
            .gt(lit(1_u64))
            .or(col(DELETED))
            .or(first.and(col(ROW).gt(lit(1_u64)))),
    )
}

/// Splits what [`not_in_force`] found into each file's set-aside versions and the files
/// with ties.
fn sort_out(
    key: &SourceKey,
    ranks: HashMap<String, i32>,
    found: &[RecordBatch],
) -> datafusion::error::Result<(InForce, VersionCounts)> {
    let mut counts = VersionCounts::default();
    let mut tied = HashSet::new();
    let mut aside: HashMap<i32, Vec<RecordBatch>> = HashMap::new();
    let kept: Vec<String> = (0..key.columns.len())
        .map(key_alias)
        .chain([TIME.to_string()])
        .collect();
    for batch in found.iter().filter(|b| b.num_rows() > 0) {
        let index = |name: &str| batch.schema().index_of(name);
        let rank = batch.column(index(RANK)?).as_primitive::<UInt64Type>();
        let deleted = batch.column(index(DELETED)?).as_boolean();
        let files = batch.column(index(FILE)?).as_primitive::<Int32Type>();
        let mut set_aside = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let winner = rank.value(row) == 1;
            let is_deleted = deleted.value(row);
            match (winner, is_deleted) {
                // Another row of the file shares the key's version in force.
                (true, false) => {
                    tied.insert(files.value(row));
                }
                (true, true) => counts.deleted += 1,
                (false, _) => {}
            }
            set_aside.push(!winner || is_deleted);
        }
        let mask = BooleanArray::from(set_aside);
        let projected = batch.project(
            &kept
                .iter()
                .map(|name| index(name))
                .collect::<Result<Vec<_>, _>>()?,
        )?;
        let chosen = filter_record_batch(&projected, &mask)?;
        let chosen_files = datafusion::arrow::compute::filter(files, &mask)?;
        let chosen_files = chosen_files.as_primitive::<Int32Type>();
        counts.set_aside += chosen.num_rows() as u64;
        // Rows of one file next to each other: split the batch where the file changes.
        let mut start = 0;
        while start < chosen.num_rows() {
            let file = chosen_files.value(start);
            let mut end = start + 1;
            while end < chosen.num_rows() && chosen_files.value(end) == file {
                end += 1;
            }
            aside
                .entry(file)
                .or_default()
                .push(chosen.slice(start, end - start));
            start = end;
        }
    }
    let set_aside = aside
        .into_iter()
        .map(|(file, batches)| {
            let schema = batches[0].schema();
            let mut one = concat_batches(&schema, &batches)?;
            // One order of the pairs, whatever order the query gave: the digest names them.
            let sort: Vec<_> = one
                .columns()
                .iter()
                .map(|c| datafusion::arrow::compute::SortColumn {
                    values: Arc::clone(c),
                    options: None,
                })
                .collect();
            let indices = datafusion::arrow::compute::lexsort_to_indices(&sort, None)?;
            one = datafusion::arrow::compute::take_record_batch(&one, &indices)?;
            Ok((file, one))
        })
        .collect::<Result<HashMap<_, _>, DataFusionError>>()?;
    Ok((
        InForce {
            ranks,
            set_aside,
            tied,
        },
        counts,
    ))
}

fn key_alias(i: usize) -> String {
    format!("__segflow_key_{i}")
}

fn repeated_alias(i: usize) -> String {
    format!("__segflow_repeated_key_{i}")
}

/// A column by its name as written (SQL would lower-case an unquoted name).
fn column(name: &str) -> Expr {
    col(Column::new_unqualified(name))
}
