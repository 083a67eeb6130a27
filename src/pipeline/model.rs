//! The validated pipeline: what every module past this one works from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono_tz::Tz;

use super::types::{ColumnType, VarValue};
use crate::schedule::{Catchup, Schedule};
use crate::segments::Members;
use crate::sql::StepSql;
use crate::storage::Location;

/// The name under which the run's logical date reaches SQL (`$as_of`).
pub const AS_OF: &str = "as_of";
/// The first instant of the as_of day in the pipeline's time zone (`$as_of_start`).
pub const AS_OF_START: &str = "as_of_start";
/// The first instant after the as_of day in the pipeline's time zone (`$as_of_end`): what
/// happened before it happened by the end of as_of.
pub const AS_OF_END: &str = "as_of_end";
/// The name under which the run's id reaches SQL (`$run_id`).
pub const RUN_ID: &str = "run_id";
/// Parameters segflow sets for every run, which a var cannot override.
pub const RUN_PARAMETERS: [&str; 4] = [AS_OF, AS_OF_START, AS_OF_END, RUN_ID];

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// The YAML file, as the user named it (used in messages).
    pub file: PathBuf,
    /// The zone whose calendar days the pipeline counts in: the as_of day, days since, date
    /// vars. Every timestamp column reaches SQL as an instant shown in this zone.
    pub timezone: Tz,
    /// Who may be a segment member.
    pub members: Members,
    pub vars: BTreeMap<String, VarValue>,
    pub sources: Vec<Source>,
    /// Steps, segments and `segment_membership`, in dependency order: every step comes
    /// after the steps it reads.
    pub steps: Vec<Step>,
    /// The segment names, in YAML order.
    pub segments: Vec<String>,
    pub outputs: Vec<Output>,
    /// Outputs that `--select` left out: this run does not publish them, but its steps may
    /// still read their earlier publications.
    pub left_out: Vec<Output>,
    pub engine: EngineSettings,
    pub schedule: Option<ScheduleSpec>,
    pub notify: Notify,
    /// Where a successful run writes the report of the latest publication (`segflow report`).
    pub report: Option<ReportSpec>,
    /// Expectations on tables, checked before anything is published.
    pub checks: Vec<Check>,
}

/// An expectation on a table, checked after the outputs are staged and before they are
/// published (docs/checks.md).
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// A source, step or output.
    pub table: String,
    pub severity: Severity,
    pub rule: CheckRule,
    /// Where the spec declares it, `file:line`, for messages about its tables and columns.
    pub at: String,
}

impl Check {
    /// The tables the check reads (not counting earlier publications, which stay as they
    /// were published).
    pub fn reads(&self) -> Vec<&str> {
        let mut tables = vec![self.table.as_str()];
        match &self.rule {
            CheckRule::Relationships { to, .. } => tables.push(to),
            CheckRule::Sql(step) => tables.extend(
                step.sql
                    .tables
                    .iter()
                    .filter(|t| Published::parse(t).is_none())
                    .map(String::as_str),
            ),
            _ => {}
        }
        tables
    }
}

/// What a failed check does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The run fails and publishes nothing.
    Error,
    /// The run publishes; the failure is logged and recorded.
    Warn,
}

