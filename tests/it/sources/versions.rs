//! Rows that change (docs/sources.md, "Rows that change"): a landing written as an append-only
//! connector writes it (`versions.py land`), with refunds and cancellations exported later,
//! re-deliveries, deletion stubs, versions at exactly midnight or without a time. Nights
//! run as the files arrive, each checked against the rows in force that `versions.py`
//! computes from the README's sentences; then the last night again with `--full`, and an
//! early night again as a backfill with every file landed: each must publish the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{assert_same_outputs, latest_record, run, segflow};

const TABLES: [&str; 3] = ["orders_in_force", "customers_in_force", "paid_orders"];

fn python(args: &[&str]) -> crate::support::Outcome {
    crate::support::python_script("versions.py", args)
}

/// A project reading `data` with the versioned sources, the shipped `paid_orders`
/// (incremental) and two steps that publish the rows in force as they are.
fn project(dir: &Path, data: &Path) -> PathBuf {
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    std::fs::write(
        dir.join("orders_in_force.sql"),
        "SELECT order_id, customer_id, status, total_amount, refunded_amount FROM orders",
    )
    .unwrap();
    std::fs::write(
        dir.join("customers_in_force.sql"),
        "SELECT customer_id, email_subscribed FROM customers",
    )
    .unwrap();
    let pipeline = dir.join("versions.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: versions\n\
             timezone: Europe/Oslo\n\
             vars: {{ currency: NOK }}\n\
             sources:\n  \
               customers: {{ url: {data}/customers/, key: customer_id, version: updated_at }}\n  \
               orders:\n    \
                 url: {data}/orders/\n    \
                 key: order_id\n    \
                 version: updated_at\n    \
                 deleted: deleted_at\n\
             steps:\n  \
               - {{ name: paid_orders, sql: {paid}, incremental: {{ source: orders, time: ordered_at }} }}\n  \
               - {{ name: orders_in_force, sql: orders_in_force.sql }}\n  \
               - {{ name: customers_in_force, sql: customers_in_force.sql }}\n\
             outputs:\n{outputs}",
            data = data.display(),
            paid = queries.join("paid_orders.sql").display(),
            outputs = TABLES
                .iter()
                .map(|t| format!("  - {{ table: {t}, url: \"${{SEGFLOW_OUT}}/{t}/\" }}\n"))
                .collect::<String>(),
        ),
    )
    .unwrap();
    pipeline
}

/// Copies the files of `from` landed by the morning after `night` (their names start with
/// the day they were written) into `to`.
fn land_until(from: &Path, to: &Path, night: &str) {
    let next = chrono::NaiveDate::parse_from_str(night, "%Y-%m-%d")
        .unwrap()
        .succ_opt()
        .unwrap()
        .format("%Y_%m_%d")
        .to_string();
    for table in ["customers", "orders"] {
        std::fs::create_dir_all(to.join(table)).unwrap();
        for entry in std::fs::read_dir(from.join(table)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name[..10] <= *next && !to.join(table).join(&name).exists() {
                std::fs::copy(&path, to.join(table).join(&name)).unwrap();
            }
        }
    }
}

