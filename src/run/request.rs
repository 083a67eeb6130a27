//! What a run is asked to do, and what it reports back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::NaiveDate;

use crate::engine::{CacheSpec, FilesDone, Params, VersionCounts};
use crate::pipeline::Pipeline;
use crate::publish::{Committed, Fence, PublishingRun};
use crate::segments::Unmatched;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub as_of: NaiveDate,
    pub run_id: String,
    /// The schedule slot the run stands for, when the scheduler started it (for the history).
    pub slot: Option<chrono::DateTime<chrono::Utc>>,
    /// Which try of its slot this is, from 1 (for the history).
    pub attempt: u32,
    /// Runs of the pipeline known to have ended, whose leftovers (staging folders, files
    /// never committed) this run may delete.
    pub ended_runs: BTreeSet<String>,
    /// Publish with plain writes on stores that cannot write conditionally, on the user's
    /// promise that nothing else publishes these outputs at the same time.
    pub single_writer: bool,
    /// Where incremental steps keep each file's result for later runs (in the state store);
    /// without it they compute every file.
    pub cache: Option<CacheSpec>,
    /// The date journal and the run's token, for a run under a lease; without it the run
    /// publishes unfenced, as the only writer (the demo, library callers).
    pub fence: Option<Fence>,
    /// The state store the run keeps its history, leases and cache in, checked not to lie
    /// in a source.
    pub state: Option<crate::storage::Location>,
}

/// The run request is the one context of a run; what the engine and the publications need
/// of it is derived here, not rewrapped along the way.
impl RunRequest {
    /// The values SQL sees as `$as_of`, `$run_id` and the vars.
    pub fn params(&self, pipeline: &Pipeline) -> Params {
        Params::new(self.as_of, pipeline.timezone, &self.run_id, &pipeline.vars)
    }

    /// What each output's publication needs to know of the run.
    pub fn publishing(&self, pipeline: &Pipeline) -> PublishingRun {
        PublishingRun {
            pipeline: pipeline.name.clone(),
            as_of: self.as_of,
            run_id: self.run_id.clone(),
            ended_runs: self.ended_runs.clone(),
            single_writer: self.single_writer,
        }
    }

    /// A request with a fresh run id; ids sort by start time (UUIDv7).
    pub fn new(as_of: NaiveDate) -> RunRequest {
        RunRequest {
            as_of,
            run_id: uuid::Uuid::now_v7().simple().to_string(),
            slot: None,
            attempt: 1,
            ended_runs: BTreeSet::new(),
            single_writer: false,
            cache: None,
            fence: None,
            state: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub outputs: Vec<PublishedOutput>,
    /// Per source, rows that belong to no known customer (and so to no segment).
    pub unmatched: BTreeMap<String, Unmatched>,
    /// Per versioned source, the rows that were not in force.
    pub versions: BTreeMap<String, VersionCounts>,
    /// Each step, in the order they ran.
    pub steps: Vec<Timing>,
    /// Each output's writing into its staging area, in the order they were written.
    pub writes: Vec<Timing>,
    /// Every check's outcome, in the spec's order.
    pub checks: Vec<CheckResult>,
    pub elapsed: Duration,
}

/// How long one step took, or one output's writing, and its rows where they were counted
/// (a step planned into its reader has none of its own).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub name: String,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// An incremental step's files: computed by this run, or reused from earlier ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesDone>,
}

#[derive(Debug, Clone)]
pub struct PublishedOutput {
    pub url: String,
    pub committed: Committed,
}

/// What `segflow validate` planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub steps: usize,
    pub segments: usize,
}

/// What `segflow check` found on an earlier night's publication.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub checks: Vec<CheckResult>,
    /// Checks it could not run, each with why: they read a table that only a run computes.
    pub skipped: Vec<(String, String)>,
}

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// Failed, with `severity: warn`: the run published.
    Warned,
    /// Failed, with `severity: error`: the run published nothing.
    Failed,
}

/// One check's outcome, as the run record keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub table: String,
    /// The rule as the spec writes it.
    pub rule: String,
    /// What broke it, in words; for a check that passed, empty or a note (an anomaly
    /// check's first publication, with nothing to compare).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub found: String,
    pub status: CheckStatus,
    /// Rows that break the rule (for row_count, 1 when the count is out of bounds).
    pub offending: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl CheckResult {
    /// One line for a person: the check, its table, and what broke it.
    pub fn summary(&self) -> String {
        let examples = if self.examples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", self.examples.join("; "))
        };
        format!(
            "check '{}' on '{}' ({}): {}{examples}",
            self.name, self.table, self.rule, self.found
        )
    }
}
