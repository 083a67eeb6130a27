//! Checks on what a run is about to publish. Checks that the data meets pass and the run
//! publishes; checks that it breaks, with `severity: error` (the default), fail the run
//! (exit 1), name each failed check with its table, and leave every published byte as it
//! was; the same checks with `severity: warn` publish and are recorded. The counts of
//! offending rows are derived from the published rows here, not from segflow's queries.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int32Type;

use crate::common::{AS_OF, Project};

/// The shipped pipeline `spec` with `lines` added to its checks, with `severity` on each.
fn with_checks(spec: &str, lines: &[&str], severity: &str) -> String {
    let mut added = String::from("checks:\n");
    for line in lines {
        added.push_str(&format!("  - {{ {line}, severity: {severity} }}\n"));
    }
    assert!(
        spec.contains("\nchecks:\n"),
        "the shipped pipeline has checks"
    );
    spec.replacen("\nchecks:\n", &format!("\n{added}"), 1)
}

/// The shipped pipeline's own checks, which its data meets.
const SHIPPED: usize = 5;

const MET: [&str; 5] = [
    "table: customer_features, not_null: customer_id",
    "table: customer_features, unique: [customer_id]",
    "table: customer_features, accepted_range: { column: paid_orders, min: 0 }",
    "table: rfm, row_count: { min: 1 }",
    // A source, checked as registered.
    "table: customers, unique: customer_id",
];

const BROKEN: [&str; 4] = [
    "name: everyone_bought, table: customer_features, not_null: first_order_at",
    "name: one_customer_per_country, table: customer_features, unique: country",
    "name: low_recency_scores, table: rfm, accepted_range: { column: r_score, max: 2 }",
    "name: a_million_buyers, table: rfm, row_count: { min: 1000000 }",
];

/// The last run's record of `as_of`.
fn last_record(project: &Project) -> serde_json::Value {
    let json = project.segflow(&["runs", "nightly_segments", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    json.stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["as_of"] == AS_OF)
        .max_by_key(|record| record["run_id"].as_str().unwrap().to_string())
        .expect("a run of the date")
}

/// Each check's status in a run record, in the spec's order.
fn check_statuses(record: &serde_json::Value) -> Vec<&str> {
    record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("a column {name}"))
        .as_ref()
}

