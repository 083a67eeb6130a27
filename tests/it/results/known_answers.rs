//! The hand-built shop's known answers (the shop is `support/shop_by_hand.rs`) for the shipped
//! segments, RFM rules and set operations, customers as they stood at the end of the night,
//! changes and the win-back cooldown against earlier publications, and threshold scores from
//! the vars.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;

use crate::support::shop_by_hand::{CREATED, customer, customers, fixture_project, write_file};
use crate::support::{AS_OF, run, segflow};

fn membership(out: &Path) -> BTreeMap<String, BTreeSet<i64>> {
    let manifest: crate::support::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!(
            "segment_membership/_segflow/manifests/as_of={AS_OF}.json"
        )))
        .unwrap(),
    )
    .unwrap();
    let mut segments: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for file in &manifest.files {
        for batch in crate::support::read_parquet(&out.join("segment_membership").join(&file.path))
        {
            let names = batch.column_by_name("segment").unwrap().as_string::<i32>();
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            for (name, id) in names.iter().zip(ids.iter()) {
                segments
                    .entry(name.unwrap().to_string())
                    .or_default()
                    .insert(id.expect("no member without a customer_id"));
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
    // Derived by hand from the README's rules; see write_shop for who is who.
    let expected: &[(&str, &[i64])] = &[
        ("prospects", &[2, 6, 10]),
        ("subscribed_no_order", &[2, 6]),
        ("first_time_buyers", &[1, 4, 7, 8, 9]),
        ("subscribed_first_order", &[1, 4, 7]),
        ("repeat_buyers", &[3]),
        ("new_customers", &[1, 7, 8]),
        ("recent_buyers", &[1, 7, 8]),
        ("soft_lapse", &[4]),
        ("hard_lapse", &[3, 9]),
        ("any_lapse", &[3, 4, 9]),
        ("overdue", &[3]),
        ("spend_band", &[1, 3, 4, 9]),
        ("big_spenders", &[4]),
        ("vip_at_risk", &[4]),
        ("repeat_not_recent", &[3]),
        ("bought_products", &[1, 4]),
        ("never_bought_products", &[3, 7, 8, 9]),
        ("bought_collection", &[1, 4]),
        ("bought_a_not_b", &[1, 4]),
        ("abandoned_checkout", &[2, 6]),
        ("high_value_recent", &[]),
        ("not_ordered_since", &[]),
        ("ordered_in_range", &[4]),
        ("one_time_lapsed", &[9]),
        ("order_count_band", &[]),
        ("rfm_new_customers", &[1, 7]),
        ("rfm_promising", &[8]),
        ("rfm_about_to_sleep", &[4]),
        ("rfm_hibernating", &[3, 9]),
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
        !segments.values().flatten().any(|&id| id == 5 || id == 99),
        "c5 signed up after as_of, and 99 is not a customer: {segments:?}"
    );

    // RFM: ranks from the worst, ties share a score, refunds and cancellations and the order
    // after as_of do not count, the order in the last second of as_of does.
    let out = dir.path().join("out");
    let manifest: crate::support::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!(
            "customer_profile/_segflow/manifests/as_of={AS_OF}.json"
        )))
        .unwrap(),
    )
    .unwrap();
    let mut profiles = BTreeMap::new();
    let mut lists = BTreeMap::new();
    for file in &manifest.files {
        for batch in crate::support::read_parquet(&out.join("customer_profile").join(&file.path)) {
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
    // With the default method, r and m are quintiles among the six buyers and f counts
    // orders: recency c1 0, c7 1, c8 11, c4 106, c9 181, c3 273 days give r 5 5 4 3 2 1;
    // spend c8 10, c7 40, c1 = c3 = c9 100, c4 300 gives m 1 2 3 3 3 5.
    let expected_profiles: BTreeMap<i64, &str> = [
        (1, "1 100.00 0 5 1 3 New Customers"),
        (2, "0 0.00     Prospects"),
        (3, "2 100.00 273 1 2 3 Hibernating"),
        (4, "1 300.00 106 3 1 5 About To Sleep"),
        (6, "0 0.00     Prospects"),
        (7, "1 40.00 1 5 1 2 New Customers"),
        (8, "1 10.00 11 4 1 1 Promising"),
        (9, "1 100.00 181 2 1 3 Hibernating"),
        (10, "0 0.00     Prospects"),
    ]
    .into_iter()
    .collect();
    let expected_profiles: BTreeMap<i64, String> = expected_profiles
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(profiles, expected_profiles);

    // Every declared segment is summarised, the empty ones with 0 customers, and each
    // summary counts the segment's members.
    let summary = published_rows(&out, "segment_summary", AS_OF, &["segment", "customers"]);
    let spec: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.path().join("pipelines/nightly_segments.yaml")).unwrap(),
    )
    .unwrap();
    let declared = spec["segments"].as_array().unwrap().len();
    assert_eq!(summary.len(), declared, "{summary:?}");
    for row in &summary {
        let (name, customers) = row.split_once(' ').unwrap();
        let members = segments.get(name).map_or(0, BTreeSet::len);
        assert_eq!(customers, members.to_string(), "segment_summary of {name}");
    }
    assert!(summary.contains("high_value_recent 0"), "{summary:?}");
    // Blank contact fields are no contact points.
    let contacts = published_rows(
        &out,
        "customer_features",
        AS_OF,
        &["customer_id", "email", "phone"],
    );
    assert!(contacts.contains("9  "), "{contacts:?}");
    // The run's record counts the rows without a known customer.
    let runs = run(segflow()
        .current_dir(dir.path())
        .args(["runs", "nightly_segments", "--json"]));
    assert_eq!(runs.code, 0, "{runs:?}");
    let record: serde_json::Value =
        serde_json::from_str(runs.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["unmatched"],
        serde_json::json!({
            "orders": { "without_customer": 1, "unknown_customer": 1 },
            "checkouts": { "without_customer": 1, "unknown_customer": 0 },
        }),
        "{record}"
    );
}

