//! `--select`: part of a pipeline, as dbt selects models. `NAME` is a step, segment or
//! source and the steps it reads; `NAME+` adds every table computed from it. The cut-down
//! pipeline keeps the steps those need and the outputs of the selected tables.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::model::{Pipeline, Published, StepKind};
use crate::hint::did_you_mean;

/// One `--select` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    /// `NAME+`: also every table computed from NAME.
    pub downstream: bool,
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        let (name, downstream) = match text.strip_suffix('+') {
            Some(name) => (name, true),
            None => (text, false),
        };
        if name.is_empty() || name.contains('+') {
            return Err(format!(
                "'{text}' is not a selection: write a step, segment or source name, or NAME+ \
                 for it and everything computed from it"
            ));
        }
        Ok(Selector {
            name: name.to_lowercase(),
            downstream,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectError {
    #[error("pipeline '{pipeline}' has no source, step or segment named '{name}'{hint}")]
    Unknown {
        pipeline: String,
        name: String,
        hint: String,
    },
}

impl Pipeline {
    /// The pipeline cut down to `selectors`: the selected tables, every step they read
    /// (directly or not), and the outputs of selected tables. Sources all stay: registering
    /// one reads only its schema.
    pub fn select(mut self, selectors: &[Selector]) -> Result<Pipeline, SelectError> {
        let mut selected = BTreeSet::new();
        for selector in selectors {
            if !self.table_names().any(|t| t == selector.name) {
                return Err(SelectError::Unknown {
                    pipeline: self.name.clone(),
                    hint: did_you_mean(&selector.name, self.table_names()),
                    name: selector.name.clone(),
                });
            }
            selected.insert(selector.name.clone());
            if selector.downstream {
                selected.extend(self.computed_from(&selector.name));
            }
        }
        let mut needed = self.needed_by(&selected);
        // Any segment left needs the known customers, whom a run counts rows against.
        let segment_kept = self
            .steps
            .iter()
            .any(|step| step.kind == StepKind::Segment && needed.contains(&step.name));
        if segment_kept && !needed.contains(&self.members.table) {
            needed.insert(self.members.table.clone());
            needed = self.needed_by(&needed);
        }
        self.steps.retain(|step| needed.contains(&step.name));
        self.segments.retain(|segment| needed.contains(segment));
        // A check that reads a table this run does not compute has nothing to check.
        let sources: BTreeSet<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        self.checks.retain(|check| {
            check
                .reads()
                .iter()
                .all(|table| needed.contains(*table) || sources.contains(table))
        });
        let (kept, left_out) = std::mem::take(&mut self.outputs)
            .into_iter()
            .partition(|output| selected.contains(&output.table));
        self.outputs = kept;
        self.left_out.extend(left_out);
        Ok(self)
    }

    /// The tables `step` reads; for `previous_t` and `history_t`, also `t`, whose columns
    /// they take while nothing is published yet.
    fn inputs_of(step: &super::model::Step) -> impl Iterator<Item = &str> {
        step.sql.tables.iter().flat_map(|table| {
            let published = Published::parse(table).map(|(_, output)| output);
            std::iter::once(table.as_str()).chain(published)
        })
    }

    /// Every step computed from `table`, directly or through other steps. Steps are in
    /// dependency order, so one pass finds them all.
    fn computed_from(&self, table: &str) -> BTreeSet<String> {
        let mut reached = BTreeSet::from([table.to_string()]);
        for step in &self.steps {
            if Self::inputs_of(step).any(|input| reached.contains(input)) {
                reached.insert(step.name.clone());
            }
        }
        reached.remove(table);
        reached
    }

    /// `tables` and every step they read, directly or not.
    fn needed_by(&self, tables: &BTreeSet<String>) -> BTreeSet<String> {
        let mut needed = tables.clone();
        for step in self.steps.iter().rev() {
            if needed.contains(&step.name) {
                needed.extend(Self::inputs_of(step).map(str::to_string));
            }
        }
        needed
    }
}
