//! Wire types: exactly the YAML, parsed strictly in one pass, each value that a later check
//! may complain about carrying the line it was written on.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::{MessageFormatter, Spanned};

use super::keys::{Key, Node, PIPELINE, unknown_keys};

/// Why the text is not a pipeline: the parser's message, and where.
pub(super) struct YamlError {
    pub(super) line: Option<usize>,
    pub(super) message: String,
}

/// Parses YAML 1.2: `NO` and `yes` are strings, not booleans, and a tag segflow does not know
/// is an error rather than silently dropped. Every unknown key is reported at once (see
/// `keys`); otherwise the first problem the typed parse meets.
pub(super) fn parse(text: &str) -> Result<RawPipeline, Vec<YamlError>> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    let tree: Node = serde_saphyr::from_str_with_options(text, options.clone())
        .map_err(|error| vec![yaml_error(&error)])?;
    let unknown = unknown_keys(&tree, &PIPELINE);
    if !unknown.is_empty() {
        return Err(unknown
            .into_iter()
            .map(|(line, message)| YamlError { line, message })
            .collect());
    }
    serde_saphyr::from_str_with_options(text, options).map_err(|error| vec![yaml_error(&error)])
}

fn yaml_error(error: &serde_saphyr::Error) -> YamlError {
    let bare = error.without_snippet();
    YamlError {
        line: bare
            .location()
            .and_then(|l| usize::try_from(l.line()).ok())
            .filter(|&line| line > 0),
        message: plain_words(&serde_saphyr::UserMessageFormatter.format_message(bare)),
    }
}

/// The parser's terse texts for a value of the wrong shape, said as a data engineer would;
/// control characters from the input are blanked.
fn plain_words(message: &str) -> String {
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match message.as_str() {
        "expected sequence start" => "expected a list here".to_string(),
        "expected mapping start" => "expected a mapping (key: value) here".to_string(),
        "expected string scalar" => "expected a single text value here".to_string(),
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
            "expected a whole number, 0 or more, here".to_string()
        }
        _ => message,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) members: Option<Spanned<RawMembers>>,
    #[serde(default)]
    pub(super) vars: BTreeMap<Key, serde_json::Value>,
    #[serde(default)]
    pub(super) sources: BTreeMap<Key, RawSource>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    pub(super) segments: Option<Spanned<Vec<Spanned<RawSegment>>>>,
    #[serde(default)]
    pub(super) outputs: Vec<Spanned<RawOutput>>,
    #[serde(default)]
    pub(super) engine: RawEngine,
    #[serde(default)]
    pub(super) schedule: Option<RawSchedule>,
    #[serde(default)]
    pub(super) notify: Option<RawNotify>,
    #[serde(default)]
    pub(super) report: Option<RawReport>,
    #[serde(default)]
    pub(super) checks: Vec<Spanned<RawCheck>>,
}

/// A check on a table: exactly one rule (docs/checks.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(default)]
    pub(super) name: Option<Spanned<String>>,
    pub(super) table: Spanned<String>,
    #[serde(default)]
    pub(super) severity: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) not_null: Option<RawKey>,
    #[serde(default)]
    pub(super) unique: Option<RawKey>,
    #[serde(default)]
    pub(super) accepted_range: Option<RawRange>,
    #[serde(default)]
    pub(super) row_count: Option<RawRowCount>,
    #[serde(default)]
    pub(super) accepted_values: Option<RawValues>,
    #[serde(default)]
    pub(super) relationships: Option<RawRelationships>,
    #[serde(default)]
    pub(super) not_null_proportion: Option<RawProportion>,
    #[serde(default)]
    pub(super) sql: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) freshness: Option<RawFreshness>,
    #[serde(default)]
    pub(super) anomaly: Option<RawAnomaly>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValues {
    pub(super) column: String,
    pub(super) values: Vec<RawValue>,
}

