//! The predictive models (docs/shipped-pipeline.md, "Predictions"): the fits against the figures the papers
//! publish for the CDNOW sample; every published prediction recomputed from the raw shop by
//! the README's rules (predictions.py, mpmath's ₂F₁), on the dirty fixture shop with pinned
//! parameters and on a generated shop with fitted ones; and that fit against the 90 days
//! after it.

use std::path::{Path, PathBuf};
use std::process::Command;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};

use crate::support::{
    AS_OF, Outcome, Project, Size, latest_record, read_table, segflow, write_orders,
};

/// Where .ci/run unpacks the `lifetimes` 0.11.3 wheel, whose datasets hold the CDNOW sample.
fn cdnow_datasets() -> PathBuf {
    let dir = std::env::var_os("SEGFLOW_CDNOW").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/segflow/lifetimes/lifetimes/datasets")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("cdnow_customers_summary.csv").is_file(),
        "{} lacks the CDNOW sample: run .ci/run, which downloads it (the `lifetimes` 0.11.3 \
         wheel), or point SEGFLOW_CDNOW at its datasets folder",
        dir.display()
    );
    dir
}

const CDNOW_PIPELINE: &str = r#"
name: cdnow
timezone: UTC
sources:
  summary:                       # per customer: repeat purchases, t_x, T in weeks
    url: data/summary/
    format: csv
    columns: { ID: bigint, frequency: double, recency: double, T: double }
  transactions:                  # the same, with the average repeat purchase (zbar)
    url: data/transactions/
    format: csv
    columns: { ID: bigint, x: double, t_x: double, T: double, zbar: double }
steps:
  - { name: purchase_model, sql: purchase_model.sql }
  - { name: spend_model, sql: spend_model.sql }
  - { name: fits, sql: fits.sql }
outputs:
  - { table: fits, url: out/fits/ }
"#;

const CDNOW_FITS: &str = r#"
SELECT b.fit.r AS r, b.fit.alpha AS alpha, b.fit.a AS a, b.fit.b AS b,
       b.fit.log_likelihood AS log_likelihood, b.fit.customers AS customers,
       g.fit.p AS p, g.fit.q AS q, g.fit.gamma AS gamma,
       g.fit.customers AS repeat_buyers,
       -- the paper's customer, with the paper's parameters and with ours
       bgnbd_expected_purchases(named_struct('r', 0.243, 'alpha', 4.414, 'a', 0.793,
                                             'b', 2.426), 39, 2, 30.43, 38.86) AS paper_expected,
       bgnbd_p_alive(named_struct('r', 0.243, 'alpha', 4.414, 'a', 0.793, 'b', 2.426),
                     2, 30.43, 38.86) AS paper_p_alive,
       bgnbd_expected_purchases(b.fit, 39, 2, 30.43, 38.86) AS fitted_expected
FROM purchase_model b CROSS JOIN spend_model g
"#;

