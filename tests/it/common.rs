//! Helpers shared by the integration tests: the real binary, sample data made by the real
//! `segflow generate`, a copy of the shipped pipeline to break, and Parquet readers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::s3::GatedShop;

use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A manifest as the README describes it to readers, read apart from segflow's own type.
#[derive(Debug, PartialEq, serde::Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub committed_at: chrono::DateTime<chrono::Utc>,
    pub rows: u64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub rows: u64,
}

pub const END: &str = "2026-06-30";

/// The ten labels of the R-F grid (rfm_labels.sql), best first.
pub const RF_GRID: [&str; 10] = [
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About To Sleep",
    "At Risk",
    "Cannot Lose Them",
    "Hibernating",
];
pub const AS_OF: &str = "2026-03-31";

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn segflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segflow"));
    command
        .env_remove("SEGFLOW_DATA")
        .env_remove("SEGFLOW_OUT")
        .env_remove("SEGFLOW_REPORT");
    command.env("SEGFLOW_LOG", "warn");
    command
}

/// `segflow demo` into `dir` with a small shop (500 customers), for tests of what the demo
/// leaves behind rather than of its size.
pub fn small_demo(dir: &Path) -> Outcome {
    run(segflow().args([
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--customers",
        "500",
        "--orders",
        "2000",
    ]))
}

/// Shops generated with fewer customers than this have too few repeat buyers, or too
/// alike, for the models' fits: their projects run the models with pinned parameters.
pub const PINNED_BELOW: u64 = 1_000;

/// Points the shipped pipeline of `project` at the models' pinned parameters, as the README
/// tells a shop too young for a fit to ("Predictions").
pub fn pin_models(project: &Path) {
    let path = project.join("pipelines/nightly_segments.yaml");
    let spec = std::fs::read_to_string(&path).unwrap();
    let pinned = spec
        .replace(
            "queries/purchase_model.sql",
            "queries/purchase_model_pinned.sql",
        )
        .replace("queries/spend_model.sql", "queries/spend_model_pinned.sql");
    assert_eq!(pinned.matches("_pinned.sql }").count(), 2, "{pinned}");
    std::fs::write(&path, pinned).unwrap();
}

pub fn outcome(output: std::process::Output) -> Outcome {
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `python3 tests/it/<script> <args>`: the tests' independent checks and data writers.
pub fn python_script(script: &str, args: &[&str]) -> Outcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it")
        .join(script);
    run(Command::new("python3").arg(path).args(args))
}

