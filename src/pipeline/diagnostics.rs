//! How a spec's problems are told: each with its file and line, all of them at once, with a
//! guess at what was meant when a name is close to a known one.

use std::fmt;
use std::path::PathBuf;

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
