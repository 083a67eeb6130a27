//! Incremental steps: each reads only its source and the incremental steps over it, cuts
//! the source by one timestamp column, and a fold reads only its own step's results.

use super::Validator;
use crate::hint::did_you_mean;
use crate::pipeline::keys::line_of;
use crate::pipeline::model::{Fold, Incremental, Source, Step};
use crate::pipeline::raw::RawIncremental;
use crate::pipeline::types::ColumnType;
use crate::sql;

impl Validator<'_> {
    /// A step's `incremental:`, with its fold's SQL read and checked to be one query that
    /// reads only the step's own results.
    pub(super) fn incremental(&mut self, name: &str, raw: RawIncremental) -> Option<Incremental> {
        let fold = match raw.fold {
            None => None,
            Some(relative) => {
                let line = line_of(&relative);
                let owner = format!("step '{name}'");
                let (sql_file, text) =
                    self.read_sql(&owner, "incremental.fold", &relative.value, line)?;
                let sql = match sql::analyze(&text) {
                    Ok(sql) => sql,
                    Err(e) => {
                        self.problem(line, format!("step '{name}': {}: {e}", sql_file.display()));
                        return None;
                    }
                };
                let others: Vec<String> = sql
                    .tables
                    .iter()
                    .filter(|t| *t != name)
                    .map(|t| format!("'{t}'"))
                    .collect();
                if !others.is_empty() || !sql.tables.contains(name) {
                    let reads = if others.is_empty() {
                        "no table".to_string()
                    } else {
                        others.join(", ")
                    };
                    self.problem(
                        line,
                        format!(
                            "step '{name}': the fold {} must read only '{name}' (the step's \
                             results to merge, under its own name), but it reads {reads}",
                            sql_file.display()
                        ),
                    );
                    return None;
                }
                Some(Fold { sql_file, sql })
            }
        };
        Some(Incremental {
            source: raw.source.value,
            time: raw.time.value,
            fold,
        })
    }

    /// An incremental step runs on one file of its source at a time, so it may read only
    /// that source and the incremental steps over it (computed on the same file), and its
    /// time column must be a timestamp that the source has.
    pub(super) fn check_incremental(&mut self, steps: &[Step], sources: &[Source]) {
        for step in steps {
            let Some(incremental) = &step.incremental else {
                continue;
            };
            let name = &step.name;
            let Some(source) = sources.iter().find(|s| s.name == incremental.source) else {
                let hint =
                    did_you_mean(&incremental.source, sources.iter().map(|s| s.name.as_str()));
                self.problem(
                    step.line,
                    format!(
                        "step '{name}': incremental.source '{}' is not a source{hint}",
                        incremental.source
                    ),
                );
                continue;
            };
            // A step over an unknown source has a problem of its own: its readers are not
            // blamed for it too.
            let same_source = |table: &str| {
                table == source.name
                    || steps.iter().any(|other| {
                        other.name == table
                            && other.incremental.as_ref().is_some_and(|i| {
                                i.source == source.name
                                    || !sources.iter().any(|s| s.name == i.source)
                            })
                    })
            };
            let others: Vec<String> = step
                .sql
                .tables
                .iter()
                .filter(|t| !same_source(t))
                .map(|t| format!("'{t}'"))
                .collect();
            if !others.is_empty() {
                let others = others.join(", ");
                self.problem(
                    step.line,
                    format!(
                        "step '{name}' is incremental over '{}', so {} may read only that \
                         source and the incremental steps over it, but it reads {others}: each \
                         file's result is kept for later nights, and would not change when \
                         those do. Read them in a later step that folds this one's rows",
                        source.name,
                        step.sql_file.display()
                    ),
                );
            }
            let folded: Vec<String> = step
                .sql
                .tables
                .iter()
                .filter(|t| {
                    steps.iter().any(|other| {
                        other.name == **t
                            && other.incremental.as_ref().is_some_and(|i| i.fold.is_some())
                    })
                })
                .map(|t| format!("'{t}'"))
                .collect();
            if !folded.is_empty() {
                self.problem(
                    step.line,
                    format!(
                        "step '{name}' is incremental, so it runs on each file of '{}', but it \
                         reads {}, whose results fold across files and are not kept per file. \
                         Read it in a step that is not incremental",
                        source.name,
                        folded.join(", ")
                    ),
                );
            }
            let first_time = steps.iter().find_map(|other| {
                other
                    .incremental
                    .as_ref()
                    .filter(|i| i.source == source.name)
            });
            if let Some(first) = first_time.filter(|first| first.time != incremental.time) {
                self.problem(
                    step.line,
                    format!(
                        "step '{name}' is incremental over '{}' with time '{}', but an earlier \
                         step over it has time '{}': every incremental step over a source cuts \
                         its files at the end of the as_of day by the same column",
                        source.name, incremental.time, first.time
                    ),
                );
            }
            let declared = source.columns.iter().find(|(c, _)| *c == incremental.time);
            match declared {
                Some((_, ColumnType::Timestamp)) => {}
                Some((_, other)) => self.problem(
                    step.line,
                    format!(
                        "step '{name}': incremental.time '{}' is a {other} column of '{}'; it \
                         must be a timestamp",
                        incremental.time, source.name
                    ),
                ),
                None if !source.columns.is_empty() => {
                    let hint = did_you_mean(
                        &incremental.time,
                        source.columns.iter().map(|(c, _)| c.as_str()),
                    );
                    self.problem(
                        step.line,
                        format!(
                            "step '{name}': incremental.time '{}' is not a declared column of \
                             '{}'{hint}",
                            incremental.time, source.name
                        ),
                    );
                }
                None => {}
            }
        }
    }
}
