//! CSV and newline-delimited JSON sources. Text files carry no schema: a CSV header line (or,
//! without one, the spec's column order) and each JSON file's first object are checked
//! against the declared columns before anything is read, and the reader then parses every
//! value as its declared type. Timestamps and decimals are read as text and converted here:
//! text may hold an instant or a wall-clock time ([`crate::functions::text_to_instant`]), and
//! the readers' own decimal parsing drops digits past the scale where it should fail.

use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
use datafusion::catalog::TableProvider;
use datafusion::common::Column;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, cast, col};
use datafusion::prelude::DataFrame;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::EngineError;
use crate::functions::{text_to_decimal, text_to_instant};
use crate::hint::did_you_mean;
use crate::pipeline::{ColumnType, Source, SourceFormat};
use crate::storage::{Location, StorageError};

/// Most header lines and first objects fit in one read of this size ...
const FIRST_LINES_READ: u64 = 64 * 1024;
/// ... and none that segflow should read in this one.
const FIRST_LINES_LIMIT: u64 = 16 * 1024 * 1024;
/// JSON writers leave out fields that are null, so a declared field is looked for in this many
/// first objects of each file.
const JSON_SAMPLE: usize = 100;
/// Where Airbyte's destinations put each record in JSON lines unless told to flatten it.
const AIRBYTE_RECORD: &str = "_airbyte_data";
/// JSON decimals are read with this many places (and 38 digits), then checked against their
/// column's scale: the reader would silently drop places past the scale it is given.
const JSON_DECIMAL_SCALE: i8 = 18;

/// A text source as the reader sees it.
pub(super) struct TextTable {
    pub(super) provider: Arc<dyn TableProvider>,
    pub(super) columns: TextColumns,
}

/// How a text source's files are read (`schema`) and its text columns converted; kept to
/// read one file alone again.
#[derive(Clone)]
pub(super) struct TextColumns {
    pub(super) schema: SchemaRef,
    /// Declared timestamp columns, and the zone of their wall-clock values.
    timestamps: Vec<String>,
    zone: Tz,
    /// Declared decimal columns: name, precision, scale.
    decimals: Vec<(String, u8, i8)>,
}

impl TextColumns {
    /// `frame` (as read with `schema`) with timestamps as instants shown in `shown_in` and
    /// decimals as decimals.
    pub(super) fn convert(&self, frame: DataFrame, shown_in: Tz) -> Result<DataFrame> {
        let columns: Vec<Expr> = frame
            .schema()
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                if self.timestamps.contains(name) {
                    text_to_instant(name, self.zone, shown_in)
                } else if let Some((_, precision, scale)) =
                    self.decimals.iter().find(|(column, ..)| column == name)
                {
                    // A wide JSON decimal as its text, which keeps every place it has.
                    let text = cast(col(Column::new_unqualified(name)), DataType::Utf8);
                    text_to_decimal(text, name, *precision, *scale)
                } else {
                    col(Column::new_unqualified(name))
                }
            })
            .collect();
        frame.select(columns)
    }
}

/// The reader of a text format, with the spec's settings.
pub(super) fn file_format(format: &SourceFormat) -> Option<Arc<dyn FileFormat>> {
    match format {
        SourceFormat::Parquet | SourceFormat::Delta => None,
        SourceFormat::Csv { header, delimiter } => Some(Arc::new(
            CsvFormat::default()
                .with_has_header(*header)
                .with_delimiter(*delimiter)
                // Exports quote notes and addresses that span lines.
                .with_newlines_in_values(true),
        )),
        SourceFormat::Json => Some(Arc::new(JsonFormat::default())),
    }
}

/// The type a declared column is read as: its own, but timestamps as text, and decimals as
/// text from CSV and as wide decimals from JSON (whose writers put numbers there, which the
/// JSON reader will not read as text); both are then converted exactly.
fn read_type(declared: &ColumnType, format: &SourceFormat) -> DataType {
    match declared {
        ColumnType::Int => DataType::Int32,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal { .. } if *format == SourceFormat::Json => {
            DataType::Decimal128(38, JSON_DECIMAL_SCALE)
        }
        ColumnType::String | ColumnType::Timestamp | ColumnType::Decimal { .. } => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::List(item) => {
            DataType::List(Arc::new(Field::new("item", read_type(item, format), true)))
        }
    }
}

/// A file's URL: the source's own when it names one file.
pub(super) fn file_url(location: &Location, meta: &ObjectMeta) -> String {
    if location.is_folder() {
        location
            .join(&location.relative(&meta.location))
            .to_string()
    } else {
        location.to_string()
    }
}

