//! The run's settings: the schedule (cron, catch-up, retries, time limit) and the engine
//! (memory, partitions, scratch, cluster).

use chrono_tz::Tz;
use serde_saphyr::Spanned;

use crate::cluster::ClusterUrl;
use crate::features::Feature;
use crate::pipeline::env::interpolate;
use crate::pipeline::keys::line_of;
use crate::pipeline::model::{EngineSettings, ScheduleSpec};
use crate::pipeline::raw::{RawEngine, RawSchedule};
use crate::pipeline::units::parse_bytes;
use crate::schedule::{Catchup, Schedule, ScheduleError};

use super::Validator;

/// The default bound of `catchup: all`.
const DEFAULT_MAX_CATCHUP: usize = 31;

impl Validator<'_> {
    /// The daemon's schedule. Its cron is read in its own zone, by default the pipeline's;
    /// a slot's as_of is the last complete day in the pipeline's zone.
    pub(super) fn schedule(&mut self, raw: RawSchedule, days: Tz) -> Option<ScheduleSpec> {
        let timezone = raw
            .timezone
            .as_ref()
            .map_or(days.name(), |zone| zone.value.as_str());
        // The expression and the zone are checked apart, so that both are reported at once.
        if let Err(e) = Schedule::parse(&raw.cron.value, "UTC") {
            self.problem(line_of(&raw.cron), e.to_string());
        }
        if let Err(e @ ScheduleError::TimeZone(_)) = Schedule::parse("* * * * *", timezone) {
            self.problem(raw.timezone.as_ref().and_then(line_of), e.to_string());
        }
        let slots = Schedule::parse(&raw.cron.value, timezone)
            .ok()
            .map(|s| s.with_days_in(days));
        let catchup = self.catchup(raw.catchup.as_ref(), raw.max_catchup);
        let retry_delay = self
            .duration("retry_delay", raw.retry_delay.as_ref())
            .unwrap_or(std::time::Duration::from_secs(60));
        let timeout = self.duration("timeout", raw.timeout.as_ref());
        if let Some(attempts) = raw.attempts.as_ref().filter(|a| a.value == 0) {
            self.problem(line_of(attempts), "attempts must be at least 1");
        }
        Some(ScheduleSpec {
            slots: slots?,
            catchup: catchup?,
            attempts: raw.attempts.map_or(3, |a| a.value).max(1),
            retry_delay,
            timeout,
        })
    }

    pub(super) fn catchup(
        &mut self,
        raw: Option<&Spanned<String>>,
        max: Option<usize>,
    ) -> Option<Catchup> {
        let max = max.unwrap_or(DEFAULT_MAX_CATCHUP);
        match raw.map_or("latest", |c| c.value.as_str()) {
            "none" => Some(Catchup::None),
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All { max }),
            other => {
                let message = format!("catchup '{other}' is not one of none, latest, all");
                self.problem(raw.and_then(line_of), message);
                None
            }
        }
    }

    pub(super) fn engine(&mut self, raw: RawEngine) -> EngineSettings {
        let memory_limit = raw.memory_limit.and_then(|text| {
            let bytes = parse_bytes(&text.value);
            if bytes.is_none() {
                self.problem(
                    line_of(&text),
                    format!(
                        "memory_limit '{}' is not a size (write it like 512MiB or 8GiB)",
                        text.value
                    ),
                );
            }
            bytes
        });
        if let Some(zero) = raw.target_partitions.as_ref().filter(|n| n.value == 0) {
            self.problem(line_of(zero), "target_partitions must be at least 1");
        }
        let scratch = raw.scratch.and_then(|url| self.location(&url));
        let cluster = raw.cluster.and_then(|text| {
            self.needs(Feature::Cluster, Some(&text), || {
                "engine.cluster".to_string()
            });
            let parsed = interpolate(&text.value, self.env)
                .and_then(|url| url.parse::<ClusterUrl>().map_err(|e| e.to_string()));
            parsed
                .map_err(|message| self.problem(line_of(&text), message))
                .ok()
        });
        EngineSettings {
            memory_limit,
            target_partitions: raw.target_partitions.map(|n| n.value).filter(|&n| n > 0),
            scratch: scratch.map(|location| location.as_folder()),
            cluster,
        }
    }
}
