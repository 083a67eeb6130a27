//! A Ballista cluster made of segflow processes on loopback: `segflow cluster scheduler`
//! and two `segflow cluster executor`s, queried by Ballista's own client.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::common::{Project, read_table, rows, segflow};

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
    let scheduler_port = free_port();
    let mut services = Services(Vec::new());
    let quiet = |command: &mut std::process::Command| {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut scheduler = segflow();
    scheduler.args([
        "cluster",
        "scheduler",
        "--bind",
        &format!("127.0.0.1:{scheduler_port}"),
    ]);
    quiet(&mut scheduler);
    services.0.push(scheduler.spawn().unwrap());
    until_listening(scheduler_port);
    let url = format!("df://127.0.0.1:{scheduler_port}");
    for n in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let mut executor = segflow();
        executor.args([
            "cluster",
            "executor",
            "--scheduler",
            &url,
            "--flight-port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--concurrent-tasks",
            "2",
            "--work-dir",
            work.join(format!("executor-{n}")).to_str().unwrap(),
        ]);
        std::fs::create_dir_all(work.join(format!("executor-{n}"))).unwrap();
        quiet(&mut executor);
        services.0.push(executor.spawn().unwrap());
        until_listening(grpc);
    }
    (services, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_segflow_processes_runs_queries() {
    let project = Project::new(300, 900);
    let (_services, url) = start_cluster(project.path());
    let ctx: SessionContext = SessionContext::remote(&url).await.unwrap();
    for table in ["customers", "orders"] {
        let folder = project.data().join(table);
        ctx.register_parquet(
            table,
            folder.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    // Planned by the scheduler into stages, whose tasks the executors run.
    let counted = ctx
        .sql(
            "SELECT COUNT(*) AS orders, COUNT(DISTINCT c.customer_id) AS buyers \
             FROM orders o JOIN customers c ON o.customer_id = c.customer_id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let orders = counted[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(
        orders as usize,
        rows(&read_table(&project.data().join("orders")))
    );
    let buyers = counted[0].column(1).as_primitive::<Int64Type>().value(0);
    assert!(buyers > 0 && buyers <= 300, "{buyers}");
}
