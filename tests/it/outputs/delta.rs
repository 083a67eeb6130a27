//! Outputs published as Delta Lake tables (`format: delta`), read back by Delta readers that
//! know nothing of segflow: the `deltalake` Python package and polars (`.ci/run` installs
//! both).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::delta::{CONSISTENT, delta_pipeline, outputs_as_delta, python};
use crate::support::{AS_OF, COMMAND_DEADLINE, Outcome, Project, SHIPPED_OUTPUTS, Size, Spawned};

fn run_delta(project: &Project, pipeline: &Path, as_of: &str, out: &Path) -> Outcome {
    crate::support::run(
        project
            .command(&["run", pipeline.to_str().unwrap(), "--as-of", as_of])
            .env("SEGFLOW_OUT", out),
    )
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

/// DuckDB 1.4 with its `delta` extension, in the virtualenv `.ci/run` makes for them: each
/// table's rows of one date, as many as the Parquet format's manifest counts.
const DUCKDB_DELTA: &str = r#"
import glob, json, sys
import duckdb

delta_out, parquet_out, as_of, tables = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
extension = glob.glob(f"{sys.prefix}/lib/python*/site-packages/duckdb_ext/extensions/*/*/delta.duckdb_extension")[0]
con = duckdb.connect()
con.execute(f"LOAD '{extension}'")
for name in tables:
    manifest = json.load(open(f"{parquet_out}/{name}/_segflow/manifests/as_of={as_of}.json"))
    rows = con.sql(f"SELECT count(*) FROM delta_scan('{delta_out}/{name}') "
                   f"WHERE as_of = DATE '{as_of}'").fetchall()[0][0]
    assert rows == manifest["rows"], (name, rows, manifest["rows"])
    print(name, rows)
"#;

/// The Python of the virtualenv with DuckDB's delta extension.
fn duckdb_delta_python() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let python = Path::new(&home).join(".cache/segflow/duckdb-delta/bin/python");
    assert!(
        python.exists(),
        "{} is missing: bash .ci/run makes it (duckdb 1.4 with duckdb-ext-delta)",
        python.display()
    );
    python
}

#[test]
fn delta_outputs_hold_what_parquet_outputs_hold_for_delta_readers() {
    let project = Project::new(Size::Small);
    let pipeline = delta_pipeline(&project.pipeline());
    let delta_out = project.path().join("delta");
    let parquet_out = project.out();
    // Two nights: the second reads the first's publications (segment changes, the win-back
    // cooldown, the anomaly checks), from the Delta tables' logs in the Delta runs.
    for as_of in [AS_OF, "2026-04-01"] {
        let parquet = project.run_nightly(as_of);
        assert_eq!(parquet.code, 0, "{parquet:?}");
        let delta = run_delta(&project, &pipeline, as_of, &delta_out);
        assert_eq!(delta.code, 0, "{delta:?}");
        let mut args = vec![
            delta_out.to_str().unwrap(),
            parquet_out.to_str().unwrap(),
            as_of,
        ];
        args.extend(SHIPPED_OUTPUTS);
        let read = python(SAME_AS_PARQUET, &args);
        assert_eq!(read.lines().count(), SHIPPED_OUTPUTS.len(), "{read}");
        let duckdb = crate::support::run(
            Command::new(duckdb_delta_python())
                .args(["-c", DUCKDB_DELTA])
                .args(&args),
        );
        assert_eq!(duckdb.code, 0, "{duckdb:?}");
        assert_eq!(
            duckdb.stdout, read,
            "DuckDB counts the rows deltalake and polars read"
        );
    }
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
    "first_token": now.transaction_version(f"segflow/token/as_of={first}"),
    "first_token_then": deltalake.DeltaTable(path, version=1).transaction_version(f"segflow/token/as_of={first}"),
}))
"#;

