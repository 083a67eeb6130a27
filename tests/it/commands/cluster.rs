//! A Ballista cluster made of segflow processes on loopback: `segflow cluster scheduler`
//! and two `segflow cluster executor`s, queried through Ballista's client over data on the
//! S3 test server.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::ParquetReadOptions;
use segflow::cluster::connect;
use segflow::storage::{Location, Storage};

use std::net::SocketAddr;
use std::path::Path;

use crate::support::process::{COMMAND_DEADLINE, run_async};
// The shipped pipeline, unedited, and the small shop on the S3 test server. Cluster runs keep
// their intermediate results there too (`SEGFLOW_SCRATCH` in [`ON_CLUSTER`]), so that the
// executors reach everything.
use crate::support::s3::shop_on_s3;
use crate::support::{
    AS_OF, Outcome, Project, SHIPPED_OUTPUTS, Size, Spawned, assert_same_outputs, copy_dir, run,
    segflow, wait_for_log, with_source_settings,
};

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster's processes, killed when the test ends, however it ends.
struct Services(Vec<Spawned>);

/// Waits until `what` accepts connections on `port`, for at most 30 s.
fn until_listening(what: &str, port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and two executors; the scheduler's URL.
fn start_cluster(work: &std::path::Path) -> (Services, String) {
    start_cluster_with(work, &[])
}

/// A scheduler and two executors started with `executor_args` too; the scheduler's URL.
fn start_cluster_with(work: &std::path::Path, executor_args: &[&str]) -> (Services, String) {
    let (mut services, url) = start_scheduler(20);
    for n in 0..2 {
        let work = work.join(format!("executor-{n}"));
        let (executor, _) = start_executor_with(&url, &work, executor_args);
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
    let services = Services(vec![Spawned::start(&mut scheduler, "the scheduler")]);
    until_listening("the scheduler", scheduler_port);
    (services, format!("df://127.0.0.1:{scheduler_port}"))
}

/// An executor of the scheduler at `url`, working in `work`; it and its gRPC port.
fn start_executor(url: &str, work: &Path) -> (Spawned, u16) {
    start_executor_with(url, work, &[])
}

/// An executor started with `args` too.
fn start_executor_with(url: &str, work: &Path, args: &[&str]) -> (Spawned, u16) {
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
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = Spawned::start(&mut executor, "an executor");
    until_listening("an executor's gRPC service", grpc);
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
    let stock = |what: &str, args: &[String]| {
        let mut command = std::process::Command::new(&binary);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
        Spawned::start(&mut command, what)
    };
    let scheduler_port = free_port();
    let mut services = Services(vec![stock(
        "the stock scheduler",
        &["scheduler".into(), scheduler_port.to_string()],
    )]);
    until_listening("the stock scheduler", scheduler_port);
    let (flight, grpc) = (free_port(), free_port());
    let work_dir = work.join("stock-executor");
    std::fs::create_dir_all(&work_dir).unwrap();
    services.0.push(stock(
        "the stock executor",
        &[
            "executor".into(),
            scheduler_port.to_string(),
            flight.to_string(),
            grpc.to_string(),
            work_dir.display().to_string(),
        ],
    ));
    until_listening("the stock executor's gRPC service", grpc);
    (services, format!("df://127.0.0.1:{scheduler_port}"))
}

/// The options of the test S3 server's bucket, as a pipeline would give them.
fn bucket_options(addr: std::net::SocketAddr) -> BTreeMap<String, String> {
    [
        ("endpoint", format!("http://{addr}")),
        ("allow_http", "true".to_string()),
        ("access_key_id", crate::support::s3::KEY.to_string()),
        ("secret_access_key", crate::support::s3::SECRET.to_string()),
        ("region", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Orders and their buyers counted on the cluster at `url`, over the shop at `addr`: a
/// join the scheduler plans into stages whose tasks the executors run. Within two minutes.
async fn orders_and_buyers(
    url: &str,
    addr: SocketAddr,
) -> datafusion::error::Result<Vec<RecordBatch>> {
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
    let query = async {
        let (ctx, _watchdog) = connect(&url.parse().unwrap(), state, &storage, None)
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
        ctx.sql(
            "SELECT COUNT(*) AS orders, COUNT(DISTINCT c.customer_id) AS buyers \
             FROM orders o JOIN customers c ON o.customer_id = c.customer_id",
        )
        .await?
        .collect()
        .await
    };
    tokio::time::timeout(Duration::from_secs(120), query)
        .await
        .unwrap_or_else(|_| panic!("the cluster at {url} did not answer the query within 120 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_segflow_processes_reads_the_clients_stores() {
    let (root, addr) = shop_on_s3().await;
    // The cluster's processes have no S3 settings of their own (no AWS_* variables): the
    // bucket's endpoint and keys reach them from the client's session.
    let (_services, url) = start_cluster(root.path());
    let counted = orders_and_buyers(&url, addr).await.unwrap();
    let shop = Size::Small;
    assert_eq!(
        counted[0].column(0).as_primitive::<Int64Type>().value(0),
        shop.orders() as i64
    );
    let buyers = counted[0].column(1).as_primitive::<Int64Type>().value(0);
    assert!(buyers > 0 && buyers <= shop.customers() as i64, "{buyers}");
}

/// `--memory-limit` bounds what an executor's tasks hold: a join whose built side cannot
/// spill is refused beyond it, where Ballista's own pool (a share of the machine's memory)
/// would have let it run. The run says so as a sentence that names the cluster, the step,
/// what asked for the memory and the limit, and what to change (exit 2, nothing published),
/// not as a failed SQL step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executors_memory_limit_bounds_its_tasks() {
    let (root, addr) = shop_on_s3().await;
    let (_services, url) = start_cluster_with(root.path(), &["--memory-limit", "4KiB"]);
    let env = [("SEGFLOW_CLUSTER", url.as_str())];
    let env: Vec<(&str, &str)> = ON_CLUSTER.iter().copied().chain(env).collect();
    let refused = segflow_in(
        root.path(),
        addr,
        &["run", PIPELINE, "--as-of", AS_OF],
        &env,
    )
    .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    let said = &refused.stderr;
    for token in [
        format!("the cluster at {url} ran out of memory computing '"),
        "pool_size: 4.0 KB".to_string(),
        "--memory-limit".to_string(),
        "engine.target_partitions (16 now)".to_string(),
    ] {
        assert!(said.contains(&token), "{token}: {refused:?}");
    }
    assert!(!said.contains("ResourcesExhausted("), "{refused:?}");
    assert!(!said.contains(".yaml:"), "{refused:?}");
    assert!(
        crate::support::snapshot_of(&root.path().join("lake/marts-cluster")).is_empty(),
        "nothing published"
    );
}

/// `segflow` on the S3 test server, from `dir`, async (the server runs on this runtime). A
/// Ballista job can stop making progress with the scheduler and executors idle (see issue
/// 31): the commands' deadline makes the run fail here in minutes, not hold CI.
async fn segflow_in(dir: &Path, addr: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = crate::support::s3::segflow_on_s3(addr);
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied());
    run_async(command).await
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
    let compared = crate::support::run(
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
    for (script, args) in [
        ("zones.py", ["raw", "variants", AS_OF]),
        ("text_sources.py", ["raw", "csv", "json"]),
    ] {
        let written = crate::support::run(
            std::process::Command::new("python3")
                .arg(crate::support::oracle(script))
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
    let counted = crate::support::run(
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
        crate::support::snapshot_of(&lake.join("marts-stock"))
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
    crate::support::table_text(out, table, as_of, &[])
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
    let project = Project::new(Size::Tiny);
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
    let shared = run(project
        .command(&["validate", pipeline, "--cluster", &nowhere])
        .env("SEGFLOW_SCRATCH", "s3://lake/scratch/"));
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
        wait_for_log(&log, "step=customer_features");
        let executor = &mut services.0[1];
        executor.kill().unwrap();
        executor.exit_within(Duration::from_secs(60), "SIGKILL");
        let code = run.exit_within(Duration::from_secs(300), "its executor's death");
        let text = log.lock().unwrap().clone();
        (code, text)
    })
    .await
    .unwrap();
    let lake = root.path().join("lake");
    eprintln!("the run ended with {code:?}");
    match code {
        0 => assert_same_outputs(
            &lake.join("marts"),
            &lake.join("marts-cluster"),
            SHIPPED_OUTPUTS,
            AS_OF,
        ),
        2 => assert!(
            !lake.join("marts-cluster").exists()
                || crate::support::snapshot_of(&lake.join("marts-cluster"))
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
    // A cluster job that stops making progress (issue 31) must fail the test, not hold it.
    let once = segflow::daemon::run(config, std::future::pending());
    let tally = tokio::time::timeout(COMMAND_DEADLINE, once)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the daemon's one run on the cluster at {url} did not end within {} s",
                COMMAND_DEADLINE.as_secs()
            )
        });
    assert_eq!((tally.published, tally.failed), (1, 0), "{tally:?}");
    assert_eq!(
        orders_in(
            &root.path().join("lake/daily"),
            "per_customer",
            "2030-03-05"
        ),
        Size::Small.orders() as usize
    );
}

/// The shipped pipeline's run on the cluster at `url`, from `dir`, with `env`, started and
/// not waited for; its log as it comes.
fn cluster_run(
    addr: SocketAddr,
    dir: &Path,
    url: &str,
    env: &[(&str, &str)],
) -> (Spawned, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut run = crate::support::s3::segflow_on_s3(addr);
    run.current_dir(dir)
        .args(["run", PIPELINE, "--as-of", AS_OF, "--cluster", url])
        .envs(ON_CLUSTER)
        .envs(env.iter().copied())
        .env("SEGFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = Spawned::start(&mut run, "the cluster run");
    let log = run.follow_log();
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

    let scheduler = services.0[0].id();
    let signal = move |signal: &str| crate::support::process::signal_pid(scheduler, signal);
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
        wait_for_log(&log, "Step ready.");
        signal("-STOP");
        let code = run.exit_within(Duration::from_secs(180), "its scheduler freezing");
        signal("-CONT");
        let log = log.lock().unwrap().clone();
        (code, log)
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{log}");
    // Ballista's client gives up on a status request after 20 s, or waits on its query
    // without a deadline: then the watchdog gives up first. Either way the cluster is named.
    let named = ["failed while computing '", "made no progress on '"]
        .map(|what| format!("the cluster at {url} {what}"));
    assert!(named.iter().any(|n| log.contains(n)), "{log}");
    assert!(!log.contains(".yaml:"), "{log}");
    assert!(
        crate::support::snapshot_of(&root.path().join("lake/marts-cluster")).is_empty(),
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
        wait_for_log(&log, "Step ready.");
        let executor = &mut services.0[1];
        executor.kill().unwrap();
        executor.exit_within(Duration::from_secs(60), "SIGKILL");
        let killed = std::time::Instant::now();
        let event = "its only executor's death, on a job no task of can finish";
        let code = run.exit_within(Duration::from_secs(120), event);
        let log = log.lock().unwrap().clone();
        (code, log, killed.elapsed().as_secs())
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{log}");
    for token in [
        &format!("the cluster at {url} made no progress on '"),
        "(job ",
        "so the run cancelled it",
        "SEGFLOW_CLUSTER_STALL_SECONDS",
    ] {
        assert!(log.contains(token), "{token}: {log}");
    }
    // The job was queued before its executor died: the watchdog knew it by its id, and so
    // asked the scheduler how it was doing. Without the id it judges a job by time alone,
    // and cancelled running jobs of a 1M night (BENCHMARKS.md, issue 35).
    assert!(!log.contains("not accepted by the scheduler"), "{log}");
    assert!(!log.contains(".yaml:"), "{log}");
    assert!(seconds < 60, "the watchdog took {seconds} s");
    assert!(
        crate::support::snapshot_of(&root.path().join("lake/marts-cluster")).is_empty(),
        "nothing published"
    );
}
