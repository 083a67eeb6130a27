//! What is served: one schema per pipeline, holding each output's latest publication
//! (`<output>`), every publication of it (`history_<output>`, with `as_of`) and the list of
//! publications (`publications`), read from the outputs' manifests (or Delta logs).
//!
//! The tables are rebuilt from the manifests every `refresh` into a [`Snapshot`], which is
//! swapped in whole. A query plans and runs against the snapshot that was current when it
//! began, so it reads exactly the files one set of manifests lists: one publication of
//! each output, never part of the next. A new night writes a new date's files and deletes
//! none of the previous date's, and vacuum deletes only files no manifest lists, so the
//! files a query reads stay while it runs. Only a run of the same date again replaces a
//! publication's files; a query reading them then fails, asking to be run again, instead of
//! mixing rows (`session::sql_error`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemorySchemaProvider,
    SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableProviderFilterPushDown, TableType, col,
    lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::pipeline::{AS_OF, Output, Pipeline, days_since_epoch};
use crate::publish::{self, Committed, PublishError};
use crate::storage::Storage;

use super::ServeError;

/// The catalog every query sees: DataFusion's default one, where clients look.
pub(super) const CATALOG: &str = "datafusion";
pub(super) const PUBLICATIONS: &str = "publications";
const HISTORY: &str = "history_";

/// The pipelines served, and the snapshot of their publications that new queries read.
pub(super) struct Served {
    storage: Storage,
    pipelines: Vec<(String, Vec<Output>)>,
    current: RwLock<Arc<Snapshot>>,
    /// Each published file's columns, read from its footer once: a file's name is unique to
    /// the run that wrote it, and a published file never changes.
    file_schemas: Mutex<HashMap<String, SchemaRef>>,
    /// Each output's publications as last read, by its URL, with the fingerprint they were
    /// read at: an output whose fingerprint has not changed is not read again, so that a
    /// refresh of unchanged outputs costs one listing each, not a read of every manifest.
    read: Mutex<HashMap<String, (String, Vec<Committed>)>>,
}

/// The tables of every served pipeline as one set of manifests lists them.
pub(super) struct Snapshot {
    schemas: BTreeMap<String, Arc<MemorySchemaProvider>>,
    /// The schemas above, with the catalog tables (`pg_catalog`) beside them: what a
    /// query's session is given as its catalogs.
    catalogs: Arc<dyn CatalogProviderList>,
}

impl Snapshot {
    pub(super) fn catalogs(&self) -> Arc<dyn CatalogProviderList> {
        Arc::clone(&self.catalogs)
    }
}

impl Served {
    pub(super) fn new(storage: Storage, pipelines: &[Pipeline]) -> Served {
        Served {
            storage,
            pipelines: pipelines
                .iter()
                .map(|p| (p.name.clone(), p.outputs.clone()))
                .collect(),
            current: RwLock::new(Arc::new(Snapshot {
                schemas: BTreeMap::new(),
                catalogs: Arc::new(datafusion::catalog::MemoryCatalogProviderList::new()),
            })),
            file_schemas: Mutex::new(HashMap::new()),
            read: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn pipeline_names(&self) -> impl Iterator<Item = &str> {
        self.pipelines.iter().map(|(name, _)| name.as_str())
    }

    pub(super) fn outputs(&self) -> impl Iterator<Item = &Output> {
        self.pipelines.iter().flat_map(|(_, outputs)| outputs)
    }

    /// The snapshot a query that begins now reads.
    pub(super) fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().expect("snapshot lock"))
    }

    /// Reads every output's publications again and swaps in the snapshot they make. `base`
    /// is the server's session, whose catalog tables (`pg_catalog`) every snapshot keeps.
    pub(super) async fn refresh(&self, base: &SessionContext) -> Result<Arc<Snapshot>, ServeError> {
        let mut schemas = BTreeMap::new();
        for (pipeline, outputs) in &self.pipelines {
            let schema = Arc::new(MemorySchemaProvider::new());
            let mut listed: Vec<Committed> = Vec::new();
            for output in outputs {
                let publications =
                    self.publications(output)
                        .await
                        .map_err(|source| ServeError::Publications {
                            pipeline: pipeline.clone(),
                            table: output.table.clone(),
                            source: Box::new(source),
                        })?;
                let Some(latest) = publications.last() else {
                    continue;
                };
                let Some(file_schema) = self.file_schema(base, output, latest).await? else {
                    continue;
                };
                let register = |name: String, provider: Arc<dyn TableProvider>| {
                    schema
                        .register_table(name.clone(), provider)
                        .map_err(|source| ServeError::Table {
                            name,
                            source: Box::new(source),
                        })
                };
                register(
                    output.table.clone(),
                    published(&output.table, std::slice::from_ref(latest), &file_schema)?,
                )?;
                register(
                    format!("{HISTORY}{}", output.table),
                    published(&output.table, &publications, &file_schema)?,
                )?;
                listed.extend(publications);
            }
            let list = publications_table(&listed).map_err(|source| ServeError::Table {
                name: PUBLICATIONS.to_string(),
                source: Box::new(source),
            })?;
            schema
                .register_table(PUBLICATIONS.to_string(), list)
                .map_err(|source| ServeError::Table {
                    name: PUBLICATIONS.to_string(),
                    source: Box::new(source),
                })?;
            schemas.insert(pipeline.clone(), schema);
        }
        let snapshot = Arc::new(Snapshot {
            catalogs: pinned_catalogs(base, &schemas),
            schemas,
        });
        *self.current.write().expect("snapshot lock") = Arc::clone(&snapshot);
        Ok(snapshot)
    }

