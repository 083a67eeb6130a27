//! Sources: files listed, every footer checked against the declared columns, and one schema
//! for the table however its files differ: a declared column has its declared type, another
//! the type all its files convert to. Timestamps of any unit or zone become instants in
//! microseconds shown in the pipeline's zone (see [`super::instants`]); naive ones are
//! wall-clock times of the source's zone. A source with a key is checked for repeated and
//! missing keys before any step reads it, or reduced to its latest row per key when it says
//! how.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::functions_window::expr_fn::rank;
use datafusion::logical_expr::{ExprFunctionExt, col, lit};
use datafusion::prelude::{DataFrame, Expr};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

use super::instants::{in_zone, instant_type};
use super::{Engine, EngineError, TypeConflict};
use crate::pipeline::{Source, SourceKey, did_you_mean};
use crate::segments::{self, Members, Unmatched};
use crate::storage::Location;

const FOOTER_READS_IN_FLIGHT: usize = 16;
/// Most footers fit in one read of this size.
const FOOTER_PREFETCH: usize = 64 * 1024;
/// The column name under which a source's rows are ranked within their key.
const KEY_RANK: &str = "__segflow_key_rank";

/// One Parquet file of a source, as its footer describes it.
struct SourceFile {
    /// Its URL, for messages.
    url: String,
    /// Hive partition keys in its path (`region=emea/`), which count as columns.
    partition_keys: Vec<String>,
    schema: SchemaRef,
}

/// A file of a registered source, kept to find a damaged one when a query fails.
pub(super) struct RegisteredFile {
    table: String,
    url: String,
}

impl Engine {
    /// Checks a source's files against its declared columns, then registers it as a table
    /// with one type per column. Reads footers only, no data.
    pub async fn register_source(&self, source: &Source) -> Result<(), EngineError> {
        let store = self.storage.store(&source.location, &source.options)?;
        let location = self.storage.source_location(&source.location);
        let listed = self
            .parquet_files(&source.name, &location, store.as_ref())
            .await?;
        let registered: Vec<RegisteredFile> = listed
            .iter()
            .map(|meta| RegisteredFile {
                table: source.name.clone(),
                url: match location.is_folder() {
                    true => location
                        .join(&location.relative(&meta.location))
                        .to_string(),
                    false => location.to_string(),
                },
            })
            .collect();
        let files = read_footers(source, &location, listed, &store).await?;
        self.source_files
            .lock()
            .expect("source files lock")
            .extend(registered);
        for file in &files {
            check_declared_columns(source, file)?;
        }
        let schema = reconcile(source, &files)?;
        let listing = self
            .listing(&source.name, &location, schema.files, true)
            .await?;
        let mut frame = self
            .ctx
            .read_table(listing)
            .and_then(|f| in_zone(f, self.zone, source.timezone, &schema.wall_clock))
            .map_err(|e| register_error(source, &location, e))?;
        if let Some(key) = &source.key {
            check_key_columns(source, key, &frame)?;
            if let Some(latest) = &key.keep_latest_by {
                frame = latest_per_key(frame, &key.columns, latest)
                    .map_err(|e| register_error(source, &location, e))?;
            }
        }
        self.ctx
            .register_table(source.name.as_str(), frame.into_view())
            .map_err(|e| register_error(source, &location, e))?;
        Ok(())
    }