/// Runs one night; returns how `paid_orders` had its files (computed, reused) and the run
/// record.
fn run_night(
    pipeline: &Path,
    as_of: &str,
    state: &Path,
    out: &Path,
    full: bool,
) -> (Vec<u64>, serde_json::Value) {
    let mut command = segflow();
    command.env("SEGFLOW_OUT", out).args([
        "run",
        pipeline.to_str().unwrap(),
        "--as-of",
        as_of,
        "--state",
        state.to_str().unwrap(),
    ]);
    if full {
        command.arg("--full");
    }
    let ran = run(&mut command);
    assert_eq!(ran.code, 0, "{as_of} (full: {full}): {ran:?}");
    let latest = latest_record("versions", state, as_of);
    let paid = latest["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "paid_orders")
        .unwrap();
    let files = ["computed", "reused"].map(|k| paid["files"][k].as_u64().unwrap());
    (files.to_vec(), latest)
}

#[test]
fn nights_backfills_and_incremental_runs_see_the_rows_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let landed = python(&["land", landing.to_str().unwrap(), "7"]);
    assert_eq!(landed.code, 0, "{landed:?}");
    let arrived = dir.path().join("arrived");
    let pipeline = project(dir.path(), &arrived);
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));

    // Nights as the files arrive, over the switch to summer time in Oslo (2026-03-29).
    let nights = ["2026-03-20", "2026-03-28", "2026-03-29", "2026-03-30"];
    let mut reuse_seen = false;
    for night in nights {
        land_until(&landing, &arrived, night);
        let (files, record) = run_night(&pipeline, night, &state, &out, false);
        reuse_seen |= files[1] > 0;
        // The run record counts what each versioned source set aside.
        let orders = &record["versions"]["orders"];
        assert!(orders["set_aside"].as_u64().unwrap() > 0, "{record}");
        assert!(orders["deleted"].as_u64().unwrap() > 0, "{record}");
        assert!(record["versions"]["customers"].is_object(), "{record}");
        assert_rules_hold(&arrived, &out, night);
        // Each night, the newest file and the older files that it supersedes rows of are
        // computed again; the rest is kept.
        assert!(files[0] > 0, "{night}: {files:?}");
    }
    assert!(reuse_seen, "no night reused a kept file");

    // The last night with --full, into another state and outputs: the same rows.
    let last = nights[nights.len() - 1];
    let full_out = dir.path().join("out-full");
    run_night(
        &pipeline,
        last,
        &dir.path().join("state-full"),
        &full_out,
        true,
    );
    assert_same_outputs(&out, &full_out, &TABLES, last);

    // An early night again, as a backfill with a fresh state, after its keys were exported
    // again with later stamps (refunds, cancellations, deletions, re-deliveries): the same
    // rows as the night.
    let early = nights[1];
    land_until(&landing, &arrived, "2026-04-15");
    let night_files = dir.path().join("night-files");
    land_until(&landing, &night_files, early);
    let reexported = dir.path().join("reexported");
    let late = python(&[
        "late",
        arrived.to_str().unwrap(),
        night_files.to_str().unwrap(),
        early,
        reexported.to_str().unwrap(),
    ]);
    assert_eq!(late.code, 0, "{late:?}");
    let backfill = project(dir.path(), &reexported);
    let again = dir.path().join("out-backfill");
    run_night(
        &backfill,
        early,
        &dir.path().join("state-backfill"),
        &again,
        false,
    );
    assert_same_outputs(&out, &again, &TABLES, early);

    // With everything landed (orders first exported after the night among them) and the
    // nights' kept files: the rows in force of all the files.
    let pipeline = project(dir.path(), &arrived);
    let later = dir.path().join("out-later");
    run_night(&pipeline, early, &state, &later, false);
    assert_rules_hold(&arrived, &later, early);
}

/// What `out` published for `night` is the rows in force of the files in `data`, by the
/// README's rules (`versions.py check`).
fn assert_rules_hold(data: &Path, out: &Path, night: &str) {
    let checked = python(&[
        "check",
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        night,
    ]);
    assert_eq!(checked.code, 0, "{night}: {checked:?}");
}

