//! Arrow columns as the report needs them: values by type, how each is shown, and the
//! statistics the page draws (log-spaced bins, medians).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::model::{Bin, Column, Table, Value, ValueKind};

/// `sorted` in `count` bins whose edges grow geometrically from its smallest positive value
/// (at least 0.01) to its largest: money amounts spread over orders of magnitude, and
/// equal widths would put nearly everyone in the first bin. Smaller values go into the first.
pub(super) fn bins(sorted: &[f64], count: usize) -> Vec<Bin> {
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

pub(super) fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

pub(super) fn sizes_of(rows: &[RecordBatch]) -> BTreeMap<String, u64> {
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

pub(super) fn counted(rows: &[RecordBatch]) -> Vec<(Option<String>, u64)> {
    strings(rows, "value")
        .into_iter()
        .zip(integers(rows, "customers"))
        .map(|(value, n)| (value, n.unwrap_or_default().max(0) as u64))
        .collect()
}

/// A published table's columns, each shown by its type and name, and its rows.
pub(super) fn table_of(rows: &[RecordBatch]) -> Table {
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
pub(super) fn kind_of(name: &str, data_type: &DataType) -> ValueKind {
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
pub(super) fn column_as(
    rows: &[RecordBatch],
    name: &str,
    to: &DataType,
) -> Vec<std::sync::Arc<dyn Array>> {
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
pub(super) fn strings(rows: &[RecordBatch], name: &str) -> Vec<Option<String>> {
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

pub(super) fn integers(rows: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    column_as(rows, name, &DataType::Int64)
        .iter()
        .flat_map(|array| array.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect()
}

pub(super) fn floats(rows: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
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

pub(super) fn zip5<A, B, C, D, E>(
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
