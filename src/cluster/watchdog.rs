//! A deadline for every cluster job: Ballista 55 can leave a job running that no task of
//! can finish (a stage lost after a failed shuffle fetch, an executor killed while the
//! scheduler still counts it alive, executors stopped by a scheduler that froze past their
//! timeout) while the client waits for it for ever. Every query the run sends to the
//! cluster is wrapped ([`WatchedPlanner`], [`WatchedQuery`]) so that the watchdog knows it
//! runs; the watchdog asks the scheduler for each job's metrics, which change as its stages
//! finish, and gives up on a query that has gone without progress for the set time: it
//! cancels the job, ends the query with an error, and records why for the run's message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{CancelJobParams, GetJobMetricsParams};
use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::ClusterUrl;

/// How long a job may go without a finished stage, unless `SEGFLOW_CLUSTER_STALL_SECONDS`
/// says otherwise: longer than any one stage of the shipped pipeline at 10M customers.
const DEFAULT_STALL: Duration = Duration::from_secs(600);

/// How often the scheduler is asked how the jobs are doing.
const POLL: Duration = Duration::from_secs(2);

/// A job cancelled for making no progress.
#[derive(Debug, Clone)]
pub struct Stall {
    pub job: String,
    pub seconds: u64,
    /// Its finished stages, as the scheduler reported them last.
    pub stages: String,
    /// Executors registered when it was cancelled, if the scheduler said.
    pub executors: Option<usize>,
}

/// The queries of one client session that are running on the cluster.
pub struct Watchdog {
    url: ClusterUrl,
    limit: Duration,
    running: Mutex<HashMap<u64, Running>>,
    next: std::sync::atomic::AtomicU64,
    stalled: Mutex<Option<Stall>>,
}

/// A query being executed: its plan (whose job id Ballista fills in once submitted), when
/// it last made progress, and how to stop it.
struct Running {
    plan: Arc<dyn ExecutionPlan>,
    metrics: String,
    stages: String,
    progressed: Instant,
    stop: CancellationToken,
}

impl Watchdog {
    /// A watchdog for the cluster at `url`, polling on the current runtime until it is
    /// dropped.
    pub(super) fn start(url: &ClusterUrl) -> Arc<Watchdog> {
        let limit = std::env::var("SEGFLOW_CLUSTER_STALL_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(DEFAULT_STALL, Duration::from_secs);
        let watchdog = Arc::new(Watchdog {
            url: url.clone(),
            limit,
            running: Mutex::default(),
            next: Default::default(),
            stalled: Mutex::default(),
        });
        tokio::spawn(watch(Arc::downgrade(&watchdog)));
        watchdog
    }

    /// The job cancelled for making no progress, if one was.
    pub fn stalled(&self) -> Option<Stall> {
        self.stalled.lock().expect("watchdog lock").clone()
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn started(&self, plan: Arc<dyn ExecutionPlan>) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = CancellationToken::new();
        let running = Running {
            plan,
            metrics: String::new(),
            stages: "not submitted yet".to_string(),
            progressed: Instant::now(),
            stop: stop.clone(),
        };
        self.running
            .lock()
            .expect("watchdog lock")
            .insert(id, running);
        (id, stop)
    }

    fn ended(&self, id: u64) {
        self.running.lock().expect("watchdog lock").remove(&id);
    }

    /// The running queries, each with its job id once it has one.
    fn jobs(&self) -> Vec<(u64, Option<String>)> {
        let running = self.running.lock().expect("watchdog lock");
        running
            .iter()
            .map(|(id, r)| {
                let job = r
                    .plan
                    .downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()
                    .and_then(|q| q.job_id())
                    .map(|job| job.to_string());
                (*id, job)
            })
            .collect()
    }

    /// Notes `metrics` for query `id`; a change is progress. Returns the query's stop, with
    /// what is known of it, once it has gone without progress for the limit.
    fn observed(
        &self,
        id: u64,
        metrics: Option<(String, String)>,
    ) -> Option<(CancellationToken, Duration, String)> {
        let mut running = self.running.lock().expect("watchdog lock");
        let query = running.get_mut(&id)?;
        if let Some((metrics, stages)) = metrics
            && metrics != query.metrics
        {
            query.metrics = metrics;
            query.stages = stages;
            query.progressed = Instant::now();
        }
        let idle = query.progressed.elapsed();
        (idle >= self.limit).then(|| (query.stop.clone(), idle, query.stages.clone()))
    }
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("url", &self.url.to_string())
            .field("limit", &self.limit)
            .finish()
    }
}

