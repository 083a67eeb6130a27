//! Maps a position in the YAML tree (`steps[2].sql`) to the line it was written on, so that
//! validation problems found after deserialisation can still point at the user's file.
//!
//! serde_yaml gives typed, strict parsing but forgets positions; yaml-rust2's event stream keeps
//! them. We walk the events once and remember the line of every key and sequence item.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of the nodes of one YAML document, keyed by their dotted path.
#[derive(Debug, Default, Clone)]
pub(crate) struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    pub(crate) fn build(source: &str) -> Self {
        let mut walker = Walker::default();
        // A document that does not parse has no positions to offer; serde_yaml reports the
        // syntax error with its own line, so an empty index is the right fallback here.
        let _ = Parser::new_from_str(source).load(&mut walker, false);
        LineIndex {
            lines: walker.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    /// Called when a value (scalar or collection) starts at `line`.
    fn value_starts(&mut self, line: usize) {
        if let Some(Frame::Seq { .. }) = self.stack.last() {
            let path = self.path();
            self.lines.entry(path).or_insert(line);
        }
    }

    /// Called when a value has ended: the enclosing map waits for its next key, the enclosing
    /// sequence moves to its next item.
    fn value_ends(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(value);
                    let path = self.path();
                    self.lines.insert(path, line);
                } else {
                    self.value_starts(line);
                    self.value_ends();
                }
            }
            Event::Alias(_) => {
                self.value_starts(line);
                self.value_ends();
            }
            Event::MappingStart(..) => {
                self.value_starts(line);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.value_starts(line);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_ends();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nsources:\n  orders:\n    url: data/orders/\nsteps:\n  - name: a\n    sql: a.sql\n  - { name: b, sql: b.sql }\n";

    #[test]
    fn finds_keys_and_sequence_items() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line_of("name"), Some(1));
        assert_eq!(index.line_of("sources.orders"), Some(3));
        assert_eq!(index.line_of("sources.orders.url"), Some(4));
        assert_eq!(index.line_of("steps[0]"), Some(6));
        assert_eq!(index.line_of("steps[0].sql"), Some(7));
        assert_eq!(index.line_of("steps[1].sql"), Some(8));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line_of("steps[1].columns.x"), Some(8));
        assert_eq!(index.line_of("outputs[0]"), None);
    }
}
