//! Sources: files listed, every footer checked and one schema made for the table (see
//! [`super::schema`]); naive timestamps are wall-clock times of the source's zone. A source
//! with a key is checked for missing and repeated keys before any step reads it; a source
//! whose rows are versions is first reduced to the rows in force (see [`super::versions`]).

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::{DataFrame, Expr};
use futures::StreamExt;
use object_store::ObjectStore;

use std::sync::Arc;

use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};

use super::schema::{check_declared_columns, read_footers, reconcile};
use super::text;
use super::{Engine, EngineError};
use crate::functions::in_zone;
use crate::hint::did_you_mean;
use crate::pipeline::{Source, SourceFormat, SourceKey};
use crate::segments::{self, Members, Unmatched};
use crate::storage::Location;

/// A file of a registered source, kept to find a damaged one when a query fails.
pub(super) struct RegisteredFile {
    table: String,
    url: String,
    reader: FileReader,
}

/// A source as its parts, to read one of its files alone as a table with the source's own
/// columns and types (incremental steps, `super::incremental`).
pub(super) struct SourceParts {
    pub(super) name: String,
    pub(super) key: Option<SourceKey>,
    pub(super) location: Location,
    pub(super) files: Vec<object_store::ObjectMeta>,
    /// The source's table as its files have it (before versions are resolved).
    pub(super) schema: datafusion::arrow::datatypes::SchemaRef,
    /// The zone of the source's wall-clock times.
    pub(super) zone: chrono_tz::Tz,
    /// How the spec reads the files (format and its options), for what depends on it.
    pub(super) format: String,
    pub(super) reader: PartsReader,
}

/// How a source's files are read.
pub(super) enum PartsReader {
    Parquet {
        /// The columns read from the files, as the whole source reconciled them.
        file_schema: datafusion::arrow::datatypes::SchemaRef,
        /// The listing's columns: the files' and the Hive partition keys of their folders.
        table_schema: datafusion::arrow::datatypes::SchemaRef,
        wall_clock: Vec<String>,
    },
    Text {
        format: Arc<dyn FileFormat>,
        columns: text::TextColumns,
    },
}

/// How to read one file of a source alone again.
#[derive(Clone)]
pub(super) enum FileReader {
    Parquet,
    /// A result that an incremental step kept from an earlier run (a Parquet file).
    Kept,
    /// A CSV or JSON reader, and how the source reads and converts the file's columns.
    Text {
        format: Arc<dyn FileFormat>,
        columns: text::TextColumns,
    },
}

impl Engine {
    /// Checks a source's files against its declared columns, then registers it as a table
    /// with one type per column. Reads footers only, no data. A Delta table is read at its
    /// version as of the end of the `as_of` day.
    pub async fn register_source(
        &self,
        source: &Source,
        as_of: chrono::NaiveDate,
    ) -> Result<(), EngineError> {
        let store = self.storage.store(&source.location, &source.options)?;
        let location = self
            .storage
            .source_location(&source.location, source.format.extensions());
        let listed = if source.format == SourceFormat::Delta {
            self.delta_files(source, &location, Arc::clone(&store), as_of)
                .await?
        } else {
            self.files_of(source, &location, store.as_ref()).await?
        };
        if listed.is_empty() {
            return Err(no_files(source, &location));
        }
        let register = |e| register_error(source, &location, e);
        let (frame, reader) = match text::file_format(&source.format) {
            None => {
                self.remember_files(source, &location, &listed, None);
                let files = read_footers(source, &location, listed.clone(), &store).await?;
                for file in &files {
                    check_declared_columns(source, file)?;
                }
                let schema = reconcile(source, &files)?;
                let listing = if source.format == SourceFormat::Delta {
                    self.listing_of(&source.name, &location, &listed, Arc::clone(&schema.files))?
                } else {
                    self.listing(&source.name, &location, Arc::clone(&schema.files), true)
                        .await?
                };
                let reader = PartsReader::Parquet {
                    table_schema: listing.schema(),
                    file_schema: schema.files,
                    wall_clock: schema.wall_clock.clone(),
                };
                let frame = self
                    .ctx
                    .read_table(listing)
                    .and_then(|f| in_zone(f, self.zone, source.timezone, &schema.wall_clock))
                    .map_err(register)?;
                (frame, reader)
            }
            Some(format) => {
                let table =
                    text::text_table(source, Arc::clone(&format), &location, &listed, &store)
                        .await?;
                let reader = FileReader::Text {
                    format: Arc::clone(&format),
                    columns: table.columns.clone(),
                };
                self.remember_files(source, &location, &listed, Some(reader));
                let frame = self
                    .ctx
                    .read_table(table.provider)
                    .and_then(|frame| table.columns.convert(frame, self.zone))
                    .map_err(register)?;
                let reader = PartsReader::Text {
                    format,
                    columns: table.columns,
                };
                (frame, reader)
            }
        };
        self.source_parts.lock().expect("source parts lock").insert(
            source.name.clone(),
            Arc::new(SourceParts {
                name: source.name.clone(),
                key: source.key.clone(),
                location: location.clone(),
                files: listed,
                schema: Arc::new(frame.schema().as_arrow().clone()),
                zone: source.timezone,
                format: format!("{:?}", source.format),
                reader,
            }),
        );
        if let Some(key) = &source.key {
            check_key_columns(source, key, &frame)?;
        }
        self.ctx
            .register_table(source.name.as_str(), frame.into_view())
            .map_err(|e| register_error(source, &location, e))?;
        Ok(())
    }

