//! A pipeline as a graph, as `dbt docs` draws it: sources, then steps and segments in the
//! order they read each other, then outputs; each step with its SQL file and, from a run's
//! record, the rows it had. Written as Mermaid or Graphviz DOT text.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::history::RunRecord;
use crate::pipeline::{Pipeline, StepKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Step,
    Segment,
    /// A table segflow builds (`segment_membership`, `segment_catalog`).
    Built,
    Output,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique across kinds: an output and the step it publishes share a name.
    pub id: String,
    pub kind: NodeKind,
    pub name: String,
    /// The SQL file of a step, the URL of a source or an output.
    pub detail: String,
    /// From the run's record, when given and recorded.
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub nodes: Vec<Node>,
    /// (from id, to id): what each step reads, and what each output publishes.
    pub edges: Vec<(String, String)>,
}

impl Lineage {
    /// The graph of `pipeline`, with the rows `run` recorded for its steps and outputs.
    pub fn of(pipeline: &Pipeline, run: Option<&RunRecord>) -> Lineage {
        let mut rows: BTreeMap<&str, u64> = BTreeMap::new();
        if let Some(run) = run {
            for timing in &run.steps {
                if let Some(n) = timing.rows {
                    rows.insert(&timing.name, n);
                }
            }
        }
        let output_rows = |table: &str| run.and_then(|r| r.rows.get(table).copied());
        let base = pipeline.file.parent().unwrap_or(Path::new(""));
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for source in &pipeline.sources {
            nodes.push(Node {
                id: format!("source_{}", source.name),
                kind: NodeKind::Source,
                name: source.name.clone(),
                detail: source.location.to_string(),
                rows: None,
            });
        }
        let id_of = |name: &str| {
            if pipeline.sources.iter().any(|s| s.name == name) {
                Some(format!("source_{name}"))
            } else if pipeline.steps.iter().any(|s| s.name == name) {
                Some(format!("step_{name}"))
            } else {
                None
            }
        };
        for step in &pipeline.steps {
            let kind = match step.kind {
                StepKind::Segment => NodeKind::Segment,
                StepKind::Membership | StepKind::Catalog => NodeKind::Built,
                StepKind::Query | StepKind::Check => NodeKind::Step,
            };
            let id = format!("step_{}", step.name);
            for table in &step.sql.tables {
                if let Some(from) = id_of(table) {
                    edges.push((from, id.clone()));
                }
            }
            let detail = match kind {
                NodeKind::Built => "built by segflow".to_string(),
                _ => relative(base, &step.sql_file).display().to_string(),
            };
            nodes.push(Node {
                id,
                kind,
                name: step.name.clone(),
                detail,
                rows: rows
                    .get(step.name.as_str())
                    .copied()
                    .or_else(|| output_rows(&step.name)),
            });
        }
        for output in &pipeline.outputs {
            let id = format!("output_{}", output.table);
            if let Some(from) = id_of(&output.table) {
                edges.push((from, id.clone()));
            }
            nodes.push(Node {
                id,
                kind: NodeKind::Output,
                name: output.table.clone(),
                detail: output.location.to_string(),
                rows: output_rows(&output.table),
            });
        }
        Lineage { nodes, edges }
    }

    /// Mermaid flowchart text (GitHub and GitLab draw it in Markdown).
    pub fn mermaid(&self) -> String {
        let mut text = String::from("flowchart LR\n");
        for node in &self.nodes {
            let label = Self::label(node).join("<br/>").replace('"', "#quot;");
            let (open, close) = match node.kind {
                NodeKind::Source => ("[(", ")]"),
                NodeKind::Step => ("[", "]"),
                NodeKind::Segment => ("([", "])"),
                NodeKind::Built => ("[[", "]]"),
                NodeKind::Output => ("[/", "/]"),
            };
            text.push_str(&format!("  {}{open}\"{label}\"{close}\n", node.id));
        }
        for (from, to) in &self.edges {
            text.push_str(&format!("  {from} --> {to}\n"));
        }
        text
    }

    /// Graphviz DOT text (`dot -Tsvg`).
    pub fn dot(&self, name: &str) -> String {
        let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
        let quote = |text: &str| format!("\"{}\"", escape(text));
        let mut text = format!("digraph {} {{\n  rankdir=LR;\n", quote(name));
        for node in &self.nodes {
            let shape = match node.kind {
                NodeKind::Source => "cylinder",
                NodeKind::Step => "box",
                NodeKind::Segment => "ellipse",
                NodeKind::Built => "box3d",
                NodeKind::Output => "parallelogram",
            };
            // Graphviz breaks a label's lines at \n.
            let lines: Vec<String> = Self::label(node).iter().map(|l| escape(l)).collect();
            text.push_str(&format!(
                "  {} [label=\"{}\", shape={shape}];\n",
                quote(&node.id),
                lines.join("\\n")
            ));
        }
        for (from, to) in &self.edges {
            text.push_str(&format!("  {} -> {};\n", quote(from), quote(to)));
        }
        text.push_str("}\n");
        text
    }

    /// The lines of a node's label: its name, its file or URL, and its rows.
    fn label(node: &Node) -> Vec<String> {
        let mut lines = vec![node.name.clone(), node.detail.clone()];
        match node.rows {
            Some(1) => lines.push("1 row".to_string()),
            Some(rows) => lines.push(format!("{rows} rows")),
            None => {}
        }
        lines
    }
}

/// `path` relative to `base` when under it, with `a/../b` folded to `b`.
fn relative(base: &Path, path: &Path) -> PathBuf {
    let mut folded = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir if folded.file_name().is_some() => {
                folded.pop();
            }
            other => folded.push(other),
        }
    }
    let base_parent = base.parent().unwrap_or(Path::new(""));
    folded
        .strip_prefix(base_parent)
        .map(Path::to_path_buf)
        .unwrap_or(folded)
}
