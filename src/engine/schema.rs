//! One schema for a source however its files differ: every footer checked against the
//! declared columns, a declared column read as its declared type, another as the type all
//! its files convert to, timestamps as instants (see [`super::instants`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::errors::ParquetError;

use super::{EngineError, TypeConflict};
use crate::functions::instant_type;
use crate::hint::did_you_mean;
use crate::pipeline::Source;
use crate::storage::{Location, parquet_footer};

const FOOTER_READS_IN_FLIGHT: usize = 16;

/// One Parquet file of a source, as its footer describes it.
pub(super) struct SourceFile {
    /// Its URL, for messages.
    url: String,
    /// Hive partition keys in its path (`region=emea/`), which count as columns.
    partition_keys: Vec<String>,
    schema: SchemaRef,
}

/// Reads every file's footer (not its data), in order, several at a time.
pub(super) async fn read_footers(
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
pub(super) fn check_declared_columns(
    source: &Source,
    file: &SourceFile,
) -> Result<(), EngineError> {
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
pub(super) struct SourceSchema {
    /// The listing's schema (Hive partition keys aside).
    pub(super) files: SchemaRef,
    /// Timestamp columns that hold wall-clock times of the source's zone, typed as naive
    /// microseconds here and turned into instants by [`crate::functions::in_zone`].
    pub(super) wall_clock: Vec<String>,
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
pub(super) fn reconcile(
    source: &Source,
    files: &[SourceFile],
) -> Result<SourceSchema, EngineError> {
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
/// ids above 2^53 would change. Nested types meet where their parts do, whatever names their
/// writers gave the parts (a list's item is `item` to Arrow and polars, `element` to pyarrow,
/// DuckDB and Spark; a map's entries `entries` or `key_value`); a struct has the fields of
/// both, by name.
fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    let item = |t: &DataType| match t {
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            Some(f.data_type().clone())
        }
        _ => None,
    };
    if let (Some(x), Some(y)) = (item(a), item(b)) {
        return Some(List(Arc::new(Field::new_list_field(
            common_type(&x, &y)?,
            true,
        ))));
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
        (Timestamp(unit, x), Timestamp(_, y)) if x.is_some() == y.is_some() => {
            Timestamp(*unit, x.clone())
        }
        (Struct(xs), Struct(ys)) => {
            let mut fields: Vec<Field> = Vec::new();
            for field in xs.iter().chain(ys.iter()) {
                match fields.iter_mut().find(|f| f.name() == field.name()) {
                    Some(known) => {
                        let merged = common_type(known.data_type(), field.data_type())?;
                        *known = Field::new(field.name(), merged, true);
                    }
                    None => fields.push(Field::new(field.name(), field.data_type().clone(), true)),
                }
            }
            Struct(fields.into())
        }
        (Map(x, _), Map(y, _)) => {
            let key_value = |entries: &Field| match entries.data_type() {
                Struct(parts) if parts.len() == 2 => {
                    Some((parts[0].data_type().clone(), parts[1].data_type().clone()))
                }
                _ => None,
            };
            let ((xk, xv), (yk, yv)) = (key_value(x)?, key_value(y)?);
            let entries = Struct(
                vec![
                    Field::new("key", common_type(&xk, &yk)?, false),
                    Field::new("value", common_type(&xv, &yv)?, true),
                ]
                .into(),
            );
            Map(Arc::new(Field::new("entries", entries, false)), false)
        }
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

/// The Arrow schema of a Parquet file, from its footer and page index alone. The page index
/// is read too, where there is one: DataFusion reads it to skip pages, and a corrupt one is
/// better named here, with its file, than later in some step. INT96 columns (Spark's,
/// Hive's and Impala's timestamps) are UTC instants in microseconds, as the session reads
/// them.
async fn read_footer_schema(
    store: Arc<dyn ObjectStore>,
    meta: &object_store::ObjectMeta,
) -> Result<SchemaRef, ParquetError> {
    let metadata = parquet_footer(store, meta, true).await?;
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    let int96: Vec<&str> = file
        .schema_descr()
        .columns()
        .iter()
        .filter(|c| c.physical_type() == parquet::basic::Type::INT96 && c.path().parts().len() == 1)
        .map(|c| c.name())
        .collect();
    if int96.is_empty() {
        return Ok(Arc::new(schema));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match int96.contains(&f.name().as_str()) {
            true => f.as_ref().clone().with_data_type(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            )),
            false => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
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

    #[test]
    fn nested_types_meet_whatever_their_parts_are_called() {
        use DataType::*;
        let list = |name: &str, item: DataType| List(Arc::new(Field::new(name, item, true)));
        let large = LargeList(Arc::new(Field::new("element", LargeUtf8, true)));
        assert_eq!(
            common_type(&list("element", Utf8), &large),
            Some(list("item", Utf8))
        );
        assert_eq!(common_type(&list("item", Utf8), &list("item", Int64)), None);
        let a = Struct(
            vec![
                Field::new("city", Utf8, true),
                Field::new("n", Int32, false),
            ]
            .into(),
        );
        let b = Struct(vec![Field::new("n", Int64, true), Field::new("zip", Utf8, true)].into());
        let both = Struct(
            vec![
                Field::new("city", Utf8, true),
                Field::new("n", Int64, true),
                Field::new("zip", Utf8, true),
            ]
            .into(),
        );
        assert_eq!(common_type(&a, &b), Some(both));
        let map = |entries: &str, key: &str, value: &str| {
            let parts = vec![
                Field::new(key, Utf8, false),
                Field::new(value, LargeUtf8, true),
            ];
            Map(
                Arc::new(Field::new(entries, Struct(parts.into()), false)),
                false,
            )
        };
        assert_eq!(
            common_type(&map("key_value", "key", "value"), &map("entries", "k", "v")),
            Some(map("entries", "key", "value"))
        );
    }
}
