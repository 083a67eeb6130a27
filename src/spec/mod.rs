//! Pipeline specs. A YAML file is parsed strictly into wire types that mirror it, then
//! validated into a [`Pipeline`]; code past this module never sees an unvalidated spec.
//! Validation reports every problem at once, each with its file and line.

mod locate;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::schedule::{Catchup, Schedule, ScheduleError};
use crate::segments::{
    Members, SEGMENT_CATALOG, SEGMENT_MEMBERSHIP, catalog_sql, combination_sql, membership_sql,
};
use crate::sql::{self, StepSql};
use crate::storage::Location;
use locate::LineIndex;
pub use types::{ColumnType, VarType, VarValue, days_since_epoch, parse_date};

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

/// One thing wrong with a spec, where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("could not read pipeline file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
}

fn render_problems(problems: &[Problem]) -> String {
    let mut text = match problems.len() {
        1 => "the pipeline spec has a problem:".to_string(),
        n => format!("the pipeline spec has {n} problems:"),
    };
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    text
}

// ---- wire types: exactly the YAML ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    members: Option<RawMembers>,
    #[serde(default)]
    vars: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    segments: Vec<RawSegment>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    schedule: Option<RawSchedule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    key: Option<RawKey>,
    #[serde(default)]
    keep_latest_by: Option<String>,
}

/// A key of one column (`key: customer_id`) or several (`key: [shop, customer_id]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawKey {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: String,
    sql: Option<String>,
    all_of: Option<Vec<String>>,
    any_of: Option<Vec<String>>,
    none_of: Option<Vec<String>>,
}

impl RawSegment {
    /// How the YAML defines the segment, for `segment_catalog`: its SQL file, or its sets.
    fn definition(&self) -> String {
        if let Some(sql) = &self.sql {
            return sql.clone();
        }
        [
            ("all_of", &self.all_of),
            ("any_of", &self.any_of),
            ("none_of", &self.none_of),
        ]
        .iter()
        .filter_map(|(key, names)| {
            names
                .as_ref()
                .map(|names| format!("{key}: [{}]", names.join(", ")))
        })
        .collect::<Vec<_>>()
        .join(" ")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    table: String,
    url: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    catchup: Option<String>,
    #[serde(default)]
    max_catchup: Option<usize>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    memory_limit: Option<String>,
    target_partitions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypedVar {
    #[serde(rename = "type")]
    ty: String,
    value: serde_yaml::Value,
}

// ---- the validated model ----

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
    pub engine: EngineSettings,
    pub schedule: Option<ScheduleSpec>,
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
    pub columns: Vec<(String, ColumnType)>,
    pub options: BTreeMap<String, String>,
    /// The zone that timestamps written without one (naive) are wall-clock times of.
    pub timezone: Tz,
    pub key: Option<SourceKey>,
}

/// The columns that identify a source's rows. Rows with a repeated or missing key fail the
/// run, unless `keep_latest_by` names the column whose greatest value picks the row to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceKey {
    pub columns: Vec<String>,
    pub keep_latest_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// The SQL file; for SQL that segflow generates (set operations, membership), the
    /// pipeline file that defines it.
    pub sql_file: PathBuf,
    pub sql: StepSql,
    /// Where the step is defined in the YAML (`steps[2]`, `segments[0]`).
    pub yaml_path: String,
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
}

impl StepKind {
    fn noun(self) -> &'static str {
        match self {
            StepKind::Query | StepKind::Membership | StepKind::Catalog => "step",
            StepKind::Segment => "segment",
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

struct Draft {
    name: String,
    at: String,
    kind: StepKind,
    sql: DraftSql,
}

enum DraftSql {
    /// A path relative to the pipeline file.
    File(String),
    Generated(String),
}

#[derive(Debug, Clone)]
pub struct Output {
    pub table: String,
    pub location: Location,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    pub memory_limit: Option<usize>,
    pub target_partitions: Option<usize>,
}

/// What the caller brings to loading a spec besides the file: `--var` overrides, and how
/// `${NAME}` in URLs is resolved (the process environment, or a fixed map for the demo).
pub struct LoadOptions<'a> {
    pub var_overrides: Vec<(String, String)>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            var_overrides: Vec::new(),
            env: &|name| std::env::var(name).ok(),
        }
    }
}

impl Pipeline {
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Pipeline, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Pipeline::parse(&text, path, options)
    }

    /// Parses and validates the YAML `text`, which was read from `path`.
    pub fn parse(text: &str, path: &Path, options: &LoadOptions) -> Result<Pipeline, SpecError> {
        let raw: RawPipeline = serde_yaml::from_str(text).map_err(|e| SpecError::Invalid {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: e.location().map(|l| l.line()),
                message: yaml_message(&e),
            }],
        })?;
        let mut validator = Validator {
            file: path.to_path_buf(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            lines: LineIndex::build(text),
            problems: Vec::new(),
            env: options.env,
        };
        let pipeline = validator.pipeline(raw, &options.var_overrides);
        if validator.problems.is_empty() {
            Ok(pipeline)
        } else {
            Err(SpecError::Invalid {
                problems: validator.problems,
            })
        }
    }

    /// Every table name a step or output may refer to: sources, then steps.
    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.steps.iter().map(|s| s.name.as_str()))
    }
}

