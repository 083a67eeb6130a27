//! The shipped pipeline's report, gathered: each section read from one date's
//! publications (the outputs the shipped pipeline publishes, by name) and the run history.
//! Each section names the output and columns it reads; a pipeline that does not publish
//! them gets the section's reason instead of a picture.

use std::collections::HashMap;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::ReportError;
use super::columns::{bins, counted, floats, integers, median, sizes_of, strings, table_of, zip5};
use super::model::{
    Cell, Grid, Group, Predictions, RECENT_RUNS, Report, SIZE_HISTORY, Section, SegmentLine,
    Segments, Table, Winback,
};
use crate::history::{RunHistory, RunStatus};
use crate::lineage::Lineage;
use crate::pipeline::Pipeline;
use crate::publish;
use crate::storage::Storage;
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