    /// Fails when a keyed source has rows with a missing key, or keys on several rows (after
    /// `keep_latest_by`, several rows sharing the latest value). Reads the source's data.
    pub async fn check_key(&self, source: &Source) -> Result<(), EngineError> {
        let Some(key) = &source.key else {
            return Ok(());
        };
        let failed = |error| scan_error(source, error);
        let frame = self.ctx.table(source.name.as_str()).await.map_err(failed)?;
        let missing = key
            .columns
            .iter()
            .map(|c| column(c).is_null())
            .reduce(Expr::or)
            .expect("a key has columns");
        let rows_without_key = frame
            .clone()
            .filter(missing)
            .map_err(failed)?
            .count()
            .await
            .map_err(failed)?;
        if rows_without_key > 0 {
            return Err(EngineError::MissingKey {
                table: source.name.clone(),
                key: key.columns.join(", "),
                rows: rows_without_key,
            });
        }
        let keys: Vec<Expr> = key.columns.iter().map(|c| column(c)).collect();
        let repeated = frame
            .aggregate(
                keys.clone(),
                vec![datafusion::functions_aggregate::count::count_all().alias("rows")],
            )
            .and_then(|f| f.filter(col("rows").gt(lit(1_i64))))
            .and_then(|f| f.sort(keys.iter().map(|k| k.clone().sort(true, true)).collect()))
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let count: usize = repeated.iter().map(|b| b.num_rows()).sum();
        let Some(first) = repeated.iter().find(|b| b.num_rows() > 0) else {
            return Ok(());
        };
        let example = key
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let value = ScalarValue::try_from_array(first.column(i), 0)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                format!("{column} {value}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        // COUNT(*) is an Int64 column, after the key columns.
        let rows = first
            .column(key.columns.len())
            .as_primitive::<Int64Type>()
            .value(0);
        Err(EngineError::RepeatedKey {
            table: source.name.clone(),
            key: key.columns.join(", "),
            repeated: count,
            example,
            rows,
            latest_by: key.keep_latest_by.clone(),
        })
    }

    /// Counts the rows of `source` that no known customer placed (see
    /// [`segments::unmatched`]); the members table itself is not counted.
    pub async fn unmatched(
        &self,
        source: &Source,
        members: &Members,
    ) -> Result<Option<Unmatched>, EngineError> {
        if source.name == members.table {
            return Ok(None);
        }
        let failed = |error| scan_error(source, error);
        let rows = self.ctx.table(source.name.as_str()).await.map_err(failed)?;
        let known = self
            .ctx
            .table(members.table.as_str())
            .await
            .map_err(failed)?;
        segments::unmatched(rows, known).await.map_err(failed)
    }

    /// After a query failed on data that does not decode: reads every source file through,
    /// one at a time, and names the first that fails. Costs a full scan, so only for errors.
    pub async fn find_damaged_file(&self) -> Option<EngineError> {
        let files: Vec<(String, String)> = self
            .source_files
            .lock()
            .expect("source files lock")
            .iter()
            .map(|f| (f.table.clone(), f.url.clone()))
            .collect();
        for (table, url) in files {
            // A storage failure on the second look says nothing of the file.
            match self.read_through(&url).await {
                Err(error) if !super::is_environment_failure(&error) => {
                    return Some(EngineError::DamagedFile {
                        table,
                        url,
                        reason: super::describe(&error),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// Decodes every page of one Parquet file, as it is, apart from its source.
    async fn read_through(&self, url: &str) -> Result<(), datafusion::error::DataFusionError> {
        let options = datafusion::prelude::ParquetReadOptions::default();
        let mut batches = self
            .ctx
            .read_parquet(url, options)
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = batches.next().await {
            batch?;
        }
        Ok(())
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
}

/// A query over a source failed: the environment's fault when it ran out of memory, disk or
/// storage, else the data's (a value that does not convert, say).
fn scan_error(source: &Source, error: datafusion::error::DataFusionError) -> EngineError {
    if super::is_unreadable_data(&error) {
        EngineError::UnreadableData {
            step: source.name.clone(),
            message: super::describe(&error),
        }
    } else if super::is_environment_failure(&error) {
        EngineError::Execute {
            step: source.name.clone(),
            source: error,
        }
    } else {
        EngineError::SourceData {
            table: source.name.clone(),
            message: super::describe(&error),
        }
    }
}

fn register_error(
    source: &Source,
    location: &Location,
    error: datafusion::error::DataFusionError,
) -> EngineError {
    EngineError::Register {
        table: source.name.clone(),
        url: location.to_string(),
        source: error,
    }
}

/// A column by its name as written (SQL would lower-case an unquoted name).
fn column(name: &str) -> Expr {
    col(datafusion::common::Column::new_unqualified(name))
}

/// Reads every file's footer (not its data), in order, several at a time.
async fn read_footers(
    source: &Source,
    location: &Location,
    listed: Vec<object_store::ObjectMeta>,
    store: &Arc<dyn ObjectStore>,
) -> Result<Vec<SourceFile>, EngineError> {
    let read: Vec<_> = futures::stream::iter(listed)
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
    read.into_iter()
        .map(|(meta, schema)| {
            let relative = location.relative(&meta.location);
            let url = if location.is_folder() {
                location.join(&relative).to_string()
            } else {
                location.to_string()
            };
            let schema = schema.map_err(|error| EngineError::UnreadableFile {
                table: source.name.clone(),
                file: url.clone(),
                source: error,
            })?;
            let partition_keys = relative
                .split('/')
                .filter_map(|part| part.split_once('=').map(|(key, _)| key.to_string()))
                .collect();
            Ok(SourceFile {
                url,
                partition_keys,
                schema,
            })
        })
        .collect()
}

/// Compares one file with the declared columns, so that a wrong file is named before any
/// SQL runs.
fn check_declared_columns(source: &Source, file: &SourceFile) -> Result<(), EngineError> {
    for (column, expected) in &source.columns {
        if file.partition_keys.contains(column) {
            continue;
        }
        match file.schema.field_with_name(column) {
            Ok(field) if expected.accepts(field.data_type()) => {}
            Ok(field) => {
                return Err(EngineError::WrongType {
                    table: source.name.clone(),
                    file: file.url.clone(),
                    column: column.clone(),
                    expected: expected.to_string(),
                    found: field.data_type().clone(),
                });
            }
            Err(_) => {
                let names = file.schema.fields().iter().map(|f| f.name().as_str());
                return Err(EngineError::MissingColumn {
                    table: source.name.clone(),
                    file: file.url.clone(),
                    column: column.clone(),
                    expected: expected.to_string(),
                    hint: did_you_mean(column, names),
                });
            }
        }
    }
    Ok(())
}

/// How the files of a source are read as one table.
struct SourceSchema {
    /// The listing's schema (Hive partition keys aside).
    files: SchemaRef,
    /// Timestamp columns that hold wall-clock times of the source's zone, typed as naive
    /// microseconds here and turned into instants by [`in_zone`].
    wall_clock: Vec<String>,
}

/// One column as the files seen so far have it.
struct MergedColumn<'a> {
    name: &'a str,
    /// The type every file so far converts to (for timestamps, any timestamp).
    data_type: DataType,
    first_file: &'a str,
    first_type: &'a DataType,
    naive_in: Option<&'a str>,
    aware_in: Option<&'a str>,
}

impl<'a> MergedColumn<'a> {
    fn new(field: &'a Field, file: &'a str) -> Self {
        let mut column = MergedColumn {
            name: field.name(),
            data_type: field.data_type().clone(),
            first_file: file,
            first_type: field.data_type(),
            naive_in: None,
            aware_in: None,
        };
        column.note_zone(field.data_type(), file);
        column
    }

    fn note_zone(&mut self, found: &DataType, file: &'a str) {
        match found {
            DataType::Timestamp(_, None) => {
                self.naive_in.get_or_insert(file);
            }
            DataType::Timestamp(_, Some(_)) => {
                self.aware_in.get_or_insert(file);
            }
            _ => {}
        }
    }

    /// Takes in one more file's type, if it has one in common with the others.
    fn merge(&mut self, found: &DataType, file: &'a str) -> Option<()> {
        self.note_zone(found, file);
        let common = match (&self.data_type, found) {
            (DataType::Timestamp(..), DataType::Timestamp(..)) => self.data_type.clone(),
            (known, found) => common_type(known, found)?,
        };
        self.data_type = common;
        Some(())
    }
}

/// One schema for all files of a source: every column any file has (Hive partition keys
/// aside), in the order first seen. A declared column has its declared type (each file was
/// checked to convert to it); another gets the type all its files convert to. Timestamps are
/// read as UTC instants, or, where the source's zone is not UTC and the files hold wall-clock
/// times, as naive times for [`in_zone`] to place. A file without a column reads it as NULL.
fn reconcile(source: &Source, files: &[SourceFile]) -> Result<SourceSchema, EngineError> {
    let mut columns: Vec<MergedColumn> = Vec::new();
    for file in files {
        for field in file.schema.fields() {
            if file.partition_keys.contains(field.name()) {
                continue;
            }
            match columns.iter_mut().find(|c| c.name == field.name()) {
                None => columns.push(MergedColumn::new(field, &file.url)),
                Some(known) => {
                    if known.merge(field.data_type(), &file.url).is_none() {
                        return Err(EngineError::ColumnTypesDiffer(Box::new(TypeConflict {
                            table: source.name.clone(),
                            column: field.name().clone(),
                            first_file: known.first_file.to_string(),
                            first_type: known.first_type.clone(),
                            other_file: file.url.clone(),
                            other_type: field.data_type().clone(),
                        })));
                    }
                }
            }
        }
    }
    let reads_wall_clock = source.timezone != chrono_tz::Tz::UTC;
    let mut wall_clock = Vec::new();
    let mut fields = Vec::new();
    for column in columns {
        let declared = source.columns.iter().find(|(name, _)| name == column.name);
        let data_type = match (&column.data_type, column.naive_in, column.aware_in) {
            (DataType::Timestamp(..), Some(naive), Some(aware)) if reads_wall_clock => {
                return Err(EngineError::WallClockAndInstants {
                    table: source.name.clone(),
                    column: column.name.to_string(),
                    naive_file: naive.to_string(),
                    aware_file: aware.to_string(),
                    zone: source.timezone.name().to_string(),
                });
            }
            (DataType::Timestamp(..), Some(_), None) if reads_wall_clock => {
                wall_clock.push(column.name.to_string());
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            (DataType::Timestamp(..), ..) => instant_type(chrono_tz::Tz::UTC),
            (merged, ..) => match declared {
                Some((_, declared)) => declared.arrow_type(chrono_tz::Tz::UTC.name()),
                None => merged.clone(),
            },
        };
        fields.push(Field::new(column.name, data_type, true));
    }
    Ok(SourceSchema {
        files: Arc::new(Schema::new(fields)),
        wall_clock,
    })
}

/// A type that values of both `a` and `b` convert to exactly, if any. Integers meet at Int64
/// (not UInt64, whose large values it cannot hold); integers and floats do not meet, since
/// ids above 2^53 would change.
fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    let signed_64 =
        |t: &DataType| matches!(t, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32);
    Some(match (a, b) {
        (Null, other) | (other, Null) => other.clone(),
        (Dictionary(_, value), other) | (other, Dictionary(_, value)) => {
            return common_type(value, other);
        }
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => Utf8,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => Binary,
        (x, y) if signed_64(x) && signed_64(y) => Int64,
        (Float16 | Float32 | Float64, Float16 | Float32 | Float64) => Float64,
        (Date32 | Date64, Date32 | Date64) => Date32,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            let scale = (*s1).max(*s2);
            let whole = (i16::from(*p1) - i16::from(*s1)).max(i16::from(*p2) - i16::from(*s2));
            let precision = u8::try_from(whole + i16::from(scale)).ok()?;
            if precision > 38 {
                return None;
            }
            Decimal128(precision, scale)
        }
        _ => return None,
    })
}

fn check_key_columns(
    source: &Source,
    key: &SourceKey,
    frame: &DataFrame,
) -> Result<(), EngineError> {
    let schema = frame.schema();
    let names = || schema.fields().iter().map(|f| f.name().as_str());
    for column in key.columns.iter().chain(&key.keep_latest_by) {
        if !names().any(|name| name == column) {
            return Err(EngineError::KeyColumn {
                table: source.name.clone(),
                column: column.clone(),
                hint: did_you_mean(column, names()),
            });
        }
    }
    Ok(())
}

/// The rows whose `latest` value is the greatest of their key (NULLs last); ties stay, so
/// that [`Engine::check_key`] reports them.
fn latest_per_key(
    frame: DataFrame,
    key: &[String],
    latest: &str,
) -> datafusion::error::Result<DataFrame> {
    let columns: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| column(f.name()))
        .collect();
    let ranked = rank()
        .partition_by(key.iter().map(|c| column(c)).collect())
        .order_by(vec![column(latest).sort(false, false)])
        .build()?
        .alias(KEY_RANK);
    frame
        .window(vec![ranked])?
        .filter(col(KEY_RANK).eq(lit(1_u64)))?
        .select(columns)
}

/// The Arrow schema of a Parquet file, from its footer and page index alone.
async fn read_footer_schema(
    store: Arc<dyn ObjectStore>,
    meta: &object_store::ObjectMeta,
) -> Result<SchemaRef, ParquetError> {
    let mut footer = Footer {
        store,
        path: meta.location.clone(),
    };
    // The page index too, where there is one: DataFusion reads it to skip pages, and a
    // corrupt one is better named here, with its file, than later in some step.
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .with_prefetch_hint(Some(FOOTER_PREFETCH))
        .load_and_finish(&mut footer, meta.size)
        .await?;
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    Ok(Arc::new(schema))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_of_different_files_meet_where_values_convert() {
        use DataType::*;
        assert_eq!(common_type(&Int32, &Int64), Some(Int64));
        assert_eq!(common_type(&LargeUtf8, &Utf8), Some(Utf8));
        assert_eq!(common_type(&Date64, &Date32), Some(Date32));
        assert_eq!(
            common_type(&Decimal128(12, 2), &Decimal128(10, 4)),
            Some(Decimal128(14, 4))
        );
        let dictionary = Dictionary(Box::new(UInt16), Box::new(Utf8));
        assert_eq!(common_type(&dictionary, &Utf8), Some(Utf8));
        assert_eq!(common_type(&Utf8, &Int64), None);
        assert_eq!(common_type(&Int64, &Float64), None);
        assert_eq!(common_type(&UInt64, &Int64), None);
        assert_eq!(common_type(&UInt32, &Int64), Some(Int64));
        assert_eq!(
            common_type(&Utf8, &Timestamp(TimeUnit::Microsecond, None)),
            None
        );
    }
}
