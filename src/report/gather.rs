//! What a report shows, read from one date's publications and the run history. Each
//! section names the output and columns it reads; a pipeline that does not publish them
//! gets the section's reason instead of a picture.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::ReportError;
use crate::history::{RunHistory, RunRecord, RunStatus};
use crate::lineage::Lineage;
use crate::pipeline::Pipeline;
use crate::publish;
use crate::storage::Storage;

/// Each segment's size is drawn over this many publications, the report's own included.
pub const SIZE_HISTORY: usize = 30;
/// The run health table lists this many runs, newest first.
pub const RECENT_RUNS: usize = 10;
/// The CLV distribution's bins (log-spaced, see [`bins`]).
const CLV_BINS: usize = 20;

const CUSTOMER_PROFILE: &str = "customer_profile";
const SEGMENT_SUMMARY: &str = "segment_summary";
const SEGMENT_CHANGES: &str = "segment_changes";
const WINBACK_LIST: &str = "winback_list";
const WINBACK_SUPPRESSED: &str = "winback_suppressed";
const CUSTOMER_PREDICTIONS: &str = "customer_predictions";
/// The outputs a report reads, by table name.
const READ: [&str; 6] = [
    CUSTOMER_PROFILE,
    SEGMENT_SUMMARY,
    SEGMENT_CHANGES,
    WINBACK_LIST,
    WINBACK_SUPPRESSED,
    CUSTOMER_PREDICTIONS,
];

const GRID_SQL: &str = include_str!("sql/grid.sql");
const GROUPS_SQL: &str = include_str!("sql/groups.sql");
const COUNTS_SQL: &str = include_str!("sql/counts.sql");
const CURRENCY_SQL: &str = include_str!("sql/currency.sql");
const CHANGES_SQL: &str = include_str!("sql/changes.sql");
const CLV_SQL: &str = include_str!("sql/clv.sql");

/// A part of the report: drawn, or the reason it cannot be.
#[derive(Debug, Clone)]
pub enum Section<T> {
    Shown(T),
    Unavailable(String),
}

/// Everything one report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub pipeline: String,
    pub description: Option<String>,
    /// The publication shown; None when the pipeline has published nothing yet.
    pub as_of: Option<NaiveDate>,
    pub generated_at: chrono::DateTime<chrono::Utc>,
    /// The currency every customer's money is in, when `customer_profile` says.
    pub currency: Option<String>,
    pub grids: Section<Vec<Grid>>,
    pub segments: Section<Segments>,
    pub portrait: Section<Table>,
    pub winback: Section<Winback>,
    pub predictions: Section<Predictions>,
    /// The pipeline's last runs, newest first.
    pub runs: Vec<RunRecord>,
    pub lineage: Lineage,
}

/// A 5×5 grid of two scores (R down, another across) with each cell's buyers and revenue.
#[derive(Debug, Clone)]
pub struct Grid {
    pub title: String,
    pub down: String,
    pub across: String,
    /// The column whose values label the areas of the grid.
    pub label_column: String,
    pub cells: Vec<Cell>,
    /// Every label's customers and revenue, those outside the grid (Prospects) included.
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub down: i64,
    pub across: i64,
    pub customers: u64,
    pub revenue: f64,
    /// What the cell's customers are labelled, when they all carry the same label.
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub customers: u64,
    pub revenue: f64,
}

#[derive(Debug, Clone)]
pub struct Segments {
    /// Largest first.
    pub lines: Vec<SegmentLine>,
    /// The dates of the sizes each line carries, oldest first; the last is the report's.
    pub dates: Vec<NaiveDate>,
    /// Whether `segment_changes` was published for the date (else no entered / exited).
    pub changes: bool,
}

#[derive(Debug, Clone)]
pub struct SegmentLine {
    pub segment: String,
    pub customers: u64,
    pub entered: u64,
    pub exited: u64,
    /// The segment's size at each of [`Segments::dates`]; None where it was not published.
    pub sizes: Vec<Option<u64>>,
}