/// Which rows break a check, or what the table must hold.
#[derive(Debug, Clone)]
pub enum CheckRule {
    /// No row has NULL in any of these columns.
    NotNull(Vec<String>),
    /// No two rows share the values of these columns.
    Unique(Vec<String>),
    /// Every non-NULL value of the column is one of these.
    AcceptedValues {
        column: String,
        values: Vec<CheckValue>,
    },
    /// Every non-NULL value of the column is within min..=max.
    AcceptedRange {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// The table has min..=max rows.
    RowCount { min: Option<u64>, max: Option<u64> },
    /// Every non-NULL value of the column is a value of `field` in the table `to`.
    Relationships {
        column: String,
        to: String,
        field: String,
    },
    /// At least this share (0..=1) of the rows have a value in the column.
    NotNullProportion { column: String, at_least: f64 },
    /// A query whose rows are the offending ones; planned like a step, with the vars.
    Sql(Box<Step>),
    /// The newest value of a timestamp column before the end of the as_of day is at most
    /// `max_age` older than that end.
    Freshness {
        column: String,
        max_age: std::time::Duration,
    },
    /// The row count (or with `by`, the rows of each value of that column) changed by at
    /// most `max_change` since the output's previous publication; groups smaller than
    /// `min_size` on both sides are let be.
    Anomaly {
        max_change: Change,
        by: Option<String>,
        min_size: u64,
    },
}

/// A value a column may hold, as the spec writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl std::fmt::Display for CheckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckValue::Int(v) => write!(f, "{v}"),
            CheckValue::Float(v) => write!(f, "{v}"),
            CheckValue::Bool(v) => write!(f, "{v}"),
            CheckValue::Text(v) => write!(f, "{v}"),
        }
    }
}

/// How much a count may change between publications: a share of the earlier count, or a
/// number of rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// 0.3 for `30%`.
    Share(f64),
    Rows(u64),
}

impl Change {
    /// Whether going from `before` to `now` rows is within this change. A group that was
    /// empty may only grow by a number of rows, never by a share.
    pub fn allows(self, before: u64, now: u64) -> bool {
        let moved = before.abs_diff(now);
        match self {
            Change::Rows(rows) => moved <= rows,
            Change::Share(_) if before == 0 => moved == 0,
            Change::Share(share) => moved as f64 <= share * before as f64,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Share(share) => write!(f, "{}%", super::units::percent(*share)),
            Change::Rows(rows) => write!(f, "{rows} rows"),
        }
    }
}

impl std::fmt::Display for CheckRule {
    /// The rule as the spec writes it: `unique [country]`, `accepted_range r_score max 2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bounds = |min: Option<String>, max: Option<String>| {
            [("min", min), ("max", max)]
                .into_iter()
                .filter_map(|(key, value)| value.map(|v| format!(" {key} {v}")))
                .collect::<String>()
        };
        match self {
            CheckRule::NotNull(columns) => write!(f, "not_null [{}]", columns.join(", ")),
            CheckRule::Unique(columns) => write!(f, "unique [{}]", columns.join(", ")),
            CheckRule::AcceptedValues { column, values } => {
                let values: Vec<String> = values.iter().map(ToString::to_string).collect();
                write!(f, "accepted_values {column} [{}]", values.join(", "))
            }
            CheckRule::AcceptedRange { column, min, max } => write!(
                f,
                "accepted_range {column}{}",
                bounds(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
            ),
            CheckRule::RowCount { min, max } => write!(
                f,
                "row_count{}",
                bounds(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
            ),
            CheckRule::Relationships { column, to, field } => {
                write!(f, "relationships {column} to {to}.{field}")
            }
            CheckRule::NotNullProportion { column, at_least } => {
                write!(f, "not_null_proportion {column} at_least {at_least}")
            }
            CheckRule::Sql(step) => write!(f, "sql {}", step.sql_file.display()),
            CheckRule::Freshness { column, max_age } => write!(
                f,
                "freshness {column} max_age {}",
                super::units::hours(*max_age)
            ),
            CheckRule::Anomaly {
                max_change,
                by,
                min_size,
            } => {
                write!(f, "anomaly max_change {max_change}")?;
                if let Some(by) = by {
                    write!(f, " by {by}")?;
                }
                if *min_size > 0 {
                    write!(f, " min_size {min_size}")?;
                }
                Ok(())
            }
        }
    }
}

