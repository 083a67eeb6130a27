//! Reading what runs published, the way readers do (a manifest, then exactly its files),
//! and checking it: tables as text, one run's whole publication per date, the run records.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::process::{run, segflow};

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

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
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

/// Every output under `out` is consistent for `as_of`: its manifest (if it has one) lists only
/// files that exist, its partition holds nothing else, and no staging files are left. Returns
/// the run ids of the manifests.
pub fn assert_consistent(out: &Path, as_of: &str, context: &str) -> Vec<String> {
    let mut run_ids = Vec::new();
    let mut tables: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tables.sort();
    for table in tables {
        let manifest_file = table.join(format!("_segflow/manifests/as_of={as_of}.json"));
        let manifest: Option<Manifest> = std::fs::read(&manifest_file)
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).unwrap());
        let files = manifest
            .as_ref()
            .map(|m| m.files.as_slice())
            .unwrap_or_default();
        let mut listed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        listed.sort();
        let partition = table.join(format!("as_of={as_of}"));
        let mut present: Vec<String> = std::fs::read_dir(&partition)
            .map(|entries| {
                entries
                    .map(|e| format!("as_of={as_of}/{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        present.sort();
        assert_eq!(
            present,
            listed,
            "{context}: {} holds other files than its manifest lists",
            partition.display()
        );
        let staging = table.join("_segflow/staging");
        let staged = walk_files(&staging);
        assert!(
            staged.is_empty(),
            "{context}: staging files left: {staged:?}"
        );
        run_ids.extend(manifest.map(|m| m.run_id));
    }
    run_ids
}

/// Every file under `dir` (if it exists), at any depth.
pub fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk_files(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}
