//! Steps from SQL files, segments (SQL files, or set operations turned into generated SQL)
//! and, when there are segments, `segment_membership` and `segment_catalog`: each checked to
//! be one query that reads only tables the pipeline defines.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};

use super::Validator;
use crate::hint::did_you_mean;
use crate::pipeline::keys::line_of;
use crate::pipeline::model::{Published, Step, StepKind};
use crate::pipeline::raw::{RawIncremental, RawSegment, RawStep};
use crate::segments::{
    Members, SEGMENT_CATALOG, SEGMENT_MEMBERSHIP, catalog_sql, combination_sql, membership_sql,
};
use crate::sql;

/// A step before its SQL is read and checked.
struct Draft {
    name: Spanned<String>,
    /// Where the step is defined: its list item, or the `segments:` list for the tables
    /// segflow builds.
    line: Option<usize>,
    sql_line: Option<usize>,
    kind: StepKind,
    sql: DraftSql,
    incremental: Option<Spanned<RawIncremental>>,
}

enum DraftSql {
    /// A path relative to the pipeline file.
    File(String),
    Generated(String),
}

impl Validator<'_> {
    /// The checked steps in YAML order, the segment names, and every name a step or segment
    /// was declared under, its SQL broken or not (so that what reads a broken step is not
    /// told it does not exist).
    pub(super) fn steps(
        &mut self,
        raw_steps: Vec<Spanned<RawStep>>,
        raw_segments: Vec<Spanned<RawSegment>>,
        sources: &BTreeSet<String>,
        published: &BTreeSet<String>,
        segments_line: Option<usize>,
    ) -> (Vec<Step>, Vec<String>, BTreeSet<String>) {
        let segment_names: Vec<String> = raw_segments
            .iter()
            .map(|s| s.value.name.value.clone())
            .collect();
        let drafts = self.drafts(raw_steps, raw_segments, &segment_names, segments_line);
        let source_names: BTreeSet<&str> = sources.iter().map(String::as_str).collect();
        let readable = readable_tables(&drafts, &source_names, published);
        let declared = drafts.iter().map(|d| d.name.value.clone()).collect();
        let mut first_lines: HashMap<String, Option<usize>> = HashMap::new();
        let mut steps = Vec::new();
        for draft in drafts {
            self.check_identifier(&draft.name, &format!("{} name", draft.kind.noun()));
            self.check_not_a_source(&draft, &source_names);
            if let Some(first) = first_lines.insert(draft.name.value.clone(), draft.line) {
                self.report_twice(&draft, first);
                continue;
            }
            let sql_line = draft.sql_line;
            let Some(step) = self.step(draft) else {
                continue;
            };
            self.check_reads(&step, sql_line, &readable);
            steps.push(step);
        }
        (steps, segment_names, declared)
    }

    fn drafts(
        &mut self,
        raw_steps: Vec<Spanned<RawStep>>,
        raw_segments: Vec<Spanned<RawSegment>>,
        segment_names: &[String],
        segments_line: Option<usize>,
    ) -> Vec<Draft> {
        let mut drafts = Vec::new();
        for raw in raw_steps {
            let line = line_of(&raw);
            let RawStep {
                name,
                sql,
                incremental,
            } = raw.value;
            drafts.push(Draft {
                name,
                line,
                sql_line: line_of(&sql),
                kind: StepKind::Query,
                sql: DraftSql::File(sql.value),
                incremental,
            });
        }
        let definitions: Vec<(String, String)> = raw_segments
            .iter()
            .map(|s| (s.value.name.value.clone(), s.value.definition()))
            .collect();
        for raw in raw_segments {
            let line = line_of(&raw);
            if let Some(sql) = self.segment_sql(line, &raw.value, segment_names) {
                let sql_line = raw.value.sql.as_ref().and_then(line_of).or(line);
                drafts.push(Draft {
                    name: raw.value.name,
                    line,
                    sql_line,
                    kind: StepKind::Segment,
                    sql,
                    incremental: None,
                });
            }
        }
        if !segment_names.is_empty() {
            let generated = [
                (
                    SEGMENT_MEMBERSHIP,
                    StepKind::Membership,
                    membership_sql(segment_names),
                ),
                (
                    SEGMENT_CATALOG,
                    StepKind::Catalog,
                    catalog_sql(&definitions),
                ),
            ];
            for (name, kind, sql) in generated {
                drafts.push(Draft {
                    name: Spanned::new(name.to_string(), Location::UNKNOWN, Location::UNKNOWN),
                    line: segments_line,
                    sql_line: segments_line,
                    kind,
                    sql: DraftSql::Generated(sql),
                    incremental: None,
                });
            }
        }
        drafts
    }

    /// The SQL of one segment: its file, or the set operation its YAML describes.
    fn segment_sql(
        &mut self,
        line: Option<usize>,
        raw: &RawSegment,
        segments: &[String],
    ) -> Option<DraftSql> {
        let name = &raw.name.value;
        let parts = raw.set_parts();
        let composed = parts.iter().any(|(_, names)| names.is_some());
        match (&raw.sql, composed) {
            (Some(_), true) => {
                self.problem(
                    line,
                    format!("segment '{name}' has both sql and all_of/any_of/none_of; give it one or the other"),
                );
                return None;
            }
            (None, false) => {
                self.problem(
                    line,
                    format!("segment '{name}' is empty: give it sql, or all_of/any_of/none_of"),
                );
                return None;
            }
            (Some(file), false) => return Some(DraftSql::File(file.value.clone())),
            (None, true) => {}
        }
        let mut valid = true;
        for (key, names) in parts {
            let Some(names) = names else { continue };
            if names.value.is_empty() {
                self.problem(
                    line_of(names),
                    format!("segment '{name}': {key} lists no segments"),
                );
                valid = false;
            }
            for member in &names.value {
                if !segments.contains(&member.value) {
                    let hint = did_you_mean(&member.value, segments.iter().map(String::as_str));
                    self.problem(
                        line_of(member),
                        format!(
                            "segment '{name}': {key} names '{}', which is not a segment{hint}",
                            member.value
                        ),
                    );
                    valid = false;
                }
            }
        }
        if raw.all_of.is_none() && raw.any_of.is_none() {
            self.problem(
                raw.none_of.as_ref().and_then(line_of).or(line),
                format!(
                    "segment '{name}': none_of needs all_of or any_of to take customers away from"
                ),
            );
            valid = false;
        }
        valid.then(|| {
            DraftSql::Generated(combination_sql(
                &RawSegment::names(raw.all_of.as_ref()),
                &RawSegment::names(raw.any_of.as_ref()),
                &RawSegment::names(raw.none_of.as_ref()),
            ))
        })
    }

    fn check_not_a_source(&mut self, draft: &Draft, sources: &BTreeSet<&str>) {
        if sources.contains(draft.name.value.as_str()) {
            self.problem(
                line_of(&draft.name).or(draft.line),
                format!(
                    "{} '{}' has the same name as a source",
                    draft.kind.noun(),
                    draft.name.value
                ),
            );
        }
    }

    fn report_twice(&mut self, draft: &Draft, first_line: Option<usize>) {
        let name = &draft.name.value;
        let where_first = first_line
            .map(|l| format!(" (first at line {l})"))
            .unwrap_or_default();
        let message = if matches!(draft.kind, StepKind::Membership | StepKind::Catalog) {
            format!(
                "'{name}' is the table segflow builds from the segments; rename the step or segment that uses this name{where_first}"
            )
        } else {
            format!("'{name}' is defined twice{where_first}")
        };
        self.problem(
            line_of(&draft.name).or(draft.line),
            format!("{} {message}", draft.kind.noun()),
        );
    }

    /// The step, once its SQL is read and found to be one query.
    fn step(&mut self, draft: Draft) -> Option<Step> {
        let what = draft.kind.noun();
        let name = draft.name.value;
        let (sql_file, text) = match draft.sql {
            DraftSql::Generated(text) => (self.file.clone(), text),
            DraftSql::File(relative) => {
                let owner = format!("{what} '{name}'");
                self.read_sql(&owner, "sql", &relative, draft.sql_line)?
            }
        };
        let sql = match sql::analyze(&text) {
            Ok(sql) => sql,
            Err(e) => {
                self.problem(
                    draft.sql_line,
                    format!("{what} '{name}': {}: {e}", sql_file.display()),
                );
                return None;
            }
        };
        let incremental = match draft.incremental {
            None => None,
            Some(raw) => Some(self.incremental(&name, raw.value)?),
        };
        Some(Step {
            name,
            kind: draft.kind,
            sql_file,
            sql,
            line: draft.line,
            incremental,
        })
    }

    /// The text of a `.sql` file named relative to the pipeline file by `owner`'s `key`.
    pub(super) fn read_sql(
        &mut self,
        owner: &str,
        key: &str,
        relative: &str,
        line: Option<usize>,
    ) -> Option<(PathBuf, String)> {
        let sql_file: PathBuf = self.dir.join(relative);
        // Only .sql files are read as SQL, so that a spec naming some other file (a typo, or
        // a probe) gets no line of it echoed back in a parse error.
        let is_sql = sql_file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"));
        if !is_sql {
            self.problem(
                line,
                format!(
                    "{owner}: `{key}:` names {}, which is not a .sql file; keep the query in \
                     a .sql file (queries/<name>.sql)",
                    sql_file.display()
                ),
            );
            return None;
        }
        match std::fs::read_to_string(&sql_file) {
            Ok(text) => Some((sql_file, text)),
            Err(e) => {
                self.problem(
                    line,
                    format!("{owner}: cannot read SQL file {}: {e}", sql_file.display()),
                );
                None
            }
        }
    }

    /// A `sql:` check's query, read and checked as a step's is: one query over sources,
    /// steps and earlier publications.
    pub(super) fn check_query(
        &mut self,
        check: &str,
        sql: Spanned<String>,
        readable: &BTreeSet<String>,
    ) -> Option<Step> {
        let line = line_of(&sql);
        let draft = Draft {
            name: Spanned::new(check.to_string(), Location::UNKNOWN, Location::UNKNOWN),
            line,
            sql_line: line,
            kind: StepKind::Check,
            sql: DraftSql::File(sql.value),
            incremental: None,
        };
        let step = self.step(draft)?;
        self.check_reads(&step, line, readable);
        Some(step)
    }

    /// Every table a step reads must be a source, a step, or an earlier publication.
    fn check_reads(&mut self, step: &Step, line: Option<usize>, readable: &BTreeSet<String>) {
        for table in &step.sql.tables {
            if !readable.contains(table) {
                let hint = did_you_mean(table, readable.iter().map(String::as_str));
                self.problem(
                    line,
                    format!(
                        "{} '{}': {} reads table '{table}', which is not a source, step or segment{hint}",
                        step.kind.noun(),
                        step.name,
                        step.sql_file.display()
                    ),
                );
            }
        }
    }

    /// Segments need a table of known customers to take their members from; the tables
    /// whose unmatched rows are counted must exist too.
    pub(super) fn check_members(
        &mut self,
        members: &Members,
        line: Option<usize>,
        sources: &BTreeSet<String>,
        steps: &[Step],
    ) {
        // The members table is a query's result; any table may be counted.
        let missing = |table: &str, query_only: bool| {
            let known = sources.contains(table)
                || steps
                    .iter()
                    .any(|s| s.name == table && (!query_only || s.kind == StepKind::Query));
            let candidates = sources
                .iter()
                .map(String::as_str)
                .chain(steps.iter().map(|s| s.name.as_str()));
            (!known).then(|| did_you_mean(table, candidates))
        };
        let table = members.table.as_str();
        if let Some(hint) = missing(table, true) {
            self.problem(
                line,
                format!(
                    "segments take their members from the table '{table}', which is not a source or a step{hint}; \
                     add that source, or name the customers table in members.table"
                ),
            );
        }
        for table in members.matched.iter().flatten() {
            if let Some(hint) = missing(table, false) {
                self.problem(
                    line,
                    format!(
                        "members.matched names '{table}', which is not a source or a step{hint}"
                    ),
                );
            }
        }
    }
}

/// The tables steps may read: sources, every step (even one whose SQL is broken, so that an
/// unreadable file is reported once and not again by every step that reads it), and the
/// earlier publications of every output.
fn readable_tables(
    drafts: &[Draft],
    sources: &BTreeSet<&str>,
    published: &BTreeSet<String>,
) -> BTreeSet<String> {
    let names = sources
        .iter()
        .map(|s| s.to_string())
        .chain(drafts.iter().map(|d| d.name.value.clone()));
    readable_with_history(names, published)
}

/// `tables`, and the earlier publications of every output.
pub(super) fn readable_with_history(
    tables: impl Iterator<Item = String>,
    published: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut readable: BTreeSet<String> = tables.collect();
    for table in published {
        for kind in [Published::Previous, Published::History] {
            readable.insert(kind.table_name(table));
        }
    }
    readable
}

/// `segment_membership` reads the members table too (see `Members`): it must be ready first.
pub(super) fn membership_reads_members(steps: &mut [Step], members: &Members) {
    for step in steps.iter_mut().filter(|s| s.kind == StepKind::Membership) {
        step.sql.tables.insert(members.table.clone());
    }
}
