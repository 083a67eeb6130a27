//! The shipped nightly pipeline on generated data, checked against figures computed here
//! from the raw Parquet by plain iteration.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType,
};

use crate::support::{AS_OF, Project, Size, read_table, rows, scheduled_query};

fn i64s(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn i32s(batch: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int32Type>()
        .iter()
        .collect()
}

fn cents(batch: &RecordBatch, name: &str) -> Vec<Option<i128>> {
    let column = batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(column.scale(), 2, "{name} keeps cents");
    column.iter().collect()
}

fn micros(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap();
    let column =
        datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
    column
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    paid_orders: i64,
    net_cents: i128,
    last_order_day: Option<NaiveDate>,
}

fn day_of(micros: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .date_naive()
}

/// ceil(5 * k / n) where k is 1 + the number of strictly worse values.
fn scores(values: &BTreeMap<i64, i128>, higher_is_better: bool) -> BTreeMap<i64, i32> {
    let n = values.len() as i128;
    values
        .iter()
        .map(|(&id, &v)| {
            let worse = values
                .values()
                .filter(|&&other| {
                    if higher_is_better {
                        other < v
                    } else {
                        other > v
                    }
                })
                .count() as i128;
            let k = 1 + worse;
            (id, ((5 * k + n - 1) / n) as i32)
        })
        .collect()
}

#[test]
fn nightly_run_publishes_what_the_raw_orders_say() {
    let project = Project::new(Size::Large);
    let outcome = project.run_nightly(AS_OF);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    assert!(outcome.stdout.contains("customer_features"), "{outcome:?}");

    let as_of = NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").unwrap();
    let cutoff = as_of
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();

    // What the raw data says, computed by iterating its rows.
    let mut expected: BTreeMap<i64, Expected> = BTreeMap::new();
    for batch in read_table(&project.data().join("customers")) {
        for (id, created) in i64s(&batch, "customer_id")
            .into_iter()
            .zip(micros(&batch, "created_at"))
        {
            if created.unwrap() < cutoff {
                expected.insert(id.unwrap(), Expected::default());
            }
        }
    }
    let mut orders_after_as_of = 0;
    for batch in read_table(&project.data().join("orders")) {
        let ids = i64s(&batch, "customer_id");
        let at = micros(&batch, "ordered_at");
        let total = cents(&batch, "total_amount");
        let refunded = cents(&batch, "refunded_amount");
        let status = strings(&batch, "status");
        for i in 0..batch.num_rows() {
            let at = at[i].unwrap();
            if at >= cutoff {
                orders_after_as_of += 1;
                continue;
            }
            if status[i] != "paid" {
                continue;
            }
            let e = expected
                .get_mut(&ids[i].unwrap())
                .expect("an order's customer signed up before it");
            e.paid_orders += 1;
            e.net_cents += total[i].unwrap() - refunded[i].unwrap();
            e.last_order_day = e.last_order_day.max(Some(day_of(at)));
        }
    }
    assert!(
        orders_after_as_of > 0,
        "the data must reach past as_of for this test to mean anything"
    );

    // What segflow published.
    let features = project.published("customer_features", AS_OF);
    assert_eq!(rows(&features), expected.len());
    assert_eq!(
        project.manifest("customer_features", AS_OF).rows as usize,
        expected.len()
    );
    let mut seen = BTreeSet::new();
    for batch in &features {
        let ids = i64s(batch, "customer_id");
        let paid = i64s(batch, "paid_orders");
        let net = cents(batch, "net_revenue");
        let days = i64s(batch, "days_since_last_order");
        for i in 0..batch.num_rows() {
            let id = ids[i].unwrap();
            let e = &expected[&id];
            assert_eq!(
                paid[i].unwrap(),
                e.paid_orders,
                "paid orders of customer {id}"
            );
            assert_eq!(net[i].unwrap(), e.net_cents, "net revenue of customer {id}");
            let expected_days = e.last_order_day.map(|d| (as_of - d).num_days());
            assert_eq!(
                days[i], expected_days,
                "days since last order of customer {id}"
            );
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), expected.len(), "one row per customer");

    // RFM: every buyer scored, with the documented quintile rule recomputed here.
    let buyers: BTreeMap<i64, &Expected> = expected
        .iter()
        .filter(|(_, e)| e.paid_orders > 0)
        .map(|(id, e)| (*id, e))
        .collect();
    let recency: BTreeMap<i64, i128> = buyers
        .iter()
        .map(|(id, e)| (*id, (as_of - e.last_order_day.unwrap()).num_days() as i128))
        .collect();
    // The default method scores F by order counts: 1 to 4 orders score 1 to 4, more score 5.
    let f: BTreeMap<i64, i32> = buyers
        .iter()
        .map(|(id, e)| (*id, e.paid_orders.min(5) as i32))
        .collect();
    let monetary = buyers.iter().map(|(id, e)| (*id, e.net_cents)).collect();
    let (r, m) = (scores(&recency, false), scores(&monetary, true));
    let rfm = project.published("rfm", AS_OF);
    assert_eq!(rows(&rfm), buyers.len());
    let mut score_counts = [0usize; 6];
    for batch in &rfm {
        let ids = i64s(batch, "customer_id");
        let (rs, fs, ms) = (
            i32s(batch, "r_score"),
            i32s(batch, "f_score"),
            i32s(batch, "m_score"),
        );
        for i in 0..batch.num_rows() {
            let id = ids[i].unwrap();
            assert_eq!(rs[i].unwrap(), r[&id], "r_score of {id}");
            assert_eq!(fs[i].unwrap(), f[&id], "f_score of {id}");
            assert_eq!(ms[i].unwrap(), m[&id], "m_score of {id}");
            score_counts[rs[i].unwrap() as usize] += 1;
        }
    }
    assert!(
        score_counts[1..].iter().all(|&n| n > 0),
        "every recency score is used: {score_counts:?}"
    );
}

#[test]
fn rerunning_an_as_of_replaces_its_files() {
    let project = Project::new(Size::Small);
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    let first_manifest = project.manifest("rfm", AS_OF);
    let second = project.run_nightly(AS_OF);
    assert_eq!(second.code, 0, "{second:?}");
    let second_manifest = project.manifest("rfm", AS_OF);
    assert_ne!(first_manifest.run_id, second_manifest.run_id);
    assert_eq!(first_manifest.rows, second_manifest.rows);

    let partition = project.out().join(format!("rfm/as_of={AS_OF}"));
    let mut on_disk: Vec<String> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|e| format!("as_of={AS_OF}/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = second_manifest
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "only the latest run's files remain in the partition"
    );
    let staging = project.out().join("rfm/_segflow/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "no staging left behind"
    );

    // Another as_of is a partition of its own; the first stays.
    let other = project.run_nightly("2026-04-30");
    assert_eq!(other.code, 0, "{other:?}");
    assert_eq!(project.manifest("rfm", AS_OF), second_manifest);
}

#[test]
fn demo_generates_runs_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let outcome = crate::support::run(crate::support::segflow().args([
        "demo",
        "--dir",
        demo.to_str().unwrap(),
    ]));
    assert_eq!(outcome.code, 0, "{outcome:?}");
    for table in ["customer_features", "rfm"] {
        assert!(outcome.stdout.contains(table), "{outcome:?}");
        assert!(
            demo.join(format!("out/{table}/_segflow/manifests"))
                .is_dir(),
            "{table}"
        );
    }
    assert!(
        outcome.stdout.contains("20000  file://"),
        "every customer is featured: {outcome:?}"
    );
    // On the demo shop every label of the R-F grid has members, and every declared segment
    // is summarised, the empty ones too.
    let out = demo.join("out");
    let manifests = std::fs::read_dir(out.join("customer_profile/_segflow/manifests")).unwrap();
    let manifest = manifests.map(|e| e.unwrap().file_name()).next().unwrap();
    let as_of = manifest.to_str().unwrap()["as_of=".len()..]
        .trim_end_matches(".json")
        .to_string();
    let profile = crate::support::column_values(&out, "customer_profile", &as_of, "rf_segment");
    let grid: BTreeSet<&str> = profile.iter().map(String::as_str).collect();
    for label in crate::support::RF_GRID.into_iter().chain(["Prospects"]) {
        assert!(
            grid.contains(label),
            "{label} has no member on the demo shop: {grid:?}"
        );
    }
    let summarised = crate::support::column_values(&out, "segment_summary", &as_of, "segment");
    let spec: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(demo.join("pipelines/nightly_segments.yaml")).unwrap(),
    )
    .unwrap();
    let declared: BTreeSet<String> = spec["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(summarised.into_iter().collect::<BTreeSet<_>>(), declared);
    assert!(outcome.stdout.contains("duckdb -c"), "{outcome:?}");
    // The Python line the demo suggests runs as printed, from the demo's folder.
    let suggested = outcome
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("python3 -c"))
        .expect("a Python line to try");
    let tried = crate::support::run(
        std::process::Command::new("sh")
            .current_dir(&demo)
            .args(["-c", suggested.trim()]),
    );
    assert_eq!(tried.code, 0, "{suggested}: {tried:?}");
    assert!(tried.stdout.contains("customer_id"), "{tried:?}");
    assert!(outcome.stdout.contains("Segments as of"), "{outcome:?}");
    assert!(outcome.stdout.contains("| big_spenders "), "{outcome:?}");
    assert!(demo.join("pipelines/nightly_segments.yaml").exists());

    // The run is in the demo's history, and a second demo keeps what the user edited.
    let state = demo.join("state");
    let runs = crate::support::run(crate::support::segflow().args([
        "runs",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(runs.stdout.matches(" succeeded ").count(), 1, "{runs:?}");
    let edited = demo.join("queries/segments/prospects.sql");
    let text = format!("{}-- mine\n", std::fs::read_to_string(&edited).unwrap());
    std::fs::write(&edited, &text).unwrap();
    let again = crate::support::small_demo(&demo);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains(&format!("Keeping your edited {}", edited.display())),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), text);
    let runs = crate::support::run(crate::support::segflow().args([
        "runs",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(runs.stdout.matches(" succeeded ").count(), 2, "{runs:?}");
}

#[test]
fn a_step_may_call_a_table_function() {
    let project = Project::new(Size::Tiny);
    scheduled_query(
        &project,
        "week",
        "{ cron: '0 2 * * *' }",
        "SELECT d.value AS day, COUNT(*) AS customers \
         FROM generate_series(1, 7) AS d CROSS JOIN customers GROUP BY d.value",
    );
    let run = project.segflow(&["run", "scheduled/week.yaml", "--as-of", AS_OF]);
    assert_eq!(run.code, 0, "{run:?}");
    let batches = project.published("week", AS_OF);
    let mut days: Vec<(Option<i64>, Option<i64>)> = batches
        .iter()
        .flat_map(|b| i64s(b, "day").into_iter().zip(i64s(b, "customers")))
        .collect();
    days.sort();
    let expected: Vec<_> = (1..=7).map(|day| (Some(day), Some(50))).collect();
    assert_eq!(days, expected);
}

/// `SEGFLOW_LOG=debug` is segflow's own story, not the query planner's.
#[test]
fn debug_logs_are_segflows_own_events() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let outcome = crate::support::run(
        project
            .command(&["run", pipeline.to_str().unwrap(), "--as-of", AS_OF])
            .env("SEGFLOW_LOG", "debug"),
    );
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let lines = outcome.stderr.lines().count();
    assert!(outcome.stderr.contains("Run finished."), "{outcome:?}");
    assert!(
        lines < 500,
        "{lines} lines of log; the engine's debug events leak"
    );
    assert!(
        !outcome.stderr.contains("datafusion"),
        "{}",
        &outcome.stderr[..2000.min(outcome.stderr.len())]
    );
}

/// On a terminal (a pseudo-terminal from `script`), each finished step, segment and output
/// leaves one line above the progress spinner.
#[test]
fn a_terminal_shows_a_line_per_finished_step_and_output() {
    let project = Project::new(Size::Tiny);
    let command = format!(
        "{} run {} --as-of {AS_OF}",
        env!("CARGO_BIN_EXE_segflow"),
        project.pipeline().display()
    );
    let outcome = crate::support::run(
        std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(project.path())
            .env("SEGFLOW_DATA", project.data())
            .env("SEGFLOW_OUT", project.out()),
    );
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let shown = outcome.stdout.replace('\r', "");
    for expected in [
        // An incremental step says how many of its files it computed.
        " computed step paid_orders file by file: 1 files computed, 0 kept from earlier runs (",
        " planned segment prospects (",
        // Written as its step was computed (later steps read it too) ...
        " staged customer_features: ",
        " rows (written by its step)",
        // ... or written from its plan once every step is ready.
        " wrote segment_changes: ",
        " rows (",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
}