    /// The parts of a registered source.
    pub(super) fn parts_of(&self, source: &str) -> Arc<SourceParts> {
        let parts = self.source_parts.lock().expect("source parts lock");
        Arc::clone(&parts[source])
    }

    pub(super) async fn check_missing_key(
        &self,
        source: &Source,
        key: &SourceKey,
    ) -> Result<(), EngineError> {
        let failed = |error| scan_error(source, error);
        let frame = self.ctx.table(source.name.as_str()).await.map_err(failed)?;
        let missing = key
            .columns
            .iter()
            .map(|c| column(c).is_null())
            .reduce(Expr::or)
            .expect("a key has columns");
        let rows_without_key = frame
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
        Ok(())
    }

    pub(super) async fn check_repeated_key(
        &self,
        source: &Source,
        key: &SourceKey,
    ) -> Result<(), EngineError> {
        let failed = |error| scan_error(source, error);
        let frame = self.ctx.table(source.name.as_str()).await.map_err(failed)?;
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
            version: key.versions.as_ref().map(|v| v.by.clone()),
        })
    }

    /// Counts the rows of `table` (a source or a computed step) that no known customer
    /// placed (see [`segments::unmatched`]); the members table itself is not counted.
    pub async fn unmatched(
        &self,
        table: &str,
        members: &Members,
    ) -> Result<Option<Unmatched>, EngineError> {
        if table == members.table {
            return Ok(None);
        }
        let failed = |error| {
            self.query_error(table, error, |source| EngineError::Execute {
                step: table.to_string(),
                source,
            })
        };
        let rows = self.ctx.table(table).await.map_err(failed)?;
        let known = self
            .ctx
            .table(members.table.as_str())
            .await
            .map_err(failed)?;
        segments::unmatched(rows, known).await.map_err(failed)
    }

    /// Keeps the URLs of a source's files, to find a damaged one after a failed query.
    fn remember_files(
        &self,
        source: &Source,
        location: &Location,
        files: &[object_store::ObjectMeta],
        text: Option<FileReader>,
    ) {
        let reader = text.unwrap_or(FileReader::Parquet);
        self.source_files
            .lock()
            .expect("source files lock")
            .extend(files.iter().map(|meta| RegisteredFile {
                table: source.name.clone(),
                url: text::file_url(location, meta),
                reader: reader.clone(),
            }));
    }

    /// Keeps the URLs of the results an incremental step reused from earlier runs: a damaged
    /// one is named, with what to do, like a damaged source file.
    pub(super) fn remember_kept(&self, step: &str, urls: impl Iterator<Item = String>) {
        self.source_files
            .lock()
            .expect("source files lock")
            .extend(urls.map(|url| RegisteredFile {
                table: step.to_string(),
                url,
                reader: FileReader::Kept,
            }));
    }

    /// Whether a registered source is CSV or JSON, whose values are parsed as they are read.
    pub(super) fn reads_text(&self) -> bool {
        self.source_files
            .lock()
            .expect("source files lock")
            .iter()
            .any(|file| matches!(file.reader, FileReader::Text { .. }))
    }

    /// After a query failed on data that does not decode: reads every source file through,
    /// one at a time, and names the first that fails. Costs a full scan, so only for errors.
    pub async fn find_damaged_file(&self) -> Option<EngineError> {
        let files: Vec<(String, String, FileReader)> = self
            .source_files
            .lock()
            .expect("source files lock")
            .iter()
            .map(|f| (f.table.clone(), f.url.clone(), f.reader.clone()))
            .collect();
        for (table, url, reader) in files {
            // A storage failure on the second look says nothing of the file.
            match self.read_through(&url, &reader).await {
                Err(error) if !super::is_environment_failure(&error) => {
                    let reason = super::describe(&error);
                    return Some(match reader {
                        FileReader::Parquet => EngineError::DamagedFile { table, url, reason },
                        FileReader::Kept => EngineError::DamagedKept {
                            step: table,
                            url,
                            reason,
                        },
                        FileReader::Text { .. } => EngineError::BadValue { table, url, reason },
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// Decodes every value of one file, as it is, apart from its source.
    async fn read_through(
        &self,
        url: &str,
        reader: &FileReader,
    ) -> Result<(), datafusion::error::DataFusionError> {
        let frame = match reader {
            FileReader::Parquet | FileReader::Kept => {
                let options = datafusion::prelude::ParquetReadOptions::default();
                self.ctx.read_parquet(url, options).await?
            }
            FileReader::Text { format, columns } => {
                let options = ListingOptions::new(Arc::clone(format)).with_file_extension("");
                let config = ListingTableConfig::new(ListingTableUrl::parse(url)?)
                    .with_listing_options(options)
                    .with_schema(Arc::clone(&columns.schema));
                let frame = self
                    .ctx
                    .read_table(Arc::new(ListingTable::try_new(config)?))?;
                columns.convert(frame, self.zone)?
            }
        };
        let mut batches = frame.execute_stream().await?;
        while let Some(batch) = batches.next().await {
            batch?;
        }
        Ok(())
    }

    async fn files_of(
        &self,
        source: &Source,
        location: &Location,
        store: &dyn ObjectStore,
    ) -> Result<Vec<object_store::ObjectMeta>, EngineError> {
        let listed = self.storage.list(location, store).await?;
        // The files read: the format's files (`.parquet`, `.csv`, ...) directly in the folder
        // or in Hive partition folders (`key=value/`), not hidden ones (`.x`, `_SUCCESS`),
        // and not other subfolders such as segflow's own `_segflow/`. A URL naming one object
        // is taken as it is.
        let extensions = source.format.extensions();
        let files: Vec<_> = if location.is_folder() {
            listed
                .into_iter()
                .filter(|meta| {
                    let relative = location.relative(&meta.location);
                    let mut parts: Vec<&str> = relative.split('/').collect();
                    let name = parts.pop().unwrap_or_default();
                    extensions.iter().any(|ext| name.ends_with(ext))
                        && !name.starts_with(['.', '_'])
                        && parts.iter().all(|part| part.contains('='))
                })
                .collect()
        } else {
            listed
        };
        Ok(files)
    }
}

/// A source without files: most often a URL built from the environment, with a variable not
/// set where the run happens.
fn no_files(source: &Source, location: &Location) -> EngineError {
    let written = &source.url_as_written;
    EngineError::NoFiles {
        table: source.name.clone(),
        kind: match source.format {
            SourceFormat::Parquet => "Parquet",
            SourceFormat::Delta => "Delta table",
            SourceFormat::Csv { .. } => "CSV",
            SourceFormat::Json => "JSON",
        },
        url: location.to_string(),
        hint: if written.contains("${") {
            format!(
                " (the spec writes `{written}`: set the variables it names to where the data \
                 is)"
            )
        } else {
            String::new()
        },
    }
}

/// A query over a source failed: the environment's fault when it ran out of memory, disk or
/// storage, else the data's (a value that does not convert, say).
pub(super) fn scan_error(
    source: &Source,
    error: datafusion::error::DataFusionError,
) -> EngineError {
    let text = matches!(source.format, SourceFormat::Csv { .. } | SourceFormat::Json);
    if super::is_unreadable_data(&error) || (text && super::error::is_unreadable_text(&error)) {
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

fn check_key_columns(
    source: &Source,
    key: &SourceKey,
    frame: &DataFrame,
) -> Result<(), EngineError> {
    let schema = frame.schema();
    let names = || schema.fields().iter().map(|f| f.name().as_str());
    let keys = key.columns.iter().map(|c| ("key", c));
    let versions = key.versions.iter().flat_map(|v| {
        std::iter::once(("version", &v.by)).chain(v.deleted.iter().map(|d| ("deleted", d)))
    });
    for (role, column) in keys.chain(versions) {
        if !names().any(|name| name == column) {
            return Err(EngineError::KeyColumn {
                table: source.name.clone(),
                role,
                column: column.clone(),
                hint: did_you_mean(column, names()),
            });
        }
    }
    Ok(())
}