/// A value as YAML types it: `paid`, `3`, `2.5`, `true`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawValue {
    pub(super) fn into_value(self) -> super::model::CheckValue {
        use super::model::CheckValue;
        match self {
            RawValue::Bool(v) => CheckValue::Bool(v),
            RawValue::Int(v) => CheckValue::Int(v),
            RawValue::Float(v) => CheckValue::Float(v),
            RawValue::Text(v) => CheckValue::Text(v),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelationships {
    pub(super) column: String,
    pub(super) to: Spanned<String>,
    /// The column of `to`; the same name as `column` when left out.
    #[serde(default)]
    pub(super) field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProportion {
    pub(super) column: String,
    pub(super) at_least: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreshness {
    pub(super) column: String,
    pub(super) max_age: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnomaly {
    /// `30%`, or a number of rows.
    pub(super) max_change: Spanned<String>,
    #[serde(default)]
    pub(super) by: Option<String>,
    #[serde(default)]
    pub(super) min_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRange {
    pub(super) column: String,
    #[serde(default)]
    pub(super) min: Option<f64>,
    #[serde(default)]
    pub(super) max: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRowCount {
    #[serde(default)]
    pub(super) min: Option<u64>,
    #[serde(default)]
    pub(super) max: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) columns: BTreeMap<Key, String>,
    #[serde(default)]
    pub(super) options: BTreeMap<Key, String>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) key: Option<Spanned<RawKey>>,
    /// Before `version:`, which replaced it; kept to say so.
    #[serde(default)]
    pub(super) keep_latest_by: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) version: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) deleted: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) format: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) csv: Option<Spanned<RawCsv>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCsv {
    #[serde(default)]
    pub(super) header: Option<bool>,
    #[serde(default)]
    pub(super) delimiter: Option<Spanned<String>>,
}

/// A key of one column (`key: customer_id`) or several (`key: [shop, customer_id]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawKey {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMembers {
    #[serde(default)]
    pub(super) table: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) created_at: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) matched: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) name: Spanned<String>,
    pub(super) sql: Spanned<String>,
    #[serde(default)]
    pub(super) incremental: Option<Spanned<RawIncremental>>,
}

/// `incremental: { source: orders, time: ordered_at }` on a step, with `fold:` the SQL file
/// that folds two of its results into one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncremental {
    pub(super) source: Spanned<String>,
    pub(super) time: Spanned<String>,
    #[serde(default)]
    pub(super) fold: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: Spanned<String>,
    pub(super) sql: Option<Spanned<String>>,
    pub(super) all_of: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) any_of: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) none_of: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The segment lists of `all_of`, `any_of` and `none_of`, by key.
pub(super) type SetParts<'a> = [(&'static str, Option<&'a Spanned<Vec<Spanned<String>>>>); 3];

