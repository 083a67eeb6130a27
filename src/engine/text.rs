//! CSV and newline-delimited JSON sources. Text files carry no schema: a CSV header line (or,
//! without one, the spec's column order) and each JSON file's first object are checked
//! against the declared columns before anything is read, and the reader then parses every
//! value as its declared type. Timestamps are read as text and turned into instants by
//! [`super::instants::text_in_zone`], since text may hold either an instant or a wall-clock
//! time.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::EngineError;
use crate::pipeline::{ColumnType, Source, SourceFormat, did_you_mean};
use crate::storage::Location;

/// Most header lines and first objects fit in one read of this size.
const FIRST_LINE_READ: u64 = 64 * 1024;

/// A text source as the reader sees it.
pub(super) struct TextTable {
    pub(super) provider: Arc<dyn TableProvider>,
    /// Every file's schema, for reading one file alone again.
    pub(super) schema: SchemaRef,
    /// The declared timestamp columns, read as text.
    pub(super) timestamps: Vec<String>,
}

/// The reader of a text format, with the spec's settings.
pub(super) fn file_format(format: &SourceFormat) -> Option<Arc<dyn FileFormat>> {
    match format {
        SourceFormat::Parquet => None,
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

/// The type a declared column is read as: its own, but timestamps as text.
fn read_type(declared: &ColumnType) -> DataType {
    match declared {
        ColumnType::Int => DataType::Int32,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::String | ColumnType::Timestamp => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        ColumnType::List(item) => {
            DataType::List(Arc::new(Field::new("item", read_type(item), true)))
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
    location: &Location,
    files: &[ObjectMeta],
    store: &Arc<dyn ObjectStore>,
) -> Result<TextTable, EngineError> {
    let format = file_format(&source.format).expect("a text format");
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
                    let data_type = declared.map_or(DataType::Utf8, |(_, ty)| read_type(ty));
                    Field::new(name, data_type, true)
                })
                .collect()
        }
        SourceFormat::Json => {
            json_fields_present(source, location, files, store).await?;
            declared_fields(source)
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
    Ok(TextTable {
        provider,
        schema,
        timestamps,
    })
}

fn declared_fields(source: &Source) -> Vec<Field> {
    source
        .columns
        .iter()
        .map(|(name, ty)| Field::new(name, read_type(ty), true))
        .collect()
}

/// The first line of a file (up to [`FIRST_LINE_READ`] bytes), without a byte-order mark.
async fn first_line(
    source: &Source,
    url: &str,
    meta: &ObjectMeta,
    store: &Arc<dyn ObjectStore>,
) -> Result<String, EngineError> {
    let failed = |reason: String| EngineError::FirstLine {
        table: source.name.clone(),
        file: url.to_string(),
        reason,
    };
    let end = meta.size.min(FIRST_LINE_READ);
    let bytes = store
        .get_range(&meta.location, 0..end)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    match text.split_once('\n') {
        Some((line, _)) => Ok(line.trim_end_matches('\r').to_string()),
        None if end == meta.size => Ok(text.to_string()),
        None => Err(failed(format!(
            "it is longer than {} KiB",
            FIRST_LINE_READ / 1024
        ))),
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
        let line = first_line(source, &url, meta, store).await?;
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

/// Fails when a declared column is in no file's first object: a misspelt name would
/// otherwise read as a column of NULLs.
async fn json_fields_present(
    source: &Source,
    location: &Location,
    files: &[ObjectMeta],
    store: &Arc<dyn ObjectStore>,
) -> Result<(), EngineError> {
    let mut seen: Vec<String> = Vec::new();
    for meta in files {
        let url = file_url(location, meta);
        let line = first_line(source, &url, meta, store).await?;
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .map_err(|e| EngineError::FirstLine {
                table: source.name.clone(),
                file: url.clone(),
                reason: format!("it is not a JSON object ({e})"),
            })?;
        seen.extend(
            object
                .keys()
                .filter(|k| !seen.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    for (column, ty) in &source.columns {
        if !seen.contains(column) {
            let first = files.first().map(|meta| file_url(location, meta));
            return Err(EngineError::MissingColumn {
                table: source.name.clone(),
                file: first.unwrap_or_else(|| location.to_string()),
                column: column.clone(),
                expected: ty.to_string(),
                hint: did_you_mean(column, seen.iter().map(String::as_str)),
            });
        }
    }
    Ok(())
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
