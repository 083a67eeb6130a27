//! Outputs and what is sent out after a run: each output's table, location and format,
//! the report's location, and the webhooks.

use std::collections::{BTreeSet, HashMap};

use serde_saphyr::Spanned;

use crate::features::Feature;
use crate::hint::did_you_mean;
use crate::pipeline::env::interpolate;
use crate::pipeline::keys::line_of;
use crate::pipeline::model::{Notify, Output, OutputFormat, ReportSpec, Source};
use crate::pipeline::raw::{RawNotify, RawOutput, RawReport};

use super::{Validator, format_hint};

impl Validator<'_> {
    /// Outputs, each of a source or of a declared step (whose own problems, if any, are
    /// reported with the step).
    pub(super) fn outputs(
        &mut self,
        raw: Vec<Spanned<RawOutput>>,
        sources: &BTreeSet<String>,
        steps: &BTreeSet<String>,
        read: &[Source],
    ) -> Vec<Output> {
        let tables: Vec<&str> = sources
            .iter()
            .map(String::as_str)
            .chain(steps.iter().map(String::as_str))
            .collect();
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut outputs = Vec::new();
        for output in raw {
            let RawOutput {
                table,
                url,
                format,
                options,
            } = output.value;
            let format = self.output_format(&table.value, format.as_ref());
            if !tables.contains(&table.value.as_str()) {
                let hint = did_you_mean(&table.value, tables.iter().copied());
                self.problem(
                    line_of(&table),
                    format!(
                        "output names table '{}', which is not a source or a step{hint}",
                        table.value
                    ),
                );
            }
            let Some(location) = self.location(&url) else {
                continue;
            };
            let location = location.as_folder();
            if let Some(other) = urls.insert(location.to_string(), table.value.clone()) {
                self.problem(
                    line_of(&url),
                    format!(
                        "outputs '{other}' and '{}' are both published to {location}",
                        table.value
                    ),
                );
            }
            // A run writes and vacuum deletes under an output's folder: a source there
            // would be overwritten, read back as itself, or deleted.
            for source in read.iter().filter(|s| s.location.overlaps(&location)) {
                self.problem(
                    line_of(&url),
                    format!(
                        "output '{}' is published to {location}, and source '{}' is read from {}: \
                         one may not be in the other, or runs would write into what they read \
                         and vacuum would delete the source's files. Give the output a folder \
                         of its own",
                        table.value, source.name, source.location
                    ),
                );
            }
            let options = self.options(Some(&location), options);
            outputs.push(Output {
                table: table.value,
                earlier: location.clone(),
                location,
                format,
                options,
            });
        }
        outputs
    }

    pub(super) fn output_format(
        &mut self,
        table: &str,
        format: Option<&Spanned<String>>,
    ) -> OutputFormat {
        match format
            .map(|f| f.value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parquet") => OutputFormat::Parquet,
            Some("delta") => {
                self.needs(Feature::Delta, format, || {
                    format!("output '{table}' (format: delta)")
                });
                OutputFormat::Delta
            }
            Some(other) => {
                let hint = format_hint(other, &["parquet", "delta"]);
                self.problem(
                    format.and_then(line_of),
                    format!(
                        "output '{table}': format '{other}' is not one segflow publishes \
                         (parquet or delta){hint}"
                    ),
                );
                OutputFormat::Parquet
            }
        }
    }

    /// The report's page: a file, in a store with these settings.
    pub(super) fn report(&mut self, raw: RawReport) -> Option<ReportSpec> {
        let RawReport { url, options } = raw;
        let location = self.location(&url)?;
        if location.is_folder() || location.local_path().is_some_and(|p| p.is_dir()) {
            self.problem(
                line_of(&url),
                format!(
                    "report.url '{}' is a folder; name the page's file, such as {}report.html",
                    url.value,
                    location.as_folder()
                ),
            );
            return None;
        }
        let options = self.options(Some(&location), options);
        Some(ReportSpec { location, options })
    }

    pub(super) fn notify(&mut self, raw: RawNotify) -> Notify {
        Notify {
            on_failure: raw
                .on_failure
                .and_then(|url| self.webhook(&url, "on_failure")),
            on_success: raw
                .on_success
                .and_then(|url| self.webhook(&url, "on_success")),
        }
    }

    /// An http(s) URL after `${NAME}` interpolation; named as written, since the value may
    /// carry a token.
    pub(super) fn webhook(&mut self, text: &Spanned<String>, key: &str) -> Option<url::Url> {
        let url = interpolate(&text.value, self.env)
            .map_err(|message| self.problem(line_of(text), message))
            .ok()?;
        match url::Url::parse(&url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            _ => {
                self.problem(
                    line_of(text),
                    format!(
                        "notify.{key} '{}' is not an http:// or https:// URL",
                        text.value
                    ),
                );
                None
            }
        }
    }
}
