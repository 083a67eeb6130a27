//! The three RFM label schemes of queries/rfm_labels.sql are total: every one of the 125
//! score combinations gets exactly one label of each scheme, and every label is reachable.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Decimal128Array, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

#[tokio::test]
async fn every_score_combination_has_exactly_one_label_per_scheme() {
    let mut ids = Vec::new();
    let (mut r, mut f, mut m) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (rs, fs, ms)) in (1..=5)
        .flat_map(|r| (1..=5).flat_map(move |f| (1..=5).map(move |m| (r, f, m))))
        .enumerate()
    {
        ids.push(i as i64);
        r.push(rs);
        f.push(fs);
        m.push(ms);
    }
    let n = ids.len();
    // Raw values that follow the scores, so the value classes vary too.
    let rfm: Vec<RfmRow> = (0..n)
        .map(|i| RfmRow {
            customer_id: ids[i],
            scores: (r[i], f[i], m[i]),
            recency_days: (6 - r[i] as i64) * 60,
            frequency: f[i] as i64,
            monetary_cents: m[i] as i128 * 10_000,
        })
        .collect();
    let labelled = labels_of(&rfm).await;
    let mut rows = 0;
    let mut seen: [BTreeSet<String>; 3] = Default::default();
    for batch in &labelled {
        for (scheme, column) in ["rf_segment", "shopify_group", "value_class"]
            .iter()
            .enumerate()
        {
            let labels = batch.column_by_name(column).unwrap().as_string::<i32>();
            for label in labels.iter() {
                seen[scheme].insert(label.expect("every combination is labelled").to_string());
            }
        }
        rows += batch.num_rows();
    }
    assert_eq!(
        rows, n,
        "exactly one row (one label per scheme) per combination"
    );
    let expect = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(seen[0], expect(&crate::support::RF_GRID));
    assert_eq!(
        seen[1],
        expect(&[
            "Champions",
            "Loyal",
            "Active",
            "New",
            "Promising",
            "Needs Attention",
            "At Risk",
            "Previously Loyal",
            "Almost Lost",
            "Dormant",
        ])
    );
    assert_eq!(
        seen[2],
        expect(&[
            "important_value",
            "important_development",
            "important_retain",
            "important_winback",
            "general_value",
            "general_development",
            "general_retain",
            "general_winback",
        ])
    );

    // Spot checks against the documented grids.
    let label_of = |scheme: &str, r_score: i32, f_score: i32, m_score: i32| -> String {
        let index = ((r_score - 1) * 25 + (f_score - 1) * 5 + (m_score - 1)) as usize;
        let batch = &labelled[0];
        assert!(index < batch.num_rows(), "sorted output in one batch");
        batch
            .column_by_name(scheme)
            .unwrap()
            .as_string::<i32>()
            .value(index)
            .to_string()
    };
    assert_eq!(label_of("rf_segment", 5, 5, 1), "Champions");
    assert_eq!(label_of("rf_segment", 4, 1, 3), "Promising");
    assert_eq!(label_of("rf_segment", 2, 5, 1), "Cannot Lose Them");
    assert_eq!(label_of("shopify_group", 5, 1, 1), "New");
    assert_eq!(label_of("shopify_group", 4, 4, 5), "Champions"); // FM = ceil(4.5) = 5
    assert_eq!(label_of("shopify_group", 4, 4, 4), "Loyal");
    assert_eq!(label_of("shopify_group", 1, 5, 5), "Previously Loyal");
    assert_eq!(label_of("value_class", 5, 5, 5), "important_value");
    assert_eq!(label_of("value_class", 1, 1, 1), "general_winback");
}

/// A row of the `rfm` table that rfm_labels.sql reads.
struct RfmRow {
    customer_id: i64,
    scores: (i32, i32, i32),
    recency_days: i64,
    frequency: i64,
    monetary_cents: i128,
}

/// queries/rfm_labels.sql over `rows`, with the buyers' means as the value thresholds (the
/// shipped vars, -1), sorted by customer.
async fn labels_of(rows: &[RfmRow]) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("r_score", DataType::Int32, false),
        Field::new("f_score", DataType::Int32, false),
        Field::new("m_score", DataType::Int32, false),
        Field::new("recency_days", DataType::Int64, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary", DataType::Decimal128(14, 2), false),
    ]));
    let ints = |f: fn(&RfmRow) -> i64| Arc::new(Int64Array::from_iter_values(rows.iter().map(f)));
    let scores = |f: fn(&RfmRow) -> i32| Arc::new(Int32Array::from_iter_values(rows.iter().map(f)));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ints(|row| row.customer_id),
            scores(|row| row.scores.0),
            scores(|row| row.scores.1),
            scores(|row| row.scores.2),
            ints(|row| row.recency_days),
            ints(|row| row.frequency),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|row| row.monetary_cents))
                    .with_precision_and_scale(14, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_batch("rfm", batch).unwrap();
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/queries/rfm_labels.sql"
    ))
    .unwrap();
    let mean = ScalarValue::Float64(Some(-1.0));
    let params = ParamValues::from(vec![
        ("value_r_days", mean.clone()),
        ("value_f_orders", mean.clone()),
        ("value_m_spend", mean),
    ]);
    ctx.sql(&sql)
        .await
        .unwrap()
        .with_param_values(params)
        .unwrap()
        .sort(vec![
            datafusion::prelude::col("customer_id").sort(true, true),
        ])
        .unwrap()
        .collect()
        .await
        .unwrap()
}