/// A published table as the report prints it: columns with how to show them, and rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Count,
    Money,
    Share,
    Number,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone)]
pub struct Winback {
    pub listed: u64,
    /// The list by the R-F group that puts each customer on it.
    pub by_group: Vec<(String, u64)>,
    /// Who qualified and was left out, by why.
    pub suppressed: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct Predictions {
    /// Buyers by churn risk; the None key holds one-time buyers, whom the model cannot rate.
    pub churn: Vec<(Option<String>, u64)>,
    pub clv: Vec<Bin>,
    /// Buyers whose predicted CLV is no number (NaN or infinite): counted, not drawn.
    pub clv_not_finite: u64,
    pub clv_total: f64,
    pub clv_median: Option<f64>,
}

/// Customers whose value is in `[from, to)` (the last bin includes its end).
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub from: f64,
    pub to: f64,
    pub customers: u64,
}

/// The report of `pipeline` for `as_of`, or for its latest publication.
pub async fn gather(
    pipeline: &Pipeline,
    storage: &Storage,
    history: &RunHistory,
    as_of: Option<NaiveDate>,
) -> Result<Report, ReportError> {
    let mut runs = history.list(Some(&pipeline.name)).await?;
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    let latest = latest_publication(pipeline, storage).await?;
    let as_of = match (as_of, latest) {
        (Some(date), _) => {
            if !published_on(pipeline, storage, date).await? {
                return Err(ReportError::NotPublished {
                    pipeline: pipeline.name.clone(),
                    date,
                    latest,
                });
            }
            Some(date)
        }
        (None, latest) => latest,
    };
    // Rows from another date's run would be passed off as this date's: without the run that
    // published it (a history kept elsewhere), the graph shows none.
    let shown_run = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .find(|r| Some(r.as_of) == as_of);
    let lineage = Lineage::of(pipeline, shown_run);
    runs.truncate(RECENT_RUNS);
    let mut report = Report {
        pipeline: pipeline.name.clone(),
        description: pipeline.description.clone(),
        as_of,
        generated_at: chrono::Utc::now(),
        currency: None,
        grids: Section::Unavailable(String::new()),
        segments: Section::Unavailable(String::new()),
        portrait: Section::Unavailable(String::new()),
        winback: Section::Unavailable(String::new()),
        predictions: Section::Unavailable(String::new()),
        runs,
        lineage,
    };
    let Some(as_of) = as_of else {
        return Ok(report);
    };
    let published = Published::open(pipeline, storage, as_of).await?;
    report.currency = published.currency().await?;
    report.grids = published.grids().await?;
    report.portrait = published.portrait().await?;
    report.segments = published.segments(pipeline, storage).await?;
    report.winback = published.winback().await?;
    report.predictions = published.predictions().await?;
    Ok(report)
}

/// The newest date any output the report reads was published for.
async fn latest_publication(
    pipeline: &Pipeline,
    storage: &Storage,
) -> Result<Option<NaiveDate>, ReportError> {
    let mut latest = None;
    for output in pipeline
        .outputs
        .iter()
        .filter(|o| READ.contains(&o.table.as_str()))
    {
        let sink = publish::sink(storage, output);
        let newest = sink.latest_before(NaiveDate::MAX).await?;
        latest = latest.max(newest.map(|p| p.as_of));
    }
    Ok(latest)
}

