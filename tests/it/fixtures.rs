//! Hand-built shop data with known answers for the shipped segments, RFM rules and set
//! operations: refunds, cancellations, orders after as_of, an order in the last second of the
//! as_of day and one in the first second after it, customers with no orders, checkouts
//! abandoned with and without a later order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::Int64Type;
use parquet::arrow::ArrowWriter;

use crate::common::{AS_OF, copy_dir, run, segflow};

fn micros(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn ts(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            values
                .into_iter()
                .map(|v| v.map(micros))
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

fn money(values: Vec<i128>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(12, 2)
            .unwrap(),
    )
}

fn write(dir: &Path, table: &str, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    std::fs::create_dir_all(dir.join(table)).unwrap();
    let file = std::fs::File::create(dir.join(table).join("part-0.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn ints(values: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

/// c1 orders in the last second of as_of; c2 never orders; c3 has two paid orders (one
/// partly refunded), a cancelled one and one just after as_of; c4 one paid order and one
/// fully refunded; c5 signs up after as_of; c6 abandons a checkout; c7 abandons one and then
/// orders.
fn write_shop(data: &Path) {
    let created = "2025-01-01 00:00:00";
    write(
        data,
        "customers",
        vec![
            ("customer_id", ints(&[1, 2, 3, 4, 5, 6, 7])),
            (
                "email",
                strings(&["c1@x", "c2@x", "c3@x", "c4@x", "c5@x", "c6@x", "c7@x"]),
            ),
            (
                "phone",
                Arc::new(StringArray::from(vec![
                    Some("+1"),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ])) as ArrayRef,
            ),
            (
                "created_at",
                ts(vec![
                    Some(created),
                    Some(created),
                    Some(created),
                    Some(created),
                    Some("2026-04-05 00:00:00"),
                    Some("2026-03-01 00:00:00"),
                    Some("2026-01-01 00:00:00"),
                ]),
            ),
            ("country", strings(&["US"; 7])),
            (
                "email_subscribed",
                Arc::new(BooleanArray::from(vec![
                    true, true, false, true, true, true, true,
                ])) as ArrayRef,
            ),
            (
                "sms_subscribed",
                Arc::new(BooleanArray::from(vec![
                    true, false, false, false, false, false, false,
                ])) as ArrayRef,
            ),
        ],
    );
    write(
        data,
        "orders",
        vec![
            ("order_id", ints(&[1, 2, 3, 4, 5, 6, 7, 8])),
            ("customer_id", ints(&[1, 3, 3, 3, 3, 4, 4, 7])),
            (
                "ordered_at",
                ts(vec![
                    Some("2026-03-31 23:59:59"),
                    Some("2025-06-01 10:00:00"),
                    Some("2025-07-01 10:00:00"),
                    Some("2025-08-01 10:00:00"),
                    Some("2026-04-01 00:00:00"),
                    Some("2025-12-15 10:00:00"),
                    Some("2026-01-10 10:00:00"),
                    Some("2026-03-30 10:00:00"),
                ]),
            ),
            (
                "total_amount",
                money(vec![10000, 5000, 7000, 99900, 50000, 30000, 8000, 4000]),
            ),
            ("currency", strings(&["USD"; 8])),
            (
                "status",
                strings(&[
                    "paid",
                    "paid",
                    "paid",
                    "cancelled",
                    "paid",
                    "paid",
                    "refunded",
                    "paid",
                ]),
            ),
            ("refunded_amount", money(vec![0, 0, 2000, 0, 0, 0, 8000, 0])),
            ("channel", strings(&["online_store"; 8])),
        ],
    );
    write(
        data,
        "order_items",
        vec![
            ("order_id", ints(&[1, 2, 3, 4, 5, 6, 7, 8])),
            ("product_id", ints(&[1, 5, 5, 5, 5, 2, 2, 9])),
            (
                "collection",
                strings(&[
                    "outerwear",
                    "knitwear",
                    "knitwear",
                    "knitwear",
                    "knitwear",
                    "outerwear",
                    "outerwear",
                    "knitwear",
                ]),
            ),
            (
                "quantity",
                Arc::new(Int32Array::from(vec![1; 8])) as ArrayRef,
            ),
            (
                "unit_price",
                money(vec![10000, 5000, 7000, 99900, 50000, 30000, 8000, 4000]),
            ),
        ],
    );
    write(
        data,
        "checkouts",
        vec![
            ("checkout_id", ints(&[1, 2])),
            ("customer_id", ints(&[6, 7])),
            (
                "created_at",
                ts(vec![
                    Some("2026-03-28 12:00:00"),
                    Some("2026-03-29 12:00:00"),
                ]),
            ),
            ("completed_at", ts(vec![None, None])),
        ],
    );
}

/// A scratch folder with the shipped pipeline and queries, and the fixture shop in `data/`.
fn fixture_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        copy_dir(&root.join(folder), &dir.path().join(folder));
    }
    write_shop(&dir.path().join("data"));
    dir
}

fn membership(out: &Path) -> BTreeMap<String, BTreeSet<i64>> {
    let manifest: segflow::publish::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!(
            "segment_membership/_segflow/manifests/as_of={AS_OF}.json"
        )))
        .unwrap(),
    )
    .unwrap();
    let mut segments: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for file in &manifest.files {
        for batch in crate::common::read_parquet(&out.join("segment_membership").join(&file.path)) {
            let names = batch.column_by_name("segment").unwrap().as_string::<i32>();
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            for (name, id) in names.iter().zip(ids.iter()) {
                segments
                    .entry(name.unwrap().to_string())
                    .or_default()
                    .insert(id.unwrap());
            }
        }
    }
    segments
}

