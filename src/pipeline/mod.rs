//! Pipeline specs. A YAML file is parsed strictly, in one pass, into wire types that mirror
//! it and remember lines (`raw`), then validated (`validate`, `steps`, `vars`, `dag`) into
//! the model (`model`); code past this module never sees an unvalidated spec. Validation
//! reports every problem at once, each with its file and line (`diagnostics`).

mod dag;
mod diagnostics;
mod env;
mod keys;
mod model;
mod raw;
mod select;
mod types;
mod units;
mod validate;

use std::path::Path;

use crate::features::Features;
use crate::storage::Location;
pub use diagnostics::{Problem, SpecError};
pub use model::{
    AS_OF, AS_OF_END, AS_OF_START, Change, Check, CheckRule, CheckValue, EngineOverrides,
    EngineSettings, Fold, Incremental, Notify, Output, OutputFormat, Pipeline, Published, RUN_ID,
    RUN_PARAMETERS, ReportSpec, ScheduleSpec, Severity, Source, SourceFormat, SourceKey, Step,
    StepKind, Versions,
};
pub use select::{SelectError, Selector};
pub use types::{ColumnType, VarType, VarValue, days_since_epoch, parse_date};
pub use units::{hours, parse_bytes, percent};

/// What the caller brings to loading a spec besides the file: `--var` overrides, how
/// `${NAME}` in URLs is resolved (the process environment, or a fixed map for the demo), and
/// what the build that runs it can do.
pub struct LoadOptions<'a> {
    pub var_overrides: Vec<(String, String)>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub features: Features,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            var_overrides: Vec::new(),
            env: &|name| std::env::var(name).ok(),
            features: Features::BUILT,
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
        let raw = raw::parse(text).map_err(|errors| SpecError::Invalid {
            problems: errors
                .into_iter()
                .map(|e| Problem {
                    file: path.to_path_buf(),
                    line: e.line,
                    message: e.message,
                })
                .collect(),
        })?;
        let mut validator = validate::Validator::new(path, options.env, options.features);
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

    /// Whether a step reads `previous_t` or `history_t`: then a run's result depends on
    /// what earlier dates published, and re-running an earlier date changes later ones.
    pub fn reads_earlier_publications(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.sql.tables)
            .any(|table| Published::parse(table).is_some())
    }

    /// The pipeline as a preview into `dir`: each output is published to `dir/<table>/`
    /// while earlier publications are still read from its own URL, so a preview computes
    /// what tonight's run would (segment changes, cooldowns) and changes nothing that runs,
    /// BI tools or campaigns read. The report, of the preview's publications, goes to
    /// `dir/report.html`.
    pub fn preview_into(mut self, dir: &Location) -> Pipeline {
        for output in &mut self.outputs {
            output.location = dir.as_folder().join(&format!("{}/", output.table));
        }
        if let Some(report) = &mut self.report {
            report.location = dir.as_folder().join("report.html");
            report.options = Default::default();
        }
        self
    }

    /// The `steps:` entries, without segments and the tables segflow builds from them.
    pub fn query_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.kind == StepKind::Query)
    }
}

#[cfg(test)]
mod tests;