/// Runs `command` to its end, within [`COMMAND_DEADLINE`]: one that hangs is killed and
/// fails the test, naming itself, instead of holding CI for its 90 minutes.
pub fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Outcome {
    use std::io::Read;
    let command: &mut Command = command.borrow_mut();
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!(
                "{command:?} did not finish within {} s; its stderr:\n{stderr}",
                COMMAND_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    outcome(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// How long one command of the tests may take on a loaded 2-core machine: the slowest (a
/// night of the shipped pipeline on 40,000 customers, a cluster run) take well under a
/// minute.
pub const COMMAND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// The shipped pipeline wants an order in the last 36 hours of the as_of day. The tests'
/// shops are tiny (a few orders a week), so their nights often come days after the last
/// order; their copy of the pipeline lets orders be a year old. The freshness check has its
/// own tests on the shipped value (`checks.rs`, `scheduler.rs`).
pub const SHIPPED_FRESHNESS: &str = "freshness: { column: ordered_at, max_age: 36h }";
const TEST_FRESHNESS: &str = "freshness: { column: ordered_at, max_age: 400d }";

/// Relaxes the freshness check of the copy of the shipped pipeline in `project` (see
/// SHIPPED_FRESHNESS).
pub fn let_orders_age(project: &Path) {
    let shipped = project.join("pipelines/nightly_segments.yaml");
    let spec = std::fs::read_to_string(&shipped).unwrap();
    assert!(
        spec.contains(SHIPPED_FRESHNESS),
        "the shipped freshness check"
    );
    std::fs::write(
        &shipped,
        spec.replacen(SHIPPED_FRESHNESS, TEST_FRESHNESS, 1),
    )
    .unwrap();
}

/// The shipped pipeline's `text` with the lines `settings(table)` added to each of its
/// sources (those read from `${SEGFLOW_DATA:-data}/<table>/`).
pub fn with_source_settings(text: &str, settings: impl Fn(&str) -> Vec<String>) -> String {
    let mut edited = String::new();
    for line in text.lines() {
        edited.push_str(line);
        edited.push('\n');
        if let Some(table) = line
            .trim_start()
            .strip_prefix("url: ${SEGFLOW_DATA:-data}/")
            .and_then(|rest| rest.strip_suffix('/'))
        {
            for setting in settings(table) {
                edited.push_str(&format!("    {setting}\n"));
            }
        }
    }
    edited
}

/// The shipped segment-size check, and the same as a warning: for tests whose nights change
/// the input on purpose, far more than a real night would.
pub const SHIPPED_ANOMALY: &str = "anomaly: { by: segment, max_change: 50%, min_size: 100 } }";
pub const ANOMALY_AS_WARNING: &str =
    "anomaly: { by: segment, max_change: 50%, min_size: 100 }, severity: warn }";

/// `segflow generate` of a shop ending at [`END`] into `out`, with `extra` flags (how a
/// connector lands it: `--reexport-changes`, `--duplicates`).
pub fn generate_shop(customers: u64, orders: u64, out: &Path, extra: &[&str]) {
    let generated = run(segflow()
        .args([
            "generate",
            "--customers",
            &customers.to_string(),
            "--orders",
            &orders.to_string(),
            "--end",
            END,
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra));
    assert_eq!(generated.code, 0, "{generated:?}");
}

/// A scratch project: a copy of the shipped pipeline and queries, generated data in
/// `data/`, outputs in `out/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(customers: u64, orders: u64) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for folder in ["pipelines", "queries"] {
            copy_dir(&root.join(folder), &dir.path().join(folder));
        }
        let_orders_age(dir.path());
        if customers < PINNED_BELOW {
            pin_models(dir.path());
        }
        let project = Project { dir };
        generate_shop(customers, orders, &project.data(), &[]);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn pipeline(&self) -> PathBuf {
        self.path().join("pipelines/nightly_segments.yaml")
    }

    /// Puts the shipped freshness check back in the project's pipeline.
    pub fn with_shipped_freshness(&self) {
        let spec = std::fs::read_to_string(self.pipeline()).unwrap();
        assert!(spec.contains(TEST_FRESHNESS));
        let spec = spec.replacen(TEST_FRESHNESS, SHIPPED_FRESHNESS, 1);
        std::fs::write(self.pipeline(), spec).unwrap();
    }

    /// `segflow <args>` in the project folder, with data and outputs in the project.
    pub fn segflow(&self, args: &[&str]) -> Outcome {
        run(&mut self.command(args))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = segflow();
        command
            .current_dir(self.path())
            .env("SEGFLOW_DATA", self.data())
            .env("SEGFLOW_OUT", self.out())
            .args(args);
        command
    }

    pub fn run_nightly(&self, as_of: &str) -> Outcome {
        self.run_with_env(as_of, &[])
    }

    /// [`Project::run_nightly`] with more environment variables.
    pub fn run_with_env(&self, as_of: &str, env: &[(&str, &str)]) -> Outcome {
        let pipeline = self.pipeline();
        let mut command = self.command(&["run", pipeline.to_str().unwrap(), "--as-of", as_of]);
        command.envs(env.iter().copied());
        run(&mut command)
    }

    pub fn edit(&self, relative: &str, change: impl FnOnce(String) -> String) {
        let path = self.path().join(relative);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, change(text)).unwrap();
    }

    pub fn manifest(&self, table: &str, as_of: &str) -> Manifest {
        let path = self
            .out()
            .join(table)
            .join(format!("_segflow/manifests/as_of={as_of}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The rows of an output, read the atomic way: the manifest, then exactly its files.
    pub fn published(&self, table: &str, as_of: &str) -> Vec<RecordBatch> {
        let manifest = self.manifest(table, as_of);
        manifest
            .files
            .iter()
            .flat_map(|file| read_parquet(&self.out().join(table).join(&file.path)))
            .collect()
    }

    /// Every file under `out/` with its bytes: a fingerprint of what is published.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot_of(&self.out())
    }
}

/// Every file under `dir` (if it exists) with its bytes.
pub fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    if dir.exists() {
        collect_files(dir, &mut files);
    }
    files
}

fn collect_files(dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|batch| batch.unwrap())
        .collect()
}

/// Every Parquet file of a generated table.
pub fn read_table(dir: &Path) -> Vec<RecordBatch> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    paths.sort();
    paths.iter().flat_map(|p| read_parquet(p)).collect()
}

