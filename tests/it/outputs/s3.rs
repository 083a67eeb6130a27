//! The object-store path against a real S3-protocol server on loopback (s3s-fs, in this
//! process): generate into a bucket, run the shipped pipeline from and to `s3://` URLs, and
//! read the outputs back from the server's disk.

use crate::support::s3::{segflow_s3, start_s3};
use crate::support::{AS_OF, END, Size, read_parquet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_runs_against_s3() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;

    // Generated here, not copied: writing into a bucket is part of what this test tests.
    let (customers, orders) = (Size::Small.customers(), Size::Small.orders());
    let generated = segflow_s3(
        addr,
        &[
            "generate",
            "--customers",
            &customers.to_string(),
            "--orders",
            &orders.to_string(),
            "--end",
            END,
            "--out",
            "s3://lake/raw/",
        ],
    )
    .await;
    assert_eq!(generated.code, 0, "{generated:?}");
    assert!(
        root.path()
            .join("lake/raw/orders/part-00000.parquet")
            .exists()
    );

    let pipeline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/nightly_segments.yaml"
    );
    // The second run keeps its intermediate results in the bucket (engine.scratch) and
    // publishes the same rows.
    let project = tempfile::tempdir().unwrap();
    for folder in ["pipelines", "queries"] {
        crate::support::copy_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder),
            &project.path().join(folder),
        );
    }
    let scratch_pipeline = project.path().join("pipelines/nightly_segments.yaml");
    let mut yaml = std::fs::read_to_string(&scratch_pipeline).unwrap();
    yaml.push_str("engine:\n  scratch: s3://lake/scratch/\n");
    std::fs::write(&scratch_pipeline, yaml).unwrap();
    let marts = root.path().join("lake/marts");
    let mut published = Vec::new();
    for pipeline in [pipeline, scratch_pipeline.to_str().unwrap()] {
        let run = segflow_s3(addr, &["run", pipeline, "--as-of", AS_OF]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("s3://lake/marts/rfm/"), "{run:?}");
        published.push(crate::support::table_text(&marts, "rfm", AS_OF, &[]));
    }
    assert_eq!(published[0], published[1]);
    assert!(!published[0].is_empty());
    // Each run wrote its report into the bucket, for a team to open from there.
    let report = std::fs::read_to_string(root.path().join("lake/reports/nightly.html")).unwrap();
    assert!(
        report.contains(&format!("<b id=\"as-of\">{AS_OF}</b>")),
        "{report}"
    );
    let scratch = root.path().join("lake/scratch");
    assert!(
        scratch.is_dir(),
        "the run wrote its intermediate results to the bucket"
    );
    assert_eq!(
        crate::support::snapshot_of(&scratch).len(),
        0,
        "and removed them when it ended"
    );

    // The run history lives in the bucket too.
    let runs = segflow_s3(addr, &["runs"]).await;
    assert_eq!(runs.code, 0, "{runs:?}");
    assert_eq!(runs.stdout.matches(" succeeded ").count(), 2, "{runs:?}");
    assert!(
        root.path()
            .join("lake/state/runs/nightly_segments")
            .is_dir()
    );

    for table in ["customer_features", "rfm"] {
        let manifest_path = marts.join(format!("{table}/_segflow/manifests/as_of={AS_OF}.json"));
        let manifest: crate::support::Manifest =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let rows: usize = manifest
            .files
            .iter()
            .flat_map(|f| read_parquet(&marts.join(table).join(&f.path)))
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows as u64, manifest.rows);
        assert!(rows > 0);
        let in_partition = std::fs::read_dir(marts.join(format!("{table}/as_of={AS_OF}")))
            .unwrap()
            .count();
        assert_eq!(
            in_partition,
            manifest.files.len(),
            "the re-run replaced the first run's files"
        );
    }

    // On the last day of the shop no order file holds anything later: the results of the
    // incremental paid_orders are kept in the bucket, beside the history, and the next run
    // of that date reuses every one.
    let order_files = std::fs::read_dir(root.path().join("lake/raw/orders"))
        .unwrap()
        .count() as u64;
    for reused in [0, order_files] {
        let run = segflow_s3(addr, &["run", pipeline, "--as-of", END]).await;
        assert_eq!(run.code, 0, "{run:?}");
        let runs = segflow_s3(addr, &["runs", "nightly_segments", "--json"]).await;
        let latest = runs
            .stdout
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|record| record["as_of"] == END)
            .max_by_key(|record| record["run_id"].as_str().unwrap().to_string())
            .expect("the run is recorded");
        let paid_orders = latest["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["name"] == "paid_orders")
            .unwrap();
        assert_eq!(
            paid_orders["files"]["reused"].as_u64(),
            Some(reused),
            "{latest}"
        );
    }
    let kept = root
        .path()
        .join("lake/state/cache/nightly_segments/paid_orders");
    let results = crate::support::snapshot_of(&kept)
        .into_keys()
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert_eq!(results as u64, order_files);

    // A source with no files is the user's to fix, and the message says which URL.
    std::fs::remove_dir_all(root.path().join("lake/raw/orders")).unwrap();
    let missing = segflow_s3(addr, &["run", pipeline, "--as-of", AS_OF]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("no Parquet files at s3://lake/raw/orders/"),
        "{missing:?}"
    );
}
