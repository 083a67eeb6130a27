//! Landings `segflow init --from` reads as they land: one shop, landed as each landing lands
//! it, publishes what the same shop in the generic layout publishes, and the run record
//! counts what the landing carries that counts for no one.

use std::path::{Path, PathBuf};

use crate::support::{
    AS_OF, COMPARED_OUTPUTS, Outcome, PINNED_BELOW, Project, Size, assert_same_outputs, copy_dir,
    generate_shop, latest_record, pin_models, python_script, run, segflow, table_text,
};

/// Where .ci/run unpacks the `airbyte-source-shopify` 4.3.0 wheel, whose JSON schemas type
/// each stream (Elastic License 2.0: read from the wheel, never copied into this tree).
fn airbyte_schemas() -> PathBuf {
    let dir = std::env::var_os("SEGFLOW_AIRBYTE_SHOPIFY").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/segflow/airbyte-shopify/source_shopify/schemas")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("orders.json").is_file(),
        "{} lacks the Airbyte Shopify schemas: run .ci/run, which downloads them (the \
         `airbyte-source-shopify` 4.3.0 wheel), or point SEGFLOW_AIRBYTE_SHOPIFY at its \
         source_shopify/schemas folder",
        dir.display()
    );
    dir
}

/// A project made by `segflow init DIR --from LANDING`, with the test suite's freshness
/// (the generated shop ends before the night's date) and, for a small shop, pinned models.
fn landing_project(dir: &Path, landing: &str, customers: u64) {
    let init = run(segflow().args(["init", dir.to_str().unwrap(), "--from", landing]));
    assert_eq!(init.code, 0, "{init:?}");
    let pipeline = dir.join("pipelines/nightly_segments.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let fresh: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("max_age: 36h"))
        .collect();
    assert!(
        fresh.len() == 1 && fresh[0].contains("freshness:"),
        "one freshness check: {fresh:?}"
    );
    std::fs::write(&pipeline, text.replace("max_age: 36h", "max_age: 400d")).unwrap();
    if customers < PINNED_BELOW {
        pin_models(dir);
    }
}

/// Runs the project's pipeline for the night on `data`, publishing into `out` and recording
/// in the state folder beside it.
fn run_night(project: &Path, data: &Path, out: &Path) -> Outcome {
    let state = out.with_extension("state");
    run(segflow()
        .current_dir(project)
        .env("SEGFLOW_DATA", data)
        .env("SEGFLOW_OUT", out)
        .args([
            "run",
            "pipelines/nightly_segments.yaml",
            "--as-of",
            AS_OF,
            "--state",
            state.to_str().unwrap(),
        ]))
}

/// [`run_night`], which must succeed; its run record.
fn night(project: &Path, data: &Path, out: &Path) -> serde_json::Value {
    let state = out.with_extension("state");
    let ran = run_night(project, data, out);
    assert_eq!(ran.code, 0, "{}: {ran:?}", data.display());
    latest_record("nightly_segments", &state, AS_OF)
}

/// The generic shop every landing is compared with: generated with its orders changed after
/// they were placed and delivered twice (`landed`), and its night published by the shipped
/// pipeline (`generic`).
struct Shop {
    project: Project,
    customers: u64,
    landed: PathBuf,
    generic: PathBuf,
}

impl Shop {
    fn published() -> Shop {
        // Only the shop as a connector lands it is read: the small shop, generated so.
        let (customers, orders) = (Size::Small.customers(), Size::Small.orders());
        let project = Project::without_data(customers);
        let landed = project.path().join("landed");
        generate_shop(
            customers,
            orders,
            &landed,
            &["--reexport-changes", "--duplicates", "0.05"],
        );
        let generic = project.path().join("out-generic");
        night(project.path(), &landed, &generic);
        Shop {
            project,
            customers,
            landed,
            generic,
        }
    }
}

/// A landing's project, run for the night on the shop as `script` lands it.
struct Landed {
    /// The landed files.
    data: PathBuf,
    /// The project `segflow init --from` made.
    project: PathBuf,
    /// What the script says it added to the shop.
    added: serde_json::Value,
    out: PathBuf,
    record: serde_json::Value,
}

impl Landed {
    /// Lands the generic shop `landed` with `script` (`script LANDED DATA AS_OF`), makes a
    /// project `--from landing` and publishes its night.
    fn night(
        project: &Project,
        landed: &Path,
        customers: u64,
        landing: &str,
        script: &str,
    ) -> Landed {
        let data = project.path().join(format!("{landing}-data"));
        let written = python_script(
            script,
            &[landed.to_str().unwrap(), data.to_str().unwrap(), AS_OF],
        );
        assert_eq!(written.code, 0, "{written:?}");
        let added = serde_json::from_str(&written.stdout).unwrap();
        let dir = project.path().join(landing);
        landing_project(&dir, landing, customers);
        let out = project.path().join(format!("out-{landing}"));
        let record = night(&dir, &data, &out);
        Landed {
            data,
            project: dir,
            added,
            out,
            record,
        }
    }
}

/// A shop whose orders were refunded and cancelled after they were placed (some after the
/// night) and delivered twice, landed as Airbyte's Shopify source and S3 destination land it
/// (`airbyte_shop.py`, typed by the connector's own schemas), in Parquet and in JSON lines.
/// Both publish what the generic layout publishes; the guest orders and checkouts the
/// landing adds are counted in the run record, and its test, pending, authorized and
/// deleted orders count for no one.
#[test]
fn an_airbyte_landing_publishes_what_the_generic_layout_does() {
    let Shop {
        project,
        customers,
        landed,
        generic,
    } = Shop::published();

    let airbyte = project.path().join("airbyte");
    landing_project(&airbyte, "airbyte-shopify", customers);
    let schemas = airbyte_schemas();
    for format in ["parquet", "jsonl"] {
        let data = project.path().join(format!("airbyte-{format}"));
        let written = python_script(
            "airbyte_shop.py",
            &[
                landed.to_str().unwrap(),
                schemas.to_str().unwrap(),
                data.to_str().unwrap(),
                format,
                AS_OF,
            ],
        );
        assert_eq!(written.code, 0, "{written:?}");
        let added: serde_json::Value = serde_json::from_str(&written.stdout).unwrap();
        if format == "jsonl" {
            let pipeline = airbyte.join("pipelines/nightly_segments.yaml");
            let text = std::fs::read_to_string(&pipeline).unwrap();
            assert_eq!(text.matches("# format: json").count(), 4, "{text}");
            std::fs::write(&pipeline, text.replace("# format: json", "format: json")).unwrap();
        }
        let out = project.path().join(format!("out-airbyte-{format}"));
        let record = night(&airbyte, &data, &out);
        assert_same_outputs(&generic, &out, &COMPARED_OUTPUTS, AS_OF);

        let unmatched = &record["unmatched"];
        assert_eq!(
            unmatched["orders"]["without_customer"], added["orders"]["guest"],
            "{format}: {record}"
        );
        assert_eq!(
            unmatched["checkouts"]["without_customer"], added["guest_checkouts"],
            "{format}: {record}"
        );
        assert_eq!(
            unmatched["orders"]["unknown_customer"], 0,
            "{format}: {record}"
        );
        assert!(
            unmatched.get("airbyte_orders").is_none(),
            "{format}: the raw stream's empty customer_id is not counted: {record}"
        );
        let deleted = &record["versions"]["airbyte_orders"]["deleted"];
        assert_eq!(deleted, &added["orders"]["deleted"], "{format}: {record}");
    }

    // JSON lines written without flattening hold each record in `_airbyte_data`: refused
    // before anything is read, saying which setting lands them as the layout reads them.
    let jsonl = project.path().join("airbyte-jsonl");
    let wrapped = run(std::process::Command::new("python3").args([
        "-c",
        "import glob, json, sys\n\
         for path in glob.glob(sys.argv[1] + '/*/*.jsonl'):\n    \
             rows = [json.loads(line) for line in open(path)]\n    \
             with open(path, 'w') as f:\n        \
                 for r in rows:\n            \
                     meta = {k: r.pop(k) for k in list(r) if k.startswith('_airbyte_')}\n            \
                     f.write(json.dumps(dict(meta, _airbyte_data=r)) + '\\n')",
        jsonl.to_str().unwrap(),
    ]));
    assert_eq!(wrapped.code, 0, "{wrapped:?}");
    let out = project.path().join("out-unflattened");
    let refused = run_night(&airbyte, &jsonl, &out);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "source 'airbyte_abandoned_checkouts': file://{}/abandoned_checkouts/",
            jsonl.display()
        )) && refused.stderr.contains(
            "(its records sit in `_airbyte_data`, as Airbyte's destinations write JSON lines \
             without flattening: choose \"Root level flattening\" in the destination's settings)"
        ),
        "{refused:?}"
    );
}