impl CheckRule {
    /// The rule and its columns in a few words, for a check's default name
    /// (`unique_customer_id`).
    pub fn describe_short(&self) -> String {
        match self {
            CheckRule::NotNull(columns) => format!("not_null_{}", columns.join("_")),
            CheckRule::Unique(columns) => format!("unique_{}", columns.join("_")),
            CheckRule::AcceptedValues { column, .. } => format!("accepted_values_{column}"),
            CheckRule::AcceptedRange { column, .. } => format!("accepted_range_{column}"),
            CheckRule::RowCount { .. } => "row_count".to_string(),
            CheckRule::Relationships { column, to, .. } => {
                format!("relationships_{column}_{to}")
            }
            CheckRule::NotNullProportion { column, .. } => {
                format!("not_null_proportion_{column}")
            }
            CheckRule::Sql(step) => step.name.clone(),
            CheckRule::Freshness { column, .. } => format!("freshness_{column}"),
            CheckRule::Anomaly { by: None, .. } => "anomaly".to_string(),
            CheckRule::Anomaly { by: Some(by), .. } => format!("anomaly_by_{by}"),
        }
    }

    /// The columns of the checked table that the rule names.
    pub fn columns(&self) -> Vec<&String> {
        match self {
            CheckRule::NotNull(columns) | CheckRule::Unique(columns) => columns.iter().collect(),
            CheckRule::AcceptedValues { column, .. }
            | CheckRule::AcceptedRange { column, .. }
            | CheckRule::Relationships { column, .. }
            | CheckRule::NotNullProportion { column, .. }
            | CheckRule::Freshness { column, .. } => vec![column],
            CheckRule::Anomaly { by, .. } => by.iter().collect(),
            CheckRule::RowCount { .. } | CheckRule::Sql(_) => Vec::new(),
        }
    }
}

/// Webhooks posted after a run, each optional. Their URLs often hold secrets, so messages
/// show them as written in the spec (`${SLACK_WEBHOOK}`), never interpolated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notify {
    pub on_failure: Option<url::Url>,
    pub on_success: Option<url::Url>,
}

/// Where each successful run writes the report page, and the settings of its store.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSpec {
    pub location: Location,
    pub options: BTreeMap<String, String>,
}

/// When and how the daemon runs a pipeline.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub slots: Schedule,
    pub catchup: Catchup,
    /// Tries per slot, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub retry_delay: std::time::Duration,
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub location: Location,
    /// The URL as the spec writes it, before `${NAME}` interpolation (for messages).
    pub url_as_written: String,
    pub columns: Vec<(String, ColumnType)>,
    pub options: BTreeMap<String, String>,
    /// The zone that timestamps written without one (naive) are wall-clock times of.
    pub timezone: Tz,
    pub key: Option<SourceKey>,
    pub format: SourceFormat,
}

/// How a source's files are written.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceFormat {
    Parquet,
    /// Delimited text. With a header line, columns are found by name; without one, the
    /// declared columns are the file's columns, in the order the spec lists them.
    Csv {
        header: bool,
        delimiter: u8,
    },
    /// Newline-delimited JSON: one object per line, fields found by name.
    Json,
    /// A Delta Lake table: the Parquet files its log lists at the night's version.
    Delta,
}

impl SourceFormat {
    /// The file name endings of the format, as listings filter them.
    pub fn extensions(&self) -> &'static [&'static str] {
        match self {
            SourceFormat::Parquet | SourceFormat::Delta => &[".parquet"],
            SourceFormat::Csv { .. } => &[".csv", ".tsv", ".txt"],
            SourceFormat::Json => &[".json", ".jsonl", ".ndjson"],
        }
    }
}

/// The columns that identify a source's rows. Rows with a missing key fail the run; so do
/// rows with a repeated key, unless the rows are versions of what the key names.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceKey {
    pub columns: Vec<String>,
    pub versions: Option<Versions>,
}

/// How the rows of a key change (docs/sources.md, "Rows that change"): each row is a version stamped
/// by the time in `by`, and each run sees, per key, the version in force at the end of its
/// as_of day; a version marked by `deleted` takes the key away.
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    /// A timestamp column: when the row became the key's version.
    pub by: String,
    /// A bool column (true: deleted) or a timestamp column (set: deleted at that time).
    pub deleted: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// The SQL file; for SQL that segflow generates (set operations, membership), the
    /// pipeline file that defines it.
    pub sql_file: PathBuf,
    pub sql: StepSql,
    /// The line of the pipeline file that defines the step.
    pub line: Option<usize>,
    /// Computed file by file of one source, each file's result kept for later nights.
    pub incremental: Option<Incremental>,
}

