//! Whole specs through `Pipeline::load`: every problem reported, each on its line.

use std::path::Path;

use chrono_tz::Tz;

use super::*;
use crate::features::Features;
use crate::schedule::Catchup;
use crate::segments::SEGMENT_CATALOG;

/// Every feature, so that what validation says does not depend on the build testing it.
const ALL: Features = Features {
    cluster: true,
    delta: true,
    serve: true,
};

fn parse_in(dir: &Path, yaml: &str) -> Result<Pipeline, Vec<String>> {
    parse_for(ALL, dir, yaml)
}

/// `yaml` as a build with `features` validates it.
fn parse_for(features: Features, dir: &Path, yaml: &str) -> Result<Pipeline, Vec<String>> {
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let options = LoadOptions {
        features,
        ..LoadOptions::default()
    };
    Pipeline::load(&file, &options).map_err(|e| match e {
        SpecError::Invalid { problems } => problems
            .iter()
            .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
            .collect(),
        other => vec![other.to_string()],
    })
}

fn with_sql(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn orders_steps_by_what_they_read() {
    let dir = with_sql(&[
        ("a.sql", "SELECT * FROM b"),
        ("b.sql", "SELECT * FROM orders"),
    ]);
    let p = parse_in(
        dir.path(),
        "name: t\nsources:\n  orders: { url: data/orders/ }\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: b, sql: b.sql }\n",
    )
    .unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
}

#[test]
fn reports_every_problem_with_its_line() {
    let dir = with_sql(&[
        ("a.sql", "SELECT * FROM ordrs"),
        ("c.sql", "DROP TABLE orders"),
    ]);
    let problems = parse_in(
        dir.path(),
        "name: t\nvars:\n  days: { type: int, value: soon }\nsources:\n  orders: { url: 'ftp://x/y' }\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: a, sql: a.sql }\n  - { name: b, sql: missing.sql }\n  - { name: c, sql: c.sql }\noutputs:\n  - { table: nope, url: out/ }\n",
    )
    .unwrap_err();
    let text = problems.join("\n");
    assert!(
        text.contains("3: var 'days': 'soon' is not an int"),
        "{text}"
    );
    assert!(
        text.contains("5: 'ftp://x/y' uses the scheme 'ftp'"),
        "{text}"
    );
    assert!(
        text.contains("8: step 'a' is defined twice (first at line 7)"),
        "{text}"
    );
    assert!(text.contains("9: step 'b': cannot read SQL file"), "{text}");
    assert!(
        text.contains("10: step 'c'") && text.contains("`DROP TABLE`"),
        "{text}"
    );
    assert!(text.contains("reads table 'ordrs'"), "{text}");
    assert!(text.contains("12: output names table 'nope'"), "{text}");
}

#[test]
fn zones_keys_and_members_are_checked() {
    let dir = with_sql(&[("s.sql", "SELECT customer_id FROM people")]);
    let problems = parse_in(
        dir.path(),
        "name: t\ntimezone: Europe/Olso\nmembers: { table: peple }\nsources:\n  people:\n    url: data/people/\n    timezone: Mars/Base\n    version: updated_at\n    deleted: deleted_at\n  old:\n    url: data/old/\n    key: id\n    keep_latest_by: updated_at\n  half:\n    url: data/half/\n    key: id\n    deleted: gone\nsegments:\n  - { name: s, sql: s.sql }\n",
    )
    .unwrap_err();
    let text = problems.join("\n");
    assert!(
        text.contains("2: 'Europe/Olso' is not an IANA time zone (for example Europe/Oslo or UTC) (did you mean 'Europe/Oslo'?)"),
        "{text}"
    );
    assert!(
        text.contains("7: 'Mars/Base' is not an IANA time zone"),
        "{text}"
    );
    assert!(
        text.contains("8: source 'people': version needs a key, whose versions it orders"),
        "{text}"
    );
    assert!(
        text.contains("13: source 'old': keep_latest_by is now `version: updated_at`, which keeps the version in force at the end of the as_of day"),
        "{text}"
    );
    assert!(
        text.contains("17: source 'half': deleted needs version"),
        "{text}"
    );
    assert!(
        text.contains("3: segments take their members from the table 'peple', which is not a source or a step (did you mean 'people'?)"),
        "{text}"
    );
    assert_eq!(problems.len(), 6, "{text}");

    let pipeline = parse_in(
        dir.path(),
        "name: t\ntimezone: Europe/Oslo\nmembers: { table: people }\nsources:\n  people:\n    url: data/people/\n    key: [shop, customer_id]\n    version: updated_at\n    deleted: _fivetran_deleted\nsegments:\n  - { name: s, sql: s.sql }\nschedule: { cron: '0 2 * * *' }\n",
    )
    .unwrap();
    assert_eq!(pipeline.timezone, chrono_tz::Europe::Oslo);
    assert_eq!(
        pipeline.sources[0].key,
        Some(SourceKey {
            columns: vec!["shop".into(), "customer_id".into()],
            versions: Some(Versions {
                by: "updated_at".into(),
                deleted: Some("_fivetran_deleted".into()),
            }),
        })
    );
    assert_eq!(pipeline.sources[0].timezone, Tz::UTC);
    // The schedule's cron is read in the pipeline's zone: 02:00 in Oslo is 00:00 UTC in
    // summer; the slot computes the day before in Oslo.
    let schedule = pipeline.schedule.unwrap();
    let after = chrono::DateTime::parse_from_rfc3339("2026-06-24T12:00:00Z").unwrap();
    let slot = schedule.slots.next_after(after.to_utc()).unwrap();
    assert_eq!(slot.due.to_rfc3339(), "2026-06-25T00:00:00+00:00");
    assert_eq!(slot.as_of.to_string(), "2026-06-24");
    let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SEGMENT_CATALOG), "{names:?}");
}