    /// `output`'s committed publications: as read before when its fingerprint is the same.
    async fn publications(&self, output: &Output) -> Result<Vec<Committed>, PublishError> {
        let sink = publish::sink(&self.storage, output);
        let fingerprint = sink.publications_fingerprint().await?;
        let key = output.location.to_string();
        if let Some(fingerprint) = &fingerprint
            && let Some((known, publications)) = self.read.lock().expect("read cache").get(&key)
            && known == fingerprint
        {
            return Ok(publications.clone());
        }
        let publications = sink.publications().await?;
        if let Some(fingerprint) = fingerprint {
            self.read
                .lock()
                .expect("read cache")
                .insert(key, (fingerprint, publications.clone()));
        }
        Ok(publications)
    }

    /// The columns of `latest`'s files (its first file's footer); None for a publication
    /// without files, whose columns are not known until one has rows.
    async fn file_schema(
        &self,
        base: &SessionContext,
        output: &Output,
        latest: &Committed,
    ) -> Result<Option<SchemaRef>, ServeError> {
        let Some(first) = latest.files.first() else {
            tracing::warn!(table = %output.table, as_of = %latest.as_of, "The latest publication has no files; the output is not served until one has.");
            return Ok(None);
        };
        let key = first.to_string();
        if let Some(known) = self.file_schemas.lock().expect("schema cache").get(&key) {
            return Ok(Some(Arc::clone(known)));
        }
        let failed = |source| ServeError::Footer {
            file: key.clone(),
            source: Box::new(source),
        };
        self.storage
            .store(first, &output.options)
            .map_err(|e| failed(DataFusionError::External(Box::new(e))))?;
        let url = ListingTableUrl::parse(&key).map_err(failed)?;
        let config = ListingTableConfig::new(url)
            .with_listing_options(parquet_files())
            .infer_schema(&base.state())
            .await
            .map_err(failed)?;
        let schema = config.file_schema.expect("infer_schema sets the schema");
        self.file_schemas
            .lock()
            .expect("schema cache")
            .insert(key, Arc::clone(&schema));
        Ok(Some(schema))
    }
}

/// Listed files are Parquet whatever their names end in.
fn parquet_files() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("")
}

/// A column as the protocol can carry it: as it is, or, for types PostgreSQL clients have no
/// counterpart of (maps, such as a model's parameters by name, 256-bit decimals), as JSON
/// text, which every BI tool reads, rather than a table that no query can read.
fn wire_column(name: &str, data_type: &DataType) -> Expr {
    let column = col(datafusion::common::Column::new_unqualified(name));
    if datafusion_postgres::arrow_pg::datatypes::into_pg_type(data_type).is_ok() {
        column
    } else {
        json_text().call(vec![column]).alias(name)
    }
}

/// Any value as its JSON text, as arrow's JSON writer writes it; NULL stays NULL.
fn json_text() -> Arc<ScalarUDF> {
    use datafusion::arrow::array::{Array, StringBuilder};
    use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
    use datafusion::logical_expr::{ColumnarValue, Signature, SimpleScalarUDF, Volatility};
    static UDF: std::sync::OnceLock<Arc<ScalarUDF>> = std::sync::OnceLock::new();
    let encode = |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
        let values = match &args[0] {
            ColumnarValue::Array(array) => Arc::clone(array),
            ColumnarValue::Scalar(scalar) => scalar.to_array()?,
        };
        let field = Arc::new(Field::new("value", values.data_type().clone(), true));
        let options = EncoderOptions::default();
        let mut encoder = make_encoder(&field, values.as_ref(), &options)?;
        let mut texts = StringBuilder::new();
        let mut buffer = Vec::new();
        for row in 0..values.len() {
            if values.is_null(row) {
                texts.append_null();
                continue;
            }
            buffer.clear();
            encoder.encode(row, &mut buffer);
            texts.append_value(String::from_utf8_lossy(&buffer));
        }
        Ok(ColumnarValue::Array(Arc::new(texts.finish())))
    };
    Arc::clone(UDF.get_or_init(|| {
        let json = SimpleScalarUDF::new_with_signature(
            "json_text",
            Signature::any(1, Volatility::Immutable),
            DataType::Utf8,
            Arc::new(encode),
        );
        Arc::new(ScalarUDF::new_from_impl(json))
    }))
}

