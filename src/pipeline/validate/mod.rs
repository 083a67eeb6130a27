//! From wire types to the model: one check per function, every problem collected with its
//! line so that the user sees them all in one pass. By part of the spec: sources, checks,
//! steps and segments, vars, outputs (with the report and webhooks) and settings
//! (schedule, engine).

mod checks;
mod incremental;
mod outputs;
mod settings;
mod sources;
mod steps;
mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde_saphyr::Spanned;

use crate::features::{Feature, Features};
use crate::hint::did_you_mean;
use crate::pipeline::diagnostics::Problem;
use crate::pipeline::env::interpolate;
use crate::pipeline::keys::{Key, line_of};
use crate::pipeline::model::{Pipeline, Step, StepKind};
use crate::pipeline::raw::{RawMembers, RawPipeline};
use crate::pipeline::units::parse_duration;
use crate::segments::Members;
use crate::storage::Location;

pub(super) struct Validator<'a> {
    pub(super) file: PathBuf,
    /// The folder SQL file paths are relative to.
    pub(super) dir: PathBuf,
    pub(super) problems: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// What the build that will run the pipeline can do.
    features: Features,
}

impl<'a> Validator<'a> {
    pub(super) fn new(
        file: &Path,
        env: &'a dyn Fn(&str) -> Option<String>,
        features: Features,
    ) -> Self {
        Validator {
            file: file.to_path_buf(),
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            problems: Vec::new(),
            env,
            features,
        }
    }

    pub(super) fn problem(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            message: message.into(),
        });
    }

    /// A problem at `at` when this build lacks `feature`, which what `needs` names needs.
    pub(super) fn needs<T>(
        &mut self,
        feature: Feature,
        at: Option<&Spanned<T>>,
        needs: impl FnOnce() -> String,
    ) {
        if let Err(missing) = self.features.require(feature, needs()) {
            self.problem(at.and_then(line_of), missing.to_string());
        }
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
        steps::membership_reads_members(&mut steps, &members);
        let steps = self.order(steps);
        let outputs = self.outputs(raw.outputs, &source_names, &declared, &sources);
        let engine = self.engine(raw.engine);
        let schedule = raw.schedule.and_then(|raw| self.schedule(raw, timezone));
        let notify = raw.notify.map(|raw| self.notify(raw)).unwrap_or_default();
        let report = raw.report.and_then(|raw| self.report(raw));
        let tables = checks::Tables {
            sources: &source_names,
            steps: &declared,
            published: &published,
        };
        let checks = self.checks(raw.checks, &tables);
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
    pub(super) fn timezone(&mut self, name: Option<&Spanned<String>>) -> Tz {
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

    /// Steps and segments in the order they run; none when they read each other in a cycle.
    pub(super) fn order(&mut self, steps: Vec<Step>) -> Vec<Step> {
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

    pub(super) fn duration(
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

    /// A URL after `${NAME}` interpolation.
    pub(super) fn location(&mut self, text: &Spanned<String>) -> Option<Location> {
        let parsed = interpolate(&text.value, self.env)
            .and_then(|text| Location::parse(&text).map_err(|e| e.to_string()));
        parsed
            .map_err(|message| self.problem(line_of(text), message))
            .ok()
    }

    /// The options of the store of `location`, each a setting that store has, after
    /// `${NAME}` interpolation.
    pub(super) fn options(
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
pub(super) fn format_hint(written: &str, known: &[&str]) -> String {
    known
        .iter()
        .find(|known| strsim::damerau_levenshtein(written, known) <= 2)
        .map(|known| format!(" (did you mean '{known}'?)"))
        .unwrap_or_default()
}