impl RawSegment {
    pub(super) fn set_parts(&self) -> SetParts<'_> {
        [
            ("all_of", self.all_of.as_ref()),
            ("any_of", self.any_of.as_ref()),
            ("none_of", self.none_of.as_ref()),
        ]
    }

    /// The names one set key lists (none when the key is absent).
    pub(super) fn names(list: Option<&Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
        list.map(|names| names.value.iter().map(|n| n.value.clone()).collect())
            .unwrap_or_default()
    }

    /// How the YAML defines the segment, for `segment_catalog`: its SQL file, or its sets.
    pub(super) fn definition(&self) -> String {
        if let Some(sql) = &self.sql {
            return sql.value.clone();
        }
        self.set_parts()
            .iter()
            .filter_map(|(key, names)| {
                names.map(|names| format!("{key}: [{}]", Self::names(Some(names)).join(", ")))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) table: Spanned<String>,
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) format: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) options: BTreeMap<Key, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub(super) cron: Spanned<String>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) catchup: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) max_catchup: Option<usize>,
    #[serde(default)]
    pub(super) attempts: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) retry_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    #[serde(default)]
    pub(super) on_failure: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) on_success: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) options: BTreeMap<Key, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) memory_limit: Option<Spanned<String>>,
    pub(super) target_partitions: Option<Spanned<usize>>,
    pub(super) scratch: Option<Spanned<String>>,
    pub(super) cluster: Option<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::super::keys::line_of;
    use super::*;

    #[test]
    fn reads_yaml_1_2() {
        let raw = parse(
            "name: t\nvars:\n  on: yes\n  off: no\n  country: NO\n  flag: true\nsources:\n  s: { url: x/, options: { region: NO } }\n",
        )
        .unwrap_or_else(|e| panic!("{}", e[0].message));
        let vars: Vec<(&str, &serde_json::Value)> =
            raw.vars.iter().map(|(k, v)| (k.name(), v)).collect();
        assert_eq!(
            vars,
            [
                ("country", &serde_json::json!("NO")),
                ("flag", &serde_json::json!(true)),
                ("off", &serde_json::json!("no")),
                ("on", &serde_json::json!("yes")),
            ]
        );
        let source = raw.sources.values().next().unwrap();
        assert_eq!(source.options.values().next().unwrap(), "NO");
    }

    #[test]
    fn keeps_lines_of_keys_values_and_items() {
        let raw = parse(
            "name: demo\nsources:\n  orders:\n    url: data/orders/\nsteps:\n  - name: a\n    sql: a.sql\n  - { name: b, sql: b.sql }\n",
        )
        .unwrap_or_else(|e| panic!("{}", e[0].message));
        assert_eq!(line_of(&raw.name), Some(1));
        let (key, source) = raw.sources.iter().next().unwrap();
        assert_eq!(key.line(), Some(3));
        assert_eq!(line_of(&source.url), Some(4));
        assert_eq!(line_of(&raw.steps[0]), Some(6));
        assert_eq!(line_of(&raw.steps[0].value.sql), Some(7));
        assert_eq!(line_of(&raw.steps[1].value.sql), Some(8));
    }

    #[test]
    fn errors_carry_their_line() {
        let first = |text: &str| parse(text).err().unwrap().remove(0);
        let error = first("name: t\nvars:\n  a: 1\n  a: 2\n");
        assert_eq!(error.line, Some(4));
        assert!(error.message.contains("duplicate"), "{}", error.message);
        let error = first("name: t\nvars:\n  a: !secret x\n");
        assert_eq!(error.line, Some(3));
        let error = first("name: t\nengine:\n  target_partitions: -3\n");
        assert_eq!(
            (error.line, error.message.as_str()),
            (Some(3), "expected a whole number, 0 or more, here")
        );
        let error = first("name: t\nsteps: a.sql\n");
        assert_eq!(
            (error.line, error.message.as_str()),
            (Some(2), "expected a list here")
        );
    }

    #[test]
    fn every_unknown_key_is_reported_at_once_with_a_guess() {
        let errors = parse(
            "name: t\nsteps:\n  - { name: a, sq: a.sql }\noutputs:\n  - tabel: a\n    url: out/\nschedule:\n  cronn: '0 2 * * *'\n  timezon: UTC\n",
        )
        .err()
        .unwrap();
        let found: Vec<(Option<usize>, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    Some(3),
                    "unknown field `sq` (did you mean 'sql'?), expected one of name, sql, incremental"
                ),
                (
                    Some(5),
                    "unknown field `tabel` (did you mean 'table'?), expected one of table, url, format, options"
                ),
                (
                    Some(8),
                    "unknown field `cronn` (did you mean 'cron'?), expected one of cron, timezone, catchup, max_catchup, attempts, retry_delay, timeout"
                ),
                (
                    Some(9),
                    "unknown field `timezon` (did you mean 'timezone'?), expected one of cron, timezone, catchup, max_catchup, attempts, retry_delay, timeout"
                ),
            ]
        );
    }

    /// The key check's shapes list exactly the fields the typed parse accepts: serde's own
    /// list, from the error of one unknown key in each section.
    #[test]
    fn the_key_check_knows_the_same_fields_as_the_wire_types() {
        let sections = [
            ("", "zzz: 1\n"),
            ("members", "name: t\nmembers: { zzz: 1 }\n"),
            (
                "sources.*",
                "name: t\nsources: { s: { url: x/, zzz: 1 } }\n",
            ),
            (
                "steps[]",
                "name: t\nsteps: [{ name: a, sql: a.sql, zzz: 1 }]\n",
            ),
            ("segments[]", "name: t\nsegments: [{ name: a, zzz: 1 }]\n"),
            (
                "outputs[]",
                "name: t\noutputs: [{ table: a, url: x/, zzz: 1 }]\n",
            ),
            ("engine", "name: t\nengine: { zzz: 1 }\n"),
            ("schedule", "name: t\nschedule: { cron: x, zzz: 1 }\n"),
        ];
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        for (section, yaml) in sections {
            let typed = serde_saphyr::from_str_with_options::<RawPipeline>(yaml, options.clone());
            let serde_message = serde_saphyr::UserMessageFormatter
                .format_message(typed.err().unwrap().without_snippet())
                .to_string();
            let ours = &parse(yaml).err().unwrap()[0].message;
            let expected =
                |message: &str| message.split("expected one of ").nth(1).map(str::to_string);
            assert_eq!(
                expected(ours),
                expected(&serde_message),
                "{section}: ours: {ours}; serde: {serde_message}"
            );
        }
    }
}