#[test]
fn each_publication_is_one_delta_commit_that_replaces_only_its_date() {
    let project = Project::new(Size::Small);
    let pipeline = delta_pipeline(&project.pipeline());
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
    let runs = history["runs"].as_array().unwrap().clone();
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
    // The date's fencing token moved on with its second publication.
    let token = |key: &str| history[key].as_u64().unwrap_or_else(|| panic!("{history}"));
    assert!(
        token("first_token") > token("first_token_then"),
        "{history}"
    );
    // Time travel: the first version still reads the first run's rows.
    assert_eq!(history["first_rows_then"], history["first_rows_now"]);
    assert!(history["first_rows_now"].as_u64().unwrap() > 0);

    // Vacuum keeping nothing older than now: the replaced files of the first run go, and
    // only they; the latest version reads as before.
    let vacuum = |extra: &[&str]| {
        let mut args = vec!["vacuum", pipeline.to_str().unwrap(), "--retain", "0s"];
        args.extend(extra);
        crate::support::run(project.command(&args).env("SEGFLOW_OUT", &out))
    };
    let listed = vacuum(&["--dry-run"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let first_run = runs[0].as_str().unwrap();
    let files: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .collect();
    assert!(!files.is_empty(), "{listed:?}");
    assert!(
        files
            .iter()
            .all(|file| file.contains(&format!("part-{first_run}-"))),
        "{listed:?}"
    );
    let vacuumed = vacuum(&[]);
    assert_eq!(vacuumed.code, 0, "{vacuumed:?}");
    assert!(
        vacuumed
            .stdout
            .contains("customer_features: deleted 1 files"),
        "{vacuumed:?}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&python(LATEST_ROWS, &[table.to_str().unwrap(), AS_OF])).unwrap();
    assert_eq!(after, history["first_rows_now"]);
}

const LATEST_ROWS: &str = r#"
import datetime, sys
import deltalake
day = datetime.date.fromisoformat(sys.argv[2])
print(deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(filters=[("as_of", "=", day)]).num_rows)
"#;

/// Each Delta table under `out` as `deltalake` reads it: for each date, the runs whose files
/// it holds, the commits that published it (from their commit info), and its fencing token
/// (the version of its transaction).
const TABLES: &str = r#"
import json, os, sys
import deltalake

out, dates = sys.argv[1], sys.argv[2:]
report = {}
for name in sorted(os.listdir(out)):
    table = deltalake.DeltaTable(f"{out}/{name}")
    history = list(reversed(table.history()))
    report[name] = {date: {
        "runs": sorted({os.path.basename(f).split("-")[1]
                        for f in table.file_uris([("as_of", "=", date)])}),
        "commits": [h["segflow.run_id"] for h in history if h.get("segflow.as_of") == date],
        "token": table.transaction_version(f"segflow/token/as_of={date}"),
    } for date in dates}
print(json.dumps(report))
"#;

/// Two pipelines that publish the same Delta tables on the S3 test server (so they hold no
/// common lease), run at once: for different dates both land; for the same date, each table's
/// date holds the files of one run, the run whose commit is last in its log, and carries a
/// fencing token. A run that lost a race fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_delta_commits_on_s3_lose_none() {
    let (root, addr) = crate::support::s3::small_shop_on_s3().await;
    let pipelines: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let file = root.path().join(format!("pipelines/{name}.yaml"));
            crate::support::many_outputs(&file, name, 3, "s3://lake/raw", "s3://lake/delta", "");
            outputs_as_delta(&file);
            file
        })
        .collect();
    let run = |pipeline: &Path, as_of: &'static str| {
        let args = ["run", pipeline.to_str().unwrap(), "--as-of", as_of].map(String::from);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::support::s3::segflow_s3(addr, &args).await
        }
    };
    // A store that accepts a conditional write it should refuse is refused before any work.
    std::fs::create_dir(root.path().join("unfenced")).unwrap();
    let unfenced = root.path().join("pipelines/unfenced.yaml");
    crate::support::many_outputs(
        &unfenced,
        "unfenced",
        1,
        "s3://lake/raw",
        "s3://unfenced/d",
        "",
    );
    outputs_as_delta(&unfenced);
    let text = std::fs::read_to_string(&unfenced).unwrap().replace(
        "format: delta }",
        "format: delta, options: { aws_conditional_put: disabled } }",
    );
    std::fs::write(&unfenced, text).unwrap();
    let refused = run(&unfenced, AS_OF).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    for token in [
        "output 't000'",
        "s3://unfenced/d/t000/",
        "does not honour conditional",
    ] {
        assert!(refused.stderr.contains(token), "{token}: {refused:?}");
    }
    assert!(!root.path().join("unfenced/d/t000/_delta_log").exists());

    let second = "2026-04-01";
    let (a, b) = tokio::join!(run(&pipelines[0], AS_OF), run(&pipelines[1], second));
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");

    let (a, b) = tokio::join!(run(&pipelines[0], AS_OF), run(&pipelines[1], AS_OF));
    eprintln!(
        "the same-date race ended with exits {} and {}",
        a.code, b.code
    );
    assert!(
        a.code == 0 || b.code == 0,
        "one of them publishes: {a:?}\n{b:?}"
    );
    for lost in [&a, &b].into_iter().filter(|run| run.code != 0) {
        assert_eq!(lost.code, 2, "{lost:?}");
        assert!(
            lost.stderr
                .contains("published 2026-03-31 while this one was running"),
            "{lost:?}"
        );
    }

    let out = root.path().join("lake/delta");
    let report: serde_json::Value =
        serde_json::from_str(&python(TABLES, &[out.to_str().unwrap(), AS_OF, second])).unwrap();
    let tables = report.as_object().unwrap();
    assert_eq!(tables.len(), 3, "{report}");
    for (table, dates) in tables {
        let second = &dates[second];
        assert_eq!(
            second["commits"].as_array().unwrap().len(),
            1,
            "{table}: {second}"
        );
        let first = &dates[AS_OF];
        let commits = first["commits"].as_array().unwrap();
        assert!(commits.len() >= 2, "{table}: {first}");
        for date in [first, second] {
            assert!(date["token"].as_u64().is_some(), "{table}: {date}");
        }
        assert_eq!(
            first["runs"],
            serde_json::json!([commits.last().unwrap()]),
            "{table}: the date holds the last commit's files only: {first}"
        );
    }
}

