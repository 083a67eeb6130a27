//! Pipeline specs. A YAML file is parsed strictly into wire types that mirror it, then
//! validated into a [`Pipeline`]; code past this module never sees an unvalidated spec.
//! Validation reports every problem at once, each with its file and line.

mod locate;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sql::{self, StepSql};
use crate::storage::Location;
use locate::LineIndex;
pub use types::{ColumnType, VarType, VarValue, days_since_epoch, parse_date};

/// The name under which the run's logical date reaches SQL (`$as_of`).
pub const AS_OF: &str = "as_of";

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
    vars: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
    #[serde(default)]
    engine: RawEngine,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    table: String,
    url: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
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
    pub vars: BTreeMap<String, VarValue>,
    pub sources: Vec<Source>,
    /// In dependency order: every step comes after the steps it reads.
    pub steps: Vec<Step>,
    pub outputs: Vec<Output>,
    pub engine: EngineSettings,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub location: Location,
    pub columns: Vec<(String, ColumnType)>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub sql_file: PathBuf,
    pub sql: StepSql,
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
        let vars = self.vars(&raw.vars, overrides);
        let sources = self.sources(raw.sources);
        let steps = self.steps(raw.steps, &sources);
        let outputs = self.outputs(raw.outputs, &sources, &steps);
        let engine = self.engine(raw.engine);
        Pipeline {
            name: raw.name,
            description: raw.description,
            file: self.file.clone(),
            vars,
            sources,
            steps,
            outputs,
            engine,
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
            if name == AS_OF {
                self.problem(&at, "'as_of' is the run's logical date and cannot be a var");
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
            let options = self.options(&format!("{at}.options"), source.options);
            if let Some(location) = location {
                sources.push(Source {
                    name,
                    location,
                    columns,
                    options,
                });
            }
        }
        sources
    }

    fn steps(&mut self, raw: Vec<RawStep>, sources: &[Source]) -> Vec<Step> {
        let source_names: BTreeSet<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut steps = Vec::new();
        let mut step_index: Vec<usize> = Vec::new();
        for (index, raw_step) in raw.iter().enumerate() {
            let at = format!("steps[{index}]");
            let name = &raw_step.name;
            if !is_identifier(name) {
                self.problem(
                    &format!("{at}.name"),
                    format!("step name '{name}' must be lower-case letters, digits and '_'"),
                );
            }
            if source_names.contains(name.as_str()) {
                self.problem(
                    &format!("{at}.name"),
                    format!("step '{name}' has the same name as a source"),
                );
            }
            if let Some(first) = seen.insert(name.clone(), index) {
                let first_line = self.lines.line_of(&format!("steps[{first}]"));
                let where_first = first_line
                    .map(|l| format!(" (first at line {l})"))
                    .unwrap_or_default();
                self.problem(
                    &format!("{at}.name"),
                    format!("step '{name}' is defined twice{where_first}"),
                );
                continue;
            }
            let sql_file = self.dir.join(&raw_step.sql);
            let text = match std::fs::read_to_string(&sql_file) {
                Ok(text) => text,
                Err(e) => {
                    self.problem(
                        &format!("{at}.sql"),
                        format!(
                            "step '{name}': cannot read SQL file {}: {e}",
                            sql_file.display()
                        ),
                    );
                    continue;
                }
            };
            match sql::analyze(&text) {
                Ok(sql) => {
                    steps.push(Step {
                        name: name.clone(),
                        sql_file,
                        sql,
                    });
                    step_index.push(index);
                }
                Err(e) => self.problem(
                    &format!("{at}.sql"),
                    format!("step '{name}': {}: {e}", sql_file.display()),
                ),
            }
        }
        self.check_references(&steps, &step_index, &source_names, &seen);
        self.order_steps(steps, &step_index)
    }

    /// Every table a step reads must be a source or a step.
    fn check_references(
        &mut self,
        steps: &[Step],
        step_index: &[usize],
        sources: &BTreeSet<&str>,
        step_names: &HashMap<String, usize>,
    ) {
        let known: Vec<&str> = sources
            .iter()
            .copied()
            .chain(step_names.keys().map(String::as_str))
            .collect();
        for (step, index) in steps.iter().zip(step_index) {
            for table in &step.sql.tables {
                if !known.contains(&table.as_str()) {
                    let hint = did_you_mean(table, known.iter().copied());
                    self.problem(
                        &format!("steps[{index}].sql"),
                        format!(
                            "step '{}': {} reads table '{table}', which is not a source or a step{hint}",
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
    fn order_steps(&mut self, steps: Vec<Step>, step_index: &[usize]) -> Vec<Step> {
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
                        &format!("steps[{}]", step_index[cycle[0]]),
                        format!("steps read each other in a cycle: {}", names.join(" -> ")),
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
    Some((number * factor) as usize)
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
    }
}