/// Writes `path`: one paid order of 50.00 in the generator's schema, as a late export
/// would bring it.
pub fn write_order(path: &Path, order_id: i64, customer_id: i64, ordered_at: &str) {
    write_orders(path, &[(order_id, customer_id, ordered_at, 5000)]);
}

/// Writes `path`: paid orders (order_id, customer_id, ordered_at, total in cents) in the
/// generator's schema.
pub fn write_orders(path: &Path, orders: &[(i64, i64, &str, i128)]) {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    let micros: Vec<i64> = orders
        .iter()
        .map(|o| {
            o.2.parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .timestamp_micros()
        })
        .collect();
    let times = || -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC"))
    };
    let money = |cents: Vec<i128>| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(cents)
                .with_precision_and_scale(12, 2)
                .unwrap(),
        )
    };
    let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; orders.len()])) };
    let ids = |pick: fn(&(i64, i64, &str, i128)) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(
            orders.iter().map(pick).collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_from_iter([
        ("order_id", ids(|o| o.0)),
        ("customer_id", ids(|o| o.1)),
        ("ordered_at", times()),
        ("total_amount", money(orders.iter().map(|o| o.3).collect())),
        ("currency", text("USD")),
        ("status", text("paid")),
        ("refunded_amount", money(vec![0; orders.len()])),
        ("channel", text("web")),
        ("updated_at", times()),
    ])
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Rewrites each Parquet file of a generated table with only the rows `keep` selects.
pub fn keep_rows(
    dir: &Path,
    keep: impl Fn(&RecordBatch) -> datafusion::arrow::array::BooleanArray,
) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let batches = read_parquet(&path);
        let schema = batches[0].schema();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        for batch in &batches {
            let kept =
                datafusion::arrow::compute::filter_record_batch(batch, &keep(batch)).unwrap();
            writer.write(&kept).unwrap();
        }
        writer.close().unwrap();
    }
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Writes `scheduled/<name>.yaml`: a one-step pipeline counting the project's customers.
pub fn scheduled_pipeline(project: &Project, name: &str, schedule: &str) {
    scheduled_query(
        project,
        name,
        schedule,
        "SELECT COUNT(*) AS customers FROM customers",
    );
}

/// Writes `scheduled/<name>.yaml`: a pipeline whose one step is `sql` over the customers.
pub fn scheduled_query(project: &Project, name: &str, schedule: &str, sql: &str) {
    let customers = format!("{{ url: {}/customers/ }}", project.data().display());
    scheduled_query_over(project, name, schedule, sql, &customers);
}

/// A scheduled pipeline counting the customers of `shop`, whose runs wait while the shop's
/// gate is closed: a run that takes as long as the test says.
pub fn gated_query(project: &Project, name: &str, schedule: &str, shop: &GatedShop) {
    let sql = "SELECT COUNT(*) AS customers FROM customers";
    scheduled_query_over(project, name, schedule, sql, &shop.customers_source());
}

fn scheduled_query_over(project: &Project, name: &str, schedule: &str, sql: &str, customers: &str) {
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::write(project.path().join(format!("queries/{name}.sql")), sql).unwrap();
    std::fs::write(
        project.path().join(format!("scheduled/{name}.yaml")),
        format!(
            "name: {name}\n\
             schedule: {schedule}\n\
             sources:\n  customers: {customers}\n\
             steps:\n  - {{ name: counts, sql: ../queries/{name}.sql }}\n\
             outputs:\n  - {{ table: counts, url: {}/{name}/ }}\n",
            project.out().display()
        ),
    )
    .unwrap();
}

