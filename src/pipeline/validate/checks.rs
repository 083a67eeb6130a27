//! Checks: each names a source or a step and has exactly one rule, whose own keys are
//! checked here; a `sql:` check is planned as a step is (`steps.rs`).

use std::collections::BTreeSet;
use std::path::Path;

use serde_saphyr::Spanned;

use super::Validator;
use crate::hint::did_you_mean;
use crate::pipeline::keys::line_of;
use crate::pipeline::model::{Change, Check, CheckRule, Severity};
use crate::pipeline::raw::{
    RawAnomaly, RawCheck, RawFreshness, RawKey, RawProportion, RawRelationships, RawValue,
};
use crate::pipeline::units::parse_duration;

/// The rules a check may have, one per check.
const RULES: &str = "not_null, unique, accepted_values, accepted_range, row_count, \
                     relationships, not_null_proportion, sql, freshness or anomaly";

/// What checks may read: sources, steps, and of those the published ones (with their
/// `previous_` and `history_` tables, for `sql:` checks).
pub(super) struct Tables<'t> {
    pub(super) sources: &'t BTreeSet<String>,
    pub(super) steps: &'t BTreeSet<String>,
    pub(super) published: &'t BTreeSet<String>,
}

impl Tables<'_> {
    fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.sources.iter().chain(self.steps).map(String::as_str)
    }

    fn has(&self, table: &str) -> bool {
        self.names().any(|t| t == table)
    }
}

