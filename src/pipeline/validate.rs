//! From wire types to the model: one check per function, every problem collected with its
//! line so that the user sees them all in one pass. Steps and segments are checked in
//! `steps.rs`, vars in `vars.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde_saphyr::Spanned;

use super::diagnostics::{Problem, did_you_mean};
use super::env::interpolate;
use super::model::{
    Change, Check, CheckRule, EngineSettings, Notify, Output, OutputFormat, Pipeline, ReportSpec,
    ScheduleSpec, Severity, Source, SourceFormat, SourceKey, Step, StepKind, Versions,
};
use super::raw::{
    Key, RawCheck, RawEngine, RawKey, RawMembers, RawNotify, RawOutput, RawPipeline, RawReport,
    RawSchedule, RawSource, RawValue, line_of,
};
use super::types::ColumnType;
use super::units::{parse_bytes, parse_duration};
use crate::cluster::ClusterUrl;
use crate::schedule::{Catchup, Schedule, ScheduleError};
use crate::segments::Members;
use crate::storage::Location;

/// The rules a check may have, one per check.
const RULES: &str = "not_null, unique, accepted_values, accepted_range, row_count, \
                     relationships, not_null_proportion, sql, freshness or anomaly";

/// `30%` or `2.5 %` as a share (0.3, 0.025).
fn parse_share(text: &str) -> Option<f64> {
    let number: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some(number / 100.0)
}

/// The default bound of `catchup: all`.
const DEFAULT_MAX_CATCHUP: usize = 31;