/// An output's partition for `as_of`, read the atomic way (the manifest, then its files), as
/// text: its schema, then every row as `column=value | ...`, sorted, without `drop`'s columns.
pub fn table_text(out: &Path, table: &str, as_of: &str, drop: &[&str]) -> Vec<String> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!("{table}/_segflow/manifests/as_of={as_of}.json")))
            .unwrap_or_else(|e| panic!("{table} published for {as_of} in {}: {e}", out.display())),
    )
    .unwrap();
    let mut schema = String::new();
    let mut rows = Vec::new();
    for file in &manifest.files {
        for batch in read_parquet(&out.join(table).join(&file.path)) {
            let kept: Vec<usize> = (0..batch.num_columns())
                .filter(|&i| !drop.contains(&batch.schema().field(i).name().as_str()))
                .collect();
            schema = kept
                .iter()
                .map(|&i| {
                    let field = batch.schema_ref().field(i).clone();
                    format!("{}: {}", field.name(), field.data_type())
                })
                .collect::<Vec<_>>()
                .join(", ");
            let formatters: Vec<_> = kept
                .iter()
                .map(|&i| {
                    datafusion::arrow::util::display::ArrayFormatter::try_new(
                        batch.column(i).as_ref(),
                        &Default::default(),
                    )
                    .unwrap()
                })
                .collect();
            for row in 0..batch.num_rows() {
                let values: Vec<String> = kept
                    .iter()
                    .zip(&formatters)
                    .map(|(&i, format)| {
                        format!(
                            "{}={}",
                            batch.schema_ref().field(i).name(),
                            format.value(row)
                        )
                    })
                    .collect();
                rows.push(values.join(" | "));
            }
        }
    }
    rows.sort();
    rows.insert(0, format!("schema: {schema}"));
    rows
}

/// The cells of the table `segflow show` prints, its header first.
pub fn shown_cells(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .filter(|line| line.starts_with("| "))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

/// Every output of the shipped pipeline.
pub const SHIPPED_OUTPUTS: &[&str] = &[
    "customer_features",
    "rfm",
    "rfm_cutpoints",
    "segment_membership",
    "customer_profile",
    "segment_summary",
    "segment_changes",
    "winback_list",
    "winback_suppressed",
    "customer_predictions",
    "model_fits",
];

/// The shipped pipeline's outputs that two runs of one date on the same facts must publish
/// alike (segment_changes and rfm_cutpoints follow from these).
pub const COMPARED_OUTPUTS: [&str; 9] = [
    "customer_features",
    "rfm",
    "segment_membership",
    "customer_profile",
    "segment_summary",
    "winback_list",
    "winback_suppressed",
    "customer_predictions",
    "model_fits",
];

/// Asserts that two output folders published the same rows of `tables` for `as_of`, run ids
/// aside.
pub fn assert_same_outputs(left: &Path, right: &Path, tables: &[&str], as_of: &str) {
    for table in tables {
        assert_eq!(
            table_text(left, table, as_of, &["run_id"]),
            table_text(right, table, as_of, &["run_id"]),
            "{table}: {} and {} differ",
            left.display(),
            right.display()
        );
    }
}

/// The values of one column of an output's partition for `as_of`, as text, in file order.
pub fn column_values(out: &Path, table: &str, as_of: &str, column: &str) -> Vec<String> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!("{table}/_segflow/manifests/as_of={as_of}.json"))).unwrap(),
    )
    .unwrap();
    let mut values = Vec::new();
    for file in &manifest.files {
        for batch in read_parquet(&out.join(table).join(&file.path)) {
            let array = batch
                .column_by_name(column)
                .unwrap_or_else(|| panic!("{table} has a column {column}"));
            let format = datafusion::arrow::util::display::ArrayFormatter::try_new(
                array.as_ref(),
                &Default::default(),
            )
            .unwrap();
            values.extend((0..batch.num_rows()).map(|row| format.value(row).to_string()));
        }
    }
    values
}

/// The run record of `pipeline`'s latest run for `as_of` in the state store `state`, as
/// `segflow runs --json` prints it.
pub fn latest_record(pipeline: &str, state: &Path, as_of: &str) -> serde_json::Value {
    let json = run(segflow().args([
        "runs",
        pipeline,
        "--json",
        "--state",
        state.to_str().unwrap(),
    ]));
    json.stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["as_of"] == as_of)
        .max_by_key(|record| record["run_id"].as_str().unwrap().to_string())
        .expect("the night's run is recorded")
}
