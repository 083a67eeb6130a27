//! One definition of a day. The same shop, its timestamps stored as naive UTC, UTC-aware,
//! Oslo-aware and New York-aware values in ms, us and ns, as naive Oslo wall-clock times (the
//! sources declaring their zone), and as a folder mixing them file by file, must give the
//! same outputs; with a pipeline in UTC and with one in Europe/Oslo. Customers with orders at
//! the edges of the as_of day in both zones are checked against the README's rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::{AS_OF, Project, outcome, table_text};

/// How zones.py writes the shop, and whether the sources must declare Oslo as their zone.
const VARIANTS: &[(&str, bool)] = &[
    ("utc_us", false),
    ("naive_utc_ms", false),
    ("oslo_ns", false),
    ("new_york_ms", false),
    ("naive_oslo_us", true),
    ("mixed", false),
];

const OUTPUTS: &[&str] = &[
    "customer_features",
    "rfm",
    "rfm_cutpoints",
    "segment_membership",
    "customer_profile",
    "segment_summary",
    "segment_changes",
    "winback_list",
    "winback_suppressed",
];

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
        for table in ["customers", "orders", "order_items", "checkouts"] {
            let url = format!("    url: ${{SEGFLOW_DATA:-data}}/{table}/\n");
            assert!(text.contains(&url), "{url} in the shipped pipeline");
            text = text.replace(&url, &format!("{url}    timezone: Europe/Oslo\n"));
        }
    }
    std::fs::write(project.path().join(&name), text).unwrap();
    name
}

type Outputs = BTreeMap<&'static str, Vec<String>>;

fn run_variant(project: &Project, pipeline: &str, data: &Path, out: &Path) -> Outputs {
    let run = outcome(
        project
            .command(&["run", pipeline, "--as-of", AS_OF])
            .env("SEGFLOW_DATA", data)
            .env("SEGFLOW_OUT", out)
            .output()
            .unwrap(),
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
    let project = Project::new(2_000, 8_000);
    let variants = project.path().join("variants");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/zones.py");
    let written = outcome(
        Command::new("python3")
            .arg(&script)
            .args([project.data(), variants.clone()])
            .arg(AS_OF)
            .output()
            .expect("python3 runs"),
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
