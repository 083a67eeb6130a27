//! Checks (docs/checks.md): each rule becomes a query over a table as it is about to be
//! published, which counts the rows that break the rule and keeps a few as examples. The
//! queries are DataFusion plans like any step's, so they run wherever the steps run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::count::{count, count_all};
use datafusion::functions_aggregate::min_max::max;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{cast, try_cast};
use datafusion::logical_expr_common::casts::try_cast_literal_to_type;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, col, lit};

use super::params::start_of_day;
use super::{Engine, EngineError, Params, describe};
use crate::hint::did_you_mean;
use crate::pipeline::{
    AS_OF, AS_OF_END, Change, Check, CheckRule, CheckValue, VarValue, hours, percent,
};
use crate::storage::Location;

/// The other table's column in a relationships check's join.
const TARGET: &str = "__relationships_target";

/// Examples of offending rows kept per check.
const EXAMPLES: usize = 5;

/// What a check found: how many rows break it (for a rule on the whole table, 1 when it is
/// broken), what that means in words, and the first few offending rows as `column=value`
/// text. A check that passed may still have said something (`found`): that it had nothing
/// to compare with, for one.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub offending: u64,
    pub found: String,
    pub examples: Vec<String>,
}

impl CheckOutcome {
    fn passed() -> CheckOutcome {
        CheckOutcome {
            offending: 0,
            found: String::new(),
            examples: Vec::new(),
        }
    }
}

/// What a check may compare with besides its table.
pub struct CheckInputs<'a> {
    pub params: &'a Params,
    /// For an anomaly check: the files of its output's publication before this one, when
    /// there is one.
    pub previous: Option<&'a [Location]>,
}

impl Engine {
    /// Makes `table` the Parquet files at `files` (a folder or a list of files): an output
    /// as staged for publication, or as published, so that checks read it instead of
    /// computing it again.
    pub async fn read_table_from(
        &self,
        table: &str,
        files: &[Location],
        options: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let failed = |source| EngineError::Register {
            table: table.to_string(),
            url: files.first().map(ToString::to_string).unwrap_or_default(),
            source,
        };
        if let Some(first) = files.first() {
            self.storage.store(first, options)?;
        }
        let urls: Vec<String> = files.iter().map(ToString::to_string).collect();
        let frame = self
            .ctx
            .read_parquet(urls, ParquetReadOptions::default())
            .await
            .map_err(failed)?;
        self.ctx.deregister_table(table).map_err(failed)?;
        self.ctx
            .register_table(table, frame.into_view())
            .map_err(failed)?;
        Ok(())
    }

