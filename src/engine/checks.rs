//! Checks (README, "Checks"): each rule becomes a query over a table as it is about to be
//! published, which counts the rows that break the rule and keeps a few as examples.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::count::count_all;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, col, lit};

use super::{Engine, EngineError, describe};
use crate::pipeline::{Check, CheckRule, did_you_mean};
use crate::storage::Location;

/// Examples of offending rows kept per check.
const EXAMPLES: usize = 5;

/// What a check found: how many rows break it (for a row count, 1 when the count is out of
/// bounds), and the first few, as `column=value` text.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub offending: u64,
    pub examples: Vec<String>,
}

impl Engine {
    /// Runs `check` on its table: the files staged for publication at `staged` when the
    /// table is an output (so that nothing is computed twice), else the registered table.
    pub async fn check(
        &self,
        check: &Check,
        staged: Option<&Location>,
    ) -> Result<CheckOutcome, EngineError> {
        let failed = |error: DataFusionError| EngineError::Check {
            check: check.name.clone(),
            table: check.table.clone(),
            message: describe(&error),
        };
        let frame = match staged {
            Some(folder) => {
                self.ctx
                    .read_parquet(folder.as_str(), ParquetReadOptions::default())
                    .await
            }
            None => self.ctx.table(check.table.as_str()).await,
        }
        .map_err(failed)?;
        self.check_columns(check, &frame)?;
        let offending = match &check.rule {
            CheckRule::NotNull(columns) => {
                let missing = columns
                    .iter()
                    .map(|c| column(c).is_null())
                    .reduce(Expr::or)
                    .expect("a not_null check names columns");
                frame.filter(missing)
            }
            CheckRule::Unique(columns) => {
                // As dbt's `unique`: a NULL repeats nothing (not_null is its own check).
                let keys: Vec<Expr> = columns.iter().map(|c| column(c)).collect();
                let present = keys
                    .iter()
                    .map(|key| key.clone().is_not_null())
                    .reduce(Expr::and)
                    .expect("a unique check names columns");
                frame
                    .filter(present)
                    .and_then(|f| f.aggregate(keys, vec![count_all().alias("rows")]))
                    .and_then(|f| f.filter(col("rows").gt(lit(1_i64))))
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
            CheckRule::RowCount { min, max } => {
                let rows = frame.count().await.map_err(failed)? as u64;
                let outside =
                    min.is_some_and(|min| rows < min) || max.is_some_and(|max| rows > max);
                return Ok(CheckOutcome {
                    offending: u64::from(outside),
                    examples: vec![format!("{rows} rows")],
                });
            }
        }
        .map_err(failed)?;
        let count = offending.clone().count().await.map_err(failed)? as u64;
        let examples = if count == 0 {
            Vec::new()
        } else {
            let rows = shown_columns(offending, &check.rule)
                .and_then(|f| f.limit(0, Some(EXAMPLES)))
                .map_err(failed)?
                .collect()
                .await
                .map_err(failed)?;
            as_text(&rows).map_err(failed)?
        };
        Ok(CheckOutcome {
            offending: count,
            examples,
        })
    }

    /// Checks that a check's table and columns exist, reading no data (`segflow validate`).
    pub async fn plan_check(&self, check: &Check) -> Result<(), EngineError> {
        let frame = self
            .ctx
            .table(check.table.as_str())
            .await
            .map_err(|error| EngineError::Check {
                check: check.name.clone(),
                table: check.table.clone(),
                message: describe(&error),
            })?;
        self.check_columns(check, &frame)
    }

    fn check_columns(&self, check: &Check, frame: &DataFrame) -> Result<(), EngineError> {
        let named: Vec<&String> = match &check.rule {
            CheckRule::NotNull(columns) | CheckRule::Unique(columns) => columns.iter().collect(),
            CheckRule::AcceptedRange { column, .. } => vec![column],
            CheckRule::RowCount { .. } => Vec::new(),
        };
        let schema = frame.schema();
        let names = || schema.fields().iter().map(|f| f.name().as_str());
        for column in named {
            if !names().any(|name| name == column) {
                return Err(EngineError::CheckColumn {
                    check: check.name.clone(),
                    table: check.table.clone(),
                    column: column.clone(),
                    hint: did_you_mean(column, names()),
                });
            }
        }
        Ok(())
    }
}

/// What an example shows of an offending row: the table's first column (its key, most often)
/// and the checked ones; a repeated key with its count as it is.
fn shown_columns(frame: DataFrame, rule: &CheckRule) -> Result<DataFrame, DataFusionError> {
    let checked: Vec<&String> = match rule {
        CheckRule::NotNull(columns) => columns.iter().collect(),
        CheckRule::AcceptedRange { column, .. } => vec![column],
        CheckRule::Unique(_) | CheckRule::RowCount { .. } => return Ok(frame),
    };
    let first = frame.schema().field(0).name().clone();
    let mut shown = vec![column(&first)];
    shown.extend(
        checked
            .into_iter()
            .filter(|name| **name != first)
            .map(|name| column(name)),
    );
    frame.select(shown)
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
