//! The object-store path against a real S3-protocol server on loopback (s3s-fs, in this
//! process): generate into a bucket, run the shipped pipeline from and to `s3://` URLs, and
//! read the outputs back from the server's disk.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

use crate::common::{AS_OF, END, Outcome, outcome, read_parquet, segflow};

pub const KEY: &str = "segflow-test";
pub const SECRET: &str = "segflow-test-secret";

/// Serves the folder `root` as S3 (each subfolder a bucket) until the test ends.
pub async fn start_s3(root: &std::path::Path) -> SocketAddr {
    start_gated_s3(root, tokio::sync::watch::channel(true).1).await
}

/// [`start_s3`], answering requests that name something under `gated` (a path, or a
/// listing's prefix) only while `open` is true: a run that reads there waits exactly as long
/// as the test wants, with no work to burn meanwhile.
async fn start_gated_s3(
    root: &std::path::Path,
    open: tokio::sync::watch::Receiver<bool>,
) -> SocketAddr {
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(KEY, SECRET));
    let service = builder.build();
    // s3s-fs checks `If-Match` / `If-None-Match` and then writes, in two steps, so two such
    // writes at once can both succeed. S3 does both atomically, and segflow's leases and
    // commits rely on that: one conditional write at a time gives the server S3's behaviour.
    let conditional_writes = Arc::new(tokio::sync::Mutex::new(()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            let conditional_writes = Arc::clone(&conditional_writes);
            let open = open.clone();
            let handler = service_fn(move |request: Request<Incoming>| {
                let service = service.clone();
                let conditional_writes = Arc::clone(&conditional_writes);
                let mut open = open.clone();
                async move {
                    if request.uri().to_string().contains("gated") {
                        let _ = open.wait_for(|open| *open).await;
                    }
                    let headers = request.headers();
                    let conditional =
                        headers.contains_key("if-match") || headers.contains_key("if-none-match");
                    let _turn = match conditional {
                        true => Some(conditional_writes.lock().await),
                        false => None,
                    };
                    Service::call(&service, request).await
                }
            });
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), handler)
                    .await;
            });
        }
    });
    addr
}

/// `segflow` set up for the test server: credentials, endpoint, and data, outputs and state
/// in the bucket `lake`.
pub fn segflow_on_s3(addr: SocketAddr) -> std::process::Command {
    let mut command = segflow();
    command
        .env("AWS_ENDPOINT", format!("http://{addr}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("SEGFLOW_DATA", "s3://lake/raw")
        .env("SEGFLOW_OUT", "s3://lake/marts")
        .env("SEGFLOW_STATE", "s3://lake/state")
        .env("SEGFLOW_REPORT", "s3://lake/reports/nightly.html");
    command
}

/// A small shop on an S3 test server whose reads wait while the gate is closed: for tests
/// that need a run to be under way for as long as they say.
pub struct GatedShop {
    /// The server's folder, kept for as long as the shop.
    _root: tempfile::TempDir,
    addr: SocketAddr,
    gate: tokio::sync::watch::Sender<bool>,
    /// The server's runtime, for tests that have none of their own.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl GatedShop {
    pub async fn start() -> GatedShop {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("lake")).unwrap();
        let (gate, open) = tokio::sync::watch::channel(true);
        let addr = start_gated_s3(root.path(), open).await;
        let generate = [
            "generate",
            "--customers",
            "50",
            "--orders",
            "150",
            "--end",
            END,
            "--out",
            "s3://lake/gated/",
        ];
        let generated = segflow_s3(addr, &generate).await;
        assert_eq!(generated.code, 0, "{generated:?}");
        GatedShop {
            _root: root,
            addr,
            gate,
            _runtime: None,
        }
    }

    /// [`GatedShop::start`] for a test without a runtime: the server gets one of its own.
    pub fn start_blocking() -> GatedShop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shop = runtime.block_on(GatedShop::start());
        GatedShop {
            _runtime: Some(runtime),
            ..shop
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn close(&self) {
        self.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// The shop's customers as a pipeline source, with the server's address and
    /// credentials as options (no environment: in-process daemons share one).
    pub fn customers_source(&self) -> String {
        format!(
            "{{ url: s3://lake/gated/customers/, options: {{ aws_endpoint: 'http://{}', \
             aws_allow_http: 'true', aws_access_key_id: {KEY}, aws_secret_access_key: {SECRET}, \
             aws_region: us-east-1 }} }}",
            self.addr
        )
    }
}

/// An S3-protocol server on loopback, serving a folder with the bucket `lake`, and a small
/// shop generated into `s3://lake/raw/`.
pub async fn small_shop_on_s3() -> (tempfile::TempDir, std::net::SocketAddr) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;
    let generate = [
        "generate",
        "--customers",
        "300",
        "--orders",
        "900",
        "--out",
        "s3://lake/raw/",
    ];
    let generated = segflow_s3(addr, &generate).await;
    assert_eq!(generated.code, 0, "{generated:?}");
    (root, addr)
}

pub async fn segflow_s3(addr: SocketAddr, args: &[&str]) -> Outcome {
    let mut command = segflow_on_s3(addr);
    command.args(args);
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    outcome(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_runs_against_s3() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;

    let generated = segflow_s3(
        addr,
        &[
            "generate",
            "--customers",
            "800",
            "--orders",
            "3000",
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
        crate::common::copy_dir(
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
        published.push(crate::common::table_text(&marts, "rfm", AS_OF, &[]));
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
        crate::common::snapshot_of(&scratch).len(),
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
        let manifest: crate::common::Manifest =
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
    let results = crate::common::snapshot_of(&kept)
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