/// Writes `rows` (order_id, updated_at as text, refunded_amount) as one orders file.
fn orders_file(path: &Path, updated_type: &str, rows: &[(i64, &str, i64)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let code = format!(
        "import pyarrow as pa, pyarrow.parquet as pq, datetime as dt\n\
         rows = [{rows}]\n\
         ts = lambda s: dt.datetime.fromisoformat(s)\n\
         updated = [ts(r[1]) for r in rows] if '{updated_type}' == 'timestamp' else [r[1] for r in rows]\n\
         pq.write_table(pa.table({{'order_id': [r[0] for r in rows], 'customer_id': [1] * len(rows),\n\
           'ordered_at': pa.array([ts('2026-03-01T10:00:00')] * len(rows), pa.timestamp('us', 'UTC')),\n\
           'total_amount': [10] * len(rows), 'status': ['paid'] * len(rows),\n\
           'refunded_amount': [r[2] for r in rows], 'currency': ['NOK'] * len(rows),\n\
           'updated_at': updated,\n\
           'deleted_at': pa.array([None] * len(rows), pa.timestamp('us', 'UTC'))}}), '{path}')\n",
        rows = rows
            .iter()
            .map(|(id, at, refunded)| format!("({id}, '{at}', {refunded})"))
            .collect::<Vec<_>>()
            .join(", "),
        path = path.display(),
    );
    let wrote = crate::support::run(Command::new("python3").args(["-c", &code]));
    assert_eq!(wrote.code, 0, "{wrote:?}");
}

#[test]
fn versions_that_cannot_be_told_apart_fail_the_run_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("customers")).unwrap();
    let customers = "import pyarrow as pa, pyarrow.parquet as pq, datetime as dt\n\
         t = pa.array([dt.datetime(2026, 1, 1)], pa.timestamp('us', 'UTC'))\n\
         pq.write_table(pa.table({'customer_id': [1], 'email_subscribed': [True], 'updated_at': t}), 'CUSTOMERS')\n"
        .replace(
            "CUSTOMERS",
            data.join("customers/a.parquet").to_str().unwrap(),
        );
    let wrote = crate::support::run(Command::new("python3").args(["-c", &customers]));
    assert_eq!(wrote.code, 0, "{wrote:?}");
    let pipeline = project(dir.path(), &data);
    let run_it = || {
        run(segflow().env("SEGFLOW_OUT", dir.path().join("out")).args([
            "run",
            pipeline.to_str().unwrap(),
            "--as-of",
            "2026-03-10",
        ]))
    };

    // Two rows of order 7 stamped with one time in one file, with other amounts.
    let orders = data.join("orders/2026_03_02_0_0.parquet");
    orders_file(
        &orders,
        "timestamp",
        &[
            (7, "2026-03-01T12:00:00+00:00", 0),
            (7, "2026-03-01T12:00:00+00:00", 5),
            (8, "2026-03-01T12:00:00+00:00", 0),
        ],
    );
    let failed = run_it();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains(
            "source 'orders': 1 order_id value is on different rows of one file with the same updated_at (for example order_id 7, on 2 rows)"
        ),
        "{failed:?}"
    );
    // Alike, they count once; in two files, the one listed later wins.
    orders_file(
        &orders,
        "timestamp",
        &[
            (7, "2026-03-01T12:00:00+00:00", 5),
            (7, "2026-03-01T12:00:00+00:00", 5),
        ],
    );
    orders_file(
        &data.join("orders/2026_03_03_0_0.parquet"),
        "timestamp",
        &[(7, "2026-03-01T12:00:00+00:00", 6)],
    );
    let ran = run_it();
    assert_eq!(ran.code, 0, "{ran:?}");
    let published = crate::support::column_values(
        &dir.path().join("out"),
        "orders_in_force",
        "2026-03-10",
        "refunded_amount",
    );
    assert_eq!(published, vec!["6"]);

    // A version column that is not a timestamp.
    orders_file(&orders, "string", &[(7, "2026-03-01", 5)]);
    std::fs::remove_file(data.join("orders/2026_03_03_0_0.parquet")).unwrap();
    let failed = run_it();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains(
            "source 'orders': 'updated_at' is a Utf8 column; as a version column it must be a timestamp"
        ),
        "{failed:?}"
    );
}

/// `segflow generate --reexport-changes --duplicates`: the same shop landed as a connector
/// lands it. At the end date every change is in force, so the night publishes what the shop
/// of one final row per order does; every row the connector repeated is set aside.
#[test]
fn a_generated_shop_landed_by_a_connector_publishes_what_its_final_rows_do() {
    use crate::support::{COMPARED_OUTPUTS, END, Project, Size, generate_shop, read_parquet, rows};
    let project = Project::new(Size::Small);
    // The same shop as a connector lands it: generated so, beside the cached one.
    let landed = project.path().join("landed");
    generate_shop(
        Size::Small.customers(),
        Size::Small.orders(),
        &landed,
        &["--reexport-changes", "--duplicates", "0.02"],
    );
    let pipeline = project.pipeline();
    let night = |data: &Path, name: &str| {
        let (out, state) = (
            project.path().join(name),
            project.path().join(format!("{name}-state")),
        );
        let mut command = project.command(&[
            "run",
            pipeline.to_str().unwrap(),
            "--as-of",
            END,
            "--state",
            state.to_str().unwrap(),
        ]);
        command.env("SEGFLOW_DATA", data).env("SEGFLOW_OUT", &out);
        let ran = run(&mut command);
        assert_eq!(ran.code, 0, "{name}: {ran:?}");
        (out, latest_record("nightly_segments", &state, END))
    };
    let (final_rows, _) = night(&project.data(), "out-final");
    let (connector, record) = night(&landed, "out-landed");
    assert_same_outputs(&final_rows, &connector, &COMPARED_OUTPUTS, END);
    let repeated: usize = std::fs::read_dir(landed.join("orders"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with("changes-") || name.starts_with("duplicates-")
        })
        .map(|path| rows(&read_parquet(&path)))
        .sum();
    assert!(repeated > 0, "the connector repeated rows");
    assert_eq!(
        record["versions"]["orders"]["set_aside"].as_u64(),
        Some(repeated as u64),
        "{record}"
    );
}
