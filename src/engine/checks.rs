//! Checks (README, "Checks"): each rule becomes a query over a table as it is about to be
//! published, which counts the rows that break the rule and keeps a few as examples. The
//! queries are DataFusion plans like any step's, so they run wherever the steps run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::count::{count, count_all};
use datafusion::functions_aggregate::min_max::max;
use datafusion::logical_expr::cast;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, col, lit};

use super::{Engine, EngineError, Params, describe};
use crate::pipeline::{
    AS_OF_END, Change, Check, CheckRule, CheckValue, VarValue, did_you_mean, hours,
};
use crate::storage::Location;

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
        let failed = |error: DataFusionError| check_error(check, error);
        if let CheckRule::Sql(step) = &check.rule {
            let frame = self.plan(step, inputs.params).await?;
            return self.offending_rows(check, frame, None).await;
        }
        let frame = self.ctx.table(check.table.as_str()).await.map_err(failed)?;
        self.check_columns(check, &frame).await?;
        match &check.rule {
            CheckRule::NotNull(columns) => {
                let missing = columns
                    .iter()
                    .map(|c| column(c).is_null())
                    .reduce(Expr::or)
                    .expect("a not_null check names columns");
                let offending = frame.filter(missing).map_err(failed)?;
                self.offending_rows(check, offending, Some(columns)).await
            }
            CheckRule::Unique(columns) => {
                // As dbt's `unique`: a NULL repeats nothing (not_null is its own check).
                let keys: Vec<Expr> = columns.iter().map(|c| column(c)).collect();
                let present = keys
                    .iter()
                    .map(|key| key.clone().is_not_null())
                    .reduce(Expr::and)
                    .expect("a unique check names columns");
                let repeated = frame
                    .filter(present)
                    .and_then(|f| f.aggregate(keys, vec![count_all().alias("rows")]))
                    .and_then(|f| f.filter(col("rows").gt(lit(1_i64))))
                    .map_err(failed)?;
                let mut outcome = self.offending_rows(check, repeated, None).await?;
                if outcome.offending > 0 {
                    outcome.found = match outcome.offending {
                        1 => "1 value is on more than one row".to_string(),
                        n => format!("{n} values are on more than one row"),
                    };
                }
                Ok(outcome)
            }
            CheckRule::AcceptedValues {
                column: name,
                values,
            } => {
                let accepted: Vec<Expr> = values.iter().map(|v| lit(scalar(v))).collect();
                let other = column(name)
                    .is_not_null()
                    .and(column(name).in_list(accepted, true));
                let offending = frame.filter(other).map_err(failed)?;
                self.offending_rows(check, offending, Some(std::slice::from_ref(name)))
                    .await
            }
            CheckRule::AcceptedRange {
                column: name,
                min,
                max,
            } => {
                let below = min.map(|min| column(name).lt(lit(min)));
                let above = max.map(|max| column(name).gt(lit(max)));
                let outside = below.into_iter().chain(above).reduce(Expr::or);
                let offending = frame
                    .filter(outside.unwrap_or(lit(false)))
                    .map_err(failed)?;
                self.offending_rows(check, offending, Some(std::slice::from_ref(name)))
                    .await
            }
            CheckRule::RowCount { min, max } => {
                let rows = frame.count().await.map_err(failed)? as u64;
                let outside =
                    min.is_some_and(|min| rows < min) || max.is_some_and(|max| rows > max);
                Ok(whole_table(outside, format!("it has {rows} rows")))
            }
            CheckRule::Relationships {
                column: name,
                to,
                field,
            } => {
                let target = self
                    .ctx
                    .table(to.as_str())
                    .await
                    .and_then(|f| f.select(vec![column(field).alias("__target")]))
                    .map_err(failed)?;
                let unknown = frame
                    .filter(column(name).is_not_null())
                    .and_then(|f| {
                        f.join_on(
                            target,
                            JoinType::LeftAnti,
                            [column(name).eq(col("__target"))],
                        )
                    })
                    .map_err(failed)?;
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
            CheckRule::NotNullProportion {
                column: name,
                at_least,
            } => {
                let counts = frame
                    .clone()
                    .aggregate(
                        vec![],
                        vec![
                            count_all().alias("rows"),
                            count(column(name)).alias("values"),
                        ],
                    )
                    .map_err(failed)?
                    .collect()
                    .await
                    .map_err(failed)?;
                let (total, present) = (int(&counts, 0), int(&counts, 1));
                let share = if total == 0 {
                    1.0
                } else {
                    present as f64 / total as f64
                };
                if share >= *at_least {
                    return Ok(CheckOutcome::passed());
                }
                let nulls = frame.filter(column(name).is_null()).map_err(failed)?;
                let mut outcome = self
                    .offending_rows(check, nulls, Some(std::slice::from_ref(name)))
                    .await?;
                outcome.found = format!(
                    "{:.1} % of the rows have a {name} ({present} of {total}); at least {} % must",
                    share * 100.0,
                    at_least * 100.0
                );
                Ok(outcome)
            }
            CheckRule::Freshness {
                column: name,
                max_age,
            } => self.freshness(check, frame, name, *max_age, inputs).await,
            CheckRule::Anomaly {
                max_change,
                by,
                min_size,
            } => {
                let Some(previous) = inputs.previous else {
                    return Ok(CheckOutcome {
                        found: format!(
                            "'{}' has no earlier publication: nothing to compare with yet",
                            check.table
                        ),
                        ..CheckOutcome::passed()
                    });
                };
                let now = self.group_sizes(check, frame, by.as_deref()).await?;
                let urls: Vec<String> = previous.iter().map(ToString::to_string).collect();
                let before_frame = self
                    .ctx
                    .read_parquet(urls, ParquetReadOptions::default())
                    .await
                    .map_err(failed)?;
                let before = self.group_sizes(check, before_frame, by.as_deref()).await?;
                Ok(compare_sizes(&before, &now, *max_change, *min_size, by))
            }
            CheckRule::Sql(_) => unreachable!("planned above"),
        }
    }

    /// The rows of `offending`, counted, with a few as examples: the first column of the
    /// checked table and `shown` (all columns when `None`).
    async fn offending_rows(
        &self,
        check: &Check,
        offending: DataFrame,
        shown: Option<&[String]>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| check_error(check, error);
        let count = offending.clone().count().await.map_err(failed)? as u64;
        if count == 0 {
            return Ok(CheckOutcome::passed());
        }
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
                offending.select(columns)
            }
            None => Ok(offending),
        }
        .and_then(|f| f.limit(0, Some(EXAMPLES)))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
        Ok(CheckOutcome {
            offending: count,
            found: match count {
                1 => "1 row breaks it".to_string(),
                n => format!("{n} rows break it"),
            },
            examples: as_text(&examples).map_err(failed)?,
        })
    }

    /// The newest value of `name` before the end of the as_of day, against `max_age`. Later
    /// rows are left out: a backfill of an old date is as fresh as that date's data was.
    async fn freshness(
        &self,
        check: &Check,
        frame: DataFrame,
        name: &str,
        max_age: std::time::Duration,
        inputs: &CheckInputs<'_>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| check_error(check, error);
        let VarValue::Instant(end) = &inputs.params.values[AS_OF_END] else {
            unreachable!("as_of_end is an instant")
        };
        let end = end.with_timezone(&Utc);
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let newest = frame
            .filter(column(name).lt(lit(inputs.params.values[AS_OF_END].to_scalar())))
            .and_then(|f| f.aggregate(vec![], vec![cast(max(column(name)), utc).alias("newest")]))
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let newest = newest
            .first()
            .map(|b| b.column(0).as_primitive::<TimestampMicrosecondType>())
            .filter(|values| values.is_valid(0))
            .and_then(|values| DateTime::<Utc>::from_timestamp_micros(values.value(0)));
        let limit = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let end_text = end.format("%Y-%m-%d %H:%M UTC");
        Ok(match newest {
            None => whole_table(
                true,
                format!("'{}' has no {name} before {end_text}", check.table),
            ),
            Some(newest) => {
                let age = end - newest;
                let stale = age > limit;
                let mut outcome = whole_table(
                    stale,
                    format!(
                        "its newest {name} is {}, {} before {end_text} (at most {} may pass)",
                        newest.format("%Y-%m-%d %H:%M:%S UTC"),
                        hours(std::time::Duration::from_secs(
                            age.num_seconds().max(0) as u64
                        )),
                        hours(max_age)
                    ),
                );
                if stale {
                    outcome.examples = vec![format!("{name}={}", newest.to_rfc3339())];
                }
                outcome
            }
        })
    }

    /// The rows of `frame` per value of `by` (as text), or in all under an empty key.
    async fn group_sizes(
        &self,
        check: &Check,
        frame: DataFrame,
        by: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, EngineError> {
        let failed = |error: DataFusionError| check_error(check, error);
        let keys = match by {
            Some(by) => vec![cast(column(by), DataType::Utf8).alias("key")],
            None => vec![lit("").alias("key")],
        };
        let batches = frame
            .aggregate(keys, vec![count_all().alias("rows")])
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let mut sizes = BTreeMap::new();
        for batch in &batches {
            let keys = batch.column(0).as_string::<i32>();
            let counts = batch.column(1).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let key = if keys.is_valid(row) {
                    keys.value(row).to_string()
                } else {
                    "NULL".to_string()
                };
                sizes.insert(key, counts.value(row) as u64);
            }
        }
        // An empty table still has a row count to compare: none.
        if by.is_none() {
            sizes.entry(String::new()).or_insert(0);
        }
        Ok(sizes)
    }

    /// Checks that a check's table and columns exist and fit the rule, reading no data
    /// (`segflow validate`).
    pub async fn plan_check(&self, check: &Check, params: &Params) -> Result<(), EngineError> {
        if let CheckRule::Sql(step) = &check.rule {
            return self.plan(step, params).await.map(drop);
        }
        let frame = self
            .ctx
            .table(check.table.as_str())
            .await
            .map_err(|error| check_error(check, error))?;
        self.check_columns(check, &frame).await
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
                    return Err(EngineError::CheckUnfit {
                        at: check.at.clone(),
                        check: check.name.clone(),
                        message: format!(
                            "freshness needs a timestamp or date column, and '{column}' of '{}' \
                             is {}",
                            check.table,
                            match field.data_type() {
                                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 =>
                                    "a string".to_string(),
                                other => format!("of type {other}"),
                            }
                        ),
                    });
                }
            }
            _ => {}
        }
        Ok(())
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
    before: &BTreeMap<String, u64>,
    now: &BTreeMap<String, u64>,
    max_change: Change,
    min_size: u64,
    by: &Option<String>,
) -> CheckOutcome {
    let mut moved = Vec::new();
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
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
            Some(by) => format!("{by}={key}: "),
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

    fn sizes(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
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