/// Runs the shipped pipeline on the fixture shop in `dir`.
fn run_fixture(dir: &Path, as_of: &str) -> crate::support::Outcome {
    run(segflow()
        .current_dir(dir)
        .env("SEGFLOW_DATA", dir.join("data"))
        .env("SEGFLOW_OUT", dir.join("out"))
        .args(["run", "pipelines/nightly_segments.yaml", "--as-of", as_of]))
}

#[test]
fn customers_count_as_they_stood_at_the_end_of_the_night() {
    let dir = fixture_project();
    let first = run_fixture(dir.path(), AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    let published = crate::support::snapshot_of(&dir.path().join("out"));

    // Each failure exits 1 with its message and leaves what was published as it was.
    let fails_with = |message: &str| {
        let failed = run_fixture(dir.path(), AS_OF);
        assert_eq!(failed.code, 1, "{failed:?}");
        assert!(failed.stderr.contains(message), "{failed:?}");
        let now = crate::support::snapshot_of(&dir.path().join("out"));
        assert!(now == published, "nothing published changed");
    };

    // A later export repeats c4 with two different emails stamped with one time.
    let mut c4 = customer(4, "c4@new", Some(CREATED));
    c4.updated = "2026-02-01 00:00:00";
    let mut c4_again = customer(4, "c4@other", Some(CREATED));
    c4_again.updated = "2026-02-01 00:00:00";
    let again = dir.path().join("data/customers/part-1.parquet");
    write_file(&again, customers(&[c4, c4_again]));
    fails_with(
        "source 'customers': 1 customer_id value is on different rows of one file with the same updated_at (for example customer_id 4, on 2 rows)",
    );

    // c1 changed its email in February (in force on the night of AS_OF) and again in April
    // (after it); c4 arrives twice alike, at the very end of the night (in force).
    let mut c1 = customer(1, "c1@feb", Some(CREATED));
    c1.updated = "2026-02-01 00:00:00";
    let mut c1_later = customer(1, "c1@april", Some(CREATED));
    c1_later.updated = "2026-04-01 00:00:00";
    let mut c4 = customer(4, "c4@new", Some(CREATED));
    c4.updated = "2026-03-31 23:59:59.999999";
    write_file(&again, customers(&[c1, c1_later, c4]));
    write_file(
        &dir.path().join("data/customers/part-2.parquet"),
        customers(&[{
            let mut c4 = customer(4, "c4@new", Some(CREATED));
            c4.updated = "2026-03-31 23:59:59.999999";
            c4
        }]),
    );
    let kept = run_fixture(dir.path(), AS_OF);
    assert_eq!(kept.code, 0, "{kept:?}");
    let out = dir.path().join("out");
    let emails = published_rows(&out, "customer_profile", AS_OF, &["customer_id", "email"]);
    assert!(emails.contains("1 c1@feb"), "{emails:?}");
    assert!(emails.contains("4 c4@new"), "{emails:?}");
    assert_eq!(emails.len(), 9, "one row per customer: {emails:?}");
    // The night after, c1's April version is in force.
    let next = run_fixture(dir.path(), "2026-04-01");
    assert_eq!(next.code, 0, "{next:?}");
    let emails = published_rows(
        &out,
        "customer_profile",
        "2026-04-01",
        &["customer_id", "email"],
    );
    assert!(emails.contains("1 c1@april"), "{emails:?}");

    // Without `version:`, the repeated ids fail the run and the message says what to declare.
    let pipeline = dir.path().join("pipelines/nightly_segments.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let without = text.replacen("    version: updated_at\n", "", 1);
    assert_ne!(without, text);
    std::fs::write(&pipeline, without).unwrap();
    let failed = run_fixture(dir.path(), AS_OF);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains(
            "source 'customers': 2 customer_id values are on more than one row (for example customer_id 1, on 3 rows); if the rows are versions of what the key names"
        ),
        "{failed:?}"
    );
}

/// The published rows of `table` for `as_of`, as space-separated values of `columns`.
fn published_rows(out: &Path, table: &str, as_of: &str, columns: &[&str]) -> BTreeSet<String> {
    let manifest: crate::support::Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!("{table}/_segflow/manifests/as_of={as_of}.json"))).unwrap(),
    )
    .unwrap();
    let mut rows = BTreeSet::new();
    for file in &manifest.files {
        for batch in crate::support::read_parquet(&out.join(table).join(&file.path)) {
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
    // c3's unknown consent is no consent, nor are c9's blank email and phone.
    let set = |rows: &[&str]| rows.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        suppressed(d1),
        set(&["3 no marketing consent", "9 no marketing consent"])
    );
    assert_eq!(
        suppressed(d2),
        set(&["4 contacted within cooldown", "9 no marketing consent"])
    );
    assert_eq!(suppressed(d3), set(&["9 no marketing consent"]));
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
        "8 thresholds 5 1 1",
        "9 thresholds 2 1 2",
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