    /// Runs `check` on its table as registered (an output's staged or published files, see
    /// [`Engine::read_table_from`]).
    pub async fn check(
        &self,
        check: &Check,
        inputs: &CheckInputs<'_>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| self.run_error(check, error);
        let query = self.rule_query(check, inputs.params).await?;
        match (&check.rule, query) {
            (CheckRule::RowCount { min, max }, frame) => {
                let rows = frame.count().await.map_err(failed)? as u64;
                let outside =
                    min.is_some_and(|min| rows < min) || max.is_some_and(|max| rows > max);
                Ok(whole_table(outside, format!("it has {rows} rows")))
            }
            (
                CheckRule::NotNullProportion {
                    column: name,
                    at_least,
                },
                frame,
            ) => {
                let counts = frame.collect().await.map_err(failed)?;
                let (total, present) = (int(&counts, 0), int(&counts, 1));
                let share = if total == 0 {
                    1.0
                } else {
                    present as f64 / total as f64
                };
                if share >= *at_least {
                    return Ok(CheckOutcome::passed());
                }
                let nulls = self
                    .table(check)
                    .await?
                    .filter(column(name).is_null())
                    .map_err(failed)?;
                let mut outcome = self
                    .offending_rows(check, nulls, Some(std::slice::from_ref(name)))
                    .await?;
                outcome.found = format!(
                    "{} % of the rows have a {name} ({present} of {total}); at least {} % must",
                    percent(share),
                    percent(*at_least)
                );
                Ok(outcome)
            }
            (
                CheckRule::Freshness {
                    column: name,
                    max_age,
                },
                frame,
            ) => self.freshness(check, frame, name, *max_age, inputs).await,
            (
                CheckRule::Anomaly {
                    max_change,
                    by,
                    min_size,
                },
                frame,
            ) => {
                let Some(previous) = inputs.previous else {
                    return Ok(CheckOutcome {
                        found: format!(
                            "'{}' has no earlier publication: nothing to compare with yet",
                            check.table
                        ),
                        ..CheckOutcome::passed()
                    });
                };
                let now = group_sizes(frame).await.map_err(failed)?;
                let urls: Vec<String> = previous.iter().map(ToString::to_string).collect();
                let before = self
                    .ctx
                    .read_parquet(urls, ParquetReadOptions::default())
                    .await
                    .and_then(|f| sizes_query(f, by.as_deref()))
                    .map_err(failed)?;
                let before = group_sizes(before).await.map_err(failed)?;
                Ok(compare_sizes(&before, &now, *max_change, *min_size, by))
            }
            (CheckRule::Unique(_), repeated) => {
                let mut outcome = self.offending_rows(check, repeated, None).await?;
                if outcome.offending > 0 {
                    outcome.found = match outcome.offending {
                        1 => "1 value is on more than one row".to_string(),
                        n => format!("{n} values are on more than one row"),
                    };
                }
                Ok(outcome)
            }
            (
                CheckRule::Relationships {
                    column: name,
                    to,
                    field,
                },
                unknown,
            ) => {
                let mut outcome = self
                    .offending_rows(check, unknown, Some(std::slice::from_ref(name)))
                    .await?;
                if outcome.offending > 0 {
                    outcome.found = format!(
                        "{} with a {name} that is not in {to}.{field}",
                        rows(outcome.offending)
                    );
                }
                Ok(outcome)
            }
            (CheckRule::Sql(_), offending) => self.offending_rows(check, offending, None).await,
            (rule, offending) => {
                let shown = rule.columns().into_iter().cloned().collect::<Vec<_>>();
                self.offending_rows(check, offending, Some(&shown)).await
            }
        }
    }

    /// Checks that a check's tables and columns exist and that its query plans, reading no
    /// data (`segflow validate`, and every run before it stages anything).
    pub async fn plan_check(&self, check: &Check, params: &Params) -> Result<(), EngineError> {
        self.rule_query(check, params)
            .await?
            .create_physical_plan()
            .await
            .map_err(|error| check_error(check, error))?;
        Ok(())
    }

    /// The table a check is on, its columns checked against the rule.
    async fn table(&self, check: &Check) -> Result<DataFrame, EngineError> {
        let frame = self
            .ctx
            .table(check.table.as_str())
            .await
            .map_err(|error| check_error(check, error))?;
        self.check_columns(check, &frame).await?;
        Ok(frame)
    }

