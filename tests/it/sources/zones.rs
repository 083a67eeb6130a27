//! One definition of a day. The same shop, its timestamps stored as naive UTC, UTC-aware,
//! Oslo-aware and New York-aware values in ms, us and ns, as naive Oslo wall-clock times (the
//! sources declaring their zone), and as a folder mixing them file by file, must give the
//! same outputs; with a pipeline in UTC and with one in Europe/Oslo. Customers with orders at
//! the edges of the as_of day in both zones are checked against the README's rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::{AS_OF, Project, Size, table_text, with_source_settings};

/// How zones.py writes the shop, and whether the sources must declare Oslo as their zone.
const VARIANTS: &[(&str, bool)] = &[
    ("utc_us", false),
    ("naive_utc_ms", false),
    ("oslo_ns", false),
    ("new_york_ms", false),
    ("naive_oslo_us", true),
    ("mixed", false),
];

const OUTPUTS: &[&str] = crate::support::SHIPPED_OUTPUTS;

/// The shipped pipeline with the pipeline's zone set to `zone`, and every source's zone to
/// Oslo when `oslo_sources`.
fn pipeline_variant(project: &Project, zone: &str, oslo_sources: bool) -> String {
    let name = format!(
        "pipelines/zones_{}{}.yaml",
        zone.replace('/', "_").to_lowercase(),
        if oslo_sources { "_oslo_sources" } else { "" }
    );
    let mut text = std::fs::read_to_string(project.pipeline()).unwrap();
    text = text.replacen("timezone: UTC ", &format!("timezone: {zone} "), 1);
    if oslo_sources {
        text = with_source_settings(&text, |_| vec!["timezone: Europe/Oslo".to_string()]);
    }
    std::fs::write(project.path().join(&name), text).unwrap();
    name
}

type Outputs = BTreeMap<&'static str, Vec<String>>;

fn run_variant(project: &Project, pipeline: &str, data: &Path, out: &Path) -> Outputs {
    let run = crate::support::run(
        project
            .command(&["run", pipeline, "--as-of", AS_OF])
            .env("SEGFLOW_DATA", data)
            .env("SEGFLOW_OUT", out),
    );
    assert_eq!(run.code, 0, "{pipeline} on {}: {run:?}", data.display());
    OUTPUTS
        .iter()
        .map(|table| (*table, table_text(out, table, AS_OF, &["run_id"])))
        .collect()
}

fn first_difference(a: &[String], b: &[String]) -> String {
    match a.iter().zip(b).find(|(x, y)| x != y) {
        Some((x, y)) => format!("{x}\n  vs\n{y}"),
        None => format!("{} rows vs {} rows", a.len(), b.len()),
    }
}

/// (customer, paid_orders, days_since_last_order) of the edge customers b1..b6 (zones.py).
fn edges(outputs: &Outputs) -> Vec<String> {
    outputs["customer_features"]
        .iter()
        .filter(|row| row.starts_with("customer_id=900000"))
        .map(|row| {
            let field = |name: &str| {
                row.split(" | ")
                    .find_map(|f| f.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("{name} in {row}"))
                    .to_string()
            };
            format!(
                "{} {} {}",
                field("customer_id"),
                field("paid_orders"),
                field("days_since_last_order")
            )
        })
        .collect()
}

