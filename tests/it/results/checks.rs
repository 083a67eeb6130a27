//! Checks on what a run is about to publish. Checks that the data meets pass and the run
//! publishes; checks that it breaks, with `severity: error` (the default), fail the run
//! (exit 1), name each failed check with its table, and leave every published byte as it
//! was; the same checks with `severity: warn` publish and are recorded. The counts of
//! offending rows are derived from the published rows here, not from segflow's queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};

use crate::support::{
    ANOMALY_AS_WARNING, AS_OF, Project, SHIPPED_ANOMALY, Size, keep_rows, read_table, write_order,
};

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
const SHIPPED: usize = 14;

/// Checks the data meets; `{countries}` is every country of the shop's customers.
const MET: [&str; 11] = [
    "table: customer_features, not_null: customer_id",
    "table: customer_features, unique: [customer_id]",
    "table: customer_features, accepted_range: { column: paid_orders, min: 0 }",
    "table: rfm, row_count: { min: 1 }",
    // A source, checked as registered.
    "table: customers, not_null: email",
    "table: customer_features, accepted_values: { column: country, values: [{countries}] }",
    // Output to output: both as staged.
    "table: segment_membership, relationships: { column: customer_id, to: customer_profile }",
    // Customers who never bought have no first order: a NULL points at nothing, and passes.
    "table: customer_features, relationships: { column: first_order_at, to: paid_orders, field: ordered_at }",
    "table: customer_features, not_null_proportion: { column: phone, at_least: 0.5 }",
    "table: rfm, sql: ../queries/checks/scores_out_of_range.sql",
    "table: customers, freshness: { column: created_at, max_age: 400d }",
];

/// Checks the data breaks; `{countries}` is every country but the most common one.
const BROKEN: [&str; 8] = [
    "name: everyone_bought, table: customer_features, not_null: first_order_at",
    "name: one_customer_per_country, table: customer_features, unique: country",
    "name: low_recency_scores, table: rfm, accepted_range: { column: r_score, max: 2 }",
    "name: a_million_buyers, table: rfm, row_count: { min: 1000000 }",
    "name: rare_countries_only, table: customer_features, accepted_values: { column: country, values: [{countries}] }",
    "name: every_customer_scored, table: customer_profile, relationships: { column: customer_id, to: rfm }",
    "name: most_have_phones, table: customer_features, not_null_proportion: { column: phone, at_least: 0.9 }",
    "name: low_recency_in_sql, table: rfm, sql: ../queries/checks/high_recency.sql",
];

const BROKEN_TABLES: [&str; 8] = [
    "customer_features",
    "customer_features",
    "rfm",
    "rfm",
    "customer_features",
    "customer_profile",
    "customer_features",
    "rfm",
];

/// The customers' countries, most common first.
fn countries(project: &Project) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for batch in read_table(&project.data().join("customers")) {
        for country in text(column(&batch, "country")).into_iter().flatten() {
            *counts.entry(country).or_default() += 1;
        }
    }
    let mut countries: Vec<(usize, String)> = counts.into_iter().map(|(c, n)| (n, c)).collect();
    countries.sort_by(|a, b| b.cmp(a));
    countries.into_iter().map(|(_, c)| c).collect()
}

fn text(array: &dyn Array) -> Vec<Option<String>> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Utf8).unwrap();
    cast.as_string::<i32>()
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

fn ids(batches: &[RecordBatch]) -> BTreeSet<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = datafusion::arrow::compute::cast(column(b, "customer_id"), &DataType::Int64)
                .unwrap();
            ids.as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The last run's record of AS_OF.
fn last_record(project: &Project) -> serde_json::Value {
    last_record_of(project, AS_OF)
}