async fn watch(watchdog: Weak<Watchdog>) {
    let mut client = None;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(watchdog) = watchdog.upgrade() else {
            return;
        };
        for (id, job) in watchdog.jobs() {
            if client.is_none() {
                client = tokio::time::timeout(POLL, connect(&watchdog.url))
                    .await
                    .ok()
                    .flatten();
            }
            // Stages finish as tasks do: a job's metrics (of its finished stages) change.
            let metrics = match (job.as_ref(), client.as_mut()) {
                (Some(job), Some(scheduler)) => {
                    // A scheduler that does not answer makes no progress either.
                    let asked = tokio::time::timeout(
                        POLL,
                        scheduler.get_job_metrics(GetJobMetricsParams {
                            job_id: job.clone(),
                        }),
                    )
                    .await;
                    asked.ok().and_then(Result::ok).map(|answer| {
                        let stages = answer.into_inner().stages;
                        let described = stages
                            .iter()
                            .map(|s| format!("stage {}: {} partitions", s.stage_id, s.partitions))
                            .collect::<Vec<_>>()
                            .join(", ");
                        (
                            format!("{stages:?}"),
                            format!(
                                "finished stages: {}",
                                if described.is_empty() {
                                    "none".to_string()
                                } else {
                                    described
                                }
                            ),
                        )
                    })
                }
                _ => None,
            };
            let Some((stop, idle, stages)) = watchdog.observed(id, metrics) else {
                continue;
            };
            // Asked briefly: a stalled scheduler may not answer, and the client's own
            // timeout must not come first.
            let executors = tokio::time::timeout(POLL, super::reach::reach(&watchdog.url))
                .await
                .ok()
                .and_then(Result::ok);
            let stall = Stall {
                job: job
                    .clone()
                    .unwrap_or_else(|| "(not accepted by the scheduler)".to_string()),
                seconds: idle.as_secs(),
                stages,
                executors,
            };
            tracing::error!(cluster = %watchdog.url, job = %stall.job, seconds = stall.seconds, stages = %stall.stages, executors = ?stall.executors, "A cluster job made no progress; cancelling it.");
            *watchdog.stalled.lock().expect("watchdog lock") = Some(stall);
            stop.cancel();
            watchdog.ended(id);
            if let (Some(job), Some(scheduler)) = (job, client.as_mut()) {
                let cancelled = scheduler.cancel_job(CancelJobParams {
                    job_id: job.clone(),
                });
                match tokio::time::timeout(POLL, cancelled).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%job, %error, "Could not cancel the stalled job on the cluster.")
                    }
                    Err(_) => {
                        tracing::warn!(%job, "The scheduler did not answer the stalled job's cancellation.")
                    }
                }
            }
        }
    }
}

async fn connect(url: &ClusterUrl) -> Option<SchedulerGrpcClient<tonic::transport::Channel>> {
    let endpoint = create_grpc_client_endpoint(
        format!("http://{}:{}", url.host, url.port),
        Some(&GrpcClientConfig::default()),
    )
    .ok()?;
    let channel = endpoint.connect().await.ok()?;
    Some(SchedulerGrpcClient::new(channel))
}

/// Ballista's planner, with every query it plans for the cluster watched while it runs.
#[derive(Debug)]
pub(super) struct WatchedPlanner {
    pub(super) inner: Arc<dyn QueryPlanner + Send + Sync>,
    pub(super) watchdog: Arc<Watchdog>,
}

#[async_trait]
impl QueryPlanner for WatchedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        if !plan.is::<DistributedQueryExec<LogicalPlanNode>>() {
            return Ok(plan);
        }
        Ok(Arc::new(WatchedQuery {
            inner: plan,
            watchdog: Arc::clone(&self.watchdog),
        }))
    }
}

/// A query on the cluster that the watchdog follows while its results are read, and ends
/// with an error when the watchdog gives up on it.
#[derive(Debug)]
struct WatchedQuery {
    inner: Arc<dyn ExecutionPlan>,
    watchdog: Arc<Watchdog>,
}

impl DisplayAs for WatchedQuery {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for WatchedQuery {
    fn name(&self) -> &str {
        "WatchedQuery"
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    /// None to the local planner: the query runs on the cluster as one.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion, DataFusionError>,
    ) -> Result<TreeNodeRecursion, DataFusionError> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream, DataFusionError> {
        let results = self.inner.execute(partition, context)?;
        let (id, stop) = self.watchdog.started(Arc::clone(&self.inner));
        let ended = Ended {
            watchdog: Arc::clone(&self.watchdog),
            id,
        };
        let stopped = stop.clone();
        let gave_up = futures::stream::once(async move {
            stopped.is_cancelled().then(|| {
                Err(DataFusionError::Execution(
                    "the cluster job made no progress, and the run's watchdog cancelled it"
                        .to_string(),
                ))
            })
        })
        .filter_map(std::future::ready);
        let stream = results
            .take_until(stop.cancelled_owned())
            .chain(gave_up)
            .inspect(move |_| {
                let _ = &ended;
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// Tells the watchdog a query's results are no longer read.
struct Ended {
    watchdog: Arc<Watchdog>,
    id: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.watchdog.ended(self.id);
    }
}