/// Checks the files' columns against the declared ones and makes the table that reads
/// exactly `files`.
pub(super) async fn text_table(
    source: &Source,
    format: Arc<dyn FileFormat>,
    location: &Location,
    files: &[ObjectMeta],
    store: &Arc<dyn ObjectStore>,
) -> Result<TextTable, EngineError> {
    let fields: Vec<Field> = match &source.format {
        SourceFormat::Csv {
            header: true,
            delimiter,
        } => {
            let names = common_header(source, location, files, store, *delimiter).await?;
            names
                .iter()
                .map(|name| {
                    let declared = source.columns.iter().find(|(c, _)| c == name);
                    let data_type =
                        declared.map_or(DataType::Utf8, |(_, ty)| read_type(ty, &source.format));
                    Field::new(name, data_type, true)
                })
                .collect()
        }
        SourceFormat::Json => {
            let found = json_fields(source, location, files, store).await?;
            found
                .fields()
                .iter()
                .map(
                    |field| match source.columns.iter().find(|(c, _)| c == field.name()) {
                        Some((name, ty)) => Field::new(name, read_type(ty, &source.format), true),
                        None => field.as_ref().clone(),
                    },
                )
                .collect()
        }
        _ => declared_fields(source),
    };
    let schema = Arc::new(Schema::new(fields));
    let register = |error| EngineError::Register {
        table: source.name.clone(),
        url: location.to_string(),
        source: error,
    };
    let urls = files
        .iter()
        .map(|meta| ListingTableUrl::parse(file_url(location, meta)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(register)?;
    let options = ListingOptions::new(format).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(Arc::clone(&schema));
    let provider = Arc::new(ListingTable::try_new(config).map_err(register)?);
    let timestamps = source
        .columns
        .iter()
        .filter(|(_, ty)| matches!(ty, ColumnType::Timestamp))
        .map(|(name, _)| name.clone())
        .collect();
    let decimals = source
        .columns
        .iter()
        .filter_map(|(name, ty)| match ty {
            ColumnType::Decimal { precision, scale } => Some((name.clone(), *precision, *scale)),
            _ => None,
        })
        .collect();
    Ok(TextTable {
        provider,
        columns: TextColumns {
            schema,
            timestamps,
            zone: source.timezone,
            decimals,
        },
    })
}

fn declared_fields(source: &Source) -> Vec<Field> {
    source
        .columns
        .iter()
        .map(|(name, ty)| Field::new(name, read_type(ty, &source.format), true))
        .collect()
}

/// The first `count` lines of a file (all of a shorter one), read in growing ranges; and
/// whether it starts with a byte-order mark, which is not part of the first line.
async fn first_lines(
    source: &Source,
    url: &str,
    meta: &ObjectMeta,
    store: &Arc<dyn ObjectStore>,
    count: usize,
) -> Result<(Vec<String>, bool), EngineError> {
    let mut end = meta.size.min(FIRST_LINES_READ);
    loop {
        let bytes = if end == 0 {
            bytes::Bytes::new()
        } else {
            store
                .get_range(&meta.location, 0..end)
                .await
                .map_err(|source| StorageError::Read {
                    url: url.to_string(),
                    source,
                })?
        };
        let text = String::from_utf8_lossy(&bytes);
        let bom = text.starts_with('\u{feff}');
        let text = text.trim_start_matches('\u{feff}');
        let whole = end == meta.size;
        if whole || text.matches('\n').count() >= count {
            let lines = text
                .lines()
                .take(count)
                .map(|line| line.trim_end_matches('\r').to_string())
                .collect();
            return Ok((lines, bom));
        }
        if end >= FIRST_LINES_LIMIT {
            return Err(EngineError::FirstLine {
                table: source.name.clone(),
                file: url.to_string(),
                reason: format!(
                    "its first lines are longer than {} MiB",
                    FIRST_LINES_LIMIT >> 20
                ),
            });
        }
        end = (end * 4).min(meta.size).min(FIRST_LINES_LIMIT);
    }
}

/// The header line all files share, checked to hold every declared column.
async fn common_header(
    source: &Source,
    location: &Location,
    files: &[ObjectMeta],
    store: &Arc<dyn ObjectStore>,
    delimiter: u8,
) -> Result<Vec<String>, EngineError> {
    let mut first: Option<(String, Vec<String>)> = None;
    for meta in files {
        let url = file_url(location, meta);
        let (lines, _) = first_lines(source, &url, meta, store, 1).await?;
        let line = lines.into_iter().next().unwrap_or_default();
        let names = split_header(&line, delimiter).map_err(|reason| EngineError::FirstLine {
            table: source.name.clone(),
            file: url.clone(),
            reason,
        })?;
        match &first {
            None => {
                for (column, ty) in &source.columns {
                    if !names.contains(column) {
                        return Err(EngineError::MissingColumn {
                            table: source.name.clone(),
                            file: url.clone(),
                            column: column.clone(),
                            expected: ty.to_string(),
                            hint: did_you_mean(column, names.iter().map(String::as_str)),
                        });
                    }
                }
                first = Some((url, names));
            }
            Some((first_url, first_names)) if *first_names != names => {
                return Err(EngineError::HeaderMismatch {
                    table: source.name.clone(),
                    file: url,
                    found: names.join(", "),
                    first: first_url.clone(),
                    expected: first_names.join(", "),
                });
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, names)| names).unwrap_or_default())
}

/// A CSV header line's column names, quotes removed.
fn split_header(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    let record = reader
        .records()
        .next()
        .ok_or("it is empty: a CSV source with `header: true` needs a header line")?
        .map_err(|e| e.to_string())?;
    Ok(record.iter().map(|name| name.trim().to_string()).collect())
}

/// The fields of each file's first objects, in the order they first appear, typed as the
/// JSON reader infers them: nested objects as structs (their fields sorted by name, so that
/// a table reads the same every night) and arrays as lists, so that SQL reaches into them as
/// into Parquet's structs and lists. Fails when a declared column is in none of them (a
/// misspelt name would otherwise read as a column of NULLs), or a file starts with a
/// byte-order mark, which the JSON reader refuses.
async fn json_fields(
    source: &Source,
    location: &Location,
    files: &[ObjectMeta],
    store: &Arc<dyn ObjectStore>,
) -> Result<Schema, EngineError> {
    let mut seen: Vec<String> = Vec::new();
    let mut objects: Vec<serde_json::Value> = Vec::new();
    for meta in files {
        let url = file_url(location, meta);
        let unreadable = |reason: String| EngineError::FirstLine {
            table: source.name.clone(),
            file: url.clone(),
            reason,
        };
        let (lines, bom) = first_lines(source, &url, meta, store, JSON_SAMPLE).await?;
        if bom {
            return Err(unreadable(
                "it starts with a byte-order mark, which JSON readers refuse: write it as \
                 UTF-8 without one"
                    .to_string(),
            ));
        }
        for line in lines.iter().filter(|line| !line.trim().is_empty()) {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| unreadable(format!("a line is not a JSON object ({e})")))?;
            for key in object.keys() {
                if !seen.contains(key) {
                    seen.push(key.clone());
                }
            }
            objects.push(serde_json::Value::Object(object));
        }
    }
    for (column, ty) in &source.columns {
        if !seen.contains(column) {
            let first = files.first().map(|meta| file_url(location, meta));
            return Err(EngineError::MissingColumn {
                table: source.name.clone(),
                file: first.unwrap_or_else(|| location.to_string()),
                column: column.clone(),
                expected: ty.to_string(),
                hint: if seen.iter().any(|key| key == AIRBYTE_RECORD) {
                    format!(
                        " (its records sit in `{AIRBYTE_RECORD}`, as Airbyte's destinations \
                         write JSON lines without flattening: choose \"Root level flattening\" \
                         in the destination's settings)"
                    )
                } else {
                    did_you_mean(column, seen.iter().map(String::as_str))
                },
            });
        }
    }
    let inferred = infer_json_schema_from_iterator(objects.iter().map(Ok)).map_err(|e| {
        EngineError::FirstLine {
            table: source.name.clone(),
            file: location.to_string(),
            reason: format!("its objects' fields do not make one table ({e})"),
        }
    })?;
    let fields = seen
        .iter()
        .filter_map(|name| inferred.field_with_name(name).ok())
        .map(|field| sorted_nested(field.clone()))
        .collect::<Vec<_>>();
    Ok(Schema::new(fields))
}

/// `field` with the fields of its structs, at any depth, in name order.
fn sorted_nested(field: Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Struct(fields) => {
            let mut fields: Vec<Field> = fields
                .iter()
                .map(|f| sorted_nested(f.as_ref().clone()))
                .collect();
            fields.sort_by(|a, b| a.name().cmp(b.name()));
            DataType::Struct(fields.into())
        }
        DataType::List(item) => DataType::List(Arc::new(sorted_nested(item.as_ref().clone()))),
        other => other.clone(),
    };
    field.with_data_type(data_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_lose_their_quotes_and_keep_their_spaces() {
        assert_eq!(
            split_header(
                r#""Customer ID","Accepts Email Marketing",Total Spent"#,
                b','
            )
            .unwrap(),
            ["Customer ID", "Accepts Email Marketing", "Total Spent"]
        );
        assert_eq!(split_header("a;b", b';').unwrap(), ["a", "b"]);
    }
}