/// How an incremental step is computed: its SQL runs on each file of `source` alone (on the
/// rows whose `time` is before the end of the as_of day), and its table is the union of the
/// files' results. The result of a file wholly before the as_of day's end is kept in the
/// state store and reused until the file, the SQL or a var it uses changes (docs/incremental.md,
/// "Incremental steps").
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    pub source: String,
    /// A timestamp column of the source: when each row happened.
    pub time: String,
    /// Computed over many files at once instead of file by file: see [`Fold`].
    pub fold: Option<Fold>,
}

/// An incremental step whose results fold: its SQL runs over the files wholly before the
/// as_of day's end together, that one result is kept and carried to later nights, and a
/// night runs the SQL only over the files that are new or changed since, then merges the two
/// results with the fold's SQL, which reads the step's own name (a union of its results)
/// and returns the same columns (docs/incremental.md, "Results carried across nights").
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    pub sql_file: PathBuf,
    pub sql: StepSql,
}

impl Step {
    /// The fold of an incremental step as a step of its own: the same name, which its SQL
    /// reads, and the same rules as the step's SQL (no run parameters, nothing that changes
    /// from run to run), since what it makes is kept too.
    pub fn fold_step(&self) -> Option<Step> {
        let incremental = self.incremental.as_ref()?;
        let fold = incremental.fold.as_ref()?;
        Some(Step {
            name: self.name.clone(),
            kind: StepKind::Query,
            sql_file: fold.sql_file.clone(),
            sql: fold.sql.clone(),
            line: self.line,
            incremental: Some(Incremental {
                fold: None,
                ..incremental.clone()
            }),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A `steps:` entry.
    Query,
    /// A `segments:` entry: a set of customer ids.
    Segment,
    /// `segment_membership`, built from every segment.
    Membership,
    /// `segment_catalog`, the declared segments.
    Catalog,
    /// A `sql:` check's query: its rows are the offending ones. Not a table of the run.
    Check,
}

impl StepKind {
    /// `step` or `segment`, as messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            StepKind::Query | StepKind::Membership | StepKind::Catalog => "step",
            StepKind::Segment => "segment",
            StepKind::Check => "check",
        }
    }
}

/// Earlier publications of an output `t`, which steps read as tables: `previous_t` (the
/// latest partition before the run's as_of) and `history_t` (every partition before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Previous,
    History,
}

impl Published {
    const PREVIOUS: &'static str = "previous_";
    const HISTORY: &'static str = "history_";

    pub fn table_name(self, output: &str) -> String {
        match self {
            Published::Previous => format!("{}{output}", Self::PREVIOUS),
            Published::History => format!("{}{output}", Self::HISTORY),
        }
    }