    /// The query a rule becomes: the offending rows for a rule on rows; for the others, what
    /// they count (the table for row_count, the rows and values for not_null_proportion,
    /// the newest value for freshness, the group sizes for anomaly).
    async fn rule_query(&self, check: &Check, params: &Params) -> Result<DataFrame, EngineError> {
        let failed = |error: DataFusionError| check_error(check, error);
        if let CheckRule::Sql(step) = &check.rule {
            return self.plan(step, params).await.map_err(|error| match error {
                // Told with the pipeline line too, not only the SQL file.
                EngineError::Plan { message, .. } => EngineError::Check {
                    at: check.at.clone(),
                    check: check.name.clone(),
                    table: check.table.clone(),
                    message: format!("{}: {message}", step.sql_file.display()),
                },
                other => other,
            });
        }
        let frame = self.table(check).await?;
        let type_of = |name: &str| {
            frame
                .schema()
                .qualified_field_with_unqualified_name(name)
                .map(|(_, field)| field.data_type().clone())
                .map_err(failed)
        };
        let query = match &check.rule {
            CheckRule::NotNull(columns) => {
                let missing = columns.iter().map(|c| column(c).is_null()).reduce(Expr::or);
                frame.filter(missing.unwrap_or(lit(false)))
            }
            CheckRule::Unique(columns) => {
                // As dbt's `unique`: a NULL repeats nothing (not_null is its own check).
                let keys: Vec<Expr> = columns.iter().map(|c| column(c)).collect();
                let present = keys
                    .iter()
                    .map(|key| key.clone().is_not_null())
                    .reduce(Expr::and);
                frame
                    .filter(present.unwrap_or(lit(true)))
                    .and_then(|f| f.aggregate(keys, vec![count_all().alias("rows")]))
                    .and_then(|f| f.filter(col("rows").gt(lit(1_i64))))
            }
            CheckRule::AcceptedValues {
                column: name,
                values,
            } => {
                // Each value as the column's type, so that a value which cannot be one is
                // told now, not met as a cast failure halfway through the night.
                let wanted = type_of(name)?;
                let mut accepted = Vec::new();
                for value in values {
                    let cast = exactly_as(value, &wanted).ok_or_else(|| {
                        unfit(
                            check,
                            format!(
                                "accepted value '{value}' cannot be a value of '{name}', which \
                                 is {}",
                                type_words(&wanted)
                            ),
                        )
                    })?;
                    accepted.push(lit(cast));
                }
                frame.filter(
                    column(name)
                        .is_not_null()
                        .and(column(name).in_list(accepted, true)),
                )
            }
            CheckRule::AcceptedRange {
                column: name,
                min,
                max,
            } => {
                let below = min.map(|min| column(name).lt(lit(min)));
                let above = max.map(|max| column(name).gt(lit(max)));
                let outside = below.into_iter().chain(above).reduce(Expr::or);
                frame.filter(outside.unwrap_or(lit(false)))
            }
            CheckRule::RowCount { .. } => Ok(frame),
            CheckRule::Relationships {
                column: name,
                to,
                field,
            } => {
                let target = self.ctx.table(to.as_str()).await.map_err(failed)?;
                let theirs = target
                    .schema()
                    .qualified_field_with_unqualified_name(field)
                    .map(|(_, f)| f.data_type().clone())
                    .map_err(failed)?;
                let ours = type_of(name)?;
                // Both sides as the type SQL compares them in, losing nothing; a value that
                // cannot be one matches nothing, so the rows that would need it offend.
                let common = comparison_coercion(&ours, &theirs).ok_or_else(|| {
                    unfit(
                        check,
                        format!(
                            "'{name}' is {} and {to}.{field} is {}: their values cannot be \
                             compared",
                            type_words(&ours),
                            type_words(&theirs)
                        ),
                    )
                })?;
                let target = target
                    .select(vec![try_cast(column(field), common.clone()).alias(TARGET)])
                    .map_err(failed)?;
                frame.filter(column(name).is_not_null()).and_then(|f| {
                    f.join_on(
                        target,
                        JoinType::LeftAnti,
                        [try_cast(column(name), common).eq(col(TARGET))],
                    )
                })
            }
            CheckRule::NotNullProportion { column: name, .. } => frame.aggregate(
                vec![],
                vec![
                    count_all().alias("rows"),
                    count(column(name)).alias("values"),
                ],
            ),
            CheckRule::Freshness { column: name, .. } => {
                let data_type = type_of(name)?;
                newest_query(frame, name, &data_type, params)
            }
            CheckRule::Anomaly { by, .. } => sizes_query(frame, by.as_deref()),
            CheckRule::Sql(_) => unreachable!("planned above"),
        };
        query.map_err(failed)
    }

    /// The rows of `offending`, counted, with a few as examples: the first column of the
    /// checked table and `shown` (all columns when `None`).
    async fn offending_rows(
        &self,
        check: &Check,
        offending: DataFrame,
        shown: Option<&[String]>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| self.run_error(check, error);
        let examples = match shown {
            Some(checked) => {
                let first = offending.schema().field(0).name().clone();
                let mut columns = vec![column(&first)];
                columns.extend(
                    checked
                        .iter()
                        .filter(|name| **name != first)
                        .map(|name| column(name)),
                );
                offending.clone().select(columns)
            }
            None => Ok(offending.clone()),
        }
        .and_then(|f| f.limit(0, Some(EXAMPLES)))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
        let shown_rows: usize = examples.iter().map(RecordBatch::num_rows).sum();
        // Most checks pass: then the examples' query, which found none, was the only scan.
        let count = if shown_rows < EXAMPLES {
            shown_rows as u64
        } else {
            offending.count().await.map_err(failed)? as u64
        };
        if count == 0 {
            return Ok(CheckOutcome::passed());
        }
        Ok(CheckOutcome {
            offending: count,
            found: match count {
                1 => "1 row breaks it".to_string(),
                n => format!("{n} rows break it"),
            },
            examples: as_text(&examples).map_err(failed)?,
        })
    }