/// The same shop exported as Shopify admin's CSV exports (`shopify_csv_shop.py`: a row per
/// line item with the order's fields on its first row, two exports of periods that do not
/// overlap, emails in other cases, ids with a leading apostrophe, quoted multi-line notes)
/// publishes what the generic layout does, except what the exports cannot carry: no
/// sign-up dates (`created_at` is NULL) and no abandoned checkouts. Guest orders are counted
/// in the run record; orders placed after the night and unpaid ones count for no one.
#[test]
fn shopify_csv_exports_publish_what_the_generic_layout_does() {
    let Shop {
        project,
        customers,
        landed,
        generic,
    } = Shop::published();

    let Landed {
        data: exports,
        project: csv,
        added,
        out,
        record,
    } = Landed::night(
        &project,
        &landed,
        customers,
        "shopify-csv",
        "shopify_csv_shop.py",
    );

    // The exports write times to the second; everything else compares as it is.
    let to_seconds = |row: String| -> String {
        row.split(" | ")
            .map(|field| match (field.find('.'), field.ends_with('Z')) {
                (Some(dot), true) if field[..dot].contains('T') => format!("{}Z", &field[..dot]),
                _ => field.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let compared = |dir: &Path, table: &str, drop: &[&str]| -> Vec<String> {
        table_text(dir, table, AS_OF, drop)
            .into_iter()
            .filter(|row| !row.contains("segment=abandoned_checkout"))
            .map(to_seconds)
            .collect()
    };
    for (table, drop) in [
        ("rfm", &["run_id"][..]),
        ("rfm_cutpoints", &["run_id"][..]),
        ("winback_list", &["run_id"][..]),
        ("winback_suppressed", &["run_id"][..]),
        ("customer_predictions", &["run_id"][..]),
        ("model_fits", &["run_id"][..]),
        ("customer_features", &["run_id", "created_at"][..]),
        (
            "customer_profile",
            &["run_id", "created_at", "segments", "segment_count"][..],
        ),
        ("segment_membership", &["run_id"][..]),
        ("segment_summary", &["run_id"][..]),
    ] {
        let (left, right) = (compared(&generic, table, drop), compared(&out, table, drop));
        assert!(left.len() > 1, "{table} has rows");
        assert_eq!(left, right, "{table}");
    }
    let abandoned = table_text(&out, "segment_membership", AS_OF, &[])
        .into_iter()
        .filter(|row| row.contains("segment=abandoned_checkout"))
        .count();
    assert_eq!(abandoned, 0, "no checkouts, no one abandoned one");
    assert_eq!(
        record["unmatched"]["orders"]["without_customer"], added["guest_orders"],
        "{record}"
    );

    // Exports whose header spells a column otherwise (some write "Canceled at") fail before
    // anything is read, naming the export file, the column and the spelling it has; nothing
    // is published for the night.
    for name in ["orders_export_1.csv", "orders_export_2.csv"] {
        let file = exports.join("orders_export").join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replacen("Cancelled at", "Canceled at", 1)).unwrap();
    }
    let first = exports.join("orders_export/orders_export_1.csv");
    let out = project.path().join("out-respelt");
    let failed = run_night(&csv, &exports, &out);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains(&format!(
            "source 'shopify_orders': file://{} has no column 'Cancelled at' (declared as \
             timestamp) (did you mean 'Canceled at'?)",
            first.display()
        )),
        "{failed:?}"
    );
    assert!(!out.join("rfm").exists(), "nothing published");
}

/// The same shop landed as Fivetran's connector lands it in a data lake (`fivetran_shop.py`:
/// Delta tables updated in place, whose version 0 is the shop at the night's end and version
/// 1, committed after it, every later refund, cancellation, order and customer) publishes
/// what the generic layout does, except the SMS consent the connector's customer table does
/// not carry. Its test, deleted, pending and authorized orders and its deleted customer count
/// for no one; guest orders and checkouts are counted in the run record.
#[test]
fn a_fivetran_lake_publishes_what_the_generic_layout_does() {
    let Shop {
        project,
        customers,
        landed,
        generic: _,
    } = Shop::published();
    let Landed {
        added, out, record, ..
    } = Landed::night(
        &project,
        &landed,
        customers,
        "fivetran-shopify",
        "fivetran_shop.py",
    );

    // The generic shop without SMS consent, which the lake does not carry.
    let without_sms = project.path().join("landed-without-sms");
    copy_dir(&landed, &without_sms);
    let customers_file = without_sms.join("customers/part-00000.parquet");
    let cleared = run(std::process::Command::new("python3").args([
        "-c",
        "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1])\n\
         i = t.schema.get_field_index('sms_subscribed')\n\
         t = t.set_column(i, t.schema.field(i), pa.array([False] * t.num_rows))\n\
         pq.write_table(t, sys.argv[1])",
        customers_file.to_str().unwrap(),
    ]));
    assert_eq!(cleared.code, 0, "{cleared:?}");
    let generic = project.path().join("out-generic-without-sms");
    night(project.path(), &without_sms, &generic);
    assert_same_outputs(&generic, &out, &COMPARED_OUTPUTS, AS_OF);
    let unmatched = &record["unmatched"];
    assert_eq!(
        unmatched["orders"]["without_customer"], added["guest_orders"],
        "{record}"
    );
    assert_eq!(
        unmatched["checkouts"]["without_customer"], added["guest_checkouts"],
        "{record}"
    );
}
