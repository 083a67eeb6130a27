//! Every key of a spec checked against the spec's shape in one pass, each unknown one with
//! its line and a guess at what was meant. The typed parse (`raw`) stops at the first
//! unknown key; this pass runs first so that three typos are three problems.

use std::cmp::Ordering;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::hint::did_you_mean;

/// The line of a value, when the parser knows it (1-based).
pub(super) fn line_of<T>(value: &Spanned<T>) -> Option<usize> {
    usize::try_from(value.referenced.line())
        .ok()
        .filter(|&line| line > 0)
}

/// A mapping key with its line, ordered and compared by its text alone.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Key(Spanned<String>);

impl Key {
    pub(super) fn name(&self) -> &str {
        &self.0.value
    }

    pub(super) fn line(&self) -> Option<usize> {
        line_of(&self.0)
    }

    /// Where the key is written (line, then column), to restore the YAML's order of keys
    /// that a map sorted by name lost.
    pub(super) fn position(&self) -> (u64, u64) {
        (self.0.referenced.line(), self.0.referenced.column())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

/// A YAML node, kept only as far as its keys and their lines.
pub(super) enum Node {
    Map(Vec<(Key, Node)>),
    Seq(Vec<Node>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key, map.next_value::<Node>()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
}

/// What a spec may hold where: the keys of a mapping, a mapping of user-named entries, a
/// list, or anything (which the typed parse checks).
pub(super) enum Shape {
    Fields(&'static [(&'static str, Shape)]),
    EachValue(&'static Shape),
    EachItem(&'static Shape),
    Any,
}

const MEMBERS: Shape = Shape::Fields(&[
    ("table", Shape::Any),
    ("created_at", Shape::Any),
    ("matched", Shape::Any),
]);
/// A var is a value, or `{ type, value }`.
const VAR: Shape = Shape::Fields(&[("type", Shape::Any), ("value", Shape::Any)]);
const SOURCE: Shape = Shape::Fields(&[
    ("url", Shape::Any),
    ("columns", Shape::Any),
    ("options", Shape::Any),
    ("timezone", Shape::Any),
    ("key", Shape::Any),
    ("keep_latest_by", Shape::Any),
    ("version", Shape::Any),
    ("deleted", Shape::Any),
    ("format", Shape::Any),
    ("csv", CSV),
]);
const CSV: Shape = Shape::Fields(&[("header", Shape::Any), ("delimiter", Shape::Any)]);
const STEP: Shape = Shape::Fields(&[
    ("name", Shape::Any),
    ("sql", Shape::Any),
    ("incremental", INCREMENTAL),
]);
const INCREMENTAL: Shape = Shape::Fields(&[
    ("source", Shape::Any),
    ("time", Shape::Any),
    ("fold", Shape::Any),
]);
const SEGMENT: Shape = Shape::Fields(&[
    ("name", Shape::Any),
    ("sql", Shape::Any),
    ("all_of", Shape::Any),
    ("any_of", Shape::Any),
    ("none_of", Shape::Any),
]);
const OUTPUT: Shape = Shape::Fields(&[
    ("table", Shape::Any),
    ("url", Shape::Any),
    ("format", Shape::Any),
    ("options", Shape::Any),
]);
const ENGINE: Shape = Shape::Fields(&[
    ("memory_limit", Shape::Any),
    ("target_partitions", Shape::Any),
    ("scratch", Shape::Any),
    ("cluster", Shape::Any),
]);
const SCHEDULE: Shape = Shape::Fields(&[
    ("cron", Shape::Any),
    ("timezone", Shape::Any),
    ("catchup", Shape::Any),
    ("max_catchup", Shape::Any),
    ("attempts", Shape::Any),
    ("retry_delay", Shape::Any),
    ("timeout", Shape::Any),
]);

const REPORT: Shape = Shape::Fields(&[("url", Shape::Any), ("options", Shape::Any)]);
const NOTIFY: Shape = Shape::Fields(&[("on_failure", Shape::Any), ("on_success", Shape::Any)]);

/// The shape of a whole pipeline file.
pub(super) const PIPELINE: Shape = Shape::Fields(&[
    ("name", Shape::Any),
    ("description", Shape::Any),
    ("timezone", Shape::Any),
    ("members", MEMBERS),
    ("vars", Shape::EachValue(&VAR)),
    ("sources", Shape::EachValue(&SOURCE)),
    ("steps", Shape::EachItem(&STEP)),
    ("segments", Shape::EachItem(&SEGMENT)),
    ("outputs", Shape::EachItem(&OUTPUT)),
    ("engine", ENGINE),
    ("schedule", SCHEDULE),
    ("notify", NOTIFY),
    ("report", REPORT),
    ("checks", Shape::EachItem(&CHECK)),
]);
const CHECK: Shape = Shape::Fields(&[
    ("name", Shape::Any),
    ("table", Shape::Any),
    ("severity", Shape::Any),
    ("not_null", Shape::Any),
    ("unique", Shape::Any),
    ("accepted_range", RANGE),
    ("row_count", ROW_COUNT),
    (
        "accepted_values",
        Shape::Fields(&[("column", Shape::Any), ("values", Shape::Any)]),
    ),
    (
        "relationships",
        Shape::Fields(&[
            ("column", Shape::Any),
            ("to", Shape::Any),
            ("field", Shape::Any),
        ]),
    ),
    (
        "not_null_proportion",
        Shape::Fields(&[("column", Shape::Any), ("at_least", Shape::Any)]),
    ),
    ("sql", Shape::Any),
    (
        "freshness",
        Shape::Fields(&[("column", Shape::Any), ("max_age", Shape::Any)]),
    ),
    (
        "anomaly",
        Shape::Fields(&[
            ("max_change", Shape::Any),
            ("by", Shape::Any),
            ("min_size", Shape::Any),
        ]),
    ),
]);
const RANGE: Shape = Shape::Fields(&[
    ("column", Shape::Any),
    ("min", Shape::Any),
    ("max", Shape::Any),
]);
const ROW_COUNT: Shape = Shape::Fields(&[("min", Shape::Any), ("max", Shape::Any)]);

/// Each key of `node` that `shape` does not have: its line, and what to say.
pub(super) fn unknown_keys(node: &Node, shape: &Shape) -> Vec<(Option<usize>, String)> {
    let mut found = Vec::new();
    walk(node, shape, &mut found);
    found
}

fn walk(node: &Node, shape: &Shape, found: &mut Vec<(Option<usize>, String)>) {
    match (shape, node) {
        (Shape::Fields(fields), Node::Map(entries)) => {
            for (key, value) in entries {
                match fields.iter().find(|(name, _)| *name == key.name()) {
                    Some((_, inner)) => walk(value, inner, found),
                    None => found.push((key.line(), unknown(key.name(), fields))),
                }
            }
        }
        (Shape::EachValue(inner), Node::Map(entries)) => {
            for (_, value) in entries {
                walk(value, inner, found);
            }
        }
        (Shape::EachItem(inner), Node::Seq(items)) => {
            for item in items {
                walk(item, inner, found);
            }
        }
        // A value of another kind is for the typed parse to report.
        _ => {}
    }
}

fn unknown(key: &str, fields: &[(&str, Shape)]) -> String {
    let names = fields.iter().map(|(name, _)| *name);
    let hint = did_you_mean(key, names.clone());
    let expected: Vec<&str> = names.collect();
    format!(
        "unknown field `{key}`{hint}, expected one of {}",
        expected.join(", ")
    )
}