    /// The newest value before the end of the as_of day, against `max_age`. Later rows are
    /// left out: a backfill of an old date is as fresh as that date's data was.
    async fn freshness(
        &self,
        check: &Check,
        newest: DataFrame,
        name: &str,
        max_age: std::time::Duration,
        inputs: &CheckInputs<'_>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| self.run_error(check, error);
        let VarValue::Instant(end) = &inputs.params.values[AS_OF_END] else {
            unreachable!("as_of_end is an instant")
        };
        let batches = newest.collect().await.map_err(failed)?;
        let newest = batches
            .first()
            .map(|b| b.column(0))
            .filter(|values| values.is_valid(0))
            .and_then(|values| match values.data_type() {
                // A date counts from its first instant in the pipeline's zone.
                DataType::Date32 => values
                    .as_primitive::<Date32Type>()
                    .value_as_date(0)
                    .map(|date| start_of_day(date, end.timezone()).with_timezone(&Utc)),
                _ => DateTime::<Utc>::from_timestamp_micros(
                    values.as_primitive::<TimestampMicrosecondType>().value(0),
                ),
            });
        let limit = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let end_text = end.format("%Y-%m-%d %H:%M %Z");
        let Some(newest) = newest else {
            return Ok(whole_table(
                true,
                format!("'{}' has no {name} before {end_text}", check.table),
            ));
        };
        let age = end.with_timezone(&Utc) - newest;
        let stale = age > limit;
        let mut outcome = whole_table(
            stale,
            format!(
                "its newest {name} is {}, {} before {end_text} (at most {} may pass)",
                newest
                    .with_timezone(&end.timezone())
                    .format("%Y-%m-%d %H:%M:%S %Z"),
                hours(std::time::Duration::from_secs(
                    age.num_seconds().max(0) as u64
                )),
                hours(max_age)
            ),
        );
        if stale {
            outcome.examples = vec![format!("{name}={}", newest.to_rfc3339())];
        }
        Ok(outcome)
    }