/// The last run's record of `as_of`.
fn last_record_of(project: &Project, as_of: &str) -> serde_json::Value {
    let json = project.segflow(&["runs", "nightly_segments", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    json.stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["as_of"] == as_of)
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
fn expected_offending(project: &Project) -> [u64; 8] {
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
    let commonest = &countries(project)[0];
    let in_commonest = features
        .iter()
        .flat_map(|b| text(column(b, "country")))
        .filter(|c| c.as_ref() == Some(commonest))
        .count();
    let profile = project.published("customer_profile", AS_OF);
    let unscored = ids(&profile).difference(&ids(&rfm)).count();
    let rows: usize = features.iter().map(RecordBatch::num_rows).sum();
    let no_phone: usize = features
        .iter()
        .map(|b| column(b, "phone").null_count())
        .sum();
    let with_phone = (rows - no_phone) as f64 / rows as f64;
    assert!(
        (0.5..0.9).contains(&with_phone),
        "the fixture meets 0.5 and breaks 0.9: {with_phone}"
    );
    [
        never_bought,
        repeated_countries,
        high_scores,
        1,
        in_commonest,
        unscored,
        no_phone,
        high_scores,
    ]
    .map(|n| n as u64)
}

/// `lines` with `{countries}` filled in.
fn filled(lines: &[&str], countries: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line.replace("{countries}", &countries.join(", ")))
        .collect()
}

/// The SQL files of the `sql:` checks.
fn write_check_queries(project: &Project) {
    let folder = project.path().join("queries/checks");
    std::fs::write(
        folder.join("scores_out_of_range.sql"),
        "SELECT customer_id, r_score, f_score, m_score FROM rfm\n\
         WHERE r_score NOT BETWEEN 1 AND 5 OR f_score NOT BETWEEN 1 AND 5\n\
         OR m_score NOT BETWEEN 1 AND 5",
    )
    .unwrap();
    std::fs::write(
        folder.join("high_recency.sql"),
        "SELECT customer_id, r_score FROM rfm WHERE r_score > 2",
    )
    .unwrap();
}

#[test]
fn checks_block_a_bad_publication_or_warn() {
    let project = Project::new(Size::Small);
    write_check_queries(&project);
    let spec = std::fs::read_to_string(project.pipeline()).unwrap();
    let countries = countries(&project);
    let met = filled(&MET, &countries);
    let met: Vec<&str> = met.iter().map(String::as_str).collect();
    let broken = filled(&BROKEN, &countries[1..]);
    let broken: Vec<&str> = broken.iter().map(String::as_str).collect();

    // Met: the run publishes, and says so.
    std::fs::write(project.pipeline(), with_checks(&spec, &met, "error")).unwrap();
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
    std::fs::write(project.pipeline(), with_checks(&spec, &broken, "error")).unwrap();
    let failed = project.run_nightly(AS_OF);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed
            .stderr
            .contains("8 checks of the run failed, so nothing was published"),
        "{failed:?}"
    );
    let names = BROKEN.map(|line| line["name: ".len()..line.find(',').unwrap()].to_string());
    for (check, table) in names.iter().zip(BROKEN_TABLES) {
        assert!(
            failed
                .stderr
                .contains(&format!("check '{check}' on '{table}' (")),
            "{check}: {failed:?}"
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
        // A row count is about the whole table: its words say the count, no row is shown.
        let shown = if name == "a_million_buyers" {
            0..=0
        } else {
            1..=5
        };
        assert!(shown.contains(examples), "{name}: {examples} examples");
    }
    // A backfill stops at such a date with exit 1 too, and publishes nothing either.
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let backfill = project.segflow(&[
        "backfill", pipeline, "--from", AS_OF, "--to", AS_OF, "--force",
    ]);
    assert_eq!(backfill.code, 1, "{backfill:?}");
    assert!(
        backfill
            .stderr
            .contains("check 'everyone_bought' on 'customer_features'"),
        "{backfill:?}"
    );
    assert_eq!(project.snapshot(), published);

    // Found by validate, which reads no data: a column that the table does not have, and a
    // value the column cannot hold exactly (2.5 is not 2), rather than a cast that fails,
    // or quietly accepts 2, in the night.
    for (check, message) in [
        (
            "table: rfm, accepted_range: { column: r_scor, max: 2 }",
            "check 'rfm_accepted_range_r_scor': 'r_scor' is not a column of 'rfm' (did you \
             mean 'r_score'?)",
        ),
        (
            "table: rfm, accepted_values: { column: r_score, values: [1, 2, 2.5] }",
            "check 'rfm_accepted_values_r_score': accepted value '2.5' cannot be a value of \
             'r_score', which is a whole number",
        ),
    ] {
        std::fs::write(project.pipeline(), with_checks(&spec, &[check], "error")).unwrap();
        let validated = project.segflow(&["validate", pipeline, "--as-of", AS_OF]);
        assert_eq!(validated.code, 1, "{validated:?}");
        assert!(validated.stderr.contains(message), "{validated:?}");
    }

    // Broken, as warnings: the run publishes, and records and prints each.
    std::fs::write(project.pipeline(), with_checks(&spec, &broken, "warn")).unwrap();
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

/// The newest `ordered_at` of the shop's orders before `end`, as segflow prints instants.
fn newest_order_before(project: &Project, end: chrono::DateTime<chrono::Utc>) -> String {
    let newest = read_table(&project.data().join("orders"))
        .iter()
        .flat_map(|b| {
            let times = column(b, "ordered_at").as_primitive::<TimestampMicrosecondType>();
            times.iter().flatten().collect::<Vec<_>>()
        })
        .filter(|&t| t < end.timestamp_micros())
        .max()
        .expect("orders before the end");
    chrono::DateTime::from_timestamp_micros(newest)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

#[test]
fn freshness_fails_a_night_whose_orders_have_not_landed() {
    let project = Project::new(Size::Small);
    project.with_shipped_freshness();
    // The orders export stopped three days before the end of as_of.
    let end: chrono::DateTime<chrono::Utc> = "2026-04-01T00:00:00Z".parse().unwrap();
    let cut = (end - chrono::Duration::days(3)).timestamp_micros();
    keep_rows(&project.data().join("orders"), |batch| {
        let times = column(batch, "ordered_at").as_primitive::<TimestampMicrosecondType>();
        times
            .iter()
            .map(|t| t.map(|t| t < cut))
            .collect::<BooleanArray>()
    });
    let newest = newest_order_before(&project, end);
    let pipeline = project.pipeline();
    let stale = crate::support::run(
        project
            .command(&["run", pipeline.to_str().unwrap(), "--as-of", AS_OF])
            .env("SEGFLOW_LOG", "info"),
    );
    assert_eq!(stale.code, 1, "{stale:?}");
    // A check on sources alone runs before any step: a late export costs seconds.
    assert!(!stale.stderr.contains("Step ready."), "{stale:?}");
    assert!(
        stale.stderr.contains(&format!(
            "check 'orders_freshness_ordered_at' on 'orders' (freshness ordered_at max_age 36h): \
             its newest ordered_at is {newest}"
        )),
        "{stale:?}"
    );
    assert!(project.snapshot().is_empty(), "nothing was published");
    let record = last_record(&project);
    assert_eq!(check_statuses(&record)[0], "failed", "{record}");

    // The late export lands: an order on the as_of day.
    write_order(
        &project.data().join("orders/late.parquet"),
        1_000_000,
        1,
        "2026-03-31T10:00:00Z",
    );
    let fresh = project.run_nightly(AS_OF);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    let record = last_record(&project);
    assert_eq!(check_statuses(&record), ["passed"; SHIPPED], "{record}");
}

/// Each segment's members in a published segment_membership.
fn segment_sizes(project: &Project, as_of: &str) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    for batch in project.published("segment_membership", as_of) {
        for segment in text(column(&batch, "segment")).into_iter().flatten() {
            *sizes.entry(segment).or_default() += 1;
        }
    }
    sizes
}

/// The README's rule for `anomaly: { by: segment, max_change: 30%, min_size: 20 }`: the
/// segments of at least 20 members on either night whose size moved by more than 30 % of
/// the earlier night's (any move from an empty segment counts).
fn moved_segments(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> u64 {
    let names: BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    names
        .into_iter()
        .filter(|name| {
            let was = before.get(*name).copied().unwrap_or(0) as f64;
            let is = now.get(*name).copied().unwrap_or(0) as f64;
            was.max(is) >= 20.0 && (is - was).abs() > 0.3 * was
        })
        .count() as u64
}

#[test]
fn anomaly_checks_compare_with_the_previous_publication() {
    let project = Project::new(Size::Small);
    // The shipped segment-size and customer-count checks catch the halving too; as
    // warnings here, so that the nights published with this test's checks as warnings
    // publish.
    let spec = std::fs::read_to_string(project.pipeline()).unwrap();
    assert!(spec.contains(SHIPPED_ANOMALY));
    let spec = spec.replacen(SHIPPED_ANOMALY, ANOMALY_AS_WARNING, 1);
    let customer_count = "anomaly: { max_change: 25%, min_size: 100 } }";
    assert!(spec.contains(customer_count));
    let spec = spec.replacen(
        customer_count,
        "anomaly: { max_change: 25%, min_size: 100 }, severity: warn }",
        1,
    );
    let anomalies = [
        "name: segment_sizes, table: segment_membership, anomaly: { by: segment, max_change: 30%, min_size: 20 }",
        "name: profile_rows, table: customer_profile, anomaly: { max_change: 30% }",
    ];
    std::fs::write(project.pipeline(), with_checks(&spec, &anomalies, "error")).unwrap();

    // The first publication has nothing to compare with, and passes saying so.
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains(
            "note: check 'segment_sizes' on 'segment_membership' passed: 'segment_membership' \
             has no earlier publication: nothing to compare with yet"
        ),
        "{first:?}"
    );

    // An ordinary next night moves no segment that much.
    let next = "2026-04-01";
    let ordinary = project.run_nightly(next);
    assert_eq!(ordinary.code, 0, "{ordinary:?}");
    assert_eq!(
        moved_segments(
            &segment_sizes(&project, AS_OF),
            &segment_sizes(&project, next)
        ),
        0
    );

    // `segflow check` audits a published night without touching it. (Before the input
    // changes below: checks on sources read them as they are now.)
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let before = project.snapshot();
    let clean = project.segflow(&["check", pipeline, "--as-of", next, "--json"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    let statuses: Vec<(String, String)> = clean
        .stdout
        .lines()
        .map(|line| {
            let check = serde_json::from_str::<serde_json::Value>(line).unwrap();
            (check["name"].to_string(), check["status"].to_string())
        })
        .collect();
    assert_eq!(statuses.len(), 2 + SHIPPED, "{clean:?}");
    // All passed, but the check of a step that is not published: an audit cannot read it.
    assert!(
        statuses.iter().all(|(name, status)| status == "\"passed\""
            || (name == "\"spend_fit_left_out\"" && status == "\"skipped\"")),
        "{clean:?}"
    );
    assert_eq!(project.snapshot(), before, "an audit writes nothing");

    // Half the customers are missing from the next night's input.
    keep_rows(&project.data().join("customers"), |batch| {
        let ids = column(batch, "customer_id").as_primitive::<Int64Type>();
        ids.iter()
            .map(|id| id.map(|id| id % 2 == 0))
            .collect::<BooleanArray>()
    });
    let published = project.snapshot();
    let night = "2026-04-02";
    let halved = project.run_nightly(night);
    assert_eq!(halved.code, 1, "{halved:?}");
    for check in [
        "check 'segment_sizes' on 'segment_membership'",
        "check 'profile_rows' on 'customer_profile'",
        // The shipped check of the customer count catches it too.
        "check 'customer_count' on 'customer_profile' (anomaly max_change 25% min_size 100)",
    ] {
        assert!(halved.stderr.contains(check), "{check}: {halved:?}");
    }
    assert_eq!(
        project.snapshot(),
        published,
        "a failed check published nothing"
    );

    // As warnings, the night publishes; the counts match the rule applied to what was
    // published on both nights.
    std::fs::write(project.pipeline(), with_checks(&spec, &anomalies, "warn")).unwrap();
    let warned = project.run_nightly(night);
    assert_eq!(warned.code, 0, "{warned:?}");
    let record = last_record_of(&project, night);
    let offending: Vec<u64> = record["checks"].as_array().unwrap()[..2]
        .iter()
        .map(|c| c["offending"].as_u64().unwrap())
        .collect();
    let moved = moved_segments(
        &segment_sizes(&project, next),
        &segment_sizes(&project, night),
    );
    assert!(moved > 0);
    assert_eq!(offending, [moved, 1], "{record}");

    // An audit of the failed night fails; a check on a step that is not published is
    // skipped, saying why.
    let audited = [
        anomalies[0],
        anomalies[1],
        "name: paid_orders_known, table: paid_orders, not_null: customer_id",
    ];
    std::fs::write(project.pipeline(), with_checks(&spec, &audited, "error")).unwrap();
    let before = project.snapshot();
    let audit = project.segflow(&["check", pipeline, "--as-of", night]);
    assert_eq!(audit.code, 1, "{audit:?}");
    assert!(
        audit
            .stderr
            .contains("2 checks of 2026-04-02's publication failed"),
        "{audit:?}"
    );
    assert!(
        audit.stderr.contains(
            "skipped: check 'paid_orders_known': 'paid_orders' is not published for 2026-04-02"
        ),
        "{audit:?}"
    );
    assert_eq!(project.snapshot(), before, "an audit writes nothing");
}

/// Writes `days/part.parquet` under `dir`: a `day` column (a date) with `days`.
fn write_days(dir: &std::path::Path, days: &[&str]) {
    use datafusion::arrow::array::{ArrayRef, Date32Array};
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let values: Vec<i32> = days
        .iter()
        .map(|d| (d.parse::<chrono::NaiveDate>().unwrap() - epoch).num_days() as i32)
        .collect();
    let batch = RecordBatch::try_from_iter([(
        "day",
        std::sync::Arc::new(Date32Array::from(values)) as ArrayRef,
    )])
    .unwrap();
    std::fs::create_dir_all(dir.join("days")).unwrap();
    let file = std::fs::File::create(dir.join("days/part.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn freshness_of_a_date_column_counts_days_in_the_pipelines_zone() {
    let project = Project::new(Size::Tiny);
    std::fs::write(
        project.path().join("queries/days.sql"),
        "SELECT COUNT(*) AS days FROM days",
    )
    .unwrap();
    let pipeline = project.path().join("pipelines/days.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: days\ntimezone: America/New_York\n\
             sources:\n  days: {{ url: {}/days/ }}\n\
             steps:\n  - {{ name: counted, sql: ../queries/days.sql }}\n\
             outputs:\n  - {{ table: counted, url: {}/counted/ }}\n\
             checks:\n  - {{ table: days, freshness: {{ column: day, max_age: 36h }} }}\n",
            project.data().display(),
            project.out().display()
        ),
    )
    .unwrap();
    let run = || project.segflow(&["run", pipeline.to_str().unwrap(), "--as-of", AS_OF]);

    // The day after as_of is later data, though its UTC midnight comes before the end of
    // as_of in New York; the newest day before that end is a week old.
    write_days(&project.data(), &["2026-03-24", "2026-04-01"]);
    let stale = run();
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(
        stale.stderr.contains(
            "its newest day is 2026-03-24 00:00:00 EDT, 192h before 2026-04-01 00:00 EDT"
        ),
        "{stale:?}"
    );

    // as_of itself: its first instant in New York is 24 hours before the day's end.
    write_days(&project.data(), &["2026-03-24", "2026-03-31", "2026-04-01"]);
    let fresh = run();
    assert_eq!(fresh.code, 0, "{fresh:?}");
}
