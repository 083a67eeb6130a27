//! Run history, kept beside the data in a state store (any URL: a local folder by default,
//! S3 in production), so that losing the machine loses nothing. One JSON record per run,
//! rewritten when the run ends; the newest record of a logical date says whether it is done.
//! A plain store: the runner (`runner/`) decides what is recorded, and when.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::engine::VersionCounts;
use crate::run::{CheckResult, Timing};
use crate::segments::Unmatched;
use crate::storage::{Location, Storage, StorageError, read_object};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not {action} the run record {url}")]
    Store {
        action: &'static str,
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("the run record {url} is not valid: {reason}")]
    Corrupt { url: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Cancelled for a reason that is not the pipeline's: a stop of the daemon, a lost lease.
    /// It does not count against the schedule's attempts.
    Interrupted,
    /// Was running when the daemon running it died; found by the daemon that took its lease.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    pub as_of: NaiveDate,
    /// The schedule slot the run stands for, when the scheduler started it.
    pub slot: Option<DateTime<Utc>>,
    pub attempt: u32,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// Rows published per output table.
    pub rows: BTreeMap<String, u64>,
    /// Per source, rows that belong to no known customer (in no segment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmatched: BTreeMap<String, Unmatched>,
    /// Per versioned source, the rows that were not in force (docs/sources.md, "Rows that change").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, VersionCounts>,
    /// How long each step took, with the rows of those computed on their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Timing>,
    /// How long writing each output took.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Timing>,
    /// Every check's outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    pub error: Option<String>,
}

impl RunRecord {
    /// How long the run took, once it has ended.
    pub fn seconds(&self) -> Option<f64> {
        self.ended_at
            .map(|end| (end - self.started_at).as_seconds_f64())
    }
}

impl RunStatus {
    /// As the history and `segflow runs --json` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

impl RunRecord {
    /// A first try by hand, running since `started_at`.
    pub fn started(
        pipeline: &str,
        as_of: NaiveDate,
        run_id: &str,
        started_at: DateTime<Utc>,
    ) -> RunRecord {
        RunRecord {
            pipeline: pipeline.to_string(),
            as_of,
            slot: None,
            attempt: 1,
            run_id: run_id.to_string(),
            started_at,
            ended_at: None,
            status: RunStatus::Running,
            rows: BTreeMap::new(),
            unmatched: BTreeMap::new(),
            versions: BTreeMap::new(),
            steps: Vec::new(),
            writes: Vec::new(),
            checks: Vec::new(),
            error: None,
        }
    }
}

impl HistoryError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            HistoryError::Storage(e) => e.fault(),
            HistoryError::Store { .. } | HistoryError::Corrupt { .. } => {
                crate::fault::Fault::Environment
            }
        }
    }
}

pub struct RunHistory {
    storage: Storage,
    root: Location,
}

const READS_IN_FLIGHT: usize = 16;

impl RunHistory {
    pub fn new(storage: Storage, root: Location) -> RunHistory {
        RunHistory {
            storage,
            root: root.as_folder(),
        }
    }

    fn record_location(&self, record: &RunRecord) -> Location {
        self.root
            .join(&format!("runs/{}/{}.json", record.pipeline, record.run_id))
    }

    pub async fn save(&self, record: &RunRecord) -> Result<(), HistoryError> {
        let location = self.record_location(record);
        let store = self.storage.store(&location, &Default::default())?;
        let body = serde_json::to_vec_pretty(record).expect("a run record serialises");
        store
            .put(&location.path(), PutPayload::from(body))
            .await
            .map_err(|source| HistoryError::Store {
                action: "write",
                url: location.to_string(),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Every recorded run, of one pipeline or all, oldest first.
    pub async fn list(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>, HistoryError> {
        let folder = match pipeline {
            Some(name) => self.root.join(&format!("runs/{name}/")),
            None => self.root.join("runs/"),
        };
        let store = self.storage.store(&folder, &Default::default())?;
        let objects = self.storage.list(&folder, store.as_ref()).await?;
        let records: Vec<Result<RunRecord, HistoryError>> = futures::stream::iter(objects)
            .filter(|meta| std::future::ready(meta.location.as_ref().ends_with(".json")))
            .map(|meta| {
                let store = store.clone();
                let url = folder.join(&folder.relative(&meta.location)).to_string();
                async move {
                    let bytes =
                        read_object(store.as_ref(), &meta.location)
                            .await
                            .map_err(|source| HistoryError::Store {
                                action: "read",
                                url: url.clone(),
                                source: Box::new(source),
                            })?;
                    serde_json::from_slice(&bytes).map_err(|e| HistoryError::Corrupt {
                        url: url.clone(),
                        reason: e.to_string(),
                    })
                }
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut records = records.into_iter().collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)));
        Ok(records)
    }

    /// The successful runs of a pipeline, oldest first.
    pub async fn succeeded(&self, pipeline: &str) -> Result<Vec<RunRecord>, HistoryError> {
        let mut records = self.list(Some(pipeline)).await?;
        records.retain(|r| r.status == RunStatus::Succeeded);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run_id: &str, as_of: u32, status: RunStatus) -> RunRecord {
        let as_of = NaiveDate::from_ymd_opt(2026, 1, as_of).unwrap();
        RunRecord {
            status,
            ..RunRecord::started("p", as_of, run_id, Utc::now())
        }
    }

    #[tokio::test]
    async fn records_are_saved_listed_and_updated() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(&format!("{}/", dir.path().display())).unwrap();
        let history = RunHistory::new(Storage::new(), root);
        let mut first = record("a", 1, RunStatus::Running);
        history.save(&first).await.unwrap();
        history
            .save(&record("b", 2, RunStatus::Failed))
            .await
            .unwrap();
        assert!(history.succeeded("p").await.unwrap().is_empty());
        first.status = RunStatus::Succeeded;
        history.save(&first).await.unwrap();
        let all = history.list(None).await.unwrap();
        assert_eq!(all.len(), 2);
        let succeeded = history.succeeded("p").await.unwrap();
        assert_eq!(
            succeeded.iter().map(|r| r.as_of).collect::<Vec<_>>(),
            [NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()]
        );
        assert!(history.list(Some("other")).await.unwrap().is_empty());
    }
}
