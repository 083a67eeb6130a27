//! Sources: where each is, its format (Parquet, CSV, JSON, Delta), its declared columns,
//! and its key with the versions and deletions that key settles.

use std::collections::BTreeMap;

use crate::features::Feature;
use crate::pipeline::keys::{Key, line_of};
use crate::pipeline::model::{Source, SourceFormat, SourceKey, Versions};
use crate::pipeline::raw::{RawKey, RawSource};
use crate::pipeline::types::ColumnType;

use super::{Validator, format_hint, is_identifier};

impl Validator<'_> {
    pub(super) fn sources(&mut self, raw: BTreeMap<Key, RawSource>) -> Vec<Source> {
        let mut sources = Vec::new();
        for (key, source) in raw {
            let name = key.name().to_string();
            if !is_identifier(&name) {
                self.problem(
                    key.line(),
                    format!("source name '{name}' must be lower-case letters, digits and '_'"),
                );
            }
            let location = self.location(&source.url);
            let format = self.source_format(&name, &source);
            let mut columns = self.source_columns(&name, &source.columns);
            if matches!(format, SourceFormat::Csv { header: false, .. }) {
                // Without a header line, columns are the file's in the order the spec lists
                // them.
                columns.sort_by_key(|(column, _)| {
                    source
                        .columns
                        .keys()
                        .find(|k| k.name() == column)
                        .map(Key::position)
                });
            }
            let timezone = self.timezone(source.timezone.as_ref());
            let key = self.source_key(&name, &source);
            let options = self.options(location.as_ref(), source.options);
            if let Some(location) = location {
                sources.push(Source {
                    name,
                    location,
                    url_as_written: source.url.value.clone(),
                    columns,
                    options,
                    timezone,
                    key,
                    format,
                });
            }
        }
        sources
    }

    pub(super) fn source_format(&mut self, name: &str, source: &RawSource) -> SourceFormat {
        let format = source.format.as_ref();
        let format = match format
            .map(|f| f.value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parquet") => SourceFormat::Parquet,
            Some("json" | "ndjson" | "jsonl") => SourceFormat::Json,
            Some("delta") => {
                self.needs(Feature::Delta, format, || {
                    format!("source '{name}' (format: delta)")
                });
                SourceFormat::Delta
            }
            Some("csv") => {
                let csv = source.csv.as_ref().map(|csv| &csv.value);
                let header = csv.and_then(|csv| csv.header).unwrap_or(true);
                let delimiter = match csv.and_then(|csv| csv.delimiter.as_ref()) {
                    None => b',',
                    Some(text) => match text.value.as_str() {
                        "\\t" | "\t" => b'\t',
                        one if one.len() == 1 && one.is_ascii() => one.as_bytes()[0],
                        other => {
                            self.problem(
                                line_of(text),
                                format!(
                                    "source '{name}': the CSV delimiter '{other}' must be one \
                                     ASCII character (for a tab, write \"\\t\")"
                                ),
                            );
                            b','
                        }
                    },
                };
                SourceFormat::Csv { header, delimiter }
            }
            Some(other) => {
                let hint = format_hint(other, &["parquet", "csv", "json", "delta"]);
                self.problem(
                    format.and_then(line_of),
                    format!(
                        "source '{name}': format '{other}' is not one segflow reads (parquet, \
                         csv, json or delta){hint}"
                    ),
                );
                return SourceFormat::Parquet;
            }
        };
        if let Some(csv) = &source.csv
            && !matches!(format, SourceFormat::Csv { .. })
        {
            self.problem(
                line_of(csv),
                format!("source '{name}': csv settings need `format: csv`"),
            );
        }
        if matches!(format, SourceFormat::Csv { .. }) {
            for (column, type_text) in &source.columns {
                if matches!(ColumnType::parse(type_text), Some(ColumnType::List(_))) {
                    self.problem(
                        column.line(),
                        format!(
                            "source '{name}': column '{}' is a list, which CSV cannot hold",
                            column.name()
                        ),
                    );
                }
            }
        }
        format
    }

    pub(super) fn source_columns(
        &mut self,
        source: &str,
        raw: &BTreeMap<Key, String>,
    ) -> Vec<(String, ColumnType)> {
        let mut columns = Vec::new();
        for (column, type_text) in raw {
            match ColumnType::parse(type_text) {
                Some(ty) => columns.push((column.name().to_string(), ty)),
                None => self.problem(
                    column.line(),
                    format!(
                        "source '{source}': column '{}' has unknown type '{type_text}' \
                         (use int, bigint, double, string, bool, date, timestamp, \
                         decimal(p,s) or list<type>)",
                        column.name()
                    ),
                ),
            }
        }
        columns
    }

    pub(super) fn source_key(&mut self, name: &str, source: &RawSource) -> Option<SourceKey> {
        if let Some(by) = &source.keep_latest_by {
            self.problem(
                line_of(by),
                format!(
                    "source '{name}': keep_latest_by is now `version: {}`, which keeps the \
                     version in force at the end of the as_of day (docs/sources.md, \"Rows that change\")",
                    by.value
                ),
            );
        }
        if let (None, Some(deleted)) = (&source.version, &source.deleted) {
            self.problem(
                line_of(deleted),
                format!(
                    "source '{name}': deleted needs version, the column that says when each \
                     row, deletions too, became its key's version"
                ),
            );
        }
        let Some(key) = &source.key else {
            if let Some(by) = &source.version {
                self.problem(
                    line_of(by),
                    format!("source '{name}': version needs a key, whose versions it orders"),
                );
            }
            return None;
        };
        let columns = match &key.value {
            RawKey::One(column) => vec![column.clone()],
            RawKey::Several(columns) => columns.clone(),
        };
        if columns.is_empty() {
            self.problem(
                line_of(key),
                format!("source '{name}': key lists no columns"),
            );
            return None;
        }
        Some(SourceKey {
            columns,
            versions: source.version.as_ref().map(|by| Versions {
                by: by.value.clone(),
                deleted: source.deleted.as_ref().map(|d| d.value.clone()),
            }),
        })
    }
}