/// `publications`' rows of `output`, each with its date as `as_of` (the files hold none:
/// the date is their folder's name), all read with `file_schema`, the latest's columns.
fn published(
    output: &str,
    publications: &[Committed],
    file_schema: &SchemaRef,
) -> Result<Arc<dyn TableProvider>, ServeError> {
    let failed = |source| ServeError::Table {
        name: output.to_string(),
        source: Box::new(source),
    };
    let mut plan: Option<LogicalPlanBuilder> = None;
    for publication in publications.iter().filter(|p| !p.files.is_empty()) {
        let urls = publication
            .files
            .iter()
            .map(|f| ListingTableUrl::parse(f.as_str()))
            .collect::<DfResult<Vec<_>>>()
            .map_err(failed)?;
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(parquet_files())
            .with_schema(Arc::clone(file_schema));
        let files = ListingTable::try_new(config).map_err(failed)?;
        let date = lit(ScalarValue::Date32(Some(days_since_epoch(
            publication.as_of,
        ))))
        .alias(AS_OF);
        let mut columns: Vec<Expr> = file_schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                AS_OF => date.clone(),
                name => wire_column(name, f.data_type()),
            })
            .collect();
        if file_schema.field_with_name(AS_OF).is_err() {
            columns.push(date);
        }
        let one = LogicalPlanBuilder::scan(output, provider_as_source(Arc::new(files)), None)
            .and_then(|scan| scan.project(columns))
            .map_err(failed)?;
        plan = Some(match plan {
            None => one,
            Some(earlier) => earlier
                .union(one.build().map_err(failed)?)
                .map_err(failed)?,
        });
    }
    let plan = plan
        .expect("a served output has a publication with files")
        .build()
        .map_err(failed)?;
    Ok(Arc::new(Published(ViewTable::new(plan, None))))
}

/// A publication's rows, planned as a view over its files but listed as a table: psql's
/// `\dt`, and the BI tools that list tables, show only base tables.
#[derive(Debug)]
struct Published(ViewTable);

#[async_trait::async_trait]
impl TableProvider for Published {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// One row per committed publication of the pipeline's outputs.
fn publications_table(listed: &[Committed]) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("output", DataType::Utf8, false),
        Field::new(AS_OF, DataType::Date32, false),
        Field::new("rows", DataType::Int64, false),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("run_id", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            listed.iter().map(|p| p.table.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(
            listed.iter().map(|p| days_since_epoch(p.as_of)),
        )),
        Arc::new(Int64Array::from_iter_values(
            listed
                .iter()
                .map(|p| i64::try_from(p.rows).unwrap_or(i64::MAX)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                listed.iter().map(|p| p.committed_at.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            listed.iter().map(|p| p.run_id.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The catalogs of a query pinned to `schemas`: the served pipelines' schemas as they are
/// now, and the server's own schemas (`pg_catalog`, `public`) beside them.
fn pinned_catalogs(
    base: &SessionContext,
    schemas: &BTreeMap<String, Arc<MemorySchemaProvider>>,
) -> Arc<dyn CatalogProviderList> {
    let catalog = MemoryCatalogProvider::new();
    if let Some(server) = base.catalog(CATALOG) {
        for name in server.schema_names() {
            if let Some(schema) = server.schema(&name)
                && !schemas.contains_key(&name)
            {
                let _ = catalog.register_schema(&name, schema);
            }
        }
    }
    for (name, schema) in schemas {
        let schema: Arc<dyn SchemaProvider> = schema.clone();
        let _ = catalog.register_schema(name, schema);
    }
    let list = datafusion::catalog::MemoryCatalogProviderList::new();
    list.register_catalog(CATALOG.to_string(), Arc::new(catalog));
    Arc::new(list)
}

/// A served pipeline's schema in the server's own catalog, where `pg_catalog` and
/// `information_schema` list tables from: the current snapshot's tables.
#[derive(Debug)]
pub(super) struct LiveSchema {
    pub(super) served: Arc<Served>,
    pub(super) pipeline: String,
}

impl LiveSchema {
    fn schema(&self) -> Option<Arc<MemorySchemaProvider>> {
        self.served.current().schemas.get(&self.pipeline).cloned()
    }
}

#[async_trait::async_trait]
impl SchemaProvider for LiveSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.schema().map(|s| s.table_names()).unwrap_or_default();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.schema() {
            Some(schema) => schema.table(name).await,
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.schema().is_some_and(|s| s.table_exist(name))
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field(
                "pipelines",
                &self.pipelines.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}