#[test]
fn the_same_instants_stored_any_way_give_the_same_outputs() {
    let project = Project::new(Size::Large);
    let variants = project.path().join("variants");
    let script = crate::support::oracle("zones.py");
    let written = crate::support::run(
        Command::new("python3")
            .arg(&script)
            .args([project.data(), variants.clone()])
            .arg(AS_OF),
    );
    assert_eq!(written.code, 0, "{written:?}");

    for zone in ["UTC", "Europe/Oslo"] {
        let pipelines =
            [false, true].map(|oslo_sources| pipeline_variant(&project, zone, oslo_sources));
        let runs: Vec<(&str, Outputs)> = std::thread::scope(|scope| {
            let handles: Vec<_> = VARIANTS
                .iter()
                .map(|&(variant, oslo_sources)| {
                    let pipeline = &pipelines[usize::from(oslo_sources)];
                    let data = variants.join(variant);
                    let out = project
                        .out()
                        .join(format!("{}-{variant}", zone.replace('/', "_")));
                    let project = &project;
                    scope.spawn(move || (variant, run_variant(project, pipeline, &data, &out)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (_, reference) = &runs[0];
        for (variant, outputs) in &runs[1..] {
            for table in OUTPUTS {
                assert!(
                    outputs[table] == reference[table],
                    "pipeline in {zone}: {table} from {variant} differs from utc_us: {}",
                    first_difference(&outputs[table], &reference[table])
                );
            }
        }
        // From the README's rules: a paid order counts when placed before the end of the
        // as_of day in the pipeline's zone; days count in that zone's calendar; a customer
        // signed up after the day's end is left out.
        let expected: &[&str] = match zone {
            // b1 23:59:59.999Z counts; b2 00:00Z the next day does not; b3, b4 are on the
            // day; b5 22:30Z the day before is day 1; b6 signed up at 23:30Z, a prospect.
            "UTC" => &[
                "9000001 1 0",
                "9000002 0 ",
                "9000003 1 0",
                "9000004 1 0",
                "9000005 1 1",
                "9000006 0 ",
            ],
            // Oslo is UTC+2 on 2026-03-31: b1, b2 and b4 (22:00Z = 00:00 local) fall on the
            // next day; b3 21:59:59.999Z is 23:59:59.999 local; b5 22:30Z the day before is
            // 00:30 local on as_of, day 0; b6 signed up at 01:30 local the next day.
            _ => &[
                "9000001 0 ",
                "9000002 0 ",
                "9000003 1 0",
                "9000004 0 ",
                "9000005 1 0",
            ],
        };
        assert_eq!(edges(reference), expected, "pipeline in {zone}");
    }
}

/// Writes `orders/<file>` with one order per wall-clock time, typed with `zone` (None: naive).
fn write_orders(dir: &Path, file: &str, times: &[&str], zone: Option<&str>) {
    use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
    use std::sync::Arc;
    let micros: Vec<i64> = times
        .iter()
        .map(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        })
        .collect();
    let mut at = TimestampMicrosecondArray::from(micros);
    if let Some(zone) = zone {
        at = at.with_timezone(zone);
    }
    let ids: Vec<i64> = (1..=times.len() as i64).collect();
    let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter([
        ("order_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("ordered_at", Arc::new(at) as ArrayRef),
    ])
    .unwrap();
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    let out = std::fs::File::create(dir.join("orders").join(file)).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn wall_clock_times_are_read_in_their_sources_zone_by_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    // Naive times written in Oslo: summer and winter, the autumn fold (02:30 happens twice
    // on 2025-10-26) and the spring gap (02:30 never happens on 2026-03-29).
    write_orders(
        dir.path(),
        "part-0.parquet",
        &[
            "2026-06-01 12:00",
            "2026-01-15 12:00",
            "2025-10-26 02:30",
            "2026-03-29 02:30",
        ],
        None,
    );
    std::fs::write(
        dir.path().join("orders.sql"),
        "SELECT order_id, ordered_at FROM orders",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: wall_clock\n\
         sources:\n  orders: { url: orders/, timezone: Europe/Oslo }\n\
         steps:\n  - { name: placed, sql: orders.sql }\n\
         outputs:\n  - { table: placed, url: out/placed/ }\n",
    )
    .unwrap();
    let run = || {
        crate::support::run(
            crate::support::segflow()
                .current_dir(dir.path())
                .args(["run", "p.yaml", "--as-of", AS_OF, "--state", "state"]),
        )
    };
    let placed = run();
    assert_eq!(placed.code, 0, "{placed:?}");
    let rows = table_text(&dir.path().join("out"), "placed", AS_OF, &[]);
    // The README's rule: a fold's time is its first occurrence (summer time, UTC+2); a gap's
    // time is read on the offset before the jump (winter time, UTC+1).
    assert_eq!(
        rows[1..],
        [
            "order_id=1 | ordered_at=2026-06-01T10:00:00Z",
            "order_id=2 | ordered_at=2026-01-15T11:00:00Z",
            "order_id=3 | ordered_at=2025-10-26T00:30:00Z",
            "order_id=4 | ordered_at=2026-03-29T01:30:00Z",
        ],
        "{rows:?}"
    );

    // A second file with instants in the same column: which rows are wall-clock times could
    // no longer be told, so the run stops and names both files.
    write_orders(
        dir.path(),
        "part-1.parquet",
        &["2026-06-02 12:00"],
        Some("UTC"),
    );
    let mixed = run();
    assert_eq!(mixed.code, 1, "{mixed:?}");
    for part in [
        "source 'orders': column 'ordered_at' holds wall-clock times (no zone) in file://",
        "orders/part-0.parquet but instants (with a zone) in file://",
        "orders/part-1.parquet; with the source's timezone Europe/Oslo",
    ] {
        assert!(mixed.stderr.contains(part), "{part}: {mixed:?}");
    }
}