#[test]
fn a_slot_computes_the_last_day_over_in_the_pipelines_zone() {
    let dir = with_sql(&[]);
    // Cron in Oslo, days in UTC: 00:30 in Oslo on the 25th is 22:30 UTC on the 24th,
    // when the 24th is not over in UTC yet.
    let pipeline = parse_in(
        dir.path(),
        "name: t\nschedule: { cron: '30 0 * * *', timezone: Europe/Oslo }\n",
    )
    .unwrap();
    let schedule = pipeline.schedule.unwrap();
    let after = chrono::DateTime::parse_from_rfc3339("2026-06-24T12:00:00Z").unwrap();
    let slot = schedule.slots.next_after(after.to_utc()).unwrap();
    assert_eq!(slot.due.to_rfc3339(), "2026-06-24T22:30:00+00:00");
    assert_eq!(slot.as_of.to_string(), "2026-06-23");
}

#[test]
fn finds_cycles() {
    let dir = with_sql(&[("a.sql", "SELECT * FROM b"), ("b.sql", "SELECT * FROM a")]);
    let problems = parse_in(
        dir.path(),
        "name: t\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: b, sql: b.sql }\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("cycle: a ("), "{problems:?}");
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let dir = with_sql(&[]);
    let problems =
        parse_in(dir.path(), "name: t\nsources:\n  orders:\n    urll: x/\n").unwrap_err();
    assert!(
        problems[0].starts_with("4: unknown field `urll`"),
        "{problems:?}"
    );
}

#[test]
fn var_overrides_are_typed() {
    let dir = with_sql(&[]);
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: t\nvars:\n  days: 30\n  since: { type: date, value: 2024-01-31 }\n",
    )
    .unwrap();
    let load = |k: &str, v: &str| {
        let options = LoadOptions {
            var_overrides: vec![(k.into(), v.into())],
            features: ALL,
            ..LoadOptions::default()
        };
        Pipeline::load(&file, &options)
    };
    assert_eq!(load("days", "7").unwrap().vars["days"], VarValue::Int(7));
    let err = load("days", "seven").unwrap_err().to_string();
    assert!(
        err.contains("p.yaml:3: --var days=seven: 'seven' is not an int"),
        "{err}"
    );
    let err = load("dayz", "7").unwrap_err().to_string();
    assert!(err.contains("did you mean 'days'"), "{err}");
}

#[test]
fn segments_compose_and_feed_membership() {
    let dir = with_sql(&[("a.sql", "SELECT customer_id FROM orders")]);
    let p = parse_in(
        dir.path(),
        "name: t\nsources:\n  orders: { url: data/orders/ }\n  customers: { url: data/customers/ }\nsegments:\n  - { name: both, all_of: [a, b], none_of: [c] }\n  - { name: a, sql: a.sql }\n  - { name: b, sql: a.sql }\n  - { name: c, any_of: [a] }\n",
    )
    .unwrap();
    assert_eq!(p.segments, ["both", "a", "b", "c"]);
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a",
            "b",
            "c",
            "both",
            "segment_membership",
            "segment_catalog"
        ]
    );
    let both = &p.steps[3];
    assert_eq!(both.kind, StepKind::Segment);
    assert_eq!(both.sql.tables.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    // segment_membership reads the members table too, so that it comes first.
    assert!(p.steps[4].sql.tables.contains("customers"));
}

