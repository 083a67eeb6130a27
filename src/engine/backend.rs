//! Where a run's queries execute: in this process, or on a Ballista cluster. The choice is
//! made here once, from `engine.cluster`; the run asks its backend what the choice implies
//! (what must be reachable, where results may be kept, what to say while it waits).

use std::time::{Duration, Instant};

use crate::cluster::ClusterUrl;
use crate::features::{Feature, Features};
use crate::pipeline::{EngineSettings, Pipeline};
use crate::progress::Progress;

use super::{CacheSpec, Engine, EngineError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// DataFusion in this process, on every core.
    Local,
    /// A Ballista cluster's scheduler, whose executors run the queries, in `partitions`
    /// pieces per stage where the pipeline sets `engine.target_partitions`.
    Cluster {
        url: ClusterUrl,
        partitions: Option<usize>,
    },
}

/// How often a run on a cluster says what it waits for: Ballista's client says nothing while
/// a job runs.
const CLUSTER_WAIT_LOG: Duration = Duration::from_secs(30);

impl Backend {
    pub fn of(settings: &EngineSettings) -> Backend {
        match &settings.cluster {
            Some(url) => Backend::Cluster {
                url: url.clone(),
                partitions: settings.target_partitions,
            },
            None => Backend::Local,
        }
    }

    /// Before any work: on a cluster, every place the run reads or writes is one the
    /// executors reach, and the scheduler answers.
    pub async fn check(
        &self,
        pipeline: &Pipeline,
        cache: Option<&CacheSpec>,
    ) -> Result<(), EngineError> {
        let Backend::Cluster { url, .. } = self else {
            return Ok(());
        };
        // `--cluster` and SEGFLOW_CLUSTER reach here without the pipeline's validation.
        Features::BUILT.require(Feature::Cluster, format!("the cluster {url}"))?;
        let local = local_paths(pipeline, cache);
        if !local.is_empty() {
            return Err(EngineError::LocalOnCluster(local));
        }
        #[cfg(feature = "cluster")]
        crate::cluster::reach(url).await?;
        Ok(())
    }

    /// `engine`, with every query from here on sent where this backend runs them.
    pub async fn connect(&self, engine: Engine) -> Result<Engine, EngineError> {
        match self {
            Backend::Local => Ok(engine),
            #[cfg(feature = "cluster")]
            Backend::Cluster { url, partitions } => engine.on_cluster(url, *partitions).await,
            #[cfg(not(feature = "cluster"))]
            Backend::Cluster { url, .. } => Err(crate::features::NotBuilt {
                needs: format!("the cluster {url}"),
                feature: Feature::Cluster,
            }
            .into()),
        }
    }

    /// Whether a result may be kept in this process's memory: on a cluster, results live
    /// where executors can read them, never here.
    pub fn keeps_results_in_memory(&self) -> bool {
        matches!(self, Backend::Local)
    }

    /// Logs, every [`CLUSTER_WAIT_LOG`] while the run's queries run on a cluster, what the
    /// run is at; never ends (in process, it logs nothing: the progress shows it).
    pub async fn tell_waits(
        &self,
        pipeline: &str,
        progress: &Progress,
    ) -> std::convert::Infallible {
        let Backend::Cluster { url, .. } = self else {
            return std::future::pending().await;
        };
        let started = Instant::now();
        loop {
            tokio::time::sleep(CLUSTER_WAIT_LOG).await;
            tracing::info!(%pipeline, cluster = %url, seconds = started.elapsed().as_secs(), at = %progress.latest(), "Waiting on the cluster.");
        }
    }
}

/// The executors read the sources and the scratch folder and write the outputs' files:
/// what of these is a path of this machine, which they cannot reach.
fn local_paths(pipeline: &Pipeline, cache: Option<&CacheSpec>) -> Vec<String> {
    let mut local: Vec<String> = Vec::new();
    for source in pipeline.sources.iter().filter(|s| s.location.is_local()) {
        local.push(format!("source '{}' at {}", source.name, source.location));
    }
    for output in pipeline.outputs.iter().filter(|o| o.location.is_local()) {
        local.push(format!("output '{}' at {}", output.table, output.location));
    }
    match &pipeline.engine.scratch {
        None => local.push("engine.scratch, unset (a temporary folder here)".to_string()),
        Some(scratch) if scratch.is_local() => local.push(format!("engine.scratch at {scratch}")),
        Some(_) => {}
    }
    // Executors write and read the results of incremental steps kept in the state store.
    let incremental = pipeline.steps.iter().any(|step| step.incremental.is_some());
    if let Some(cache) = cache.filter(|cache| incremental && cache.root.is_local()) {
        local.push(format!(
            "the state store, which keeps incremental steps' results, at {}",
            cache.root
        ));
    }
    local
}