fn float(batches: &[RecordBatch], column: &str) -> f64 {
    let batch = &batches[0];
    let array = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no {column}"));
    match array.data_type() {
        datafusion::arrow::datatypes::DataType::Int64 => {
            array.as_primitive::<Int64Type>().value(0) as f64
        }
        _ => array.as_primitive::<Float64Type>().value(0),
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", section 5, and Fader
/// & Hardie, "The Gamma-Gamma Model of Monetary Value", on the CDNOW sample.
#[test]
fn cdnow_fits_give_the_published_figures() {
    let datasets = cdnow_datasets();
    let dir = tempfile::tempdir().unwrap();
    for (folder, file) in [
        ("summary", "cdnow_customers_summary.csv"),
        (
            "transactions",
            "cdnow_customers_summary_with_transactions.csv",
        ),
    ] {
        std::fs::create_dir_all(dir.path().join("data").join(folder)).unwrap();
        std::fs::copy(
            datasets.join(file),
            dir.path().join("data").join(folder).join(file),
        )
        .unwrap();
    }
    let files = [
        ("cdnow.yaml", CDNOW_PIPELINE),
        (
            "purchase_model.sql",
            r#"SELECT bgnbd_fit(frequency, recency, "T") AS fit FROM summary"#,
        ),
        (
            "spend_model.sql",
            "SELECT gamma_gamma_fit(x, zbar) AS fit FROM transactions WHERE x > 0",
        ),
        ("fits.sql", CDNOW_FITS),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let run = crate::support::run(segflow().current_dir(dir.path()).args([
        "run",
        "cdnow.yaml",
        "--as-of",
        "1998-06-30",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let fits = read_table(&dir.path().join("out/fits/as_of=1998-06-30"));
    let figure = |column| float(&fits, column);
    // BG/NBD: the paper's parameters to its 3 decimals, and its log-likelihood.
    assert_eq!(round(figure("r"), 3), 0.243);
    assert_eq!(round(figure("alpha"), 3), 4.414);
    assert_eq!(round(figure("a"), 3), 0.793);
    assert_eq!(round(figure("b"), 3), 2.426);
    assert_eq!(round(figure("log_likelihood"), 1), -9582.4);
    assert_eq!(figure("customers"), 2357.0);
    assert_eq!(round(figure("paper_expected"), 3), 1.226);
    assert_eq!(round(figure("paper_p_alive"), 3), 0.727);
    assert_eq!(round(figure("fitted_expected"), 3), 1.226);
    // Gamma-Gamma on the 946 repeat buyers. The note prints gamma = 15.44; the maximum of
    // the likelihood is at 15.448 (the `lifetimes` library prints 15.45).
    assert_eq!(figure("repeat_buyers"), 946.0);
    assert_eq!(round(figure("p"), 2), 6.25);
    assert_eq!(round(figure("q"), 2), 3.74);
    assert!(
        (figure("gamma") - 15.44).abs() < 0.01,
        "{}",
        figure("gamma")
    );
}

/// What the test adds to the shipped pipeline to read the fits as numbers: the paper's
/// customer (x = 2, t_x = 30.43, T = 38.86 weeks) under the fitted parameters.
const CDNOW_PAPER_STEP: &str = r#"
SELECT b.fit.r AS r, b.fit.alpha AS alpha, b.fit.a AS a, b.fit.b AS b,
       b.fit.log_likelihood AS log_likelihood, b.fit.customers AS customers,
       g.fit.p AS p, g.fit.q AS q, g.fit.gamma AS gamma, g.fit.customers AS repeat_buyers,
       bgnbd_expected_purchases(b.fit, 39, 2, 30.43, 38.86) AS expected_39,
       bgnbd_p_alive(b.fit, 2, 30.43, 38.86) AS p_alive
FROM purchase_model b CROSS JOIN spend_model g
"#;

/// The CDNOW transaction log (2,357 customers' purchases, from the `lifetimes` wheel) as
/// orders through the shipped pipeline, as of the end of the papers' 39 weeks of calibration
/// (1997-09-30): the fits meet the published figures.
#[test]
fn cdnow_orders_through_the_shipped_pipeline_meet_the_papers_figures() {
    let datasets = cdnow_datasets();
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        crate::support::copy_dir(&root.join(folder), &dir.path().join(folder));
    }
    crate::support::let_orders_age(dir.path());
    let script = crate::support::oracle("cdnow.py");
    let wrote = crate::support::run(
        Command::new("python3")
            .arg(script)
            .arg(&datasets)
            .arg(dir.path().join("data")),
    );
    assert_eq!(wrote.code, 0, "{wrote:?}");
    std::fs::write(dir.path().join("queries/paper.sql"), CDNOW_PAPER_STEP).unwrap();
    let pipeline = dir.path().join("pipelines/nightly_segments.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let text = text
        .replacen(
            "\nsegments:\n",
            "  - { name: paper, sql: ../queries/paper.sql }\n\nsegments:\n",
            1,
        )
        .replacen(
            "\noutputs:\n",
            "\noutputs:\n  - { table: paper, url: \"${SEGFLOW_OUT:-out}/paper/\" }\n",
            1,
        );
    std::fs::write(&pipeline, text).unwrap();
    let out = dir.path().join("out");
    let run = crate::support::run(
        segflow()
            .current_dir(dir.path())
            .env("SEGFLOW_DATA", dir.path().join("data"))
            .env("SEGFLOW_OUT", &out)
            .env("SEGFLOW_REPORT", dir.path().join("report.html"))
            .args([
                "run",
                "pipelines/nightly_segments.yaml",
                "--as-of",
                "1997-09-30",
            ]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let paper = read_table(&out.join("paper/as_of=1997-09-30"));
    let figure = |column: &str| float(&paper, column);
    let within = |column: &str, published: f64, share: f64| {
        let found = figure(column);
        assert!(
            (found - published).abs() <= share * published.abs(),
            "{column}: {found}, the paper's {published}"
        );
    };
    for (column, published) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        within(column, published, 0.01);
    }
    assert!(
        (figure("log_likelihood") + 9582.4).abs() <= 0.5,
        "log-likelihood {}",
        figure("log_likelihood")
    );
    assert_eq!(figure("customers"), 2357.0);
    assert!(
        (figure("expected_39") - 1.226).abs() <= 0.005,
        "{}",
        figure("expected_39")
    );
    assert!(
        (figure("p_alive") - 0.727).abs() <= 0.005,
        "{}",
        figure("p_alive")
    );
    // Gamma-Gamma: p 6.25, q 3.74, gamma 15.44 on the 946 repeat buyers.
    assert_eq!(figure("repeat_buyers"), 946.0);
    for (column, published) in [("p", 6.25), ("q", 3.74), ("gamma", 15.44)] {
        within(column, published, 0.01);
    }
}

fn recompute(data: &Path, out: &Path, as_of: &str, holdout: Option<&str>) -> Outcome {
    let script = crate::support::oracle("predictions.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(data).arg(out).arg(as_of);
    command.args(holdout);
    crate::support::run(command)
}

/// The fixture shop's dirty keys, refunds, cancellations and orders after as_of (see
/// fixtures.rs), with the models pinned: every prediction is what the rules give.
#[test]
fn predictions_on_the_fixture_shop_follow_the_rules() {
    let dir = crate::support::shop_by_hand::fixture_project();
    let run = crate::support::run(segflow().current_dir(dir.path()).args([
        "run",
        "pipelines/nightly_segments.yaml",
        "--as-of",
        AS_OF,
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let out = dir.path().join("out");
    let checked = recompute(&dir.path().join("data"), &out, AS_OF, None);
    assert_eq!(checked.code, 0, "{checked:?}");
    // c1, c3, c4, c7, c8, c9 (fixtures.rs): not c5 (signs up after as_of), not c10 (refunded
    // in full), not the orders without a known customer.
    assert_eq!(
        checked.stdout.lines().next(),
        Some("checked 6 buyers"),
        "{checked:?}"
    );
    // By hand: c3 bought on 2025-06-01 and 2025-07-01 (the cancelled order and the one after
    // as_of do not count), 303 days before as_of; c1 only in the last microsecond of as_of,
    // so its first purchase day is the as_of day: T 0, as `lifetimes` counts it.
    let published = read_table(&out.join(format!("customer_predictions/as_of={AS_OF}")));
    let weeks = |days: f64| days / 7.0;
    for (customer, x, t_x, observed) in [(1, 0, 0.0, 0.0), (3, 1, weeks(30.0), weeks(303.0))] {
        let found = published.iter().find_map(|batch| {
            let ids = batch
                .column_by_name("customer_id")?
                .as_primitive::<Int64Type>();
            let row = (0..ids.len()).find(|&i| ids.value(i) == customer)?;
            let number = |column: &str| {
                let array = batch.column_by_name(column).unwrap();
                match array.data_type() {
                    datafusion::arrow::datatypes::DataType::Int64 => {
                        array.as_primitive::<Int64Type>().value(row) as f64
                    }
                    _ => array.as_primitive::<Float64Type>().value(row),
                }
            };
            Some((number("x"), number("t_x"), number("T")))
        });
        let (got_x, got_t_x, got_observed) =
            found.unwrap_or_else(|| panic!("no prediction for customer {customer}"));
        assert_eq!(got_x, f64::from(x), "customer {customer}");
        assert!(
            (got_t_x - t_x).abs() < 1e-12,
            "customer {customer}: t_x {got_t_x}"
        );
        assert!(
            (got_observed - observed).abs() < 1e-12,
            "customer {customer}: T {got_observed}"
        );
    }
}

/// A generated shop with the models fitted: every prediction is what the rules give with the
/// published parameters, and the fit forecasts the next 90 days (held out: the shop's
/// history runs to END) closer than the buyers' past repeat rates do.
#[test]
fn fitted_predictions_follow_the_rules_and_beat_the_past_rate() {
    let project = Project::new(Size::Large);
    // Five customers without an order get two free ones: repeat buyers whose repeat
    // purchases average 0 say nothing about spend. The night must not fail on them.
    let prospects = prospects(&project.data(), 5);
    let free: Vec<(i64, i64, &str, i128)> = prospects
        .iter()
        .enumerate()
        .flat_map(|(i, &customer)| {
            let id = 90_000_000 + 2 * i as i64;
            [
                (id, customer, "2026-01-05T12:00:00Z", 0),
                (id + 1, customer, "2026-02-05T12:00:00Z", 0),
            ]
        })
        .collect();
    write_orders(&project.data().join("orders/free-orders.parquet"), &free);
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let checked = recompute(&project.data(), &project.out(), AS_OF, Some("90"));
    assert_eq!(checked.code, 0, "{checked:?}");
    println!("{}", checked.stdout);
    // The shipped warning counts them in the run record, as many as the rules leave out.
    let left_out: u64 = checked
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("left out of the spend fit: "))
        .expect("predictions.py counts the buyers left out")
        .parse()
        .unwrap();
    // (Fewer than five when a prospect signed up after as_of.)
    assert!(left_out > 0, "{checked:?}");
    let record = latest_record(
        "nightly_segments",
        &project.path().join("segflow-state"),
        AS_OF,
    );
    let check = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "spend_fit_left_out")
        .expect("the shipped check ran");
    assert_eq!(check["status"], "warned", "{check}");
    assert_eq!(check["offending"], left_out, "{check}");
    // The segments of the predictions were checked against their rules, and none is empty.
    let sizes = checked.stdout.lines().nth(1).unwrap();
    for size in sizes.split(", ") {
        let (segment, members) = size.split_once(' ').unwrap();
        assert!(
            members.parse::<u64>().unwrap() > 0,
            "{segment} is empty: {sizes}"
        );
    }

    // Ranked by predicted CLV when the var says so: the same candidates, in another order.
    let by_revenue = winback_ranking(&project);
    let again = project.segflow(&[
        "run",
        project.pipeline().to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--var",
        "winback_by_predicted_clv=true",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    let by_clv = winback_ranking(&project);
    let clvs: Vec<f64> = by_clv.iter().map(|(_, clv)| *clv).collect();
    assert!(clvs.windows(2).all(|w| w[0] >= w[1]), "{clvs:?}");
    let mut same = by_revenue.clone();
    same.sort_by_key(|(id, _)| *id);
    let mut other = by_clv.clone();
    other.sort_by_key(|(id, _)| *id);
    assert_eq!(same, other, "the same candidates");
    assert_ne!(by_revenue, by_clv, "ranked differently");
}

/// The first `n` customers of a generated shop without an order.
fn prospects(data: &Path, n: usize) -> Vec<i64> {
    let ids = |table: &str| -> Vec<i64> {
        read_table(&data.join(table))
            .iter()
            .flat_map(|batch| {
                let column = batch.column_by_name("customer_id").unwrap();
                column
                    .as_primitive::<Int64Type>()
                    .iter()
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let buyers: std::collections::HashSet<i64> = ids("orders").into_iter().collect();
    let mut customers = ids("customers");
    customers.sort_unstable();
    customers
        .into_iter()
        .filter(|c| !buyers.contains(c))
        .take(n)
        .collect()
}

/// The published win-back list as (customer_id, predicted_clv_12m), in rank order.
fn winback_ranking(project: &Project) -> Vec<(i64, f64)> {
    let mut ranked: Vec<(i32, i64, f64)> = project
        .published("winback_list", AS_OF)
        .iter()
        .flat_map(|batch| {
            let ranks = batch
                .column_by_name("rank")
                .unwrap()
                .as_primitive::<Int32Type>();
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            let clvs = batch
                .column_by_name("predicted_clv_12m")
                .unwrap()
                .as_primitive::<Float64Type>();
            (0..batch.num_rows())
                .map(|i| (ranks.value(i), ids.value(i), clvs.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    ranked.sort_by_key(|(rank, _, _)| *rank);
    ranked.into_iter().map(|(_, id, clv)| (id, clv)).collect()
}
