//! A real S3-protocol server on loopback (s3s-fs, in the test process) serving a folder, each
//! subfolder a bucket: the generated shops copied into the bucket `lake`, a gate that holds
//! reads while a test wants a run under way, and `segflow` pointed at the server.

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

use super::process::{Outcome, run_async, segflow};
use super::project::{copy_dir, let_orders_age};
use super::shops::{Size, copy_shop};

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

/// The tiny shop on an S3 test server whose reads wait while the gate is closed: for tests
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
        copy_shop(Size::Tiny, &root.path().join("lake/gated"));
        let addr = start_gated_s3(root.path(), open).await;
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

/// An S3-protocol server on loopback, serving a folder with the bucket `lake`, and the small
/// shop in `s3://lake/raw/`.
pub async fn small_shop_on_s3() -> (tempfile::TempDir, SocketAddr) {
    let root = tempfile::tempdir().unwrap();
    copy_shop(Size::Small, &root.path().join("lake/raw"));
    let addr = start_s3(root.path()).await;
    (root, addr)
}

/// [`small_shop_on_s3`] with the shipped pipeline, unedited but for the tests' freshness,
/// beside the bucket (the server's folder is the project's).
pub async fn shop_on_s3() -> (tempfile::TempDir, SocketAddr) {
    let (root, addr) = small_shop_on_s3().await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        copy_dir(&repo.join(folder), &root.path().join(folder));
    }
    let_orders_age(root.path());
    (root, addr)
}

/// `segflow <args>` on the test server, async (the server runs on the caller's runtime),
/// within the commands' deadline.
pub async fn segflow_s3(addr: SocketAddr, args: &[&str]) -> Outcome {
    let mut command = segflow_on_s3(addr);
    command.args(args);
    run_async(command).await
}
