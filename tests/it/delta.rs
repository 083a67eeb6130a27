//! Outputs published as Delta Lake tables (`format: delta`), read back by Delta readers that
//! know nothing of segflow: the `deltalake` Python package and polars (`.ci/run` installs
//! both).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{AS_OF, Outcome, Project, SHIPPED_OUTPUTS, outcome};

/// A copy of the shipped pipeline with every output published as Delta.
fn delta_pipeline(project: &Project) -> PathBuf {
    let shipped = std::fs::read_to_string(project.pipeline()).unwrap();
    let mut outputs = 0;
    let text: String = shipped
        .lines()
        .map(|line| match line.strip_suffix("/\" }") {
            Some(start) if line.trim_start().starts_with("- { table:") => {
                outputs += 1;
                format!("{start}/\", format: delta }}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert_eq!(
        outputs,
        SHIPPED_OUTPUTS.len(),
        "every shipped output edited"
    );
    let path = project.path().join("pipelines/delta.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_delta(project: &Project, pipeline: &Path, as_of: &str, out: &Path) -> Outcome {
    outcome(
        project
            .command(&["run", pipeline.to_str().unwrap(), "--as-of", as_of])
            .env("SEGFLOW_OUT", out)
            .output()
            .unwrap(),
    )
}

/// Runs a Python script of Delta readers with `args`; its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let ran = outcome(
        Command::new("python3")
            .args(["-c", script])
            .args(args)
            .output()
            .unwrap(),
    );
    assert_eq!(
        ran.code, 0,
        "the Delta readers failed (bash .ci/run installs deltalake and polars): {ran:?}"
    );
    ran.stdout
}

/// Each table's rows of one date, read by `deltalake` (the table's log, filtered on the
/// partition) and by polars, against the Parquet format's files of the same run inputs
/// (those its manifest lists): the same rows, run ids apart.
const SAME_AS_PARQUET: &str = r#"
import json, sys, datetime
import deltalake, polars as pl, pyarrow as pa, pyarrow.parquet as pq

delta_out, parquet_out, as_of, tables = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
day = datetime.date.fromisoformat(as_of)

def rows(table, drop):
    kept = [c for c in table.column_names if c not in drop]
    return sorted(map(repr, table.select(kept).to_pylist()))

for name in tables:
    manifest = json.load(open(f"{parquet_out}/{name}/_segflow/manifests/as_of={as_of}.json"))
    files = [f"{parquet_out}/{name}/{f['path']}" for f in manifest["files"]]
    parquet = pq.read_table(files, partitioning=None)
    dt = deltalake.DeltaTable(f"{delta_out}/{name}")
    delta = dt.to_pyarrow_table(filters=[("as_of", "=", day)])
    # segment_membership has an as_of column of its own; the partition column is the date.
    assert rows(delta, {"as_of", "run_id"}) == rows(parquet, {"as_of", "run_id"}), name
    assert delta["as_of"].type == pa.date32(), delta.schema
    frame = pl.read_delta(f"{delta_out}/{name}").filter(pl.col("as_of") == day)
    assert frame.height == parquet.num_rows == manifest["rows"], (name, frame.height)
    print(name, parquet.num_rows)
"#;

#[test]
fn delta_outputs_hold_what_parquet_outputs_hold_for_delta_readers() {
    let project = Project::new(600, 2_400);
    let parquet = project.run_nightly(AS_OF);
    assert_eq!(parquet.code, 0, "{parquet:?}");
    let pipeline = delta_pipeline(&project);
    let delta_out = project.path().join("delta");
    let delta = run_delta(&project, &pipeline, AS_OF, &delta_out);
    assert_eq!(delta.code, 0, "{delta:?}");
    let parquet_out = project.out();
    let mut args = vec![
        delta_out.to_str().unwrap(),
        parquet_out.to_str().unwrap(),
        AS_OF,
    ];
    args.extend(SHIPPED_OUTPUTS);
    let read = python(SAME_AS_PARQUET, &args);
    assert_eq!(read.lines().count(), SHIPPED_OUTPUTS.len(), "{read}");
}

/// One table's history as `deltalake` reads it: its commits, each date's files now and at
/// the first version, and the rows of the first date at the first version and now.
const HISTORY: &str = r#"
import datetime, json, os, sys
import deltalake

path, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
first_day, second_day = (datetime.date.fromisoformat(d) for d in (first, second))
now = deltalake.DeltaTable(path)
then = deltalake.DeltaTable(path, version=0)

def runs(table, date):
    # Published files are part-<run id>-<index>.zstd.parquet.
    return sorted({os.path.basename(f).split("-")[1] for f in table.file_uris([("as_of", "=", date)])})

def rows(table, day):
    return table.to_pyarrow_table(filters=[("as_of", "=", day)]).num_rows

print(json.dumps({
    "versions": now.version() + 1,
    "operations": [h["operation"] for h in reversed(now.history())],
    "runs": [h.get("segflow.run_id") for h in reversed(now.history())],
    "first_now": runs(now, first),
    "first_then": runs(then, first),
    "second_now": runs(now, second),
    "second_at_1": runs(deltalake.DeltaTable(path, version=1), second),
    "first_rows_then": rows(then, first_day),
    "first_rows_now": rows(now, first_day),
    "first_publications": now.transaction_version(f"segflow/nightly_segments/customer_features/as_of={first}"),
}))
"#;

#[test]
fn each_publication_is_one_delta_commit_that_replaces_only_its_date() {
    let project = Project::new(300, 1_200);
    let pipeline = delta_pipeline(&project);
    let out = project.path().join("delta");
    let second = "2026-04-01";
    for as_of in [AS_OF, second, AS_OF] {
        let run = run_delta(&project, &pipeline, as_of, &out);
        assert_eq!(run.code, 0, "{as_of}: {run:?}");
    }
    let table = out.join("customer_features");
    let history: serde_json::Value =
        serde_json::from_str(&python(HISTORY, &[table.to_str().unwrap(), AS_OF, second])).unwrap();
    assert_eq!(history["versions"], 3, "{history}");
    assert_eq!(
        history["operations"],
        serde_json::json!(["CREATE TABLE", "WRITE", "WRITE"]),
        "{history}"
    );
    // Each commit is a run's; the re-run replaced the first date's files, and only them.
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(
        history["first_then"],
        serde_json::json!([runs[0]]),
        "{history}"
    );
    assert_eq!(
        history["second_now"],
        serde_json::json!([runs[1]]),
        "{history}"
    );
    assert_eq!(
        history["first_now"],
        serde_json::json!([runs[2]]),
        "{history}"
    );
    assert_eq!(history["second_now"], history["second_at_1"], "{history}");
    assert_eq!(history["first_publications"], 2, "{history}");
    // Time travel: the first version still reads the first run's rows.
    assert_eq!(history["first_rows_then"], history["first_rows_now"]);
    assert!(history["first_rows_now"].as_u64().unwrap() > 0);
}