    async fn check_columns(&self, check: &Check, frame: &DataFrame) -> Result<(), EngineError> {
        let schema = frame.schema();
        let names = || schema.fields().iter().map(|f| f.name().as_str());
        let missing = |table: &str, column: &str, names: Vec<&str>| EngineError::CheckColumn {
            at: check.at.clone(),
            check: check.name.clone(),
            table: table.to_string(),
            column: column.to_string(),
            hint: did_you_mean(column, names.into_iter()),
        };
        for column in check.rule.columns() {
            if !names().any(|name| name == column) {
                return Err(missing(&check.table, column, names().collect()));
            }
        }
        match &check.rule {
            CheckRule::Relationships { to, field, .. } => {
                let target = self
                    .ctx
                    .table(to.as_str())
                    .await
                    .map_err(|error| check_error(check, error))?;
                let fields = target.schema().fields();
                if !fields.iter().any(|f| f.name() == field) {
                    return Err(missing(
                        to,
                        field,
                        fields.iter().map(|f| f.name().as_str()).collect(),
                    ));
                }
            }
            CheckRule::Freshness { column, .. } => {
                let (_, field) = schema
                    .qualified_field_with_unqualified_name(column)
                    .map_err(|error| check_error(check, error))?;
                if !matches!(
                    field.data_type(),
                    DataType::Timestamp(..) | DataType::Date32
                ) {
                    return Err(unfit(
                        check,
                        format!(
                            "freshness needs a timestamp or date column, and '{column}' of '{}' \
                             is {}",
                            check.table,
                            type_words(field.data_type())
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Engine {
    /// A check that fails while it runs meets what a step meets: a damaged file (which the
    /// run then names), memory, storage, the cluster. Told with the check, unless it is a
    /// file's or the cluster's fault: then the check's line is not where to look.
    fn run_error(&self, check: &Check, error: DataFusionError) -> EngineError {
        match self.query_error(&check.table, error, |error| check_error(check, error)) {
            named @ (EngineError::Check { .. }
            | EngineError::UnreadableData { .. }
            | EngineError::UnparsedText { .. }
            | EngineError::Cluster(_)) => named,
            other => EngineError::CheckRun {
                at: check.at.clone(),
                check: check.name.clone(),
                source: Box::new(other),
            },
        }
    }
}

fn check_error(check: &Check, error: DataFusionError) -> EngineError {
    EngineError::Check {
        at: check.at.clone(),
        check: check.name.clone(),
        table: check.table.clone(),
        message: describe(&error),
    }
}

fn unfit(check: &Check, message: String) -> EngineError {
    EngineError::CheckUnfit {
        at: check.at.clone(),
        check: check.name.clone(),
        message,
    }
}

/// A column type in a data engineer's words.
fn type_words(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "a string".to_string(),
        DataType::Dictionary(_, values) => type_words(values),
        t if t.is_integer() => format!("a whole number ({t})"),
        t if t.is_numeric() => format!("a number ({t})"),
        DataType::Boolean => "a boolean".to_string(),
        DataType::Date32 | DataType::Date64 => "a date".to_string(),
        DataType::Timestamp(..) => "a timestamp".to_string(),
        other => format!("of type {other}"),
    }
}

/// The newest value of `name` before the end of the as_of day: an instant as UTC, or a date.
/// Dates are compared as dates: against an instant, a date would be taken as UTC midnight,
/// and west of UTC the day after as_of would count as before its end.
fn newest_query(
    frame: DataFrame,
    name: &str,
    data_type: &DataType,
    params: &Params,
) -> Result<DataFrame, DataFusionError> {
    let (before_end, newest) = if *data_type == DataType::Date32 {
        let as_of = lit(params.values[AS_OF].to_scalar());
        (column(name).lt_eq(as_of), max(column(name)))
    } else {
        let end = lit(params.values[AS_OF_END].to_scalar());
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        (column(name).lt(end), cast(max(column(name)), utc))
    };
    frame
        .filter(before_end)
        .and_then(|f| f.aggregate(vec![], vec![newest.alias("newest")]))
}

/// The rows of `frame` per value of `by`, or in all.
fn sizes_query(frame: DataFrame, by: Option<&str>) -> Result<DataFrame, DataFusionError> {
    let key = match by {
        Some(by) => cast(column(by), DataType::Utf8),
        None => lit(ScalarValue::Utf8(None)),
    };
    frame.aggregate(vec![key.alias("key")], vec![count_all().alias("rows")])
}

/// The sizes `sizes_query` counted; a NULL key is the NULL group (or, without `by`, the
/// whole table, which has a size even when it is empty).
async fn group_sizes(sizes: DataFrame) -> Result<BTreeMap<Option<String>, u64>, DataFusionError> {
    let mut counted = BTreeMap::new();
    for batch in sizes.collect().await? {
        let keys = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let key = keys.is_valid(row).then(|| keys.value(row).to_string());
            counted.insert(key, counts.value(row) as u64);
        }
    }
    Ok(counted)
}

/// The outcome of a rule on the whole table: one offence when `broken`, told as `found`.
fn whole_table(broken: bool, found: String) -> CheckOutcome {
    CheckOutcome {
        offending: u64::from(broken),
        found: if broken { found } else { String::new() },
        examples: Vec::new(),
    }
}

/// Each group whose size moved more than `max_change`, unless it is below `min_size` on
/// both sides.
fn compare_sizes(
    before: &BTreeMap<Option<String>, u64>,
    now: &BTreeMap<Option<String>, u64>,
    max_change: Change,
    min_size: u64,
    by: &Option<String>,
) -> CheckOutcome {
    let mut moved = Vec::new();
    let keys: std::collections::BTreeSet<&Option<String>> =
        before.keys().chain(now.keys()).collect();
    for key in keys {
        let (was, is) = (
            before.get(key).copied().unwrap_or(0),
            now.get(key).copied().unwrap_or(0),
        );
        if was.max(is) < min_size || max_change.allows(was, is) {
            continue;
        }
        let change = if was == 0 {
            "new".to_string()
        } else {
            format!("{:+.1} %", (is as f64 - was as f64) / was as f64 * 100.0)
        };
        let what = match by {
            Some(by) => format!("{by}={}: ", key.as_deref().unwrap_or("NULL")),
            None => String::new(),
        };
        moved.push(format!("{what}{was} -> {is} rows ({change})"));
    }
    let offending = moved.len() as u64;
    let found = match (by, offending) {
        (_, 0) => String::new(),
        (None, _) => format!(
            "the row count changed by more than {max_change} since the previous publication"
        ),
        (Some(by), 1) => {
            format!("1 {by} changed size by more than {max_change} since the previous publication")
        }
        (Some(by), n) => format!(
            "{n} values of {by} changed size by more than {max_change} since the previous \
             publication"
        ),
    };
    moved.truncate(EXAMPLES);
    CheckOutcome {
        offending,
        found,
        examples: moved,
    }
}

/// `1 row`, `3 rows`.
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

/// `value` as a value of `column_type`, exactly or not at all: `2.5` is no whole number and
/// `true` no number. A column of text takes any value as it is written (`75001`).
fn exactly_as(value: &CheckValue, column_type: &DataType) -> Option<ScalarValue> {
    let as_written = scalar(value);
    if as_written.data_type() == *column_type {
        return Some(as_written);
    }
    let text = match column_type {
        DataType::Dictionary(_, values) => values.as_ref(),
        other => other,
    };
    let value = match text {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            ScalarValue::Utf8(Some(value.to_string()))
        }
        _ => as_written,
    };
    try_cast_literal_to_type(&value, column_type)
}

fn scalar(value: &CheckValue) -> ScalarValue {
    match value {
        CheckValue::Int(v) => ScalarValue::Int64(Some(*v)),
        CheckValue::Float(v) => ScalarValue::Float64(Some(*v)),
        CheckValue::Bool(v) => ScalarValue::Boolean(Some(*v)),
        CheckValue::Text(v) => ScalarValue::Utf8(Some(v.clone())),
    }
}

/// The Int64 in column `index` of the one row of an aggregate.
fn int(batches: &[RecordBatch], index: usize) -> u64 {
    batches
        .first()
        .map(|b| b.column(index).as_primitive::<Int64Type>().value(0) as u64)
        .unwrap_or(0)
}

/// A column by its name as written (SQL would lower-case an unquoted name).
fn column(name: &str) -> Expr {
    col(Column::new_unqualified(name))
}

/// Each row as `column=value, ...`.
fn as_text(batches: &[RecordBatch]) -> Result<Vec<String>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|array| ArrayFormatter::try_new(array.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(field, format)| format!("{}={}", field.name(), format.value(row)))
                .collect();
            rows.push(cells.join(", "));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(pairs: &[(&str, u64)]) -> BTreeMap<Option<String>, u64> {
        pairs
            .iter()
            .map(|(k, n)| (Some(k.to_string()), *n))
            .collect()
    }

    #[test]
    fn anomalies_count_groups_that_moved_too_much_above_the_minimum_size() {
        let by = Some("segment".to_string());
        let before = sizes(&[("a", 1000), ("b", 1000), ("c", 10), ("d", 200)]);
        let now = sizes(&[("a", 1290), ("b", 690), ("c", 40), ("e", 150)]);
        // a: +29 % is within 30 %; b: -31 % is not; c: below 50 on both sides; d: gone;
        // e: new, and above the minimum.
        let outcome = compare_sizes(&before, &now, Change::Share(0.3), 50, &by);
        assert_eq!(outcome.offending, 3, "{outcome:?}");
        assert_eq!(
            outcome.examples,
            [
                "segment=b: 1000 -> 690 rows (-31.0 %)",
                "segment=d: 200 -> 0 rows (-100.0 %)",
                "segment=e: 0 -> 150 rows (new)"
            ]
        );
        let by_rows = compare_sizes(&before, &now, Change::Rows(310), 50, &by);
        assert_eq!(by_rows.offending, 0, "{by_rows:?}");
        let unchanged = compare_sizes(&before, &before, Change::Share(0.0), 0, &None);
        assert_eq!(unchanged.offending, 0);
    }
}