/// How many rows break each of BROKEN, from the published customer_features and rfm.
fn expected_offending(project: &Project) -> [u64; 4] {
    let features = project.published("customer_features", AS_OF);
    let rfm = project.published("rfm", AS_OF);
    let never_bought: usize = features
        .iter()
        .map(|b| column(b, "first_order_at").null_count())
        .sum();
    let mut per_country: HashMap<String, usize> = HashMap::new();
    for batch in &features {
        let countries = datafusion::arrow::compute::cast(
            column(batch, "country"),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        for country in countries.as_string::<i32>().iter().flatten() {
            *per_country.entry(country.to_string()).or_default() += 1;
        }
    }
    let repeated_countries = per_country.values().filter(|&&n| n > 1).count();
    let high_scores: usize = rfm
        .iter()
        .map(|batch| {
            let scores = datafusion::arrow::compute::cast(
                column(batch, "r_score"),
                &datafusion::arrow::datatypes::DataType::Int32,
            )
            .unwrap();
            scores
                .as_primitive::<Int32Type>()
                .iter()
                .flatten()
                .filter(|&s| s > 2)
                .count()
        })
        .sum();
    let buyers: usize = rfm.iter().map(RecordBatch::num_rows).sum();
    assert!(buyers < 1_000_000);
    [never_bought, repeated_countries, high_scores, 1].map(|n| n as u64)
}

#[test]
fn checks_block_a_bad_publication_or_warn() {
    let project = Project::new(300, 900);
    let spec = std::fs::read_to_string(project.pipeline()).unwrap();

    // Met: the run publishes, and says so.
    std::fs::write(project.pipeline(), with_checks(&spec, &MET, "error")).unwrap();
    let met = project.run_nightly(AS_OF);
    assert_eq!(met.code, 0, "{met:?}");
    let passed = format!("Checks: {} passed, 0 warned.", MET.len() + SHIPPED);
    assert!(met.stdout.contains(&passed), "{met:?}");
    let record = last_record(&project);
    let statuses = check_statuses(&record);
    assert_eq!(statuses, ["passed"; MET.len() + SHIPPED], "{record}");
    let published = project.snapshot();
    let expected = expected_offending(&project);
    assert!(
        expected.iter().all(|&n| n > 0),
        "the fixture breaks every check: {expected:?}"
    );

    // Broken, as errors: exit 1, each failed check named with its table, nothing published.
    std::fs::write(project.pipeline(), with_checks(&spec, &BROKEN, "error")).unwrap();
    let broken = project.run_nightly(AS_OF);
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken
            .stderr
            .contains("4 checks of the run failed, so nothing was published"),
        "{broken:?}"
    );
    for (check, table) in [
        ("everyone_bought", "customer_features"),
        ("one_customer_per_country", "customer_features"),
        ("low_recency_scores", "rfm"),
        ("a_million_buyers", "rfm"),
    ] {
        assert!(
            broken
                .stderr
                .contains(&format!("check '{check}' on '{table}' (")),
            "{check}: {broken:?}"
        );
    }
    assert_eq!(
        project.snapshot(),
        published,
        "a failed check published nothing"
    );
    let record = last_record(&project);
    assert_eq!(record["status"], "failed", "{record}");
    let outcomes: Vec<(String, u64, usize)> = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .take(BROKEN.len())
        .map(|c| {
            assert_eq!(c["status"], "failed", "{c}");
            (
                c["name"].as_str().unwrap().to_string(),
                c["offending"].as_u64().unwrap(),
                c["examples"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    for ((name, offending, examples), want) in outcomes.iter().zip(expected) {
        assert_eq!(*offending, want, "{name}");
        assert!((1..=5).contains(examples), "{name}: {examples} examples");
    }

    // A column that the table does not have is found by validate, which reads no data.
    std::fs::write(
        project.pipeline(),
        with_checks(
            &spec,
            &["table: rfm, accepted_range: { column: r_scor, max: 2 }"],
            "error",
        ),
    )
    .unwrap();
    let pipeline = project.pipeline();
    let validated = project.segflow(&["validate", pipeline.to_str().unwrap(), "--as-of", AS_OF]);
    assert_eq!(validated.code, 1, "{validated:?}");
    assert!(
        validated.stderr.contains(
            "check 'rfm_accepted_range_r_scor': 'r_scor' is not a column of 'rfm' (did you mean 'r_score'?)"
        ),
        "{validated:?}"
    );

    // Broken, as warnings: the run publishes, and records and prints each.
    std::fs::write(project.pipeline(), with_checks(&spec, &BROKEN, "warn")).unwrap();
    let warned = project.run_nightly(AS_OF);
    assert_eq!(warned.code, 0, "{warned:?}");
    let warnings = format!("Checks: {SHIPPED} passed, {} warned.", BROKEN.len());
    assert!(warned.stdout.contains(&warnings), "{warned:?}");
    assert!(
        warned.stdout.contains(
            "warning: check 'everyone_bought' on 'customer_features' (not_null [first_order_at]): "
        ),
        "{warned:?}"
    );
    assert_ne!(project.snapshot(), published, "a warning publishes");
    let record = last_record(&project);
    assert_eq!(record["status"], "succeeded", "{record}");
    let statuses = check_statuses(&record);
    assert_eq!(
        statuses[..BROKEN.len()],
        ["warned"; BROKEN.len()],
        "{record}"
    );
    assert_eq!(statuses[BROKEN.len()..], ["passed"; SHIPPED], "{record}");
}
