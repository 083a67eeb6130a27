//! A Ballista cluster made of segflow processes on loopback: `segflow cluster scheduler`
//! and two `segflow cluster executor`s, queried through Ballista's client over data on the
//! S3 test server.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::ParquetReadOptions;
use segflow::cluster::connect;
use segflow::storage::{Location, Storage};

use std::net::SocketAddr;
use std::path::Path;

use crate::common::{
    AS_OF, Outcome, Project, SHIPPED_OUTPUTS, assert_same_outputs, copy_dir, let_orders_age,
    outcome, segflow, with_source_settings,
};

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes killed when the test ends, however it ends.
struct Services(Vec<Child>);

impl Drop for Services {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until something accepts connections on `port`.
fn until_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and two executors; the scheduler's URL.
fn start_cluster(work: &std::path::Path) -> (Services, String) {
    let (mut services, url) = start_scheduler(20);
    for n in 0..2 {
        let (executor, _) = start_executor(&url, &work.join(format!("executor-{n}")));
        services.0.push(executor);
    }
    until_ready(&url, 2);
    (services, url)
}

/// A scheduler that counts an executor dead after `executor_timeout` seconds without a
/// heartbeat (Ballista's default is 180 s; the tests' clusters take 20, so that a killed
/// executor costs them little); its URL.
fn start_scheduler(executor_timeout: u64) -> (Services, String) {
    let scheduler_port = free_port();
    let mut scheduler = segflow();
    scheduler
        .args([
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler_port}"),
            "--executor-timeout-seconds",
            &executor_timeout.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let services = Services(vec![scheduler.spawn().unwrap()]);
    until_listening(scheduler_port);
    (services, format!("df://127.0.0.1:{scheduler_port}"))
}

/// An executor of the scheduler at `url`, working in `work`; it and its gRPC port.
fn start_executor(url: &str, work: &Path) -> (Child, u16) {
    let (flight, grpc) = (free_port(), free_port());
    std::fs::create_dir_all(work).unwrap();
    let mut executor = segflow();
    executor
        .args([
            "cluster",
            "executor",
            "--scheduler",
            url,
            "--flight-port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--concurrent-tasks",
            "2",
            "--heartbeat-seconds",
            "3",
            "--work-dir",
            work.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = executor.spawn().unwrap();
    until_listening(grpc);
    (child, grpc)
}

/// Waits until the scheduler at `url` has `executors` registered, as its `/readyz` says.
fn until_ready(url: &str, executors: usize) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("df://");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request =
                format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            last.clear();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut last).is_ok()
                && last.contains(&format!("ready: {executors} executors"))
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the scheduler at {url} did not have {executors} executors within 60 s: {last}");
}

/// Ballista's stock scheduler and an executor (examples/stock_ballista.rs), with no S3
/// settings of their own; the scheduler's URL.
fn start_stock_cluster(work: &Path) -> (Services, String) {
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/stock_ballista");
    assert!(binary.exists(), "cargo test builds {}", binary.display());
    let stock = |args: &[String]| {
        let mut command = std::process::Command::new(&binary);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
        command.spawn().unwrap()
    };
    let scheduler_port = free_port();
    let mut services = Services(vec![stock(&[
        "scheduler".into(),
        scheduler_port.to_string(),
    ])]);
    until_listening(scheduler_port);
    let (flight, grpc) = (free_port(), free_port());
    let work_dir = work.join("stock-executor");
    std::fs::create_dir_all(&work_dir).unwrap();
    services.0.push(stock(&[
        "executor".into(),
        scheduler_port.to_string(),
        flight.to_string(),
        grpc.to_string(),
        work_dir.display().to_string(),
    ]));
    until_listening(grpc);
    (services, format!("df://127.0.0.1:{scheduler_port}"))
}

/// The options of the test S3 server's bucket, as a pipeline would give them.
fn bucket_options(addr: std::net::SocketAddr) -> BTreeMap<String, String> {
    [
        ("endpoint", format!("http://{addr}")),
        ("allow_http", "true".to_string()),
        ("access_key_id", crate::s3::KEY.to_string()),
        ("secret_access_key", crate::s3::SECRET.to_string()),
        ("region", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_segflow_processes_reads_the_clients_stores() {
    let (root, addr) = shop_on_s3().await;
    // The cluster's processes have no S3 settings of their own (no AWS_* variables): the
    // bucket's endpoint and keys reach them from the client's session.
    let (_services, url) = start_cluster(root.path());
    let storage = Storage::new();
    let raw = Location::parse("s3://lake/raw/").unwrap();
    storage.store(&raw, &bucket_options(addr)).unwrap();
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(storage.clone()))
        .build_arc()
        .unwrap();
    let state = SessionStateBuilder::new()
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let (ctx, _watchdog) = connect(&url.parse().unwrap(), state, &storage)
        .await
        .unwrap();
    for table in ["customers", "orders"] {
        ctx.register_parquet(
            table,
            &format!("s3://lake/raw/{table}/"),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    // Planned by the scheduler into stages, whose tasks the executors run.
    let counted = tokio::time::timeout(
        Duration::from_secs(120),
        ctx.sql(
            "SELECT COUNT(*) AS orders, COUNT(DISTINCT c.customer_id) AS buyers \
             FROM orders o JOIN customers c ON o.customer_id = c.customer_id",
        )
        .await
        .unwrap()
        .collect(),
    )
    .await
    .expect("the cluster answers")
    .unwrap();
    assert_eq!(
        counted[0].column(0).as_primitive::<Int64Type>().value(0),
        900
    );
    let buyers = counted[0].column(1).as_primitive::<Int64Type>().value(0);
    assert!(buyers > 0 && buyers <= 300, "{buyers}");
}

/// `segflow` on the S3 test server, from `dir`, async (the server runs on this runtime).
async fn segflow_in(dir: &Path, addr: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = crate::s3::segflow_on_s3(addr);
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    // A Ballista job can stop making progress with the scheduler and executors idle (see
    // issue 31): the run must fail here in minutes, not hold CI until its own deadline.
    let ran = tokio::time::timeout(RUN_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "segflow {} did not finish within {} s: the run waited on the cluster",
                args.join(" "),
                RUN_DEADLINE.as_secs()
            )
        });
    outcome(ran.unwrap())
}

/// How long one `segflow` command of these tests may take on a loaded 2-core machine.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// The shipped pipeline, unedited, and a small shop on the S3 test server. Cluster runs keep
/// their intermediate results there too (`SEGFLOW_SCRATCH` in [`ON_CLUSTER`]), so that the
/// executors reach everything.
pub async fn shop_on_s3() -> (tempfile::TempDir, SocketAddr) {
    let (root, addr) = crate::s3::small_shop_on_s3().await;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        copy_dir(&repo.join(folder), &root.path().join(folder));
    }
    let_orders_age(root.path());
    (root, addr)
}

const PIPELINE: &str = "pipelines/nightly_segments.yaml";

/// Where a cluster run publishes, keeps its history and its intermediate results, beside
/// the in-process one.
const ON_CLUSTER: [(&str, &str); 3] = [
    ("SEGFLOW_OUT", "s3://lake/marts-cluster"),
    ("SEGFLOW_STATE", "s3://lake/state-cluster"),
    ("SEGFLOW_SCRATCH", "s3://lake/scratch/"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_pipeline_publishes_the_same_on_a_cluster_as_in_process() {
    let (root, addr) = shop_on_s3().await;
    let (_services, url) = start_cluster(root.path());
    // One night. A second night (which reads the first's publications) stalls Ballista 55's
    // adaptive planner on this 2-core machine, at HEAD before the rows-in-force change too:
    // a stage's task reports one metrics node fewer than the stage, a shuffle fetch then
    // fails ("Unable to get root as message"), the stage is resubmitted and lost ("Can't
    // find active stage"), and the job never ends. Turning the adaptive planner off gives
    // a wrong win-back ranking instead. Issue 31 takes it up; the deadline above keeps a
    // stall from holding CI.
    let night = (PIPELINE, AS_OF);
    same_in_process_and_on_cluster(root.path(), addr, &url, night, &[], SHIPPED_OUTPUTS).await;
    let lake = root.path().join("lake");
    duckdb_reads_the_same(&lake.join("marts"), &lake.join("marts-cluster"), AS_OF);
}

/// Runs `pipeline` for `as_of` in process and on the cluster at `url`, both with `env`, and
/// checks that both published the same `tables`.
async fn same_in_process_and_on_cluster(
    root: &Path,
    addr: SocketAddr,
    url: &str,
    (pipeline, as_of): (&str, &str),
    env: &[(&str, &str)],
    tables: &[&str],
) {
    let local = segflow_in(root, addr, &["run", pipeline, "--as-of", as_of], env).await;
    assert_eq!(local.code, 0, "{local:?}");
    let args = ["run", pipeline, "--as-of", as_of, "--cluster", url];
    let on_cluster: Vec<(&str, &str)> = env.iter().copied().chain(ON_CLUSTER).collect();
    let clustered = segflow_in(root, addr, &args, &on_cluster).await;
    assert_eq!(clustered.code, 0, "{clustered:?}");
    let lake = root.join("lake");
    assert_same_outputs(
        &lake.join("marts"),
        &lake.join("marts-cluster"),
        tables,
        as_of,
    );
}

/// DuckDB reads each shipped output's published files (those its manifest lists) from both
/// folders: the same rows, run ids apart, and the same types.
fn duckdb_reads_the_same(left: &Path, right: &Path, as_of: &str) {
    const COMPARE: &str = r#"
import json, sys
import duckdb

left, right, as_of, tables = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def files(out, table):
    manifest = json.load(open(f"{out}/{table}/_segflow/manifests/as_of={as_of}.json"))
    return [f"{out}/{table}/{f['path']}" for f in manifest["files"]]

for table in tables:
    a, b = (f"read_parquet({files(out, table)!r})" for out in (left, right))
    types = [duckdb.sql(f"DESCRIBE SELECT * FROM {x}").fetchall() for x in (a, b)]
    assert types[0] == types[1], (table, types)
    kept = "* EXCLUDE (run_id)" if any(c[0] == "run_id" for c in types[0]) else "*"
    rows = [duckdb.sql(f"SELECT count(*) FROM {x}").fetchall()[0][0] for x in (a, b)]
    differ = duckdb.sql(
        f"SELECT count(*) FROM ((SELECT {kept} FROM {a} EXCEPT ALL SELECT {kept} FROM {b}) "
        f"UNION ALL (SELECT {kept} FROM {b} EXCEPT ALL SELECT {kept} FROM {a}))").fetchall()[0][0]
    assert rows[0] == rows[1] and differ == 0, (table, rows, differ)
    print(table, rows[0])
"#;
    let compared = crate::common::run(
        std::process::Command::new("python3")
            .args(["-c", COMPARE])
            .args([left.to_str().unwrap(), right.to_str().unwrap(), as_of])
            .args(SHIPPED_OUTPUTS),
    );
    assert_eq!(compared.code, 0, "{compared:?}");
    assert_eq!(compared.stdout.lines().count(), SHIPPED_OUTPUTS.len());
}

/// Exports as a shop's tools write them, which segflow's own functions read (functions with
/// settings, which travel in the plan): orders and their items as CSV, with timestamps and
/// amounts as text; customers and checkouts as Parquet wall-clock times of Oslo. The cluster
/// publishes what the run in process publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_that_segflows_functions_read_publish_the_same_on_a_cluster() {
    let (root, addr) = shop_on_s3().await;
    let lake = root.path().join("lake");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    for (script, args) in [
        ("zones.py", ["raw", "variants", AS_OF]),
        ("text_sources.py", ["raw", "csv", "json"]),
    ] {
        let written = crate::common::run(
            std::process::Command::new("python3")
                .arg(scripts.join(script))
                .args(args)
                .current_dir(&lake),
        );
        assert_eq!(written.code, 0, "{script}: {written:?}");
    }
    let csv = ["orders", "order_items"];
    for table in ["customers", "orders", "order_items", "checkouts"] {
        let from = if csv.contains(&table) {
            lake.join("csv").join(table)
        } else {
            lake.join("variants/naive_oslo_us").join(table)
        };
        copy_dir(&from, &lake.join("exports").join(table));
    }
    let shipped = std::fs::read_to_string(root.path().join(PIPELINE)).unwrap();
    let exports = with_source_settings(&shipped, |table| {
        let mut settings = vec!["timezone: Europe/Oslo".to_string()];
        if csv.contains(&table) {
            settings.push("format: csv".to_string());
        }
        settings
    });
    let pipeline = "pipelines/exports.yaml";
    std::fs::write(root.path().join(pipeline), exports).unwrap();

    let (_services, url) = start_cluster(root.path());
    let data = [("SEGFLOW_DATA", "s3://lake/exports")];
    let night = (pipeline, AS_OF);
    same_in_process_and_on_cluster(root.path(), addr, &url, night, &data, SHIPPED_OUTPUTS).await;
}

/// A cluster of Ballista's stock processes, which build their one S3 store from the `s3.*`
/// settings the run sends (from its environment here): a pipeline of Parquet on S3 and SQL
/// of DataFusion's own functions publishes there, the same as in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_ballista_cluster_runs_an_s3_parquet_pipeline() {
    let (root, addr) = shop_on_s3().await;
    let (_services, url) = start_stock_cluster(root.path());
    std::fs::write(
        root.path().join("queries/spend_per_customer.sql"),
        "SELECT o.customer_id, COUNT(*) AS orders, SUM(o.total_amount) AS spent, \
                MAX(o.ordered_at) AS last_order_at \
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
         WHERE o.ordered_at < $as_of_end GROUP BY o.customer_id",
    )
    .unwrap();
    let pipeline = "pipelines/spend.yaml";
    std::fs::write(
        root.path().join(pipeline),
        "name: spend\n\
         timezone: Europe/Oslo\n\
         engine: { scratch: s3://lake/scratch/ }\n\
         sources:\n\
         \x20 customers: { url: s3://lake/raw/customers/ }\n\
         \x20 orders: { url: s3://lake/raw/orders/ }\n\
         steps:\n  - { name: spend_per_customer, sql: ../queries/spend_per_customer.sql }\n\
         outputs:\n  - { table: spend_per_customer, url: \"${SEGFLOW_OUT:-out}/spend_per_customer/\" }\n",
    )
    .unwrap();
    let night = (pipeline, AS_OF);
    let tables = ["spend_per_customer"];
    same_in_process_and_on_cluster(root.path(), addr, &url, night, &[], &tables).await;
    let lake = root.path().join("lake");
    // The rule, counted from the raw files: orders of known customers placed before the end
    // of AS_OF in Oslo.
    let counted = crate::common::run(
        std::process::Command::new("python3")
            .args(["-c", KNOWN_ORDERS_BEFORE_THE_DAY_ENDS, AS_OF])
            .current_dir(lake.join("raw")),
    );
    assert_eq!(counted.code, 0, "{counted:?}");
    let expected: usize = counted.stdout.trim().parse().unwrap();
    assert!(expected > 0);
    let published = orders_in(&lake.join("marts-cluster"), "spend_per_customer", AS_OF);
    assert_eq!(published, expected);

    // The shipped pipeline calls the models' functions and array functions, which stock
    // clusters lack: the run says so, and publishes nothing.
    let args = ["run", PIPELINE, "--as-of", AS_OF, "--cluster", &url];
    let elsewhere = [
        ("SEGFLOW_OUT", "s3://lake/marts-stock"),
        ("SEGFLOW_STATE", "s3://lake/state-stock"),
        ("SEGFLOW_SCRATCH", "s3://lake/scratch/"),
    ];
    let shipped = segflow_in(root.path(), addr, &args, &elsewhere).await;
    assert_ne!(shipped.code, 0, "{shipped:?}");
    assert!(
        shipped
            .stderr
            .contains("the cluster lacks a function the query calls"),
        "{shipped:?}"
    );
    assert!(
        crate::common::snapshot_of(&lake.join("marts-stock"))
            .keys()
            .all(|file| !file.to_string_lossy().contains("manifests")),
        "nothing published"
    );
}

const KNOWN_ORDERS_BEFORE_THE_DAY_ENDS: &str = "
import datetime, sys, zoneinfo
import pyarrow.dataset as ds
day = datetime.date.fromisoformat(sys.argv[1]) + datetime.timedelta(days=1)
end = datetime.datetime.combine(day, datetime.time(), zoneinfo.ZoneInfo('Europe/Oslo'))
known = set(ds.dataset('customers').to_table(columns=['customer_id'])['customer_id'].to_pylist())
orders = ds.dataset('orders').to_table(columns=['customer_id', 'ordered_at']).to_pylist()
print(sum(1 for o in orders if o['customer_id'] in known and o['ordered_at'] < end))
";

/// The sum of the `orders` column of a published table.
fn orders_in(out: &Path, table: &str, as_of: &str) -> usize {
    crate::common::table_text(out, table, as_of, &[])
        .iter()
        .filter_map(|row| row.split("orders=").nth(1))
        .map(|n| {
            n.split('|')
                .next()
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .sum()
}

#[test]
fn a_cluster_run_refuses_paths_and_names_an_unreachable_scheduler() {
    let project = Project::new(50, 150);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    // Nothing listens here: the run says so at once, exit 2, and publishes nothing.
    let port = free_port();
    let nowhere = format!("df://127.0.0.1:{port}");
    let s3_only = project.path().join("s3_only.yaml");
    std::fs::write(
        &s3_only,
        "name: s3_only\n\
         engine: { scratch: s3://lake/scratch/ }\n\
         sources:\n  orders: { url: s3://lake/raw/orders/ }\n\
         steps:\n  - { name: counted, sql: queries/counted.sql }\n\
         outputs:\n  - { table: counted, url: s3://lake/marts/counted/ }\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("queries/counted.sql"),
        "SELECT COUNT(*) AS orders FROM orders",
    )
    .unwrap();
    let unreachable = project.segflow(&[
        "run",
        s3_only.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--cluster",
        &nowhere,
    ]);
    assert_eq!(unreachable.code, 2, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains(&format!(
            "cannot reach the cluster's scheduler at {nowhere}"
        )),
        "{unreachable:?}"
    );

    // Paths of this machine: each is named, exit 1, before any work; by validate too.
    for command in ["run", "validate"] {
        let local = project.segflow(&[command, pipeline, "--as-of", AS_OF, "--cluster", &nowhere]);
        assert_eq!(local.code, 1, "{command}: {local:?}");
        for named in [
            "source 'customers' at file://",
            "output 'rfm' at file://",
            "engine.scratch, unset",
            "the state store, which keeps incremental steps' results, at file://",
        ] {
            assert!(
                local.stderr.contains(named),
                "{command}, {named}: {local:?}"
            );
        }
    }
    // Scratch from the environment (or --scratch) stands in for the pipeline's.
    let shared = project
        .command(&["validate", pipeline, "--cluster", &nowhere])
        .env("SEGFLOW_SCRATCH", "s3://lake/scratch/")
        .output()
        .unwrap();
    let shared = outcome(shared);
    assert_eq!(shared.code, 1, "{shared:?}");
    assert!(
        shared.stderr.contains("output 'rfm' at file://"),
        "{shared:?}"
    );
    assert!(!shared.stderr.contains("engine.scratch"), "{shared:?}");
    assert!(project.snapshot().is_empty(), "nothing published");
}

/// An executor killed with SIGKILL while the run uses it: the run completes (Ballista runs
/// the lost tasks again elsewhere) and publishes what an in-process run publishes, or it
/// fails with exit 2 and publishes nothing. Never half, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_run_leaves_a_whole_publication_or_none() {
    let (root, addr) = shop_on_s3().await;
    let local = segflow_in(root.path(), addr, &["run", PIPELINE, "--as-of", AS_OF], &[]).await;
    assert_eq!(local.code, 0, "{local:?}");
    let (mut services, url) = start_cluster(root.path());
    let dir = root.path().to_path_buf();
    let (code, log) = tokio::task::spawn_blocking(move || {
        let (mut run, log) = cluster_run(addr, &dir, &url, &[]);
        crate::daemon::wait_for_log(&log, "step=customer_features");
        let executor = &mut services.0[1];
        executor.kill().unwrap();
        executor.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = run.kill();
                panic!(
                    "the run hung after its executor died:\n{}",
                    log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = log.lock().unwrap().clone();
        (status.code(), text)
    })
    .await
    .unwrap();
    let lake = root.path().join("lake");
    eprintln!("the run ended with {code:?}");
    match code {
        Some(0) => assert_same_outputs(
            &lake.join("marts"),
            &lake.join("marts-cluster"),
            SHIPPED_OUTPUTS,
            AS_OF,
        ),
        Some(2) => assert!(
            !lake.join("marts-cluster").exists()
                || crate::common::snapshot_of(&lake.join("marts-cluster"))
                    .keys()
                    .all(|file| !file.to_string_lossy().contains("manifests")),
            "a failed run published: {log}"
        ),
        other => panic!("exit {other:?}:\n{log}"),
    }
}

/// The scheduler daemon runs a pipeline whose `engine.cluster` names a cluster at its slot,
/// like any other; the pipeline's own store options reach the executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_a_cluster_pipeline_at_its_slot() {
    let (root, addr) = shop_on_s3().await;
    let (_services, url) = start_cluster(root.path());
    let options: String = bucket_options(addr)
        .iter()
        .map(|(key, value)| format!("{key}: \"{value}\", "))
        .collect();
    let scheduled = root.path().join("scheduled");
    std::fs::create_dir_all(&scheduled).unwrap();
    std::fs::write(
        root.path().join("queries/paid_per_customer.sql"),
        "SELECT customer_id, COUNT(*) AS orders FROM orders GROUP BY customer_id",
    )
    .unwrap();
    std::fs::write(
        scheduled.join("on_cluster.yaml"),
        format!(
            "name: on_cluster\n\
             schedule: {{ cron: '0 2 * * *' }}\n\
             engine: {{ cluster: \"{url}\", scratch: s3://lake/scratch/ }}\n\
             sources:\n  orders: {{ url: s3://lake/raw/orders/, options: {{ {options} }} }}\n\
             steps:\n  - {{ name: per_customer, sql: ../queries/paid_per_customer.sql }}\n\
             outputs:\n  - {{ table: per_customer, url: s3://lake/daily/per_customer/, options: {{ {options} }} }}\n"
        ),
    )
    .unwrap();
    let clock = segflow::clock::ManualClock::starting_at("2030-03-06T02:00:00Z".parse().unwrap());
    let config = segflow::daemon::DaemonConfig {
        pipelines: scheduled,
        state: Location::parse(&format!("{}/state/", root.path().display())).unwrap(),
        once: true,
        grace: Duration::from_secs(10),
        lease_ttl: Duration::from_secs(30),
        tick: Duration::from_secs(1),
        clock: segflow::clock::Clock::Manual(clock),
        single_writer: false,
        roots: Vec::new(),
    };
    let tally = segflow::daemon::run(config, std::future::pending()).await;
    assert_eq!((tally.published, tally.failed), (1, 0), "{tally:?}");
    assert_eq!(
        orders_in(
            &root.path().join("lake/daily"),
            "per_customer",
            "2030-03-05"
        ),
        900
    );
}

/// The shipped pipeline's run on the cluster at `url`, from `dir`, with `env`, started and
/// not waited for; its log as it comes.
fn cluster_run(
    addr: SocketAddr,
    dir: &Path,
    url: &str,
    env: &[(&str, &str)],
) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut run = crate::s3::segflow_on_s3(addr);
    run.current_dir(dir)
        .args(["run", PIPELINE, "--as-of", AS_OF, "--cluster", url])
        .envs(ON_CLUSTER)
        .envs(env.iter().copied())
        .env("SEGFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = run.spawn().unwrap();
    let log = crate::daemon::follow_log(&mut run);
    (run, log)
}

/// `validate --cluster` and `run --cluster` against `target`: each exits 2 within 30 s,
/// naming `target` and `expect`, and blames no line of the pipeline file.
async fn refused_in_seconds(root: &Path, addr: SocketAddr, target: &str, expect: &str) {
    for command in ["validate", "run"] {
        let args = [command, PIPELINE, "--as-of", AS_OF, "--cluster", target];
        let started = std::time::Instant::now();
        let refused = segflow_in(root, addr, &args, &ON_CLUSTER).await;
        let seconds = started.elapsed().as_secs();
        assert_eq!(refused.code, 2, "{command} on {target}: {refused:?}");
        assert!(seconds < 30, "{command} on {target} took {seconds} s");
        for token in [target, expect] {
            assert!(refused.stderr.contains(token), "{token}: {refused:?}");
        }
        assert!(!refused.stderr.contains(".yaml:"), "{refused:?}");
    }
}

/// A scheduler without executors, a port that is not a scheduler's (an executor's), and a
/// frozen scheduler (SIGSTOP) each end `validate` and `run` in a named error, exit 2, within
/// seconds; a scheduler frozen in the middle of a run fails it naming the cluster. Nothing
/// is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_cannot_run_is_named_within_seconds() {
    let (root, addr) = shop_on_s3().await;
    // Executors outlive the scheduler's freezes below.
    let (mut services, url) = start_scheduler(600);
    refused_in_seconds(root.path(), addr, &url, "has no executor registered").await;

    let (executor, grpc) = start_executor(&url, &root.path().join("executor"));
    services.0.push(executor);
    until_ready(&url, 1);
    let executors_port = format!("df://127.0.0.1:{grpc}");
    let not_a_scheduler = "does not answer as a Ballista scheduler";
    refused_in_seconds(root.path(), addr, &executors_port, not_a_scheduler).await;

    let scheduler = services.0[0].id().to_string();
    let signal = move |signal: &str| {
        let sent = std::process::Command::new("kill")
            .args([signal, &scheduler])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-STOP");
    refused_in_seconds(root.path(), addr, &url, "did not answer within 10 s").await;
    signal("-CONT");

    // Frozen in the middle of a run: the run fails naming the cluster, not a line of the
    // pipeline file, exit 2.
    until_ready(&url, 1);
    let dir = root.path().to_path_buf();
    let cluster = url.clone();
    let (code, log) = tokio::task::spawn_blocking(move || {
        // Ballista's client waits on a frozen scheduler without a deadline: the run's
        // watchdog gives up on it.
        let stall = [("SEGFLOW_CLUSTER_STALL_SECONDS", "10")];
        let (mut run, log) = cluster_run(addr, &dir, &cluster, &stall);
        crate::daemon::wait_for_log(&log, "Step ready.");
        signal("-STOP");
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = run.kill();
                signal("-CONT");
                panic!(
                    "the run did not end within 180 s of its scheduler freezing:\n{}",
                    log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        signal("-CONT");
        let log = log.lock().unwrap().clone();
        (status.code(), log)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "{log}");
    // Ballista's client gives up on a status request after 20 s, or waits on its query
    // without a deadline: then the watchdog gives up first. Either way the cluster is named.
    let named = ["failed while computing '", "made no progress on '"]
        .map(|what| format!("the cluster at {url} {what}"));
    assert!(named.iter().any(|n| log.contains(n)), "{log}");
    assert!(!log.contains(".yaml:"), "{log}");
    assert!(
        crate::common::snapshot_of(&root.path().join("lake/marts-cluster")).is_empty(),
        "nothing published"
    );
}

/// A job that no task of can finish (its only executor killed, and the scheduler told to wait
/// 10 minutes before it counts the executor dead; Ballista's scheduler then stops answering
/// altogether) is cancelled by the run's watchdog once it has gone without progress for
/// SEGFLOW_CLUSTER_STALL_SECONDS: exit 2, naming the cluster and the job, instead of a run
/// that waits for ever (it did, before the watchdog). Nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_job_without_progress_is_cancelled_by_the_watchdog() {
    let (root, addr) = shop_on_s3().await;
    let (mut services, url) = start_scheduler(600);
    let (executor, _) = start_executor(&url, &root.path().join("executor"));
    services.0.push(executor);
    until_ready(&url, 1);
    let dir = root.path().to_path_buf();
    let cluster = url.clone();
    let (code, log, seconds) = tokio::task::spawn_blocking(move || {
        let stall = [("SEGFLOW_CLUSTER_STALL_SECONDS", "10")];
        let (mut run, log) = cluster_run(addr, &dir, &cluster, &stall);
        crate::daemon::wait_for_log(&log, "Step ready.");
        let executor = &mut services.0[1];
        executor.kill().unwrap();
        executor.wait().unwrap();
        let killed = std::time::Instant::now();
        let deadline = killed + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = run.kill();
                panic!(
                    "the run waited 120 s on a job no task of can finish:\n{}",
                    log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = log.lock().unwrap().clone();
        (status.code(), log, killed.elapsed().as_secs())
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "{log}");
    for token in [
        &format!("the cluster at {url} made no progress on '"),
        "(job ",
        "so the run cancelled it",
        "SEGFLOW_CLUSTER_STALL_SECONDS",
    ] {
        assert!(log.contains(token), "{token}: {log}");
    }
    assert!(!log.contains(".yaml:"), "{log}");
    assert!(seconds < 60, "the watchdog took {seconds} s");
    assert!(
        crate::common::snapshot_of(&root.path().join("lake/marts-cluster")).is_empty(),
        "nothing published"
    );
}