impl Validator<'_> {
    /// Each check names a source or step (outputs are steps or sources) and has one rule.
    pub(super) fn checks(&mut self, raw: Vec<Spanned<RawCheck>>, tables: &Tables) -> Vec<Check> {
        let readable =
            super::steps::readable_with_history(tables.names().map(String::from), tables.published);
        let mut checks: Vec<Check> = Vec::new();
        for raw in raw {
            let line = line_of(&raw);
            let Some(check) = self.check(raw.value, line, tables, &readable) else {
                continue;
            };
            if checks.iter().any(|c| c.name == check.name) {
                self.problem(
                    line,
                    format!(
                        "check '{}' is declared twice; give one a `name:`",
                        check.name
                    ),
                );
                continue;
            }
            checks.push(check);
        }
        checks
    }

    fn check(
        &mut self,
        raw: RawCheck,
        line: Option<usize>,
        tables: &Tables,
        readable: &BTreeSet<String>,
    ) -> Option<Check> {
        let table_line = line_of(&raw.table);
        let table = raw.table.value.clone();
        if !tables.has(&table) {
            let hint = did_you_mean(&table, tables.names());
            self.problem(
                table_line,
                format!("check on table '{table}', which is not a source or a step{hint}"),
            );
        }
        let severity = self.severity(raw.severity.as_ref());
        let name = raw.name.as_ref().map(|n| n.value.clone());
        let rule = self.rule(raw, line, &table, tables, readable)?;
        let name = name.unwrap_or_else(|| match &rule {
            CheckRule::Sql(step) => step.name.clone(),
            rule => format!("{table}_{}", rule.describe_short()),
        });
        Some(Check {
            at: match line {
                Some(line) => format!("{}:{line}", self.file.display()),
                None => self.file.display().to_string(),
            },
            name,
            table,
            severity,
            rule,
        })
    }

    fn severity(&mut self, severity: Option<&Spanned<String>>) -> Severity {
        match severity.map(|s| s.value.as_str()) {
            None | Some("error") => Severity::Error,
            Some("warn") => Severity::Warn,
            Some(other) => {
                self.problem(
                    severity.and_then(line_of),
                    format!("check severity '{other}' is not error or warn"),
                );
                Severity::Error
            }
        }
    }

    /// The check's one rule, its own keys checked.
    fn rule(
        &mut self,
        raw: RawCheck,
        line: Option<usize>,
        table: &str,
        tables: &Tables,
        readable: &BTreeSet<String>,
    ) -> Option<CheckRule> {
        let RawCheck {
            name,
            not_null,
            unique,
            accepted_range,
            row_count,
            accepted_values,
            relationships,
            not_null_proportion,
            sql,
            freshness,
            anomaly,
            ..
        } = raw;
        let declared = [
            not_null.is_some(),
            unique.is_some(),
            accepted_range.is_some(),
            row_count.is_some(),
            accepted_values.is_some(),
            relationships.is_some(),
            not_null_proportion.is_some(),
            sql.is_some(),
            freshness.is_some(),
            anomaly.is_some(),
        ];
        let rules = declared.iter().filter(|&&d| d).count();
        if rules != 1 {
            self.problem(
                line,
                format!("a check on '{table}' needs exactly one rule ({RULES}); it has {rules}"),
            );
            return None;
        }
        let empty = not_null
            .as_ref()
            .or(unique.as_ref())
            .is_some_and(|key| matches!(key, RawKey::Several(columns) if columns.is_empty()))
            || accepted_values
                .as_ref()
                .is_some_and(|a| a.values.is_empty());
        if empty {
            self.problem(line, format!("a check on '{table}' has an empty list"));
            return None;
        }
        let columns = |key: RawKey| match key {
            RawKey::One(column) => vec![column],
            RawKey::Several(columns) => columns,
        };
        Some(if let Some(key) = not_null {
            CheckRule::NotNull(columns(key))
        } else if let Some(key) = unique {
            CheckRule::Unique(columns(key))
        } else if let Some(range) = accepted_range {
            CheckRule::AcceptedRange {
                column: range.column,
                min: range.min,
                max: range.max,
            }
        } else if let Some(count) = row_count {
            CheckRule::RowCount {
                min: count.min,
                max: count.max,
            }
        } else if let Some(accepted) = accepted_values {
            CheckRule::AcceptedValues {
                column: accepted.column,
                values: accepted
                    .values
                    .into_iter()
                    .map(RawValue::into_value)
                    .collect(),
            }
        } else if let Some(relation) = relationships {
            self.relationships(relation, tables)
        } else if let Some(proportion) = not_null_proportion {
            self.not_null_proportion(proportion)
        } else if let Some(sql) = sql {
            // Unnamed, a `sql:` check is named after its file.
            let stem = Path::new(&sql.value)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = name.map_or_else(|| format!("{table}_{stem}"), |n| n.value);
            CheckRule::Sql(Box::new(self.check_query(&name, sql, readable)?))
        } else if let Some(fresh) = freshness {
            self.freshness(fresh, line, table, tables)?
        } else if let Some(anomaly) = anomaly {
            self.anomaly(anomaly, line, table, tables)?
        } else {
            unreachable!("exactly one rule is declared")
        })
    }

    fn relationships(&mut self, relation: RawRelationships, tables: &Tables) -> CheckRule {
        if !tables.has(&relation.to.value) {
            let hint = did_you_mean(&relation.to.value, tables.names());
            self.problem(
                line_of(&relation.to),
                format!(
                    "relationships to table '{}', which is not a source or a step{hint}",
                    relation.to.value
                ),
            );
        }
        CheckRule::Relationships {
            field: relation.field.unwrap_or_else(|| relation.column.clone()),
            column: relation.column,
            to: relation.to.value,
        }
    }

    fn not_null_proportion(&mut self, proportion: RawProportion) -> CheckRule {
        let at_least = proportion.at_least.value;
        if !(0.0..=1.0).contains(&at_least) {
            self.problem(
                line_of(&proportion.at_least),
                format!(
                    "not_null_proportion at_least {at_least} is not a share between 0 and 1 \
                     (0.95 for 95 %)"
                ),
            );
        }
        CheckRule::NotNullProportion {
            column: proportion.column,
            at_least,
        }
    }

    fn freshness(
        &mut self,
        fresh: RawFreshness,
        line: Option<usize>,
        table: &str,
        tables: &Tables,
    ) -> Option<CheckRule> {
        if !tables.sources.contains(table) {
            self.problem(
                line,
                format!("freshness is checked on a source, and '{table}' is not one"),
            );
        }
        let Some(max_age) = parse_duration(&fresh.max_age.value) else {
            self.problem(
                line_of(&fresh.max_age),
                format!(
                    "freshness max_age '{}' is not a duration (36h, 2d, 90m)",
                    fresh.max_age.value
                ),
            );
            return None;
        };
        Some(CheckRule::Freshness {
            column: fresh.column,
            max_age,
        })
    }

    fn anomaly(
        &mut self,
        anomaly: RawAnomaly,
        line: Option<usize>,
        table: &str,
        tables: &Tables,
    ) -> Option<CheckRule> {
        if !tables.published.contains(table) {
            self.problem(
                line,
                format!(
                    "anomaly compares an output with its previous publication, and '{table}' \
                     is not an output"
                ),
            );
        }
        let text = anomaly.max_change.value.trim();
        let max_change = match text.parse::<u64>() {
            Ok(rows) => Some(Change::Rows(rows)),
            Err(_) => parse_share(text).map(Change::Share),
        };
        let Some(max_change) = max_change else {
            self.problem(
                line_of(&anomaly.max_change),
                "anomaly max_change is a share of the previous count (30%) or a number of rows \
                 (500)",
            );
            return None;
        };
        Some(CheckRule::Anomaly {
            max_change,
            by: anomaly.by,
            min_size: anomaly.min_size.unwrap_or(0),
        })
    }
}

/// `30%` or `2.5 %` as a share (0.3, 0.025).
fn parse_share(text: &str) -> Option<f64> {
    let number: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some(number / 100.0)
}