/// serde_yaml puts the position at the end of its message; we print it in front instead.
fn yaml_message(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    }
}

struct Validator<'a> {
    file: PathBuf,
    dir: PathBuf,
    lines: LineIndex,
    problems: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn problem(&mut self, yaml_path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: self.lines.line_of(yaml_path),
            message: message.into(),
        });
    }

    fn pipeline(&mut self, raw: RawPipeline, overrides: &[(String, String)]) -> Pipeline {
        if !is_identifier(&raw.name) {
            self.problem(
                "name",
                format!(
                    "pipeline name '{}' must be lower-case letters, digits and '_'",
                    raw.name
                ),
            );
        }
        let timezone = self.timezone("timezone", raw.timezone.as_deref());
        let members = self.members(raw.members);
        let vars = self.vars(&raw.vars, overrides);
        let sources = self.sources(raw.sources);
        let published: BTreeSet<String> = raw.outputs.iter().map(|o| o.table.clone()).collect();
        let (steps, segments) = self.steps(raw.steps, raw.segments, &sources, &members, &published);
        let outputs = self.outputs(raw.outputs, &sources, &steps);
        let engine = self.engine(raw.engine);
        let schedule = raw.schedule.and_then(|raw| self.schedule(raw, timezone));
        Pipeline {
            name: raw.name,
            description: raw.description,
            file: self.file.clone(),
            timezone,
            members,
            vars,
            sources,
            steps,
            segments,
            outputs,
            engine,
            schedule,
        }
    }

    fn vars(
        &mut self,
        raw: &BTreeMap<String, serde_yaml::Value>,
        overrides: &[(String, String)],
    ) -> BTreeMap<String, VarValue> {
        let mut vars = BTreeMap::new();
        for (name, value) in raw {
            let at = format!("vars.{name}");
            if RUN_PARAMETERS.contains(&name.as_str()) {
                self.problem(
                    &at,
                    format!("'{name}' is set by segflow for each run and cannot be a var"),
                );
                continue;
            }
            if !is_identifier(name) {
                self.problem(
                    &at,
                    format!("var name '{name}' must be lower-case letters, digits and '_'"),
                );
                continue;
            }
            match var_from_yaml(value) {
                Ok(value) => {
                    vars.insert(name.clone(), value);
                }
                Err(message) => self.problem(&at, format!("var '{name}': {message}")),
            }
        }
        for (name, text) in overrides {
            let Some(declared) = vars.get(name) else {
                let hint = did_you_mean(name, vars.keys().map(String::as_str));
                self.problems.push(Problem {
                    file: self.file.clone(),
                    line: None,
                    message: format!("--var {name}: the pipeline declares no var '{name}'{hint}"),
                });
                continue;
            };
            let ty = declared.var_type();
            match VarValue::parse_as(&ty, text) {
                Ok(value) => {
                    vars.insert(name.clone(), value);
                }
                Err(message) => {
                    let at = format!("vars.{name}");
                    self.problem(
                        &at,
                        format!("--var {name}={text}: {message}; the var is declared as {ty}"),
                    );
                }
            }
        }
        vars
    }

    /// An IANA zone name; UTC when absent (or when the name is wrong, after reporting it).
    fn timezone(&mut self, at: &str, name: Option<&str>) -> Tz {
        let Some(name) = name else { return Tz::UTC };
        name.parse().unwrap_or_else(|_| {
            let zones = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
            let hint = did_you_mean(name, zones);
            self.problem(
                at,
                format!("'{name}' is not an IANA time zone (for example Europe/Oslo or UTC){hint}"),
            );
            Tz::UTC
        })
    }

    fn members(&mut self, raw: Option<RawMembers>) -> Members {
        let defaults = Members::default();
        let Some(raw) = raw else { return defaults };
        let mut column = |key: &str, value: Option<String>, default: String| match value {
            Some(name) if !is_identifier(&name) => {
                self.problem(
                    &format!("members.{key}"),
                    format!("members: {key} '{name}' must be lower-case letters, digits and '_'"),
                );
                default
            }
            Some(name) => name,
            None => default,
        };
        Members {
            table: column("table", raw.table, defaults.table),
            created_at: column("created_at", raw.created_at, defaults.created_at),
        }
    }

    fn source_key(&mut self, at: &str, name: &str, source: &RawSource) -> Option<SourceKey> {
        let columns = match &source.key {
            Some(RawKey::One(column)) => vec![column.clone()],
            Some(RawKey::Several(columns)) => columns.clone(),
            None => {
                if source.keep_latest_by.is_some() {
                    self.problem(
                        &format!("{at}.keep_latest_by"),
                        format!("source '{name}': keep_latest_by needs a key to keep one row of"),
                    );
                }
                return None;
            }
        };
        if columns.is_empty() {
            self.problem(
                &format!("{at}.key"),
                format!("source '{name}': key lists no columns"),
            );
            return None;
        }
        Some(SourceKey {
            columns,
            keep_latest_by: source.keep_latest_by.clone(),
        })
    }

    fn sources(&mut self, raw: BTreeMap<String, RawSource>) -> Vec<Source> {
        let mut sources = Vec::new();
        for (name, source) in raw {
            let at = format!("sources.{name}");
            if !is_identifier(&name) {
                self.problem(
                    &at,
                    format!("source name '{name}' must be lower-case letters, digits and '_'"),
                );
            }
            let location = self.location(&format!("{at}.url"), &source.url);
            let mut columns = Vec::new();
            for (column, type_text) in &source.columns {
                match ColumnType::parse(type_text) {
                    Some(ty) => columns.push((column.clone(), ty)),
                    None => self.problem(
                        &format!("{at}.columns.{column}"),
                        format!(
                            "source '{name}': column '{column}' has unknown type '{type_text}' \
                             (use int, bigint, double, string, bool, date, timestamp, \
                             decimal(p,s) or list<type>)"
                        ),
                    ),
                }
            }
            let timezone = self.timezone(&format!("{at}.timezone"), source.timezone.as_deref());
            let key = self.source_key(&at, &name, &source);
            let options = self.options(&format!("{at}.options"), source.options);
            if let Some(location) = location {
                sources.push(Source {
                    name,
                    location,
                    columns,
                    options,
                    timezone,
                    key,
                });
            }
        }
        sources
    }

    /// Steps from files, segments (SQL files, or set operations turned into generated SQL)
    /// and, when there are segments, `segment_membership`: all checked to be queries, their
    /// references resolved, and ordered so that each comes after what it reads.
    fn steps(
        &mut self,
        raw_steps: Vec<RawStep>,
        raw_segments: Vec<RawSegment>,
        sources: &[Source],
        members: &Members,
        published: &BTreeSet<String>,
    ) -> (Vec<Step>, Vec<String>) {
        let source_names: BTreeSet<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let mut drafts = Vec::new();
        for (index, raw) in raw_steps.into_iter().enumerate() {
            drafts.push(Draft {
                name: raw.name,
                at: format!("steps[{index}]"),
                kind: StepKind::Query,
                sql: DraftSql::File(raw.sql),
            });
        }
        let segment_names: Vec<String> = raw_segments.iter().map(|s| s.name.clone()).collect();
        let definitions: Vec<(String, String)> = raw_segments
            .iter()
            .map(|s| (s.name.clone(), s.definition()))
            .collect();
        for (index, raw) in raw_segments.into_iter().enumerate() {
            let at = format!("segments[{index}]");
            if let Some(sql) = self.segment_sql(&at, &raw, &segment_names) {
                drafts.push(Draft {
                    name: raw.name,
                    at,
                    kind: StepKind::Segment,
                    sql,
                });
            }
        }
        if !segment_names.is_empty() {
            drafts.push(Draft {
                name: SEGMENT_MEMBERSHIP.to_string(),
                at: "segments".to_string(),
                kind: StepKind::Membership,
                sql: DraftSql::Generated(membership_sql(&segment_names)),
            });
            drafts.push(Draft {
                name: SEGMENT_CATALOG.to_string(),
                at: "segments".to_string(),
                kind: StepKind::Catalog,
                sql: DraftSql::Generated(catalog_sql(&definitions)),
            });
        }

        // Names count as defined even when their SQL is broken, so that one unreadable file
        // is reported once and not again by every step that reads it. Earlier publications
        // of every output are readable too.
        let mut declared: BTreeSet<String> = drafts.iter().map(|d| d.name.clone()).collect();
        for table in published {
            for kind in [Published::Previous, Published::History] {
                declared.insert(kind.table_name(table));
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut steps = Vec::new();
        for draft in drafts {
            let Draft {
                name,
                at,
                kind,
                sql,
            } = draft;
            let what = kind.noun();
            if !is_identifier(&name) {
                self.problem(
                    &format!("{at}.name"),
                    format!("{what} name '{name}' must be lower-case letters, digits and '_'"),
                );
            }
            if source_names.contains(name.as_str()) {
                self.problem(
                    &format!("{at}.name"),
                    format!("{what} '{name}' has the same name as a source"),
                );
            }
            if let Some(first) = seen.insert(name.clone(), at.clone()) {
                let where_first = self
                    .lines
                    .line_of(&first)
                    .map(|l| format!(" (first at line {l})"))
                    .unwrap_or_default();
                let message = if matches!(kind, StepKind::Membership | StepKind::Catalog) {
                    format!(
                        "'{name}' is the table segflow builds from the segments; rename the step or segment that uses this name{where_first}"
                    )
                } else {
                    format!("'{name}' is defined twice{where_first}")
                };
                self.problem(&format!("{at}.name"), format!("{what} {message}"));
                continue;
            }
            let (sql_file, text) = match sql {
                DraftSql::Generated(text) => (self.file.clone(), text),
                DraftSql::File(relative) => {
                    let sql_file = self.dir.join(&relative);
                    match std::fs::read_to_string(&sql_file) {
                        Ok(text) => (sql_file, text),
                        Err(e) => {
                            self.problem(
                                &format!("{at}.sql"),
                                format!(
                                    "{what} '{name}': cannot read SQL file {}: {e}",
                                    sql_file.display()
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            match sql::analyze(&text) {
                Ok(sql) => steps.push(Step {
                    name,
                    kind,
                    sql_file,
                    sql,
                    yaml_path: at,
                }),
                Err(e) => self.problem(
                    &format!("{at}.sql"),
                    format!("{what} '{name}': {}: {e}", sql_file.display()),
                ),
            }
        }
        self.check_references(&steps, &source_names, &declared);
        if !segment_names.is_empty() {
            self.check_members(members, &source_names, &steps);
        }
        // segment_membership reads the members table too (see `Members`): it must be ready
        // first.
        for step in steps.iter_mut().filter(|s| s.kind == StepKind::Membership) {
            step.sql.tables.insert(members.table.clone());
        }
        (self.order_steps(steps), segment_names)
    }

    /// The SQL of one segment: its file, or the set operation its YAML describes.
    fn segment_sql(&mut self, at: &str, raw: &RawSegment, segments: &[String]) -> Option<DraftSql> {
        let name = &raw.name;
        let parts = [
            ("all_of", &raw.all_of),
            ("any_of", &raw.any_of),
            ("none_of", &raw.none_of),
        ];
        let composed = parts.iter().any(|(_, names)| names.is_some());
        match (&raw.sql, composed) {
            (Some(_), true) => {
                self.problem(
                    at,
                    format!("segment '{name}' has both sql and all_of/any_of/none_of; give it one or the other"),
                );
                return None;
            }
            (None, false) => {
                self.problem(
                    at,
                    format!("segment '{name}' is empty: give it sql, or all_of/any_of/none_of"),
                );
                return None;
            }
            (Some(file), false) => return Some(DraftSql::File(file.clone())),
            (None, true) => {}
        }
        let mut valid = true;
        for (key, names) in parts {
            let Some(names) = names else { continue };
            if names.is_empty() {
                self.problem(
                    &format!("{at}.{key}"),
                    format!("segment '{name}': {key} lists no segments"),
                );
                valid = false;
            }
            for (i, member) in names.iter().enumerate() {
                if !segments.contains(member) {
                    let hint = did_you_mean(member, segments.iter().map(String::as_str));
                    self.problem(
                        &format!("{at}.{key}[{i}]"),
                        format!(
                            "segment '{name}': {key} names '{member}', which is not a segment{hint}"
                        ),
                    );
                    valid = false;
                }
            }
        }
        if raw.all_of.is_none() && raw.any_of.is_none() {
            self.problem(
                &format!("{at}.none_of"),
                format!(
                    "segment '{name}': none_of needs all_of or any_of to take customers away from"
                ),
            );
            valid = false;
        }
        valid.then(|| {
            DraftSql::Generated(combination_sql(
                raw.all_of.as_deref().unwrap_or_default(),
                raw.any_of.as_deref().unwrap_or_default(),
                raw.none_of.as_deref().unwrap_or_default(),
            ))
        })
    }

    /// Segments need a table of known customers to take their members from.
    fn check_members(&mut self, members: &Members, sources: &BTreeSet<&str>, steps: &[Step]) {
        let table = members.table.as_str();
        let known = sources.contains(table)
            || steps
                .iter()
                .any(|s| s.name == table && s.kind == StepKind::Query);
        if !known {
            let candidates = sources
                .iter()
                .copied()
                .chain(steps.iter().map(|s| s.name.as_str()));
            let hint = did_you_mean(table, candidates);
            let at = match self.lines.line_of("members") {
                Some(_) => "members.table",
                None => "segments",
            };
            self.problem(
                at,
                format!(
                    "segments take their members from the table '{table}', which is not a source or a step{hint}; \
                     add that source, or name the customers table in members.table"
                ),
            );
        }
    }

    /// Every table a step reads must be a source or a step.
    fn check_references(
        &mut self,
        steps: &[Step],
        sources: &BTreeSet<&str>,
        declared: &BTreeSet<String>,
    ) {
        let known: Vec<&str> = sources
            .iter()
            .copied()
            .chain(declared.iter().map(String::as_str))
            .collect();
        for step in steps {
            for table in &step.sql.tables {
                if !known.contains(&table.as_str()) {
                    let hint = did_you_mean(table, known.iter().copied());
                    self.problem(
                        &format!("{}.sql", step.yaml_path),
                        format!(
                            "{} '{}': {} reads table '{table}', which is not a source, step or segment{hint}",
                            step.kind.noun(),
                            step.name,
                            step.sql_file.display()
                        ),
                    );
                }
            }
        }
    }

    /// Orders steps so that each comes after the steps it reads (YAML order among equals);
    /// a cycle is reported with the files that form it.
    fn order_steps(&mut self, steps: Vec<Step>) -> Vec<Step> {
        let position: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = steps
            .iter()
            .map(|s| {
                s.sql
                    .tables
                    .iter()
                    .filter_map(|t| position.get(t.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut done = vec![false; steps.len()];
        let mut order = Vec::new();
        while order.len() < steps.len() {
            let ready = (0..steps.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
            match ready {
                Some(i) => {
                    done[i] = true;
                    order.push(i);
                }
                None => {
                    let cycle = find_cycle(&deps, &done);
                    let names: Vec<String> = cycle
                        .iter()
                        .chain(cycle.first())
                        .map(|&i| format!("{} ({})", steps[i].name, steps[i].sql_file.display()))
                        .collect();
                    self.problem(
                        &steps[cycle[0]].yaml_path,
                        format!(
                            "steps and segments read each other in a cycle: {}",
                            names.join(" -> ")
                        ),
                    );
                    return Vec::new();
                }
            }
        }
        let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
        order
            .into_iter()
            .map(|i| slots[i].take().expect("each step is taken once"))
            .collect()
    }

    fn outputs(&mut self, raw: Vec<RawOutput>, sources: &[Source], steps: &[Step]) -> Vec<Output> {
        let tables: Vec<&str> = sources
            .iter()
            .map(|s| s.name.as_str())
            .chain(steps.iter().map(|s| s.name.as_str()))
            .collect();
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut outputs = Vec::new();
        for (index, output) in raw.into_iter().enumerate() {
            let at = format!("outputs[{index}]");
            if !tables.contains(&output.table.as_str()) {
                let hint = did_you_mean(&output.table, tables.iter().copied());
                self.problem(
                    &format!("{at}.table"),
                    format!(
                        "output names table '{}', which is not a source or a step{hint}",
                        output.table
                    ),
                );
            }
            let Some(location) = self.location(&format!("{at}.url"), &output.url) else {
                continue;
            };
            let location = location.as_folder();
            if let Some(other) = urls.insert(location.to_string(), output.table.clone()) {
                self.problem(
                    &format!("{at}.url"),
                    format!(
                        "outputs '{other}' and '{}' are both published to {location}",
                        output.table
                    ),
                );
            }
            let options = self.options(&format!("{at}.options"), output.options);
            outputs.push(Output {
                table: output.table,
                location,
                options,
            });
        }
        outputs
    }

    /// The daemon's schedule. Its cron is read in its own zone, by default the pipeline's;
    /// a slot's as_of is the last complete day in the pipeline's zone.
    fn schedule(&mut self, raw: RawSchedule, days: Tz) -> Option<ScheduleSpec> {
        let timezone = raw.timezone.as_deref().unwrap_or(days.name());
        // The expression and the zone are checked apart, so that both are reported at once.
        if let Err(e) = Schedule::parse(&raw.cron, "UTC") {
            self.problem("schedule.cron", e.to_string());
        }
        if let Err(e @ ScheduleError::TimeZone(_)) = Schedule::parse("* * * * *", timezone) {
            self.problem("schedule.timezone", e.to_string());
        }
        let slots = Schedule::parse(&raw.cron, timezone)
            .ok()
            .map(|s| s.with_days_in(days));
        let max = raw.max_catchup.unwrap_or(DEFAULT_MAX_CATCHUP);
        let catchup = match raw.catchup.as_deref().unwrap_or("latest") {
            "none" => Some(Catchup::None),
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All { max }),
            other => {
                self.problem(
                    "schedule.catchup",
                    format!("catchup '{other}' is not one of none, latest, all"),
                );
                None
            }
        };
        let mut duration = |key: &str, text: Option<String>| {
            text.and_then(|text| match parse_duration(&text) {
                Some(d) => Some(d),
                None => {
                    self.problem(
                        &format!("schedule.{key}"),
                        format!("{key} '{text}' is not a duration (write it like 30s, 15m or 2h)"),
                    );
                    None
                }
            })
        };
        let retry_delay =
            duration("retry_delay", raw.retry_delay).unwrap_or(std::time::Duration::from_secs(60));
        let timeout = duration("timeout", raw.timeout);
        if raw.attempts == Some(0) {
            self.problem("schedule.attempts", "attempts must be at least 1");
        }
        Some(ScheduleSpec {
            slots: slots?,
            catchup: catchup?,
            attempts: raw.attempts.unwrap_or(3).max(1),
            retry_delay,
            timeout,
        })
    }

    fn engine(&mut self, raw: RawEngine) -> EngineSettings {
        let memory_limit = raw.memory_limit.and_then(|text| match parse_bytes(&text) {
            Some(bytes) => Some(bytes),
            None => {
                self.problem(
                    "engine.memory_limit",
                    format!("memory_limit '{text}' is not a size (write it like 512MiB or 8GiB)"),
                );
                None
            }
        });
        if raw.target_partitions == Some(0) {
            self.problem(
                "engine.target_partitions",
                "target_partitions must be at least 1",
            );
        }
        EngineSettings {
            memory_limit,
            target_partitions: raw.target_partitions.filter(|&n| n > 0),
        }
    }

    fn location(&mut self, at: &str, text: &str) -> Option<Location> {
        let text = match interpolate(text, self.env) {
            Ok(text) => text,
            Err(message) => {
                self.problem(at, message);
                return None;
            }
        };
        match Location::parse(&text) {
            Ok(location) => Some(location),
            Err(e) => {
                self.problem(at, e.to_string());
                None
            }
        }
    }

    fn options(&mut self, at: &str, raw: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        for (key, value) in raw {
            match interpolate(&value, self.env) {
                Ok(value) => {
                    options.insert(key, value);
                }
                Err(message) => self.problem(&format!("{at}.{key}"), message),
            }
        }
        options
    }
}

/// Some cycle among the steps not yet ordered (each of which waits on another).
fn find_cycle(deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let start = (0..deps.len())
        .find(|&i| !done[i])
        .expect("an unordered step");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *deps[current]
            .iter()
            .find(|&&d| !done[d])
            .expect("an unordered step waits on another unordered step");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            return path[pos..].to_vec();
        }
        path.push(next);
        current = next;
    }
}

fn var_from_yaml(value: &serde_yaml::Value) -> Result<VarValue, String> {
    use serde_yaml::Value;
    match value {
        Value::Bool(b) => Ok(VarValue::Bool(*b)),
        Value::Number(n) if n.is_i64() => Ok(VarValue::Int(n.as_i64().expect("i64"))),
        Value::Number(n) => n
            .as_f64()
            .map(VarValue::Float)
            .ok_or_else(|| format!("{n} is out of range")),
        Value::String(s) => Ok(VarValue::String(s.clone())),
        Value::Mapping(_) => {
            let typed: RawTypedVar = serde_yaml::from_value(value.clone()).map_err(|e| {
                format!("write it as a value or as {{ type: ..., value: ... }}: {e}")
            })?;
            typed_var(&typed)
        }
        Value::Sequence(_) => {
            Err("a list needs its item type: write { type: list<int>, value: [...] }".to_string())
        }
        Value::Null => Err("it has no value".to_string()),
        Value::Tagged(_) => Err("YAML tags are not supported here".to_string()),
    }
}

fn typed_var(typed: &RawTypedVar) -> Result<VarValue, String> {
    let ty_text = typed.ty.trim();
    let ty = if let Some(item) = ty_text
        .strip_prefix("list<")
        .and_then(|t| t.strip_suffix('>'))
    {
        VarType::List(Box::new(
            VarType::parse(item).ok_or_else(|| format!("unknown list item type '{item}'"))?,
        ))
    } else {
        VarType::parse(ty_text).ok_or_else(|| {
            format!("unknown type '{ty_text}' (use int, float, string, date, bool or list<type>)")
        })?
    };
    let scalar_text = |value: &serde_yaml::Value| -> Result<String, String> {
        match value {
            serde_yaml::Value::String(s) => Ok(s.clone()),
            serde_yaml::Value::Number(n) => Ok(n.to_string()),
            serde_yaml::Value::Bool(b) => Ok(b.to_string()),
            _ => Err(format!("expected a single {ty} value")),
        }
    };
    match (&ty, &typed.value) {
        (VarType::List(item), serde_yaml::Value::Sequence(items)) => {
            let values = items
                .iter()
                .map(|v| scalar_text(v).and_then(|t| VarValue::parse_as(item, &t)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(VarValue::List((**item).clone(), values))
        }
        (VarType::List(_), other) => VarValue::parse_as(&ty, &scalar_text(other)?),
        (_, value) => VarValue::parse_as(&ty, &scalar_text(value)?),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` with values from `env`.
fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{text}' has a '${{' without its closing '}}'"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "'{text}' uses the environment variable {name}, which is not set"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The default bound of `catchup: all`.
const DEFAULT_MAX_CATCHUP: usize = 31;

/// `30s`, `15m`, `2h`, `1d`, `1h 30m`: humantime's forms, with overflow checked (a hand-written
/// `number * 86_400` wrapped around on a long enough number of days).
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// `512MiB`, `8GiB`, `2GB`, `1.5G`: decimal or binary units, as datafusion-cli reads them.
fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    // `as` would saturate an out-of-range size to usize::MAX without a word.
    let bytes = number * factor;
    (bytes.is_finite() && bytes < usize::MAX as f64).then_some(bytes as usize)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `" (did you mean 'x'?)"` when one candidate is close to `name`.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, yaml: &str) -> Result<Pipeline, Vec<String>> {
        let file = dir.join("p.yaml");
        std::fs::write(&file, yaml).unwrap();
        Pipeline::load(&file, &LoadOptions::default()).map_err(|e| match e {
            SpecError::Invalid { problems } => problems
                .iter()
                .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
                .collect(),
            other => vec![other.to_string()],
        })
    }

    fn with_sql(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn orders_steps_by_what_they_read() {
        let dir = with_sql(&[
            ("a.sql", "SELECT * FROM b"),
            ("b.sql", "SELECT * FROM orders"),
        ]);
        let p = parse_in(
            dir.path(),
            "name: t\nsources:\n  orders: { url: data/orders/ }\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: b, sql: b.sql }\n",
        )
        .unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let dir = with_sql(&[
            ("a.sql", "SELECT * FROM ordrs"),
            ("c.sql", "DROP TABLE orders"),
        ]);
        let problems = parse_in(
            dir.path(),
            "name: t\nvars:\n  days: { type: int, value: soon }\nsources:\n  orders: { url: 'ftp://x/y' }\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: a, sql: a.sql }\n  - { name: b, sql: missing.sql }\n  - { name: c, sql: c.sql }\noutputs:\n  - { table: nope, url: out/ }\n",
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("3: var 'days': 'soon' is not an int"),
            "{text}"
        );
        assert!(
            text.contains("5: 'ftp://x/y' uses the scheme 'ftp'"),
            "{text}"
        );
        assert!(
            text.contains("8: step 'a' is defined twice (first at line 7)"),
            "{text}"
        );
        assert!(text.contains("9: step 'b': cannot read SQL file"), "{text}");
        assert!(
            text.contains("10: step 'c'") && text.contains("`DROP TABLE`"),
            "{text}"
        );
        assert!(text.contains("reads table 'ordrs'"), "{text}");
        assert!(text.contains("12: output names table 'nope'"), "{text}");
    }

    #[test]
    fn zones_keys_and_members_are_checked() {
        let dir = with_sql(&[("s.sql", "SELECT customer_id FROM people")]);
        let problems = parse_in(
            dir.path(),
            "name: t\ntimezone: Europe/Olso\nmembers: { table: peple }\nsources:\n  people:\n    url: data/people/\n    timezone: Mars/Base\n    keep_latest_by: updated_at\nsegments:\n  - { name: s, sql: s.sql }\n",
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("2: 'Europe/Olso' is not an IANA time zone (for example Europe/Oslo or UTC) (did you mean 'Europe/Oslo'?)"),
            "{text}"
        );
        assert!(
            text.contains("7: 'Mars/Base' is not an IANA time zone"),
            "{text}"
        );
        assert!(
            text.contains("8: source 'people': keep_latest_by needs a key"),
            "{text}"
        );
        assert!(
            text.contains("3: segments take their members from the table 'peple', which is not a source or a step (did you mean 'people'?)"),
            "{text}"
        );
        assert_eq!(problems.len(), 4, "{text}");

        let pipeline = parse_in(
            dir.path(),
            "name: t\ntimezone: Europe/Oslo\nmembers: { table: people }\nsources:\n  people:\n    url: data/people/\n    key: [shop, customer_id]\n    keep_latest_by: updated_at\nsegments:\n  - { name: s, sql: s.sql }\nschedule: { cron: '0 2 * * *' }\n",
        )
        .unwrap();
        assert_eq!(pipeline.timezone, chrono_tz::Europe::Oslo);
        assert_eq!(
            pipeline.sources[0].key,
            Some(SourceKey {
                columns: vec!["shop".into(), "customer_id".into()],
                keep_latest_by: Some("updated_at".into()),
            })
        );
        assert_eq!(pipeline.sources[0].timezone, Tz::UTC);
        // The schedule's cron is read in the pipeline's zone: 02:00 in Oslo is 00:00 UTC in
        // summer; the slot computes the day before in Oslo.
        let schedule = pipeline.schedule.unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-06-24T12:00:00Z").unwrap();
        let slot = schedule.slots.next_after(after.to_utc()).unwrap();
        assert_eq!(slot.due.to_rfc3339(), "2026-06-25T00:00:00+00:00");
        assert_eq!(slot.as_of.to_string(), "2026-06-24");
        let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&SEGMENT_CATALOG), "{names:?}");
    }

    #[test]
    fn a_slot_computes_the_last_day_over_in_the_pipelines_zone() {
        let dir = with_sql(&[]);
        // Cron in Oslo, days in UTC: 00:30 in Oslo on the 25th is 22:30 UTC on the 24th,
        // when the 24th is not over in UTC yet.
        let pipeline = parse_in(
            dir.path(),
            "name: t\nschedule: { cron: '30 0 * * *', timezone: Europe/Oslo }\n",
        )
        .unwrap();
        let schedule = pipeline.schedule.unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-06-24T12:00:00Z").unwrap();
        let slot = schedule.slots.next_after(after.to_utc()).unwrap();
        assert_eq!(slot.due.to_rfc3339(), "2026-06-24T22:30:00+00:00");
        assert_eq!(slot.as_of.to_string(), "2026-06-23");
    }

    #[test]
    fn finds_cycles() {
        let dir = with_sql(&[("a.sql", "SELECT * FROM b"), ("b.sql", "SELECT * FROM a")]);
        let problems = parse_in(
            dir.path(),
            "name: t\nsteps:\n  - { name: a, sql: a.sql }\n  - { name: b, sql: b.sql }\n",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("cycle: a ("), "{problems:?}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let dir = with_sql(&[]);
        let problems =
            parse_in(dir.path(), "name: t\nsources:\n  orders:\n    urll: x/\n").unwrap_err();
        assert!(
            problems[0].starts_with("4: sources.orders: unknown field `urll`"),
            "{problems:?}"
        );
    }

    #[test]
    fn var_overrides_are_typed() {
        let dir = with_sql(&[]);
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            "name: t\nvars:\n  days: 30\n  since: { type: date, value: 2024-01-31 }\n",
        )
        .unwrap();
        let load = |k: &str, v: &str| {
            let options = LoadOptions {
                var_overrides: vec![(k.into(), v.into())],
                ..LoadOptions::default()
            };
            Pipeline::load(&file, &options)
        };
        assert_eq!(load("days", "7").unwrap().vars["days"], VarValue::Int(7));
        let err = load("days", "seven").unwrap_err().to_string();
        assert!(
            err.contains("p.yaml:3: --var days=seven: 'seven' is not an int"),
            "{err}"
        );
        let err = load("dayz", "7").unwrap_err().to_string();
        assert!(err.contains("did you mean 'days'"), "{err}");
    }

    #[test]
    fn segments_compose_and_feed_membership() {
        let dir = with_sql(&[("a.sql", "SELECT customer_id FROM orders")]);
        let p = parse_in(
            dir.path(),
            "name: t\nsources:\n  orders: { url: data/orders/ }\n  customers: { url: data/customers/ }\nsegments:\n  - { name: both, all_of: [a, b], none_of: [c] }\n  - { name: a, sql: a.sql }\n  - { name: b, sql: a.sql }\n  - { name: c, any_of: [a] }\n",
        )
        .unwrap();
        assert_eq!(p.segments, ["both", "a", "b", "c"]);
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                "b",
                "c",
                "both",
                "segment_membership",
                "segment_catalog"
            ]
        );
        let both = &p.steps[3];
        assert_eq!(both.kind, StepKind::Segment);
        assert_eq!(both.sql.tables.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        // segment_membership reads the members table too, so that it comes first.
        assert!(p.steps[4].sql.tables.contains("customers"));
    }

    #[test]
    fn bad_segments_are_reported_with_lines() {
        let dir = with_sql(&[("a.sql", "SELECT 1 AS customer_id")]);
        let problems = parse_in(
            dir.path(),
            "name: t\nsegments:\n  - { name: a, sql: a.sql, any_of: [b] }\n  - { name: b }\n  - { name: c, all_of: [d] }\n  - { name: e, none_of: [c] }\n  - { name: f, any_of: [] }\n  - { name: g, all_of: [h] }\n  - { name: h, all_of: [g] }\n  - { name: segment_membership, sql: a.sql }\nsources: { customers: { url: c/ } }\n",
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("3: segment 'a' has both sql and all_of"),
            "{text}"
        );
        assert!(text.contains("4: segment 'b' is empty"), "{text}");
        assert!(
            text.contains("5: segment 'c': all_of names 'd', which is not a segment"),
            "{text}"
        );
        assert!(
            text.contains("6: segment 'e': none_of needs all_of or any_of"),
            "{text}"
        );
        assert!(
            text.contains("7: segment 'f': any_of lists no segments"),
            "{text}"
        );
        assert!(
            text.contains("'segment_membership' is the table segflow builds"),
            "{text}"
        );
        let problems = parse_in(
            dir.path(),
            "name: t\nsegments:\n  - { name: g, all_of: [h] }\n  - { name: h, all_of: [g] }\nsources: { customers: { url: c/ } }\n",
        )
        .unwrap_err();
        assert!(problems[0].contains("cycle: g ("), "{problems:?}");
    }

    #[test]
    fn schedules_are_checked_with_lines() {
        let dir = with_sql(&[]);
        let p = parse_in(
            dir.path(),
            "name: t\nschedule: { cron: '0 2 * * *', timezone: Europe/Oslo, catchup: all, max_catchup: 5, retry_delay: 30s, timeout: 2h }\n",
        )
        .unwrap();
        let schedule = p.schedule.unwrap();
        assert_eq!(schedule.catchup, Catchup::All { max: 5 });
        assert_eq!(schedule.timeout, Some(std::time::Duration::from_secs(7200)));
        assert_eq!(
            parse_duration("1h 30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("1d"),
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("999999999999999d"),
            None,
            "overflow is refused"
        );
        assert_eq!(parse_duration("90"), None, "a unit is required");
        let problems = parse_in(
            dir.path(),
            "name: t\nschedule:\n  cron: '0 2 * *'\n  timezone: Europe/Olso\n  catchup: sometimes\n  timeout: soon\n",
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("3: '0 2 * *' is not a cron expression"),
            "{text}"
        );
        assert!(text.contains("5: catchup 'sometimes'"), "{text}");
        assert!(
            text.contains("6: timeout 'soon' is not a duration"),
            "{text}"
        );
        let problems = parse_in(
            dir.path(),
            "name: t\nschedule:\n  cron: '0 2 * * *'\n  timezone: Europe/Olso\n",
        )
        .unwrap_err();
        assert!(
            problems[0].starts_with("4: 'Europe/Olso' is not an IANA time zone"),
            "{problems:?}"
        );
        let problems = parse_in(dir.path(), "name: t\nschedule: { timezone: UTC }\n").unwrap_err();
        assert!(problems[0].contains("missing field `cron`"), "{problems:?}");
    }

    #[test]
    fn interpolates_environment() {
        let env = |name: &str| (name == "DATA").then(|| "/d".to_string());
        assert_eq!(interpolate("${DATA}/orders/", &env).unwrap(), "/d/orders/");
        assert_eq!(interpolate("${OUT:-out}/x", &env).unwrap(), "out/x");
        assert!(interpolate("${OUT}/x", &env).is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999999999999TiB"), None, "too large");
    }
}