/// "High" is above the buyers' mean, strictly: a buyer one unit below the mean, at it and
/// one above, for each of R, F and M. At 0.69, 0.70 and 0.71 the mean is 0.70 exactly, which
/// a mean in floating point misses (2.0999999999999996 / 3 < 0.70), and called the buyer at
/// 0.70 high.
#[tokio::test]
async fn a_value_is_high_only_beyond_the_buyers_mean() {
    let rows: Vec<RfmRow> = [(9, 1, 69), (10, 2, 70), (11, 3, 71)]
        .into_iter()
        .enumerate()
        .map(|(i, (recency_days, frequency, monetary_cents))| RfmRow {
            customer_id: i as i64,
            scores: (3, 3, 3),
            recency_days,
            frequency,
            monetary_cents,
        })
        .collect();
    let labelled = labels_of(&rows).await;
    let classes: Vec<String> = labelled
        .iter()
        .flat_map(|batch| {
            let classes = batch
                .column_by_name("value_class")
                .unwrap()
                .as_string::<i32>();
            classes
                .iter()
                .map(|c| c.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // Below the mean: R high (recent), F and M low; at it: nothing high; above: F and M.
    assert_eq!(
        classes,
        ["general_development", "general_winback", "important_retain"]
    );
}

/// Runs a shipped RFM method (`queries/<file>`) over customer features given as
/// (customer_id, days_since_last_order, paid_orders, net cents), with the shipped order-count
/// thresholds 2, 3, 4, 5, and returns (customer_id, r, f, m) sorted by id.
async fn method_scores(file: &str, rows: &[(i64, i64, i64, i128)]) -> Vec<(i64, i32, i32, i32)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("days_since_last_order", DataType::Int64, true),
        Field::new("paid_orders", DataType::Int64, false),
        Field::new("net_revenue", DataType::Decimal128(14, 2), false),
    ]));
    let column = |f: fn(&(i64, i64, i64, i128)) -> i64| {
        Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())
    };
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(column(|r| r.0)),
            Arc::new(column(|r| r.1)),
            Arc::new(column(|r| r.2)),
            Arc::new(
                Decimal128Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())
                    .with_precision_and_scale(14, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_batch("customer_features", batch).unwrap();
    let sql = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("queries")
            .join(file),
    )
    .unwrap();
    let thresholds: std::collections::HashMap<String, ScalarValue> = (2..=5)
        .map(|n| (format!("rfm_f{n}_orders"), ScalarValue::Int64(Some(n))))
        .collect();
    let batches = ctx
        .sql(&sql)
        .await
        .unwrap()
        .with_param_values(ParamValues::from(thresholds))
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut scores = Vec::new();
    for batch in &batches {
        let id = batch
            .column_by_name("customer_id")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let score = |name| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .clone()
        };
        let (r, f, m) = (score("r_score"), score("f_score"), score("m_score"));
        for i in 0..batch.num_rows() {
            scores.push((id.value(i), r.value(i), f.value(i), m.value(i)));
        }
    }
    scores.sort();
    scores
}

async fn quintile_scores(rows: &[(i64, i64, i64, i128)]) -> Vec<(i64, i32, i32, i32)> {
    method_scores("rfm_quintiles.sql", rows).await
}

#[tokio::test]
async fn the_default_method_counts_orders_for_frequency() {
    // Most buyers buy once: with quintiles all of them would tie at F 1 and the rest jump to
    // F 4 and 5; counting orders gives F = orders up to 5. R and M stay quintiles.
    let mut rows: Vec<_> = (1..=12)
        .map(|id| (id, id * 10, 1, id as i128 * 100))
        .collect();
    rows.extend([
        (13, 5, 2, 5000),
        (14, 6, 3, 6000),
        (15, 7, 4, 7000),
        (16, 8, 5, 8000),
        (17, 9, 9, 9000),
    ]);
    let scores = method_scores("rfm.sql", &rows).await;
    let f: Vec<i32> = scores.iter().map(|s| s.2).collect();
    assert_eq!(f, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5]);
    let quintile_f: Vec<i32> = quintile_scores(&rows).await.iter().map(|s| s.2).collect();
    assert_eq!(
        quintile_f,
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 5, 5, 5, 5]
    );
    // The same R and M as the pure quintile method.
    let rm = |s: &Vec<(i64, i32, i32, i32)>| s.iter().map(|x| (x.1, x.3)).collect::<Vec<_>>();
    assert_eq!(rm(&scores), rm(&quintile_scores(&rows).await));
}

#[tokio::test]
async fn quintile_edge_cases() {
    // A single buyer is the best of its one-buyer population.
    assert_eq!(quintile_scores(&[(1, 10, 1, 5000)]).await, [(1, 5, 5, 5)]);
    // Identical buyers always share every score (their tie group starts at rank 1).
    let same: Vec<_> = (1..=7).map(|id| (id, 30, 2, 9900)).collect();
    let scores = quintile_scores(&same).await;
    assert_eq!(scores.len(), 7);
    assert!(
        scores.iter().all(|s| (s.1, s.2, s.3) == (1, 1, 1)),
        "{scores:?}"
    );
    // Prospects (no paid order) are not scored; ten buyers spread over all five scores.
    let mut rows: Vec<_> = (1..=10)
        .map(|id| (id, 100 - id * 9, id, id as i128 * 1000))
        .collect();
    rows.push((11, 0, 0, 0));
    let scores = quintile_scores(&rows).await;
    assert_eq!(scores.len(), 10);
    assert_eq!(scores[0], (1, 1, 1, 1));
    assert_eq!(scores[9], (10, 5, 5, 5));
    assert_eq!(scores[4], (5, 3, 3, 3)); // rank 5 of 10: ceil(2.5) = 3
}