pub(super) struct Validator<'a> {
    pub(super) file: PathBuf,
    /// The folder SQL file paths are relative to.
    pub(super) dir: PathBuf,
    pub(super) problems: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(file: &Path, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Validator {
            file: file.to_path_buf(),
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            problems: Vec::new(),
            env,
        }
    }

    pub(super) fn problem(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            message: message.into(),
        });
    }

    pub(super) fn pipeline(
        &mut self,
        raw: RawPipeline,
        overrides: &[(String, String)],
    ) -> Pipeline {
        self.check_identifier(&raw.name, "pipeline name");
        let timezone = self.timezone(raw.timezone.as_ref());
        let members = self.members(raw.members.as_ref().map(|m| &m.value));
        let vars = self.vars(&raw.vars, overrides);
        // Names count as declared even when a source's URL is wrong, so that the steps that
        // read it are not told it does not exist.
        let source_names: BTreeSet<String> =
            raw.sources.keys().map(|k| k.name().to_string()).collect();
        let sources = self.sources(raw.sources);
        let published: BTreeSet<String> = raw
            .outputs
            .iter()
            .map(|o| o.value.table.value.clone())
            .collect();
        let segments_line = raw.segments.as_ref().and_then(line_of);
        let members_line = raw.members.as_ref().map(|m| {
            m.value
                .table
                .as_ref()
                .and_then(line_of)
                .or_else(|| line_of(m))
        });
        let (steps, segments, declared) = self.steps(
            raw.steps,
            raw.segments.map(|s| s.value).unwrap_or_default(),
            &source_names,
            &published,
            segments_line,
        );
        self.check_incremental(&steps, &sources);
        if !segments.is_empty() {
            self.check_members(
                &members,
                members_line.unwrap_or(segments_line),
                &source_names,
                &steps,
            );
        }
        let mut steps = steps;
        super::steps::membership_reads_members(&mut steps, &members);
        let steps = self.order(steps);
        let outputs = self.outputs(raw.outputs, &source_names, &declared, &sources);
        let engine = self.engine(raw.engine);
        let schedule = raw.schedule.and_then(|raw| self.schedule(raw, timezone));
        let notify = raw.notify.map(|raw| self.notify(raw)).unwrap_or_default();
        let report = raw.report.and_then(|raw| self.report(raw));
        let checks = self.checks(raw.checks, &source_names, &declared, &published);
        Pipeline {
            name: raw.name.value,
            description: raw.description,
            file: self.file.clone(),
            timezone,
            members,
            vars,
            sources,
            steps,
            segments,
            outputs,
            left_out: Vec::new(),
            engine,
            schedule,
            notify,
            report,
            checks,
        }
    }

    /// Each check names a source or step (outputs are steps or sources) and has one rule.
    fn checks(
        &mut self,
        raw: Vec<Spanned<RawCheck>>,
        sources: &BTreeSet<String>,
        steps: &BTreeSet<String>,
        published: &BTreeSet<String>,
    ) -> Vec<Check> {
        let tables = || sources.iter().chain(steps).map(String::as_str);
        let readable = super::steps::readable_with_history(tables().map(String::from), published);
        let mut checks: Vec<Check> = Vec::new();
        for raw in raw {
            let line = line_of(&raw);
            let RawCheck {
                name,
                table,
                severity,
                not_null,
                unique,
                accepted_range,
                row_count,
                accepted_values,
                relationships,
                not_null_proportion,
                sql,
                freshness,
                anomaly,
            } = raw.value;
            let table_line = line_of(&table);
            let table = table.value;
            if !tables().any(|t| t == table) {
                let hint = did_you_mean(&table, tables());
                self.problem(
                    table_line,
                    format!("check on table '{table}', which is not a source or a step{hint}"),
                );
            }
            let severity = match severity.as_ref().map(|s| s.value.as_str()) {
                None | Some("error") => Severity::Error,
                Some("warn") => Severity::Warn,
                Some(other) => {
                    self.problem(
                        severity.as_ref().and_then(line_of),
                        format!("check severity '{other}' is not error or warn"),
                    );
                    Severity::Error
                }
            };
            let declared = [
                not_null.is_some(),
                unique.is_some(),
                accepted_range.is_some(),
                row_count.is_some(),
                accepted_values.is_some(),
                relationships.is_some(),
                not_null_proportion.is_some(),
                sql.is_some(),
                freshness.is_some(),
                anomaly.is_some(),
            ];
            let rules = declared.iter().filter(|&&d| d).count();
            if rules != 1 {
                self.problem(
                    line,
                    format!(
                        "a check on '{table}' needs exactly one rule ({RULES}); it has {rules}"
                    ),
                );
                continue;
            }
            let columns = |key: RawKey| match key {
                RawKey::One(column) => vec![column],
                RawKey::Several(columns) => columns,
            };
            let empty =
                not_null.as_ref().or(unique.as_ref()).is_some_and(
                    |key| matches!(key, RawKey::Several(columns) if columns.is_empty()),
                ) || accepted_values
                    .as_ref()
                    .is_some_and(|a| a.values.is_empty());
            if empty {
                self.problem(line, format!("a check on '{table}' has an empty list"));
                continue;
            }
            let name = name.map(|n| n.value);
            let rule = if let Some(key) = not_null {
                CheckRule::NotNull(columns(key))
            } else if let Some(key) = unique {
                CheckRule::Unique(columns(key))
            } else if let Some(range) = accepted_range {
                CheckRule::AcceptedRange {
                    column: range.column,
                    min: range.min,
                    max: range.max,
                }
            } else if let Some(count) = row_count {
                CheckRule::RowCount {
                    min: count.min,
                    max: count.max,
                }
            } else if let Some(accepted) = accepted_values {
                CheckRule::AcceptedValues {
                    column: accepted.column,
                    values: accepted
                        .values
                        .into_iter()
                        .map(RawValue::into_value)
                        .collect(),
                }
            } else if let Some(relation) = relationships {
                if !tables().any(|t| t == relation.to.value) {
                    let hint = did_you_mean(&relation.to.value, tables());
                    self.problem(
                        line_of(&relation.to),
                        format!(
                            "relationships to table '{}', which is not a source or a step{hint}",
                            relation.to.value
                        ),
                    );
                }
                CheckRule::Relationships {
                    field: relation.field.unwrap_or_else(|| relation.column.clone()),
                    column: relation.column,
                    to: relation.to.value,
                }
            } else if let Some(proportion) = not_null_proportion {
                let at_least = proportion.at_least.value;
                if !(0.0..=1.0).contains(&at_least) {
                    self.problem(
                        line_of(&proportion.at_least),
                        format!(
                            "not_null_proportion at_least {at_least} is not a share between 0 \
                             and 1 (0.95 for 95 %)"
                        ),
                    );
                }
                CheckRule::NotNullProportion {
                    column: proportion.column,
                    at_least,
                }
            } else if let Some(sql) = sql {
                // Unnamed, a `sql:` check is named after its file.
                let stem = Path::new(&sql.value)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = name.clone().unwrap_or_else(|| format!("{table}_{stem}"));
                let Some(step) = self.check_query(&name, sql, &readable) else {
                    continue;
                };
                CheckRule::Sql(Box::new(step))
            } else if let Some(fresh) = freshness {
                if !sources.contains(&table) {
                    self.problem(
                        line,
                        format!("freshness is checked on a source, and '{table}' is not one"),
                    );
                }
                let Some(max_age) = parse_duration(&fresh.max_age.value) else {
                    self.problem(
                        line_of(&fresh.max_age),
                        format!(
                            "freshness max_age '{}' is not a duration (36h, 2d, 90m)",
                            fresh.max_age.value
                        ),
                    );
                    continue;
                };
                CheckRule::Freshness {
                    column: fresh.column,
                    max_age,
                }
            } else if let Some(anomaly) = anomaly {
                if !published.contains(&table) {
                    self.problem(
                        line,
                        format!(
                            "anomaly compares an output with its previous publication, and \
                             '{table}' is not an output"
                        ),
                    );
                }
                let text = anomaly.max_change.value.trim();
                let max_change = match text.parse::<u64>() {
                    Ok(rows) => Some(Change::Rows(rows)),
                    Err(_) => parse_share(text).map(Change::Share),
                };
                let Some(max_change) = max_change else {
                    self.problem(
                        line_of(&anomaly.max_change),
                        "anomaly max_change is a share of the previous count (30%) or a number \
                         of rows (500)",
                    );
                    continue;
                };
                CheckRule::Anomaly {
                    max_change,
                    by: anomaly.by,
                    min_size: anomaly.min_size.unwrap_or(0),
                }
            } else {
                unreachable!("exactly one rule is declared")
            };
            let name = name.unwrap_or_else(|| match &rule {
                CheckRule::Sql(step) => step.name.clone(),
                rule => format!("{table}_{}", rule.describe_short()),
            });
            if checks.iter().any(|c| c.name == name) {
                self.problem(
                    line,
                    format!("check '{name}' is declared twice; give one a `name:`"),
                );
                continue;
            }
            checks.push(Check {
                at: match line {
                    Some(line) => format!("{}:{line}", self.file.display()),
                    None => self.file.display().to_string(),
                },
                name,
                table,
                severity,
                rule,
            });
        }
        checks
    }

    fn notify(&mut self, raw: RawNotify) -> Notify {
        Notify {
            on_failure: raw
                .on_failure
                .and_then(|url| self.webhook(&url, "on_failure")),
            on_success: raw
                .on_success
                .and_then(|url| self.webhook(&url, "on_success")),
        }
    }

    /// The report's page: a file, in a store with these settings.
    fn report(&mut self, raw: RawReport) -> Option<ReportSpec> {
        let RawReport { url, options } = raw;
        let location = self.location(&url)?;
        if location.is_folder() || location.local_path().is_some_and(|p| p.is_dir()) {
            self.problem(
                line_of(&url),
                format!(
                    "report.url '{}' is a folder; name the page's file, such as {}report.html",
                    url.value,
                    location.as_folder()
                ),
            );
            return None;
        }
        let options = self.options(Some(&location), options);
        Some(ReportSpec { location, options })
    }

    /// An http(s) URL after `${NAME}` interpolation; named as written, since the value may
    /// carry a token.
    fn webhook(&mut self, text: &Spanned<String>, key: &str) -> Option<url::Url> {
        let url = interpolate(&text.value, self.env)
            .map_err(|message| self.problem(line_of(text), message))
            .ok()?;
        match url::Url::parse(&url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            _ => {
                self.problem(
                    line_of(text),
                    format!(
                        "notify.{key} '{}' is not an http:// or https:// URL",
                        text.value
                    ),
                );
                None
            }
        }
    }

    /// Names become table and folder names: lower-case letters, digits and '_'.
    pub(super) fn check_identifier(&mut self, name: &Spanned<String>, what: &str) {
        if !is_identifier(&name.value) {
            self.problem(
                line_of(name),
                format!(
                    "{what} '{}' must be lower-case letters, digits and '_'",
                    name.value
                ),
            );
        }
    }

    /// An IANA zone name; UTC when absent (or when the name is wrong, after reporting it).
    fn timezone(&mut self, name: Option<&Spanned<String>>) -> Tz {
        let Some(name) = name else { return Tz::UTC };
        name.value.parse().unwrap_or_else(|_| {
            let zones = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
            let hint = did_you_mean(&name.value, zones);
            self.problem(
                line_of(name),
                format!(
                    "'{}' is not an IANA time zone (for example Europe/Oslo or UTC){hint}",
                    name.value
                ),
            );
            Tz::UTC
        })
    }

    fn members(&mut self, raw: Option<&RawMembers>) -> Members {
        let defaults = Members::default();
        let Some(raw) = raw else { return defaults };
        let mut column = |key: &str, value: Option<&Spanned<String>>, default: String| {
            let Some(name) = value else { return default };
            if is_identifier(&name.value) {
                return name.value.clone();
            }
            self.problem(
                line_of(name),
                format!(
                    "members: {key} '{}' must be lower-case letters, digits and '_'",
                    name.value
                ),
            );
            default
        };
        Members {
            table: column("table", raw.table.as_ref(), defaults.table),
            created_at: column("created_at", raw.created_at.as_ref(), defaults.created_at),
            matched: raw.matched.as_ref().map(|names| names.value.clone()),
        }
    }

    fn sources(&mut self, raw: BTreeMap<Key, RawSource>) -> Vec<Source> {
        let mut sources = Vec::new();
        for (key, source) in raw {
            let name = key.name().to_string();
            if !is_identifier(&name) {
                self.problem(
                    key.line(),
                    format!("source name '{name}' must be lower-case letters, digits and '_'"),
                );
            }
            let location = self.location(&source.url);
            let format = self.source_format(&name, &source);
            let mut columns = self.source_columns(&name, &source.columns);
            if matches!(format, SourceFormat::Csv { header: false, .. }) {
                // Without a header line, columns are the file's in the order the spec lists
                // them.
                columns.sort_by_key(|(column, _)| {
                    source
                        .columns
                        .keys()
                        .find(|k| k.name() == column)
                        .map(Key::position)
                });
            }
            let timezone = self.timezone(source.timezone.as_ref());
            let key = self.source_key(&name, &source);
            let options = self.options(location.as_ref(), source.options);
            if let Some(location) = location {
                sources.push(Source {
                    name,
                    location,
                    url_as_written: source.url.value.clone(),
                    columns,
                    options,
                    timezone,
                    key,
                    format,
                });
            }
        }
        sources
    }

    fn source_format(&mut self, name: &str, source: &RawSource) -> SourceFormat {
        let format = source.format.as_ref();
        let format = match format
            .map(|f| f.value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parquet") => SourceFormat::Parquet,
            Some("json" | "ndjson" | "jsonl") => SourceFormat::Json,
            Some("delta") => SourceFormat::Delta,
            Some("csv") => {
                let csv = source.csv.as_ref().map(|csv| &csv.value);
                let header = csv.and_then(|csv| csv.header).unwrap_or(true);
                let delimiter = match csv.and_then(|csv| csv.delimiter.as_ref()) {
                    None => b',',
                    Some(text) => match text.value.as_str() {
                        "\\t" | "\t" => b'\t',
                        one if one.len() == 1 && one.is_ascii() => one.as_bytes()[0],
                        other => {
                            self.problem(
                                line_of(text),
                                format!(
                                    "source '{name}': the CSV delimiter '{other}' must be one \
                                     ASCII character (for a tab, write \"\\t\")"
                                ),
                            );
                            b','
                        }
                    },
                };
                SourceFormat::Csv { header, delimiter }
            }
            Some(other) => {
                let hint = format_hint(other, &["parquet", "csv", "json", "delta"]);
                self.problem(
                    format.and_then(line_of),
                    format!(
                        "source '{name}': format '{other}' is not one segflow reads (parquet, \
                         csv, json or delta){hint}"
                    ),
                );
                return SourceFormat::Parquet;
            }
        };
        if let Some(csv) = &source.csv
            && !matches!(format, SourceFormat::Csv { .. })
        {
            self.problem(
                line_of(csv),
                format!("source '{name}': csv settings need `format: csv`"),
            );
        }
        if matches!(format, SourceFormat::Csv { .. }) {
            for (column, type_text) in &source.columns {
                if matches!(ColumnType::parse(type_text), Some(ColumnType::List(_))) {
                    self.problem(
                        column.line(),
                        format!(
                            "source '{name}': column '{}' is a list, which CSV cannot hold",
                            column.name()
                        ),
                    );
                }
            }
        }
        format
    }

    fn source_columns(
        &mut self,
        source: &str,
        raw: &BTreeMap<Key, String>,
    ) -> Vec<(String, ColumnType)> {
        let mut columns = Vec::new();
        for (column, type_text) in raw {
            match ColumnType::parse(type_text) {
                Some(ty) => columns.push((column.name().to_string(), ty)),
                None => self.problem(
                    column.line(),
                    format!(
                        "source '{source}': column '{}' has unknown type '{type_text}' \
                         (use int, bigint, double, string, bool, date, timestamp, \
                         decimal(p,s) or list<type>)",
                        column.name()
                    ),
                ),
            }
        }
        columns
    }

    fn source_key(&mut self, name: &str, source: &RawSource) -> Option<SourceKey> {
        if let Some(by) = &source.keep_latest_by {
            self.problem(
                line_of(by),
                format!(
                    "source '{name}': keep_latest_by is now `version: {}`, which keeps the \
                     version in force at the end of the as_of day (README, \"Rows that change\")",
                    by.value
                ),
            );
        }
        if let (None, Some(deleted)) = (&source.version, &source.deleted) {
            self.problem(
                line_of(deleted),
                format!(
                    "source '{name}': deleted needs version, the column that says when each \
                     row, deletions too, became its key's version"
                ),
            );
        }
        let Some(key) = &source.key else {
            if let Some(by) = &source.version {
                self.problem(
                    line_of(by),
                    format!("source '{name}': version needs a key, whose versions it orders"),
                );
            }
            return None;
        };
        let columns = match &key.value {
            RawKey::One(column) => vec![column.clone()],
            RawKey::Several(columns) => columns.clone(),
        };
        if columns.is_empty() {
            self.problem(
                line_of(key),
                format!("source '{name}': key lists no columns"),
            );
            return None;
        }
        Some(SourceKey {
            columns,
            versions: source.version.as_ref().map(|by| Versions {
                by: by.value.clone(),
                deleted: source.deleted.as_ref().map(|d| d.value.clone()),
            }),
        })
    }

    /// Steps and segments in the order they run; none when they read each other in a cycle.
    fn order(&mut self, steps: Vec<Step>) -> Vec<Step> {
        super::dag::dependency_order(steps).unwrap_or_else(|cycle| {
            let through_membership = cycle.steps.iter().any(|s| s.kind == StepKind::Membership);
            let hint = if through_membership {
                "; a segment cannot read what is built from the segments (segment_membership): \
                 read the tables it is built from (in the shipped pipeline, customer_attributes \
                 rather than customer_profile)"
            } else {
                ""
            };
            self.problem(
                cycle.steps[0].line,
                format!(
                    "steps and segments read each other in a cycle: {}{hint}",
                    cycle.describe()
                ),
            );
            Vec::new()
        })
    }

    /// Outputs, each of a source or of a declared step (whose own problems, if any, are
    /// reported with the step).
    fn outputs(
        &mut self,
        raw: Vec<Spanned<RawOutput>>,
        sources: &BTreeSet<String>,
        steps: &BTreeSet<String>,
        read: &[Source],
    ) -> Vec<Output> {
        let tables: Vec<&str> = sources
            .iter()
            .map(String::as_str)
            .chain(steps.iter().map(String::as_str))
            .collect();
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut outputs = Vec::new();
        for output in raw {
            let RawOutput {
                table,
                url,
                format,
                options,
            } = output.value;
            let format = self.output_format(&table.value, format.as_ref());
            if !tables.contains(&table.value.as_str()) {
                let hint = did_you_mean(&table.value, tables.iter().copied());
                self.problem(
                    line_of(&table),
                    format!(
                        "output names table '{}', which is not a source or a step{hint}",
                        table.value
                    ),
                );
            }
            let Some(location) = self.location(&url) else {
                continue;
            };
            let location = location.as_folder();
            if let Some(other) = urls.insert(location.to_string(), table.value.clone()) {
                self.problem(
                    line_of(&url),
                    format!(
                        "outputs '{other}' and '{}' are both published to {location}",
                        table.value
                    ),
                );
            }
            // A run writes and vacuum deletes under an output's folder: a source there
            // would be overwritten, read back as itself, or deleted.
            for source in read.iter().filter(|s| s.location.overlaps(&location)) {
                self.problem(
                    line_of(&url),
                    format!(
                        "output '{}' is published to {location}, and source '{}' is read from {}: \
                         one may not be in the other, or runs would write into what they read \
                         and vacuum would delete the source's files. Give the output a folder \
                         of its own",
                        table.value, source.name, source.location
                    ),
                );
            }
            let options = self.options(Some(&location), options);
            outputs.push(Output {
                table: table.value,
                earlier: location.clone(),
                location,
                format,
                options,
            });
        }
        outputs
    }

    fn output_format(&mut self, table: &str, format: Option<&Spanned<String>>) -> OutputFormat {
        match format
            .map(|f| f.value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parquet") => OutputFormat::Parquet,
            Some("delta") => OutputFormat::Delta,
            Some(other) => {
                let hint = format_hint(other, &["parquet", "delta"]);
                self.problem(
                    format.and_then(line_of),
                    format!(
                        "output '{table}': format '{other}' is not one segflow publishes \
                         (parquet or delta){hint}"
                    ),
                );
                OutputFormat::Parquet
            }
        }
    }

    /// The daemon's schedule. Its cron is read in its own zone, by default the pipeline's;
    /// a slot's as_of is the last complete day in the pipeline's zone.
    fn schedule(&mut self, raw: RawSchedule, days: Tz) -> Option<ScheduleSpec> {
        let timezone = raw
            .timezone
            .as_ref()
            .map_or(days.name(), |zone| zone.value.as_str());
        // The expression and the zone are checked apart, so that both are reported at once.
        if let Err(e) = Schedule::parse(&raw.cron.value, "UTC") {
            self.problem(line_of(&raw.cron), e.to_string());
        }
        if let Err(e @ ScheduleError::TimeZone(_)) = Schedule::parse("* * * * *", timezone) {
            self.problem(raw.timezone.as_ref().and_then(line_of), e.to_string());
        }
        let slots = Schedule::parse(&raw.cron.value, timezone)
            .ok()
            .map(|s| s.with_days_in(days));
        let catchup = self.catchup(raw.catchup.as_ref(), raw.max_catchup);
        let retry_delay = self
            .duration("retry_delay", raw.retry_delay.as_ref())
            .unwrap_or(std::time::Duration::from_secs(60));
        let timeout = self.duration("timeout", raw.timeout.as_ref());
        if let Some(attempts) = raw.attempts.as_ref().filter(|a| a.value == 0) {
            self.problem(line_of(attempts), "attempts must be at least 1");
        }
        Some(ScheduleSpec {
            slots: slots?,
            catchup: catchup?,
            attempts: raw.attempts.map_or(3, |a| a.value).max(1),
            retry_delay,
            timeout,
        })
    }

    fn catchup(&mut self, raw: Option<&Spanned<String>>, max: Option<usize>) -> Option<Catchup> {
        let max = max.unwrap_or(DEFAULT_MAX_CATCHUP);
        match raw.map_or("latest", |c| c.value.as_str()) {
            "none" => Some(Catchup::None),
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All { max }),
            other => {
                let message = format!("catchup '{other}' is not one of none, latest, all");
                self.problem(raw.and_then(line_of), message);
                None
            }
        }
    }

    fn duration(
        &mut self,
        key: &str,
        text: Option<&Spanned<String>>,
    ) -> Option<std::time::Duration> {
        let text = text?;
        let duration = parse_duration(&text.value);
        if duration.is_none() {
            self.problem(
                line_of(text),
                format!(
                    "{key} '{}' is not a duration (write it like 30s, 15m or 2h)",
                    text.value
                ),
            );
        }
        duration
    }

    fn engine(&mut self, raw: RawEngine) -> EngineSettings {
        let memory_limit = raw.memory_limit.and_then(|text| {
            let bytes = parse_bytes(&text.value);
            if bytes.is_none() {
                self.problem(
                    line_of(&text),
                    format!(
                        "memory_limit '{}' is not a size (write it like 512MiB or 8GiB)",
                        text.value
                    ),
                );
            }
            bytes
        });
        if let Some(zero) = raw.target_partitions.as_ref().filter(|n| n.value == 0) {
            self.problem(line_of(zero), "target_partitions must be at least 1");
        }
        let scratch = raw.scratch.and_then(|url| self.location(&url));
        let cluster = raw.cluster.and_then(|text| {
            let parsed = interpolate(&text.value, self.env)
                .and_then(|url| url.parse::<ClusterUrl>().map_err(|e| e.to_string()));
            parsed
                .map_err(|message| self.problem(line_of(&text), message))
                .ok()
        });
        EngineSettings {
            memory_limit,
            target_partitions: raw.target_partitions.map(|n| n.value).filter(|&n| n > 0),
            scratch: scratch.map(|location| location.as_folder()),
            cluster,
        }
    }

    /// A URL after `${NAME}` interpolation.
    fn location(&mut self, text: &Spanned<String>) -> Option<Location> {
        let parsed = interpolate(&text.value, self.env)
            .and_then(|text| Location::parse(&text).map_err(|e| e.to_string()));
        parsed
            .map_err(|message| self.problem(line_of(text), message))
            .ok()
    }

    /// The options of the store of `location`, each a setting that store has, after
    /// `${NAME}` interpolation.
    fn options(
        &mut self,
        location: Option<&Location>,
        raw: BTreeMap<Key, String>,
    ) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        for (key, value) in raw {
            if let Some(known) =
                location.and_then(|l| crate::storage::unknown_option(l, key.name()))
            {
                let hint = did_you_mean(key.name(), known.iter().copied());
                self.problem(
                    key.line(),
                    format!(
                        "'{}' is not a setting of the store of {}{hint}",
                        key.name(),
                        location.expect("a location had the unknown option")
                    ),
                );
                continue;
            }
            match interpolate(&value, self.env) {
                Ok(value) => {
                    options.insert(key.name().to_string(), value);
                }
                Err(message) => self.problem(key.line(), message),
            }
        }
        options
    }
}

pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// " (did you mean 'csv'?)" for a format name a letter or two off one of `known`: format
/// names are too short for the usual guess.
fn format_hint(written: &str, known: &[&str]) -> String {
    known
        .iter()
        .find(|known| strsim::damerau_levenshtein(written, known) <= 2)
        .map(|known| format!(" (did you mean '{known}'?)"))
        .unwrap_or_default()
}
