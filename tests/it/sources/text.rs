//! CSV and newline-delimited JSON sources: the same shop written as Parquet, as CSV the way
//! exports write it, and as JSON lines publishes the same outputs; bad text files fail naming
//! the file, the column or the value.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    AS_OF, COMPARED_OUTPUTS, Project, Size, assert_same_outputs, with_source_settings,
};

/// The project's Parquet data written again as CSV and JSON (oracles/text_sources.py),
/// in `csv/` and `json/` beside `data/`.
fn write_text_copies(project: &Project) -> (PathBuf, PathBuf) {
    let script = crate::support::oracle("text_sources.py");
    let (csv, json) = (project.path().join("csv"), project.path().join("json"));
    let written = crate::support::run(Command::new("python3").arg(script).args([
        &project.data(),
        &csv,
        &json,
    ]));
    assert_eq!(written.code, 0, "{written:?}");
    (csv, json)
}

/// A copy of the nightly pipeline whose sources are of `format`, with `settings` added to
/// the source named.
fn text_pipeline(
    project: &Project,
    name: &str,
    format: &str,
    settings: &[(&str, &str)],
) -> PathBuf {
    let text = std::fs::read_to_string(project.pipeline()).unwrap();
    let edited = with_source_settings(&text, |table| {
        let own = settings.iter().filter(|(named, _)| *named == table);
        std::iter::once(format!("format: {format}"))
            .chain(own.map(|(_, setting)| setting.to_string()))
            .collect()
    });
    let path = project.path().join(format!("pipelines/{name}.yaml"));
    std::fs::write(&path, edited).unwrap();
    path
}

fn preview(
    project: &Project,
    pipeline: &Path,
    data: &Path,
    into: &Path,
) -> crate::support::Outcome {
    crate::support::run(
        project
            .command(&[
                "run",
                pipeline.to_str().unwrap(),
                "--as-of",
                AS_OF,
                "--preview",
                into.to_str().unwrap(),
            ])
            .env("SEGFLOW_DATA", data),
    )
}