    /// `previous_t` -> (Previous, `t`), for any table name of that form.
    pub fn parse(table: &str) -> Option<(Published, &str)> {
        if let Some(output) = table.strip_prefix(Self::PREVIOUS) {
            Some((Published::Previous, output))
        } else {
            table
                .strip_prefix(Self::HISTORY)
                .map(|output| (Published::History, output))
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub table: String,
    /// Where this run publishes.
    pub location: Location,
    pub format: OutputFormat,
    /// Where earlier publications are read from (`previous_t`, `history_t`): the output's
    /// own URL, except in a preview, which writes elsewhere but reads the real history.
    pub earlier: Location,
    pub options: BTreeMap<String, String>,
}

/// Engine settings given to a command (`--cluster`/`SEGFLOW_CLUSTER`,
/// `--scratch`/`SEGFLOW_SCRATCH`), over the pipeline's own: one pipeline file runs in process
/// or on a cluster unedited.
#[derive(Debug, Clone, Default)]
pub struct EngineOverrides {
    pub cluster: Option<crate::cluster::ClusterUrl>,
    pub scratch: Option<Location>,
}

impl Pipeline {
    /// Where a run would write into what it reads: the scratch folder (which a run empties)
    /// or the state store equal to, inside or holding a source, or the scratch folder and an
    /// output in one another. Outputs and sources are checked when the spec is read; these
    /// come from the command line and the environment too.
    pub fn collisions(&self, state: Option<&Location>) -> Vec<String> {
        let mut found = Vec::new();
        let mut written: Vec<(String, &Location)> = Vec::new();
        if let Some(scratch) = &self.engine.scratch {
            written.push(("engine.scratch".to_string(), scratch));
        }
        if let Some(state) = state {
            written.push(("the state store".to_string(), state));
        }
        for (what, location) in &written {
            for source in self
                .sources
                .iter()
                .filter(|s| s.location.overlaps(location))
            {
                found.push(format!(
                    "{what} at {location} and source '{}' at {}",
                    source.name, source.location
                ));
            }
        }
        if let Some(scratch) = &self.engine.scratch {
            for output in self.outputs.iter().filter(|o| o.location.overlaps(scratch)) {
                found.push(format!(
                    "engine.scratch at {scratch} and output '{}' at {}",
                    output.table, output.location
                ));
            }
        }
        found
    }

    /// Every place the pipeline reads or writes that lies in none of `roots` (a folder or
    /// bucket each); none when there are no roots.
    pub fn outside(&self, roots: &[Location]) -> Vec<String> {
        if roots.is_empty() {
            return Vec::new();
        }
        let mut places: Vec<(String, &Location)> = Vec::new();
        places.extend(
            self.sources
                .iter()
                .map(|s| (format!("source '{}'", s.name), &s.location)),
        );
        places.extend(
            self.outputs
                .iter()
                .map(|o| (format!("output '{}'", o.table), &o.location)),
        );
        places.extend(
            self.engine
                .scratch
                .iter()
                .map(|s| ("engine.scratch".to_string(), s)),
        );
        places.extend(
            self.report
                .iter()
                .map(|r| ("report.url".to_string(), &r.location)),
        );
        places
            .into_iter()
            .filter(|(_, location)| !roots.iter().any(|root| location.is_within(root)))
            .map(|(what, location)| format!("{what} at {location}"))
            .collect()
    }

    /// This pipeline with `overrides` in place of its own `engine.cluster` and
    /// `engine.scratch`.
    pub fn with_engine(&self, overrides: &EngineOverrides) -> Pipeline {
        let mut pipeline = self.clone();
        if let Some(url) = &overrides.cluster {
            pipeline.engine.cluster = Some(url.clone());
        }
        if let Some(scratch) = &overrides.scratch {
            pipeline.engine.scratch = Some(scratch.as_folder());
        }
        pipeline
    }

    /// The output named `table`, published by this run or left out by `--select`, as the
    /// store of its earlier publications (`previous_t`, `history_t`).
    pub fn earlier_publications_of(&self, table: &str) -> Option<Output> {
        self.outputs
            .iter()
            .chain(&self.left_out)
            .find(|output| output.table == table)
            .map(Output::earlier_publications)
    }
}

/// The table format an output is published in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Parquet files in `as_of=` folders, each date's listed by a segflow manifest.
    #[default]
    Parquet,
    /// A Delta Lake table partitioned by `as_of`: one Delta commit per publication.
    Delta,
}

impl Output {
    /// This output as the store of its earlier publications.
    pub fn earlier_publications(&self) -> Output {
        Output {
            location: self.earlier.clone(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    pub memory_limit: Option<usize>,
    pub target_partitions: Option<usize>,
    /// Where runs keep the results of steps that several later steps read; a local
    /// temporary folder when unset.
    pub scratch: Option<Location>,
    /// The Ballista cluster the run's queries go to; in-process DataFusion when unset.
    pub cluster: Option<crate::cluster::ClusterUrl>,
}