#[test]
fn shipped_segments_give_the_known_answers() {
    let dir = fixture_project();
    let outcome = run(segflow()
        .current_dir(dir.path())
        .env("SEGFLOW_DATA", dir.path().join("data"))
        .env("SEGFLOW_OUT", dir.path().join("out"))
        .args(["run", "pipelines/nightly_segments.yaml", "--as-of", AS_OF]));
    assert_eq!(outcome.code, 0, "{outcome:?}");

    let segments = membership(&dir.path().join("out"));
    let expected: &[(&str, &[i64])] = &[
        ("prospects", &[2, 6]),
        ("subscribed_no_order", &[2, 6]),
        ("first_time_buyers", &[1, 4, 7]),
        ("subscribed_first_order", &[1, 4, 7]),
        ("repeat_buyers", &[3]),
        ("new_customers", &[1, 7]),
        ("recent_buyers", &[1, 7]),
        ("soft_lapse", &[4]),
        ("hard_lapse", &[3]),
        ("any_lapse", &[3, 4]),
        ("overdue", &[3]),
        ("spend_band", &[1, 3, 4]),
        ("big_spenders", &[4]),
        ("vip_at_risk", &[4]),
        ("repeat_not_recent", &[3]),
        ("bought_products", &[1, 4]),
        ("never_bought_products", &[3, 7]),
        ("bought_collection", &[1, 4]),
        ("bought_a_not_b", &[1, 4]),
        ("abandoned_checkout", &[6]),
        ("not_ordered_since", &[]),
        ("ordered_in_range", &[4]),
        ("one_time_lapsed", &[]),
        ("order_count_band", &[]),
    ];
    let mut wrong = Vec::new();
    for (name, ids) in expected {
        let found = segments.get(*name).cloned().unwrap_or_default();
        let want: BTreeSet<i64> = ids.iter().copied().collect();
        if found != want {
            wrong.push(format!("{name}: expected {want:?}, published {found:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        !segments.values().flatten().any(|&id| id == 5),
        "c5 signed up after as_of"
    );

    // RFM: ranks from the worst, ties share a score, refunds and cancellations and the order
    // after as_of do not count, the order in the last second of as_of does.
    let out = dir.path().join("out");
    let manifest: segflow::publish::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!(
            "customer_profile/_segflow/manifests/as_of={AS_OF}.json"
        )))
        .unwrap(),
    )
    .unwrap();
    let mut profiles = BTreeMap::new();
    let mut lists = BTreeMap::new();
    for file in &manifest.files {
        for batch in crate::common::read_parquet(&out.join("customer_profile").join(&file.path)) {
            let pretty = datafusion::arrow::util::display::ArrayFormatter::try_new;
            let columns = [
                "paid_orders",
                "net_revenue",
                "days_since_last_order",
                "r_score",
                "f_score",
                "m_score",
                "rf_segment",
            ];
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let column = batch.column_by_name(c).unwrap();
                        pretty(column.as_ref(), &Default::default())
                            .unwrap()
                            .value(row)
                            .to_string()
                    })
                    .collect();
                profiles.insert(ids.value(row), values.join(" "));
                let list = batch.column_by_name("segments").unwrap();
                let list = pretty(list.as_ref(), &Default::default()).unwrap();
                lists.insert(ids.value(row), list.value(row).to_string());
            }
        }
    }
    // Each profile lists its customer's segments, sorted, and nothing for one in none.
    let mut expected_lists: BTreeMap<i64, Vec<&str>> =
        profiles.keys().map(|&id| (id, Vec::new())).collect();
    for (name, members) in &segments {
        for id in members {
            expected_lists.get_mut(id).unwrap().push(name);
        }
    }
    for (id, names) in expected_lists {
        let want = if names.is_empty() {
            String::new()
        } else {
            format!("[{}]", names.join(", "))
        };
        assert_eq!(lists[&id], want, "customer {id}'s segments");
    }
    let expected_profiles: BTreeMap<i64, &str> = [
        (1, "1 100.00 0 5 2 3 Potential Loyalist"),
        (2, "0 0.00     Prospects"),
        (3, "2 100.00 273 2 5 3 Cannot Lose Them"),
        (4, "1 300.00 106 3 2 5 About To Sleep"),
        (6, "0 0.00     Prospects"),
        (7, "1 40.00 1 4 2 2 Potential Loyalist"),
    ]
    .into_iter()
    .collect();
    let expected_profiles: BTreeMap<i64, String> = expected_profiles
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(profiles, expected_profiles);
}