#[test]
fn csv_and_json_exports_publish_what_parquet_publishes() {
    let project = Project::new(Size::Small);
    // NULL refunds, unknown sign-up times, blank emails, orders of unknown customers.
    let dirty = crate::support::run(
        Command::new("python3")
            .arg(crate::support::oracle("cross_check.py"))
            .args(["dirty", project.data().to_str().unwrap(), AS_OF]),
    );
    assert_eq!(dirty.code, 0, "{dirty:?}");
    let baseline = project.run_nightly(AS_OF);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let (csv, json) = write_text_copies(&project);

    let csv_pipeline = text_pipeline(
        &project,
        "from_csv",
        "csv",
        &[
            ("customers", r#"csv: { delimiter: ";" }"#),
            ("checkouts", "timezone: Europe/Oslo"),
        ],
    );
    let json_pipeline = text_pipeline(&project, "from_json", "json", &[]);
    // A night with no orders leaves an empty file, or a header alone.
    std::fs::write(json.join("orders/part-2.jsonl"), "").unwrap();
    std::fs::write(
        csv.join("orders/part-2.csv"),
        "order_id,customer_id,ordered_at,total_amount,currency,status,refunded_amount,channel,updated_at\n",
    )
    .unwrap();
    for (pipeline, data) in [(&csv_pipeline, &csv), (&json_pipeline, &json)] {
        let into = tempfile::tempdir().unwrap();
        let run = preview(&project, pipeline, data, into.path());
        assert_eq!(run.code, 0, "{}: {run:?}", pipeline.display());
        assert_same_outputs(into.path(), &project.out(), &COMPARED_OUTPUTS, AS_OF);
    }
}

#[test]
fn bad_text_sources_fail_naming_the_file_column_or_value() {
    let project = Project::new(Size::Tiny);
    let (csv, _json) = write_text_copies(&project);
    let pipeline = text_pipeline(
        &project,
        "from_csv",
        "csv",
        &[("customers", r#"csv: { delimiter: ";" }"#)],
    );
    let into = tempfile::tempdir().unwrap();
    let fails = |needles: &[&str]| {
        let run = preview(&project, &pipeline, &csv, into.path());
        assert_eq!(run.code, 1, "{run:?}");
        for needle in needles {
            assert!(run.stderr.contains(needle), "{needle}: {run:?}");
        }
    };
    let first = csv.join("orders/part-0.csv");
    let first_text = std::fs::read_to_string(&first).unwrap();
    let orders = csv.join("orders/part-1.csv");
    let original = std::fs::read_to_string(&orders).unwrap();

    // A renamed column: named, with the file and a guess.
    std::fs::write(&first, first_text.replacen("ordered_at", "orderd_at", 1)).unwrap();
    fails(&[
        "source 'orders'",
        "part-0.csv has no column 'ordered_at'",
        "did you mean 'orderd_at'?",
    ]);
    std::fs::write(&first, &first_text).unwrap();
    // Two files with different columns.
    std::fs::write(&orders, original.replacen(",channel", ",sales_channel", 1)).unwrap();
    fails(&[
        "part-1.csv has the columns",
        "part-0.csv has",
        "same header line",
    ]);
    // A value that is not its column's type: the file and the value. In an order the night
    // reads (placed days before as_of), whose amount the run must convert.
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    let days_before =
        (AS_OF.parse::<chrono::NaiveDate>().unwrap() - chrono::Days::new(2)).to_string();
    let read = 1 + lines[1..]
        .iter()
        .position(|line| line.split(',').nth(2).unwrap() < days_before.as_str())
        .expect("an order of the second file placed before as_of");
    let amount = lines[read].split(',').nth(3).unwrap().to_string();
    lines[read] = lines[read].replacen(&format!(",{amount},"), ",12.3x,", 1);
    std::fs::write(&orders, lines.join("\n") + "\n").unwrap();
    fails(&["source 'orders'", "part-1.csv", "12.3x"]);
    // More decimal places than the column keeps: refused, not cut to 12.34.
    std::fs::write(
        &orders,
        lines.join("\n").replace(",12.3x,", ",12.349,") + "\n",
    )
    .unwrap();
    fails(&[
        "part-1.csv",
        "column total_amount: '12.349' is not a decimal(12,2)",
        "more decimal places",
    ]);
    // A timestamp segflow cannot read: the column and the value.
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    let when = lines[2].split(',').nth(2).unwrap().to_string();
    lines[2] = lines[2].replacen(&when, "31/03/2026 10:00", 1);
    std::fs::write(&orders, lines.join("\n") + "\n").unwrap();
    fails(&[
        "part-1.csv",
        "column ordered_at: '31/03/2026 10:00' is not a timestamp",
    ]);
    std::fs::write(&orders, &original).unwrap();

    // Spec mistakes, with their lines.
    let spec = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, spec.replacen("format: csv", "format: cvs", 1)).unwrap();
    fails(&[
        "format 'cvs' is not one segflow reads",
        "did you mean 'csv'?",
        "from_csv.yaml:",
    ]);
    std::fs::write(
        &pipeline,
        spec.replacen(
            r#"csv: { delimiter: ";" }"#,
            r#"csv: { delimiter: ";;" }"#,
            1,
        ),
    )
    .unwrap();
    fails(&["the CSV delimiter ';;' must be one ASCII character"]);
    std::fs::write(&pipeline, &spec).unwrap();
    let run = preview(&project, &pipeline, &csv, into.path());
    assert_eq!(run.code, 0, "the files read again once mended: {run:?}");
}

#[test]
fn csv_without_a_header_reads_columns_in_the_order_the_spec_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("export")).unwrap();
    std::fs::write(
        root.join("export/orders.csv"),
        "9001,17,12.50\n9002,18,-3.25\n",
    )
    .unwrap();
    std::fs::write(
        root.join("q.sql"),
        "SELECT order_id, customer_id, amount FROM orders ORDER BY order_id",
    )
    .unwrap();
    // Listed on one line and not alphabetically: the file's order, not the names', counts.
    std::fs::write(
        root.join("p.yaml"),
        "name: headerless\n\
         sources:\n  \
           orders:\n    \
             url: export/\n    \
             format: csv\n    \
             csv: { header: false }\n    \
             columns: { order_id: bigint, customer_id: bigint, amount: 'decimal(8,2)' }\n\
         steps:\n  \
           - { name: listed, sql: q.sql }\n\
         outputs:\n  \
           - { table: listed, url: out/listed/ }\n",
    )
    .unwrap();
    let shown = crate::support::run(
        crate::support::segflow()
            .current_dir(root)
            .args(["show", "p.yaml", "LISTED"]),
    );
    assert_eq!(shown.code, 0, "{shown:?}");
    let rows = crate::support::shown_cells(&shown.stdout);
    assert_eq!(
        rows,
        [
            vec!["order_id", "customer_id", "amount"],
            vec!["9001", "17", "12.50"],
            vec!["9002", "18", "-3.25"],
        ],
        "{shown:?}"
    );
}