async fn published_on(
    pipeline: &Pipeline,
    storage: &Storage,
    date: NaiveDate,
) -> Result<bool, ReportError> {
    for output in pipeline
        .outputs
        .iter()
        .filter(|o| READ.contains(&o.table.as_str()))
    {
        if publish::sink(storage, output)
            .committed(date)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What an output holds for the report's date.
#[derive(Debug, Clone)]
enum Availability {
    NotAnOutput,
    NotPublished,
    /// Published with no rows.
    Empty,
    /// Registered under its table name, with these columns.
    Rows(Vec<String>),
}

/// One date's publications of the outputs a report reads, registered as tables.
struct Published {
    ctx: SessionContext,
    as_of: NaiveDate,
    tables: HashMap<&'static str, Availability>,
}

/// A query's rows, or why they cannot be had.
type Rows = Result<Vec<RecordBatch>, String>;

impl Published {
    async fn open(
        pipeline: &Pipeline,
        storage: &Storage,
        as_of: NaiveDate,
    ) -> Result<Published, ReportError> {
        let ctx = crate::engine::reading_session(storage).map_err(|source| ReportError::Read {
            table: "(session)".to_string(),
            as_of,
            source,
        })?;
        let mut tables = HashMap::new();
        for table in READ {
            let Some(output) = pipeline.outputs.iter().find(|o| o.table == table) else {
                tables.insert(table, Availability::NotAnOutput);
                continue;
            };
            let availability = match publish::sink(storage, output).committed(as_of).await? {
                None => Availability::NotPublished,
                Some(committed) if committed.files.is_empty() || committed.rows == 0 => {
                    Availability::Empty
                }
                Some(committed) => {
                    storage.store(&committed.files[0], &output.options)?;
                    let read = |source| ReportError::Read {
                        table: table.to_string(),
                        as_of,
                        source,
                    };
                    let urls: Vec<String> =
                        committed.files.iter().map(ToString::to_string).collect();
                    let frame = ctx
                        .read_parquet(urls, ParquetReadOptions::default())
                        .await
                        .map_err(read)?;
                    let columns = frame
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    ctx.register_table(table, frame.into_view()).map_err(read)?;
                    Availability::Rows(columns)
                }
            };
            tables.insert(table, availability);
        }
        Ok(Published { ctx, as_of, tables })
    }

    /// The rows `sql` gives over `table`, which must have `columns`; an empty publication
    /// gives no rows.
    async fn query(&self, table: &str, columns: &[&str], sql: &str) -> Result<Rows, ReportError> {
        match &self.tables[table] {
            Availability::NotAnOutput => {
                Ok(Err(format!("the pipeline has no output named {table}")))
            }
            Availability::NotPublished => Ok(Err(format!(
                "{table} has no publication for {}",
                self.as_of
            ))),
            Availability::Empty => Ok(Ok(Vec::new())),
            Availability::Rows(have) => {
                let missing: Vec<&str> = columns
                    .iter()
                    .copied()
                    .filter(|c| !have.iter().any(|h| h == c))
                    .collect();
                if !missing.is_empty() {
                    return Ok(Err(format!(
                        "the published {table} has no column {}",
                        missing.join(", ")
                    )));
                }
                // A query that does not plan meets a table of another shape than the report
                // knows (a column of another type): that part is not drawn, the rest is.
                let frame = match self.ctx.sql(sql).await {
                    Ok(frame) => frame,
                    Err(error) => {
                        let first = error.to_string();
                        let first = first.lines().next().unwrap_or_default().to_string();
                        return Ok(Err(format!("the published {table} does not fit: {first}")));
                    }
                };
                let rows = frame.collect().await.map_err(|source| ReportError::Read {
                    table: table.to_string(),
                    as_of: self.as_of,
                    source,
                })?;
                Ok(Ok(rows))
            }
        }
    }

    async fn currency(&self) -> Result<Option<String>, ReportError> {
        let rows = self
            .query(CUSTOMER_PROFILE, &["currency"], CURRENCY_SQL)
            .await?;
        let Ok(rows) = rows else { return Ok(None) };
        let uniform = integers(&rows, "currencies").first() == Some(&Some(1));
        Ok(uniform
            .then(|| strings(&rows, "currency").into_iter().next().flatten())
            .flatten())
    }

    async fn grids(&self) -> Result<Section<Vec<Grid>>, ReportError> {
        let mut grids = Vec::new();
        for (title, across, label) in [
            ("Recency × frequency", "f_score", "rf_segment"),
            (
                "Recency × frequency-and-monetary",
                "fm_score",
                "shopify_group",
            ),
        ] {
            let fill = |sql: &str| {
                sql.replace("$down", "r_score")
                    .replace("$across", across)
                    .replace("$label", label)
            };
            let needed = ["r_score", across, label, "net_revenue"];
            let cells = match self
                .query(CUSTOMER_PROFILE, &needed, &fill(GRID_SQL))
                .await?
            {
                Ok(rows) => rows,
                Err(why) => return Ok(Section::Unavailable(why)),
            };
            let groups = match self
                .query(CUSTOMER_PROFILE, &needed, &fill(GROUPS_SQL))
                .await?
            {
                Ok(rows) => rows,
                Err(why) => return Ok(Section::Unavailable(why)),
            };
            let cells = zip5(
                integers(&cells, "down"),
                integers(&cells, "across"),
                integers(&cells, "customers"),
                floats(&cells, "revenue"),
                strings(&cells, "label"),
            )
            .map(|(down, across, customers, revenue, label)| Cell {
                down: down.unwrap_or_default(),
                across: across.unwrap_or_default(),
                customers: customers.unwrap_or_default().max(0) as u64,
                revenue: revenue.unwrap_or_default(),
                label,
            })
            .collect();
            let groups = strings(&groups, "label")
                .into_iter()
                .zip(integers(&groups, "customers"))
                .zip(floats(&groups, "revenue"))
                .map(|((label, customers), revenue)| Group {
                    label: label.unwrap_or_else(|| "(none)".to_string()),
                    customers: customers.unwrap_or_default().max(0) as u64,
                    revenue: revenue.unwrap_or_default(),
                })
                .collect();
            grids.push(Grid {
                title: title.to_string(),
                down: "R".to_string(),
                across: if across == "f_score" { "F" } else { "FM" }.to_string(),
                label_column: label.to_string(),
                cells,
                groups,
            });
        }
        Ok(Section::Shown(grids))
    }

    /// The whole `segment_summary`, as published.
    async fn portrait(&self) -> Result<Section<Table>, ReportError> {
        let rows = match self
            .query(
                SEGMENT_SUMMARY,
                &["segment", "customers"],
                "SELECT * FROM segment_summary ORDER BY customers DESC, segment",
            )
            .await?
        {
            Ok(rows) => rows,
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        Ok(Section::Shown(table_of(&rows)))
    }

    async fn segments(
        &self,
        pipeline: &Pipeline,
        storage: &Storage,
    ) -> Result<Section<Segments>, ReportError> {
        let now = match self
            .query(
                SEGMENT_SUMMARY,
                &["segment", "customers"],
                "SELECT CAST(segment AS VARCHAR) AS segment, CAST(customers AS BIGINT) AS customers FROM segment_summary",
            )
            .await?
        {
            Ok(rows) => sizes_of(&rows),
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        let changes = self
            .query(SEGMENT_CHANGES, &["segment", "change"], CHANGES_SQL)
            .await?;
        let moved: HashMap<String, (u64, u64)> = match &changes {
            Ok(rows) => strings(rows, "segment")
                .into_iter()
                .zip(integers(rows, "entered"))
                .zip(integers(rows, "exited"))
                .map(|((segment, entered), exited)| {
                    let count = |n: Option<i64>| n.unwrap_or_default().max(0) as u64;
                    (segment.unwrap_or_default(), (count(entered), count(exited)))
                })
                .collect(),
            Err(_) => HashMap::new(),
        };
        let output = pipeline
            .outputs
            .iter()
            .find(|o| o.table == SEGMENT_SUMMARY)
            .expect("segment_summary was read, so it is an output");
        let earlier = publish::sink(storage, output)
            .partitions_before(self.as_of, Some(SIZE_HISTORY - 1))
            .await?;
        let mut dates = Vec::new();
        let mut history: Vec<HashMap<String, u64>> = Vec::new();
        for partition in &earlier {
            dates.push(partition.as_of);
            history.push(self.sizes_in(partition).await);
        }
        dates.push(self.as_of);
        let mut lines: Vec<SegmentLine> = now
            .iter()
            .map(|(segment, customers)| {
                let (entered, exited) = moved.get(segment).copied().unwrap_or_default();
                let mut sizes: Vec<Option<u64>> =
                    history.iter().map(|h| h.get(segment).copied()).collect();
                sizes.push(Some(*customers));
                SegmentLine {
                    segment: segment.clone(),
                    customers: *customers,
                    entered,
                    exited,
                    sizes,
                }
            })
            .collect();
        lines.sort_by(|a, b| {
            b.customers
                .cmp(&a.customers)
                .then(a.segment.cmp(&b.segment))
        });
        Ok(Section::Shown(Segments {
            lines,
            dates,
            changes: changes.is_ok(),
        }))
    }

    /// Each segment's size in an earlier publication of segment_summary; none where that
    /// publication cannot be read as segments and sizes (an older shape of the table).
    async fn sizes_in(&self, partition: &publish::Partition) -> HashMap<String, u64> {
        let urls: Vec<String> = partition.files.iter().map(ToString::to_string).collect();
        if urls.is_empty() {
            return HashMap::new();
        }
        let read = async {
            self.ctx
                .read_parquet(urls, ParquetReadOptions::default())
                .await?
                .select_columns(&["segment", "customers"])?
                .collect()
                .await
        };
        match read.await {
            Ok(rows) => sizes_of(&rows).into_iter().collect(),
            Err(error) => {
                tracing::warn!(as_of = %partition.as_of, %error, "Could not read an earlier segment_summary; its sizes are left out.");
                HashMap::new()
            }
        }
    }

    async fn winback(&self) -> Result<Section<Winback>, ReportError> {
        let counts = |table: &str, column: &str| {
            COUNTS_SQL
                .replace("$table", table)
                .replace("$column", column)
        };
        let listed = match self
            .query(
                WINBACK_LIST,
                &["rf_segment"],
                &counts(WINBACK_LIST, "rf_segment"),
            )
            .await?
        {
            Ok(rows) => counted(&rows),
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        let suppressed = match self
            .query(
                WINBACK_SUPPRESSED,
                &["left_out_because"],
                &counts(WINBACK_SUPPRESSED, "left_out_because"),
            )
            .await?
        {
            Ok(rows) => counted(&rows),
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        let label = |(value, n): (Option<String>, u64)| (value.unwrap_or_default(), n);
        Ok(Section::Shown(Winback {
            listed: listed.iter().map(|(_, n)| n).sum(),
            by_group: listed.into_iter().map(label).collect(),
            suppressed: suppressed.into_iter().map(label).collect(),
        }))
    }

    async fn predictions(&self) -> Result<Section<Predictions>, ReportError> {
        let churn = COUNTS_SQL
            .replace("$table", CUSTOMER_PREDICTIONS)
            .replace("$column", "churn_risk");
        let churn = match self
            .query(CUSTOMER_PREDICTIONS, &["churn_risk"], &churn)
            .await?
        {
            Ok(rows) => counted(&rows),
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        let values: Vec<f64> = match self
            .query(CUSTOMER_PREDICTIONS, &["predicted_clv_12m"], CLV_SQL)
            .await?
        {
            Ok(rows) => floats(&rows, "clv").into_iter().flatten().collect(),
            Err(why) => return Ok(Section::Unavailable(why)),
        };
        let (values, not_finite): (Vec<f64>, Vec<f64>) =
            values.into_iter().partition(|v| v.is_finite());
        Ok(Section::Shown(Predictions {
            churn,
            clv_not_finite: not_finite.len() as u64,
            clv_total: values.iter().sum(),
            clv_median: median(&values),
            clv: bins(&values, CLV_BINS),
        }))
    }
}

/// `sorted` in `count` bins whose edges grow geometrically from its smallest positive value
/// (at least 0.01) to its largest: money amounts spread over orders of magnitude, and
/// equal widths would put nearly everyone in the first bin. Smaller values go into the first.
fn bins(sorted: &[f64], count: usize) -> Vec<Bin> {
    let Some(&largest) = sorted.last() else {
        return Vec::new();
    };
    let low = sorted
        .iter()
        .copied()
        .find(|v| *v > 0.0)
        .unwrap_or(0.01)
        .max(0.01);
    let high = largest.max(low * 1.01);
    let ratio = (high / low).ln() / count as f64;
    let edge = |i: usize| low * (ratio * i as f64).exp();
    let mut bins: Vec<Bin> = (0..count)
        .map(|i| Bin {
            from: edge(i),
            to: edge(i + 1),
            customers: 0,
        })
        .collect();
    bins[0].from = sorted[0].min(low);
    bins[count - 1].to = high;
    for value in sorted {
        let index = if *value <= low {
            0
        } else {
            (((value / low).ln() / ratio).floor() as usize).min(count - 1)
        };
        bins[index].customers += 1;
    }
    bins
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn sizes_of(rows: &[RecordBatch]) -> BTreeMap<String, u64> {
    strings(rows, "segment")
        .into_iter()
        .zip(integers(rows, "customers"))
        .map(|(segment, n)| {
            (
                segment.unwrap_or_default(),
                n.unwrap_or_default().max(0) as u64,
            )
        })
        .collect()
}

fn counted(rows: &[RecordBatch]) -> Vec<(Option<String>, u64)> {
    strings(rows, "value")
        .into_iter()
        .zip(integers(rows, "customers"))
        .map(|(value, n)| (value, n.unwrap_or_default().max(0) as u64))
        .collect()
}

/// A published table's columns, each shown by its type and name, and its rows.
fn table_of(rows: &[RecordBatch]) -> Table {
    let Some(first) = rows.first() else {
        return Table {
            columns: Vec::new(),
            rows: Vec::new(),
        };
    };
    let columns: Vec<Column> = first
        .schema()
        .fields()
        .iter()
        .map(|field| Column {
            name: field.name().clone(),
            kind: kind_of(field.name(), field.data_type()),
        })
        .collect();
    let mut table_rows: Vec<Vec<Value>> = Vec::new();
    let per_column: Vec<Vec<Value>> = columns
        .iter()
        .map(|column| match column.kind {
            ValueKind::Text => strings(rows, &column.name)
                .into_iter()
                .map(|v| v.map_or(Value::Null, Value::Text))
                .collect(),
            _ => floats(rows, &column.name)
                .into_iter()
                .map(|v| v.map_or(Value::Null, Value::Number))
                .collect(),
        })
        .collect();
    let count = per_column.first().map_or(0, Vec::len);
    for i in 0..count {
        table_rows.push(per_column.iter().map(|c| c[i].clone()).collect());
    }
    Table {
        columns,
        rows: table_rows,
    }
}

/// How a column is shown: counts as whole numbers, shares and rates as percentages, money
/// (decimals named like revenue, value or spend) with the currency.
fn kind_of(name: &str, data_type: &DataType) -> ValueKind {
    let money_name = ["revenue", "value", "spend", "clv"]
        .iter()
        .any(|word| name.contains(word));
    match data_type {
        t if t.is_integer() => ValueKind::Count,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
            if money_name =>
        {
            ValueKind::Money
        }
        t if t.is_floating() && (name.contains("share") || name.contains("rate")) => {
            ValueKind::Share
        }
        t if t.is_numeric() && money_name => ValueKind::Money,
        t if t.is_numeric() => ValueKind::Number,
        _ => ValueKind::Text,
    }
}

/// Column `name` of every batch as `to`, one value per row: a batch without the column, or
/// whose column does not convert, gives NULLs, so that columns read this way stay aligned.
fn column_as(rows: &[RecordBatch], name: &str, to: &DataType) -> Vec<std::sync::Arc<dyn Array>> {
    rows.iter()
        .map(|batch| {
            batch
                .column_by_name(name)
                .and_then(|column| cast(column, to).ok())
                .unwrap_or_else(|| new_null_array(to, batch.num_rows()))
        })
        .collect()
}

/// Column `name` as text, whatever its type (lists, maps and structs as Arrow prints them).
fn strings(rows: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let options = FormatOptions::default();
    let mut texts = Vec::new();
    for batch in rows {
        let Some(column) = batch.column_by_name(name) else {
            texts.extend(std::iter::repeat_n(None, batch.num_rows()));
            continue;
        };
        match ArrayFormatter::try_new(column.as_ref(), &options) {
            Ok(formatter) => texts.extend(
                (0..column.len())
                    .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string())),
            ),
            Err(_) => texts.extend(std::iter::repeat_n(None, batch.num_rows())),
        }
    }
    texts
}

fn integers(rows: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    column_as(rows, name, &DataType::Int64)
        .iter()
        .flat_map(|array| array.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect()
}

fn floats(rows: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    column_as(rows, name, &DataType::Float64)
        .iter()
        .flat_map(|array| {
            array
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn zip5<A, B, C, D, E>(
    a: Vec<A>,
    b: Vec<B>,
    c: Vec<C>,
    d: Vec<D>,
    e: Vec<E>,
) -> impl Iterator<Item = (A, B, C, D, E)> {
    a.into_iter()
        .zip(b)
        .zip(c)
        .zip(d)
        .zip(e)
        .map(|((((a, b), c), d), e)| (a, b, c, d, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_value_once_on_a_log_scale() {
        let mut values: Vec<f64> = (0..1000).map(f64::from).collect();
        values.push(1_000_000.0);
        let drawn = bins(&values, 20);
        assert_eq!(drawn.len(), 20);
        assert_eq!(drawn.iter().map(|b| b.customers).sum::<u64>(), 1001);
        assert_eq!(drawn[0].from, 0.0);
        assert_eq!(drawn[19].to, 1_000_000.0);
        // 1 to 1,000,000 is six decades: 20 bins of 0.3 decades; 0 and 1 in the first.
        assert_eq!(drawn[0].customers, 2, "{drawn:?}");
        assert_eq!(drawn[19].customers, 1, "{drawn:?}");
        for pair in drawn.windows(2) {
            assert!((pair[0].to - pair[1].from).abs() < 1e-9);
        }
        assert!(bins(&[], 20).is_empty());
        // All alike: one bin holds them.
        let same = bins(&[5.0, 5.0], 4);
        assert_eq!(same.iter().map(|b| b.customers).sum::<u64>(), 2);
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 3.0]), Some(2.0));
    }

    #[test]
    fn columns_are_shown_by_type_and_name() {
        assert_eq!(kind_of("customers", &DataType::Int64), ValueKind::Count);
        assert_eq!(
            kind_of("revenue", &DataType::Decimal128(16, 2)),
            ValueKind::Money
        );
        assert_eq!(
            kind_of("share_of_customers", &DataType::Float64),
            ValueKind::Share
        );
        assert_eq!(
            kind_of("average_orders", &DataType::Float64),
            ValueKind::Number
        );
        assert_eq!(kind_of("segment", &DataType::Utf8View), ValueKind::Text);
        assert_eq!(kind_of("as_of", &DataType::Date32), ValueKind::Text);
    }
}