/// The published rows of `table` for `as_of`, as space-separated values of `columns`.
fn published_rows(out: &Path, table: &str, as_of: &str, columns: &[&str]) -> BTreeSet<String> {
    let manifest: segflow::publish::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!("{table}/_segflow/manifests/as_of={as_of}.json"))).unwrap(),
    )
    .unwrap();
    let mut rows = BTreeSet::new();
    for file in &manifest.files {
        for batch in crate::common::read_parquet(&out.join(table).join(&file.path)) {
            for row in 0..batch.num_rows() {
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let column = batch.column_by_name(c).unwrap();
                        datafusion::arrow::util::display::ArrayFormatter::try_new(
                            column.as_ref(),
                            &Default::default(),
                        )
                        .unwrap()
                        .value(row)
                        .to_string()
                    })
                    .collect();
                rows.insert(values.join(" "));
            }
        }
    }
    rows
}

#[test]
fn changes_and_winback_cooldown_follow_earlier_publications() {
    let dir = fixture_project();
    let out = dir.path().join("out");
    let run_for = |as_of: &str| {
        let outcome = run(segflow()
            .current_dir(dir.path())
            .env("SEGFLOW_DATA", dir.path().join("data"))
            .env("SEGFLOW_OUT", &out)
            .args(["run", "pipelines/nightly_segments.yaml", "--as-of", as_of]));
        assert_eq!(outcome.code, 0, "{outcome:?}");
    };
    let (d1, d2, d3) = (AS_OF, "2026-04-10", "2026-05-05");
    run_for(d1);
    run_for(d2);
    // A third date 34 days after the first listing, past the 30-day cooldown.
    run_for(d3);

    // The first run: everyone entered everything they are in.
    let membership = published_rows(&out, "segment_membership", d1, &["segment", "customer_id"]);
    let entered = published_rows(
        &out,
        "segment_changes",
        d1,
        &["segment", "customer_id", "change"],
    );
    assert_eq!(entered.len(), membership.len());
    assert!(entered.iter().all(|row| row.ends_with(" entered")));
    // c3's order of 2026-04-01 makes it a recent buyer by the second date.
    let changes = published_rows(
        &out,
        "segment_changes",
        d2,
        &["segment", "customer_id", "change"],
    );
    for change in [
        "recent_buyers 3 entered",
        "hard_lapse 3 exited",
        "repeat_not_recent 3 exited",
    ] {
        assert!(
            changes.contains(change),
            "{change} missing from {changes:?}"
        );
    }
    assert!(
        !changes.iter().any(|row| row.contains(" 1 ")),
        "c1 changed nothing: {changes:?}"
    );

    // Win-back: c4 is listed, then held back by the cooldown, then listed again; c3 never
    // consented to marketing.
    let columns = ["customer_id", "rank", "rf_segment"];
    assert_eq!(
        published_rows(&out, "winback_list", d1, &columns),
        ["4 1 About To Sleep".to_string()].into()
    );
    assert_eq!(
        published_rows(&out, "winback_list", d2, &columns),
        BTreeSet::new()
    );
    assert_eq!(
        published_rows(&out, "winback_list", d3, &["customer_id", "rank"]),
        ["4 1".to_string()].into()
    );
    let suppressed = |as_of| {
        published_rows(
            &out,
            "winback_suppressed",
            as_of,
            &["customer_id", "left_out_because"],
        )
    };
    assert_eq!(
        suppressed(d1),
        ["3 no marketing consent".to_string()].into()
    );
    assert_eq!(
        suppressed(d2),
        ["4 contacted within cooldown".to_string()].into()
    );
    assert_eq!(suppressed(d3), BTreeSet::new());
    let reason = published_rows(&out, "winback_list", d1, &["reason", "email", "run_id"]);
    let reason = reason.iter().next().unwrap();
    assert!(
        reason.starts_with("106 days since the last order"),
        "{reason}"
    );
    assert!(reason.contains("c4@x"), "{reason}");
}

#[test]
fn threshold_scores_come_from_the_vars() {
    let dir = fixture_project();
    let pipeline = dir.path().join("pipelines/nightly_segments.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("../queries/rfm.sql }", "../queries/rfm_thresholds.sql }"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let outcome = run(segflow()
        .current_dir(dir.path())
        .env("SEGFLOW_DATA", dir.path().join("data"))
        .env("SEGFLOW_OUT", &out)
        .args([
            "run",
            "pipelines/nightly_segments.yaml",
            "--as-of",
            AS_OF,
            "--var",
            "rfm_m2_spend=50",
        ]));
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let scores = published_rows(
        &out,
        "rfm",
        AS_OF,
        &["customer_id", "method", "r_score", "f_score", "m_score"],
    );
    let expected: BTreeSet<String> = [
        "1 thresholds 5 1 2",
        "3 thresholds 2 2 2",
        "4 thresholds 3 1 3",
        "7 thresholds 5 1 1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(scores, expected);
    let cuts = published_rows(
        &out,
        "rfm_cutpoints",
        AS_OF,
        &["method", "metric", "score", "min_value", "max_value"],
    );
    assert!(
        cuts.contains("thresholds recency_days 3 106.00 106.00"),
        "{cuts:?}"
    );
}