/// Runs of the all-Delta pipeline killed with SIGKILL at moments of their own log, among them
/// between two outputs' commits: every table reads whole after each (the previous
/// publication or the new one of each table), and the next run publishes.
#[test]
fn sigkill_during_delta_publications_leaves_every_table_whole() {
    let project = Project::new(Size::Large);
    let pipeline = delta_pipeline(&project.pipeline());
    let out = project.path().join("delta");
    let baseline = run_delta(&project, &pipeline, AS_OF, &out);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let args = [
        "run",
        pipeline.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--lease-seconds",
        "1",
    ];
    let moments = [
        ("Step ready.", 10),
        ("Output published.", 1),
        ("Output published.", SHIPPED_OUTPUTS.len() / 2),
    ];
    for (event, nth) in moments {
        let mut command = project.command(&args);
        command
            .env("SEGFLOW_OUT", &out)
            .env("SEGFLOW_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = Spawned::start(&mut command, "a run to kill");
        let seen = child.kill_at(event, nth, COMMAND_DEADLINE);
        assert_eq!(
            seen, nth,
            "the run reached {event} #{nth} before it was killed"
        );
        let read = python(CONSISTENT, &[out.to_str().unwrap()]);
        assert_eq!(
            read.trim(),
            SHIPPED_OUTPUTS.len().to_string(),
            "after {event} #{nth}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    let after = run_delta(&project, &pipeline, AS_OF, &out);
    assert_eq!(after.code, 0, "{after:?}");
    let read = python(CONSISTENT, &[out.to_str().unwrap()]);
    assert_eq!(read.trim(), SHIPPED_OUTPUTS.len().to_string());
}

/// The same on the S3 test server, whose conditional writes the Delta commits rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_outputs_on_s3_hold_what_parquet_outputs_hold() {
    let (root, addr) = crate::support::s3::shop_on_s3().await;
    let pipeline = delta_pipeline(&root.path().join("pipelines/nightly_segments.yaml"));
    let run_on_s3 = |pipeline: &Path, out: &str| {
        let mut command = crate::support::s3::segflow_on_s3(addr);
        command
            .current_dir(root.path())
            .args(["run", pipeline.to_str().unwrap(), "--as-of", AS_OF])
            .env("SEGFLOW_OUT", out);
        crate::support::process::run_async(command)
    };
    let parquet = run_on_s3(
        &root.path().join("pipelines/nightly_segments.yaml"),
        "s3://lake/marts",
    )
    .await;
    assert_eq!(parquet.code, 0, "{parquet:?}");
    let delta = run_on_s3(&pipeline, "s3://lake/delta").await;
    assert_eq!(delta.code, 0, "{delta:?}");
    // The server keeps each object as a file under its folder, which the readers open.
    let lake = root.path().join("lake");
    let mut args = vec![
        lake.join("delta").to_str().unwrap().to_string(),
        lake.join("marts").to_str().unwrap().to_string(),
        AS_OF.to_string(),
    ];
    args.extend(SHIPPED_OUTPUTS.iter().map(|t| t.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let read = python(SAME_AS_PARQUET, &args);
    assert_eq!(read.lines().count(), SHIPPED_OUTPUTS.len(), "{read}");
}

/// A source read as a Delta table (`format: delta`): the files its log lists at the version
/// committed by the end of the night, not every file in the folder. The shop's orders as a
/// Delta table whose version 0 (before the night) holds them as generated and whose version
/// 1 (after it) refunds every order in full (`delta_source.py`) publish what the Parquet
/// files did; once version 1 is dated before the night, no order counts. A partitioned
/// table and a folder without a log are refused, naming the source and why.
#[test]
fn a_delta_source_is_read_at_its_version_of_the_night() {
    use crate::support::{assert_same_outputs, python_script, with_source_settings};
    let project = Project::new(Size::Small);
    let parquet = project.path().join("out-parquet");
    let ran = run_delta(&project, &project.pipeline(), AS_OF, &parquet);
    assert_eq!(ran.code, 0, "{ran:?}");

    let orders = project.data().join("orders");
    let written = python_script("delta_source.py", &[orders.to_str().unwrap(), AS_OF]);
    assert_eq!(written.code, 0, "{written:?}");
    let text = std::fs::read_to_string(project.pipeline()).unwrap();
    let edited = with_source_settings(&text, |table| {
        if table == "orders" {
            vec!["format: delta".to_string()]
        } else {
            Vec::new()
        }
    });
    assert_ne!(edited, text);
    std::fs::write(project.pipeline(), edited).unwrap();
    let night = project.path().join("out-night");
    let ran = run_delta(&project, &project.pipeline(), AS_OF, &night);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_same_outputs(&parquet, &night, &crate::support::COMPARED_OUTPUTS, AS_OF);

    let refund = orders.join("_delta_log/00000000000000000001.json");
    let touched = crate::support::run(Command::new("touch").args([
        "-d",
        &format!("{AS_OF} 12:00:00 UTC"),
        refund.to_str().unwrap(),
    ]));
    assert_eq!(touched.code, 0, "{touched:?}");
    let refunded = project.path().join("out-refunded");
    let ran = run_delta(&project, &project.pipeline(), AS_OF, &refunded);
    assert_eq!(ran.code, 0, "{ran:?}");
    let buyers = crate::support::column_values(&refunded, "rfm", AS_OF, "customer_id");
    assert_eq!(buyers.len(), 0, "every order refunded in full: no buyers");

    let written = python_script(
        "delta_source.py",
        &[orders.to_str().unwrap(), AS_OF, "partitioned"],
    );
    assert_eq!(written.code, 0, "{written:?}");
    let refused = run_delta(&project, &project.pipeline(), AS_OF, &refunded);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "source 'orders': the Delta table at file://{}/ is partitioned (by currency)",
            orders.display()
        )),
        "{refused:?}"
    );

    std::fs::remove_dir_all(orders.join("_delta_log")).unwrap();
    let refused = run_delta(&project, &project.pipeline(), AS_OF, &refunded);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "source 'orders': cannot read the Delta table at file://{}/",
            orders.display()
        )),
        "{refused:?}"
    );
}
