//! What goes wrong with a cluster, in words that say where to look: its address, its
//! scheduler and executors, a job that stalled.

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("'{0}' is not a cluster address: write df://HOST:PORT (the scheduler's)")]
    BadUrl(String),
    #[error(
        "cannot reach the cluster's scheduler at {url}: {reason}. Is `segflow cluster \
         scheduler` running there, and is the port open from here?"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "{url} does not answer as a Ballista scheduler ({reason}). Is it the scheduler's port \
         (50050 unless set), not an executor's?"
    )]
    NotAScheduler { url: String, reason: String },
    #[error(
        "the cluster's scheduler at {url} has no executor registered, so a run would wait \
         for one without end. Start executors (`segflow cluster executor --scheduler {url}`), \
         or see why they left in their logs"
    )]
    NoExecutors { url: String },
    #[error(
        "the cluster at {url} made no progress on '{table}' for {seconds} s (job {job}; \
         {stages}; {executors}), so the run cancelled it. Ballista can lose a stage after a \
         failed shuffle fetch, wait on an executor that died, or have its executors stopped \
         by a scheduler that froze past their timeout; the scheduler's and executors' logs \
         say which. Nothing was published: run again. SEGFLOW_CLUSTER_STALL_SECONDS sets how \
         long a job may go without a finished stage ({limit} s now)"
    )]
    Stalled {
        url: String,
        table: String,
        job: String,
        seconds: u64,
        stages: String,
        executors: String,
        limit: u64,
    },
    #[error(
        "the cluster at {url} failed while computing '{table}': {reason}. The scheduler or an \
         executor stopped answering or broke off; their logs say why. Nothing was published: \
         run again once the cluster is up"
    )]
    Failed {
        url: String,
        table: String,
        reason: String,
    },
    #[error("cannot start a session on the cluster at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error(transparent)]
    NotBuilt(#[from] crate::features::NotBuilt),
    #[cfg(feature = "cluster")]
    #[error("the Ballista {role} stopped: {source}")]
    Service {
        role: &'static str,
        #[source]
        source: ballista_core::error::BallistaError,
    },
}

impl ClusterError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            ClusterError::BadUrl(_) | ClusterError::NotBuilt(_) => crate::fault::Fault::User,
            #[cfg(feature = "cluster")]
            ClusterError::Service { .. } => crate::fault::Fault::Environment,
            ClusterError::Connect { .. }
            | ClusterError::Unreachable { .. }
            | ClusterError::NotAScheduler { .. }
            | ClusterError::NoExecutors { .. }
            | ClusterError::Failed { .. }
            | ClusterError::Stalled { .. } => crate::fault::Fault::Environment,
        }
    }
}