#[test]
fn bad_segments_are_reported_with_lines() {
    let dir = with_sql(&[("a.sql", "SELECT 1 AS customer_id")]);
    let problems = parse_in(
        dir.path(),
        "name: t\nsegments:\n  - { name: a, sql: a.sql, any_of: [b] }\n  - { name: b }\n  - { name: c, all_of: [d] }\n  - { name: e, none_of: [c] }\n  - { name: f, any_of: [] }\n  - { name: g, all_of: [h] }\n  - { name: h, all_of: [g] }\n  - { name: segment_membership, sql: a.sql }\nsources: { customers: { url: c/ } }\n",
    )
    .unwrap_err();
    let text = problems.join("\n");
    assert!(
        text.contains("3: segment 'a' has both sql and all_of"),
        "{text}"
    );
    assert!(text.contains("4: segment 'b' is empty"), "{text}");
    assert!(
        text.contains("5: segment 'c': all_of names 'd', which is not a segment"),
        "{text}"
    );
    assert!(
        text.contains("6: segment 'e': none_of needs all_of or any_of"),
        "{text}"
    );
    assert!(
        text.contains("7: segment 'f': any_of lists no segments"),
        "{text}"
    );
    assert!(
        text.contains("'segment_membership' is the table segflow builds"),
        "{text}"
    );
    let problems = parse_in(
        dir.path(),
        "name: t\nsegments:\n  - { name: g, all_of: [h] }\n  - { name: h, all_of: [g] }\nsources: { customers: { url: c/ } }\n",
    )
    .unwrap_err();
    assert!(problems[0].contains("cycle: g ("), "{problems:?}");
}

#[test]
fn schedules_are_checked_with_lines() {
    let dir = with_sql(&[]);
    let p = parse_in(
        dir.path(),
        "name: t\nschedule: { cron: '0 2 * * *', timezone: Europe/Oslo, catchup: all, max_catchup: 5, retry_delay: 30s, timeout: 2h }\n",
    )
    .unwrap();
    let schedule = p.schedule.unwrap();
    assert_eq!(schedule.catchup, Catchup::All { max: 5 });
    assert_eq!(schedule.timeout, Some(std::time::Duration::from_secs(7200)));
    let problems = parse_in(
        dir.path(),
        "name: t\nschedule:\n  cron: '0 2 * *'\n  timezone: Europe/Olso\n  catchup: sometimes\n  timeout: soon\n",
    )
    .unwrap_err();
    let text = problems.join("\n");
    assert!(
        text.contains("3: '0 2 * *' is not a cron expression"),
        "{text}"
    );
    assert!(text.contains("5: catchup 'sometimes'"), "{text}");
    assert!(
        text.contains("6: timeout 'soon' is not a duration"),
        "{text}"
    );
    let problems = parse_in(
        dir.path(),
        "name: t\nschedule:\n  cron: '0 2 * * *'\n  timezone: Europe/Olso\n",
    )
    .unwrap_err();
    assert!(
        problems[0].starts_with("4: 'Europe/Olso' is not an IANA time zone"),
        "{problems:?}"
    );
    let problems = parse_in(dir.path(), "name: t\nschedule: { timezone: UTC }\n").unwrap_err();
    assert!(problems[0].contains("missing field `cron`"), "{problems:?}");
}