#[cfg(test)]
mod shape_tests {
    use serde::de::{self, Visitor};

    use serde::Deserialize;

    use super::super::keys::{PIPELINE, Shape};
    use super::*;

    /// The field names a derived `Deserialize` asks for, caught as it starts on a struct.
    #[derive(Debug)]
    enum Probe {
        Fields(&'static [&'static str]),
        NotAStruct(String),
    }

    impl std::fmt::Display for Probe {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            match self {
                Probe::Fields(fields) => write!(f, "a struct of {fields:?}"),
                Probe::NotAStruct(message) => f.write_str(message),
            }
        }
    }

    impl std::error::Error for Probe {}

    impl de::Error for Probe {
        fn custom<T: std::fmt::Display>(message: T) -> Probe {
            Probe::NotAStruct(message.to_string())
        }
    }

    struct FieldsOf;

    impl<'de> de::Deserializer<'de> for FieldsOf {
        type Error = Probe;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probe> {
            Err(Probe::NotAStruct("not a struct".to_string()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Probe> {
            Err(Probe::Fields(fields))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        match T::deserialize(FieldsOf) {
            Err(Probe::Fields(fields)) => {
                let mut fields = fields.to_vec();
                fields.sort_unstable();
                fields
            }
            Err(other) => panic!("{} is not a struct: {other}", std::any::type_name::<T>()),
            Ok(_) => panic!("{} read from nothing", std::any::type_name::<T>()),
        }
    }

    /// The keys `shape` has at `path` (lists and maps of entries walked through).
    fn keys_at(shape: &Shape, path: &[&str]) -> Vec<&'static str> {
        match (shape, path) {
            (Shape::EachItem(inner) | Shape::EachValue(inner), _) => keys_at(inner, path),
            (Shape::Fields(fields), []) => {
                let mut keys: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
                keys.sort_unstable();
                keys
            }
            (Shape::Fields(fields), [first, rest @ ..]) => {
                let (_, inner) = fields
                    .iter()
                    .find(|(name, _)| name == first)
                    .unwrap_or_else(|| panic!("no key '{first}'"));
                keys_at(inner, rest)
            }
            (Shape::Any, _) => panic!("no keys at {path:?}"),
        }
    }

    /// The one-pass key check must know every key the typed parse accepts, and no other:
    /// a key added to a `Raw*` struct and not here would be refused as unknown.
    #[test]
    fn the_shape_of_a_pipeline_has_the_keys_of_the_typed_parse() {
        let pairs: Vec<(&[&str], Vec<&str>)> = vec![
            (&[], fields_of::<RawPipeline>()),
            (&["members"], fields_of::<RawMembers>()),
            (&["sources"], fields_of::<RawSource>()),
            (&["sources", "csv"], fields_of::<RawCsv>()),
            (&["steps"], fields_of::<RawStep>()),
            (&["steps", "incremental"], fields_of::<RawIncremental>()),
            (&["segments"], fields_of::<RawSegment>()),
            (&["outputs"], fields_of::<RawOutput>()),
            (&["engine"], fields_of::<RawEngine>()),
            (&["schedule"], fields_of::<RawSchedule>()),
            (&["notify"], fields_of::<RawNotify>()),
            (&["report"], fields_of::<RawReport>()),
            (&["checks"], fields_of::<RawCheck>()),
            (&["checks", "accepted_range"], fields_of::<RawRange>()),
            (&["checks", "row_count"], fields_of::<RawRowCount>()),
            (&["checks", "accepted_values"], fields_of::<RawValues>()),
            (
                &["checks", "relationships"],
                fields_of::<RawRelationships>(),
            ),
            (
                &["checks", "not_null_proportion"],
                fields_of::<RawProportion>(),
            ),
            (&["checks", "freshness"], fields_of::<RawFreshness>()),
            (&["checks", "anomaly"], fields_of::<RawAnomaly>()),
        ];
        for (path, typed) in pairs {
            assert_eq!(keys_at(&PIPELINE, path), typed, "keys at {path:?}");
        }
    }
}
