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
    #[error(
        "the cluster at {url} ran out of memory computing '{table}': a task needed more than \
         its executor's memory limit allows, after spilling what it could (a hash join's \
         table and a window's rows cannot spill). {message}. Give the executors more memory \
         (`segflow cluster executor --memory-limit`), or raise engine.target_partitions \
         ({partitions} now) so that each task holds a smaller piece. Nothing was published"
    )]
    OutOfMemory {
        url: String,
        table: String,
        partitions: usize,
        /// The executor's memory pool's refusal: who asked, and the pool's largest holders.
        message: String,
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
            | ClusterError::OutOfMemory { .. }
            | ClusterError::Stalled { .. } => crate::fault::Fault::Environment,
        }
    }
}

/// The memory pool's refusal inside the text of a failed Ballista job: the executor sends
/// its error as the Debug text of `ResourcesExhausted("...")`, which the scheduler and the
/// client nest in their own words.
#[cfg(feature = "cluster")]
pub(crate) fn memory_refusal(job_error: &str) -> Option<String> {
    const SIGN: &str = "ResourcesExhausted(\"";
    let quoted = &job_error[job_error.find(SIGN)? + SIGN.len()..];
    let mut message = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(message.trim().to_string()),
            '\\' => match chars.next()? {
                'n' => message.push('\n'),
                't' => message.push('\t'),
                other => message.push(other),
            },
            c => message.push(c),
        }
    }
    None
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::memory_refusal;

    #[test]
    fn a_refusal_is_read_out_of_a_failed_jobs_text() {
        let job = r#"Job aB3 failed: Job failed due to stage 4 failed: Task failed due to runtime execution error: DataFusionError(ResourcesExhausted("Additional allocation failed for HashJoinInput[1] with top memory consumers (across reservations) as:\n  HashJoinInput[1]#12(can spill: false) consumed 3.0 KB\nError: Failed to allocate additional 1024.0 B for \"HashJoinInput[1]\" with 3.0 KB already allocated - 1024.0 B remain available for the total pool"))"#;
        assert_eq!(
            memory_refusal(job).as_deref(),
            Some(
                "Additional allocation failed for HashJoinInput[1] with top memory consumers \
                 (across reservations) as:\n  HashJoinInput[1]#12(can spill: false) consumed \
                 3.0 KB\nError: Failed to allocate additional 1024.0 B for \"HashJoinInput[1]\" \
                 with 3.0 KB already allocated - 1024.0 B remain available for the total pool"
            )
        );
        assert_eq!(
            memory_refusal("Job aB3 failed: Task failed: IoError(...)"),
            None
        );
        assert_eq!(memory_refusal("ResourcesExhausted(\"cut off"), None);
    }
}