#[test]
fn a_segment_reading_what_the_segments_build_is_told_what_to_read() {
    let dir = with_sql(&[
        (
            "profile.sql",
            "SELECT m.customer_id FROM segment_membership m",
        ),
        ("vip.sql", "SELECT customer_id FROM profile"),
    ]);
    let problems = parse_in(
        dir.path(),
        "name: t\nsources: { customers: { url: c/ } }\nsteps:\n  - { name: profile, sql: profile.sql }\nsegments:\n  - { name: vip, sql: vip.sql }\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("cycle: "), "{problems:?}");
    assert!(
        problems[0].contains("a segment cannot read what is built from the segments"),
        "{problems:?}"
    );
}

#[test]
fn incremental_steps_read_one_source_and_cut_it_by_one_timestamp() {
    let dir = with_sql(&[
        ("paid.sql", "SELECT * FROM orders WHERE status = 'paid'"),
        (
            "facts.sql",
            "SELECT customer_id, COUNT(*) AS n FROM paid GROUP BY customer_id",
        ),
        (
            "mixed.sql",
            "SELECT o.* FROM orders o JOIN customers c USING (customer_id)",
        ),
        ("later.sql", "SELECT * FROM paid"),
    ]);
    let sources = "sources:\n  customers:\n    url: data/customers/\n    key: customer_id\n    version: updated_at\n  orders:\n    url: data/orders/\n    columns: { ordered_at: timestamp, shipped_at: timestamp, order_id: bigint }\n";
    let good = format!(
        "name: t\n{sources}steps:\n  - name: paid\n    sql: paid.sql\n    incremental: {{ source: orders, time: ordered_at }}\n  - name: facts\n    sql: facts.sql\n    incremental: {{ source: orders, time: ordered_at }}\n"
    );
    let pipeline = parse_in(dir.path(), &good).unwrap();
    let facts = pipeline.steps.iter().find(|s| s.name == "facts").unwrap();
    assert_eq!(
        facts.incremental,
        Some(Incremental {
            source: "orders".into(),
            time: "ordered_at".into(),
            fold: None,
        })
    );

    let bad = format!(
        "name: t\n{sources}steps:\n  - name: paid\n    sql: paid.sql\n    incremental: {{ source: orders, time: ordered_at }}\n  - name: facts\n    sql: facts.sql\n    incremental: {{ source: orders, time: shipped_at }}\n  - name: mixed\n    sql: mixed.sql\n    incremental: {{ source: orders, time: order_id }}\n  - name: by_customer\n    sql: later.sql\n    incremental: {{ source: customers, time: updated_at }}\n  - name: nowhere\n    sql: later.sql\n    incremental: {{ source: ordrs, time: ordered_at }}\n"
    );
    let problems = parse_in(dir.path(), &bad).unwrap_err();
    let text = problems.join("\n");
    for expected in [
        "14: step 'facts' is incremental over 'orders' with time 'shipped_at', but an earlier step over it has time 'ordered_at'",
        "17: step 'mixed' is incremental over 'orders', so",
        "but it reads 'customers': each file's result is kept",
        "17: step 'mixed': incremental.time 'order_id' is a bigint column of 'orders'; it must be a timestamp",
        "20: step 'by_customer' is incremental over 'customers', so",
        "but it reads 'paid'",
        "23: step 'nowhere': incremental.source 'ordrs' is not a source (did you mean 'orders'?)",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn a_fold_reads_only_its_steps_results_and_no_incremental_step_reads_a_folded_one() {
    let dir = with_sql(&[
        ("paid.sql", "SELECT * FROM orders WHERE status = 'paid'"),
        (
            "totals.sql",
            "SELECT customer_id, COUNT(*) AS n FROM paid GROUP BY customer_id",
        ),
        (
            "totals_fold.sql",
            "SELECT customer_id, SUM(n) AS n FROM totals GROUP BY customer_id",
        ),
        (
            "peeks.sql",
            "SELECT t.customer_id, SUM(t.n) AS n FROM totals t JOIN paid p USING (customer_id) GROUP BY 1",
        ),
        ("constant.sql", "SELECT 1 AS n"),
        ("per_file.sql", "SELECT * FROM totals"),
    ]);
    let sources = "sources:\n  orders:\n    url: data/orders/\n    columns: { ordered_at: timestamp, customer_id: bigint }\n";
    let paid = "  - name: paid\n    sql: paid.sql\n    incremental: { source: orders, time: ordered_at }\n";
    let good = format!(
        "name: t\n{sources}steps:\n{paid}  - name: totals\n    sql: totals.sql\n    incremental: {{ source: orders, time: ordered_at, fold: totals_fold.sql }}\n  - name: later\n    sql: per_file.sql\n"
    );
    let pipeline = parse_in(dir.path(), &good).unwrap();
    let totals = pipeline.steps.iter().find(|s| s.name == "totals").unwrap();
    let fold = totals.fold_step().expect("a fold");
    assert_eq!(fold.name, "totals");
    assert_eq!(fold.sql_file, dir.path().join("totals_fold.sql"));
    assert!(fold.sql.text.contains("SUM(n)"), "{}", fold.sql.text);
    assert_eq!(fold.incremental.as_ref().unwrap().fold, None);
    let paid_step = pipeline.steps.iter().find(|s| s.name == "paid").unwrap();
    assert!(paid_step.fold_step().is_none());

    let folded = |name: &str, fold: &str| {
        format!(
            "  - name: {name}\n    sql: totals.sql\n    incremental: {{ source: orders, time: ordered_at, fold: {fold} }}\n"
        )
    };
    let bad = format!(
        "name: t\n{sources}steps:\n{paid}{}{}{}{}  - name: per_file\n    sql: per_file.sql\n    incremental: {{ source: orders, time: ordered_at }}\n",
        folded("totals", "totals_fold.sql"),
        folded("peeking", "peeks.sql"),
        folded("constant", "constant.sql"),
        folded("notsql", "totals_fold.txt"),
    );
    let problems = parse_in(dir.path(), &bad).unwrap_err();
    let text = problems.join("\n");
    for expected in [
        "15: step 'peeking': the fold",
        "peeks.sql must read only 'peeking' (the step's results to merge, under its own name), but it reads 'paid', 'totals'",
        "18: step 'constant': the fold",
        "constant.sql must read only 'constant' (the step's results to merge, under its own name), but it reads no table",
        "21: step 'notsql': `incremental.fold:` names",
        "totals_fold.txt, which is not a .sql file",
        "step 'per_file' is incremental, so it runs on each file of 'orders', but it reads 'totals', whose results fold across files and are not kept per file",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn a_check_names_a_table_and_one_rule() {
    let dir = with_sql(&[
        ("a.sql", "SELECT * FROM orders"),
        (
            "late.sql",
            "SELECT * FROM a JOIN previous_a USING (order_id)",
        ),
    ]);
    let spec = "name: t\nsources:\n  orders: { url: data/orders/ }\nsteps:\n  - { name: a, sql: a.sql }\noutputs:\n  - { table: a, url: out/a/ }\nchecks:\n  - { table: a, unique: [order_id, line] }\n  - { table: orders, accepted_range: { column: total, min: 0 }, severity: warn }\n  - { name: enough, table: a, row_count: { min: 1, max: 10 } }\n  - { table: orders, accepted_values: { column: status, values: [paid, 3, 2.5, true] } }\n  - { table: a, relationships: { column: customer_id, to: orders } }\n  - { table: a, not_null_proportion: { column: email, at_least: 0.9 } }\n  - { table: a, sql: late.sql }\n  - { table: orders, freshness: { column: ordered_at, max_age: 1d 12h } }\n  - { table: a, anomaly: { max_change: 30%, by: segment, min_size: 100 } }\n  - { name: few_more, table: a, anomaly: { max_change: 500 } }\n";
    let pipeline = parse_in(dir.path(), spec).unwrap();
    let checks: Vec<(&str, &str, Severity, String)> = pipeline
        .checks
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.table.as_str(),
                c.severity,
                c.rule.to_string(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            (
                "a_unique_order_id_line",
                "a",
                Severity::Error,
                "unique [order_id, line]".to_string()
            ),
            (
                "orders_accepted_range_total",
                "orders",
                Severity::Warn,
                "accepted_range total min 0".to_string()
            ),
            (
                "enough",
                "a",
                Severity::Error,
                "row_count min 1 max 10".to_string()
            ),
            (
                "orders_accepted_values_status",
                "orders",
                Severity::Error,
                "accepted_values status [paid, 3, 2.5, true]".to_string()
            ),
            (
                "a_relationships_customer_id_orders",
                "a",
                Severity::Error,
                "relationships customer_id to orders.customer_id".to_string()
            ),
            (
                "a_not_null_proportion_email",
                "a",
                Severity::Error,
                "not_null_proportion email at_least 0.9".to_string()
            ),
            (
                "a_late",
                "a",
                Severity::Error,
                format!("sql {}", dir.path().join("late.sql").display())
            ),
            (
                "orders_freshness_ordered_at",
                "orders",
                Severity::Error,
                "freshness ordered_at max_age 36h".to_string()
            ),
            (
                "a_anomaly_by_segment",
                "a",
                Severity::Error,
                "anomaly max_change 30% by segment min_size 100".to_string()
            ),
            (
                "few_more",
                "a",
                Severity::Error,
                "anomaly max_change 500 rows".to_string()
            ),
        ]
    );
    assert_eq!(
        pipeline.checks[7].at,
        format!("{}:16", dir.path().join("p.yaml").display())
    );

    let bad = "name: t\nsources:\n  orders: { url: data/orders/ }\nchecks:\n  - { table: order, not_null: id }\n  - { table: orders, not_null: id, unique: id }\n  - { table: orders, row_count: { min: 1 }, severity: fatal }\n  - { table: orders, row_count: { max: 5 } }\n  - { table: orders, relationships: { column: id, to: order } }\n  - { table: orders, not_null_proportion: { column: id, at_least: 90 } }\n  - { table: orders, sql: missing.sql }\n  - { table: orders, sql: late.sql }\n  - { table: orders, freshness: { column: ordered_at, max_age: soon } }\n  - { table: orders, anomaly: { max_change: lots } }\n  - { name: z, table: orders, not_null: [] }\n  - { name: y, table: orders, anomaly: { max_change: 0.5 } }\n";
    let problems = parse_in(dir.path(), bad).unwrap_err();
    let text = problems.join("\n");
    for expected in [
        "5: check on table 'order', which is not a source or a step (did you mean 'orders'?)",
        "6: a check on 'orders' needs exactly one rule (not_null, unique, accepted_values, accepted_range, row_count, relationships, not_null_proportion, sql, freshness or anomaly); it has 2",
        "7: check severity 'fatal' is not error or warn",
        "8: check 'orders_row_count' is declared twice; give one a `name:`",
        "9: relationships to table 'order', which is not a source or a step (did you mean 'orders'?)",
        "10: not_null_proportion at_least 90 is not a share between 0 and 1 (0.95 for 95 %)",
        "11: check 'orders_missing': cannot read SQL file",
        "12: check 'orders_late'",
        "reads table 'a', which is not a source, step or segment",
        "13: freshness max_age 'soon' is not a duration (36h, 2d, 90m)",
        "14: anomaly compares an output with its previous publication, and 'orders' is not an output",
        "14: anomaly max_change is a share of the previous count (30%) or a number of rows (500)",
        "15: a check on 'orders' has an empty list",
        "16: anomaly max_change is a share of the previous count (30%) or a number of rows (500)",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn a_build_without_a_feature_refuses_what_needs_it_on_its_line() {
    let dir = with_sql(&[("a.sql", "SELECT * FROM orders")]);
    let yaml = "name: t\nsources:\n  orders: { url: data/orders/, format: delta }\nsteps:\n  - { name: a, sql: a.sql }\noutputs:\n  - { table: a, url: out/a/, format: delta }\nengine:\n  cluster: df://scheduler:50050\n";
    let needs = |feature: &str| {
        format!(
            "which this build of segflow leaves out: build it with `cargo build --release \
             --features {feature}`"
        )
    };
    let problems = parse_for(
        Features {
            cluster: false,
            delta: false,
            serve: false,
        },
        dir.path(),
        yaml,
    )
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for (problem, (line_and_what, feature)) in problems.iter().zip([
        (
            "3: source 'orders' (format: delta) needs Delta Lake tables",
            "delta",
        ),
        (
            "7: output 'a' (format: delta) needs Delta Lake tables",
            "delta",
        ),
        (
            "9: engine.cluster needs running on a Ballista cluster",
            "cluster",
        ),
    ]) {
        assert!(problem.starts_with(line_and_what), "{problem}");
        assert!(problem.contains(&needs(feature)), "{problem}");
    }
    let only_delta = Features {
        cluster: false,
        delta: true,
        serve: false,
    };
    let problems = parse_for(only_delta, dir.path(), yaml).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("9: engine.cluster"),
        "{problems:#?}"
    );
    assert!(parse_in(dir.path(), yaml).is_ok());
}

#[test]
fn an_output_is_published_as_parquet_or_delta() {
    let dir = with_sql(&[("a.sql", "SELECT * FROM orders")]);
    let spec = |format: &str| {
        format!(
            "name: t\nsources:\n  orders: {{ url: data/orders/ }}\nsteps:\n  - {{ name: a, sql: a.sql }}\noutputs:\n  - {{ table: a, url: out/a/{format} }}\n"
        )
    };
    let formats = |p: Pipeline| p.outputs.iter().map(|o| o.format).collect::<Vec<_>>();
    assert_eq!(
        formats(parse_in(dir.path(), &spec("")).unwrap()),
        [OutputFormat::Parquet]
    );
    assert_eq!(
        formats(parse_in(dir.path(), &spec(", format: Delta")).unwrap()),
        [OutputFormat::Delta]
    );
    let problems = parse_in(dir.path(), &spec(", format: detla")).unwrap_err();
    assert_eq!(
        problems,
        [
            "7: output 'a': format 'detla' is not one segflow publishes (parquet or delta) (did you mean 'delta'?)"
        ]
    );
}
