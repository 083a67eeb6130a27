//! Apache DataFusion Ballista, the distributed engine a pipeline with `engine.cluster` runs on
//! (docs/cluster.md). Every build knows a scheduler's address, a service's settings and what
//! a cluster's failures mean; with the `cluster` feature it also runs queries there, and
//! `segflow cluster` starts Ballista's own scheduler and executor from its crates, so that one
//! binary is the client and the cluster both.

mod error;
#[cfg(feature = "cluster")]
mod reach;
#[cfg(feature = "cluster")]
mod services;
#[cfg(feature = "cluster")]
mod session;
mod url;
#[cfg(feature = "cluster")]
mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use error::ClusterError;
#[cfg(feature = "cluster")]
pub(crate) use error::memory_refusal;
#[cfg(feature = "cluster")]
pub use reach::reach;
#[cfg(feature = "cluster")]
pub use session::connect;
pub use url::ClusterUrl;
#[cfg(feature = "cluster")]
pub use watchdog::{Stall, Watchdog};

/// A service of the cluster that `segflow cluster` runs until the process ends.
#[derive(Debug, Clone)]
pub enum Service {
    Scheduler(SchedulerSettings),
    Executor(ExecutorSettings),
}

/// Where a scheduler listens, and how long it waits on a silent executor.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The address it listens on.
    pub bind: SocketAddr,
    /// The name executors and clients reach it by.
    pub external_host: String,
    /// How long an executor may go without a heartbeat before it counts as dead.
    pub executor_timeout: std::time::Duration,
}

/// Where an executor listens and works.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub scheduler: ClusterUrl,
    /// The address it listens on, and by which the scheduler and the other executors
    /// reach it.
    pub host: String,
    /// Arrow Flight, which serves its shuffle files.
    pub flight_port: u16,
    /// gRPC, which takes its tasks.
    pub grpc_port: u16,
    /// Where its shuffle files go; a temporary folder when unset.
    pub work_dir: Option<PathBuf>,
    /// Tasks it runs at once; the number of cores when unset.
    pub concurrent_tasks: Option<usize>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: std::time::Duration,
    /// Bytes its tasks may hold together before they spill; three quarters of the
    /// machine's (or container's) memory when unset, as for a run in process.
    pub memory_limit: Option<usize>,
}

/// Runs `service` until the process ends.
pub async fn serve(service: Service) -> Result<(), ClusterError> {
    #[cfg(feature = "cluster")]
    match service {
        Service::Scheduler(settings) => services::run_scheduler(settings).await,
        Service::Executor(settings) => services::run_executor(settings).await,
    }
    #[cfg(not(feature = "cluster"))]
    Err(crate::features::NotBuilt {
        needs: match service {
            Service::Scheduler(_) => "`segflow cluster scheduler`",
            Service::Executor(_) => "`segflow cluster executor`",
        }
        .to_string(),
        feature: crate::features::Feature::Cluster,
    }
    .into())
}
