//! A scratch project: a copy of the shipped pipeline and queries with a generated shop in
//! `data/` and outputs in `out/`, the edits tests make to that pipeline, and the dates and
//! names the tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use datafusion::arrow::record_batch::RecordBatch;

use super::process::{Outcome, run, segflow};
use super::published::{Manifest, read_parquet, snapshot_of};
use super::s3::GatedShop;
use super::shops::{Size, copy_shop};

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

/// `segflow demo` into `dir` with a shop of the small size, which the demo generates itself:
/// for tests of what the demo leaves behind rather than of its size.
pub fn small_demo(dir: &Path) -> Outcome {
    run(segflow().args([
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--customers",
        &Size::Small.customers().to_string(),
        "--orders",
        &Size::Small.orders().to_string(),
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

/// The shipped pipeline wants an order in the last 36 hours of the as_of day. The tests'
/// shops are tiny (a few orders a week), so their nights often come days after the last
/// order; their copy of the pipeline lets orders be a year old. The freshness check has its
/// own tests on the shipped value (`results/checks.rs`, `scheduling/slots.rs`).
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

/// A scratch project: a copy of the shipped pipeline and queries, generated data in
/// `data/`, outputs in `out/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project on a copy of the generated shop of `size` (tests change its files), its
    /// models pinned if the shop is too small for a fit.
    pub fn new(size: Size) -> Project {
        let project = Project::without_data(size.customers());
        copy_shop(size, &project.data());
        project
    }

    /// A project whose `data/` the test fills itself with a shop of `customers`, which decides
    /// whether its models are pinned.
    pub fn without_data(customers: u64) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for folder in ["pipelines", "queries"] {
            copy_dir(&root.join(folder), &dir.path().join(folder));
        }
        let_orders_age(dir.path());
        if customers < PINNED_BELOW {
            pin_models(dir.path());
        }
        Project { dir }
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

/// Writes a pipeline with `outputs` one-step outputs over the customers, each its own table,
/// so that publishing takes many commits.
pub fn many_outputs(file: &Path, name: &str, outputs: usize, data: &str, out: &str, extra: &str) {
    let dir = file.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.sql")),
        "SELECT customer_id, country FROM customers WHERE customer_id % 10 = 0",
    )
    .unwrap();
    let mut yaml = format!(
        "name: {name}\n{extra}sources:\n  customers: {{ url: {data}/customers/ }}\nsteps:\n"
    );
    for i in 0..outputs {
        yaml.push_str(&format!("  - {{ name: t{i:03}, sql: {name}.sql }}\n"));
    }
    yaml.push_str("outputs:\n");
    for i in 0..outputs {
        yaml.push_str(&format!("  - {{ table: t{i:03}, url: {out}/t{i:03}/ }}\n"));
    }
    std::fs::write(file, yaml).unwrap();
}
