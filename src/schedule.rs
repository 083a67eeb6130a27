//! When pipelines run: cron expressions as people write them (5 fields, or 6 with seconds)
//! in a named time zone, turned into *slots*: instants, each standing for one logical date.
//! Slots are found in local wall-clock time and then placed on the time line, so that a
//! daylight-saving change neither skips a slot nor runs one twice: a local time that does not
//! exist (spring forward) runs at the end of the gap, one that exists twice (fall back) runs at
//! its first occurrence (see [`crate::wall_clock`]). This is the daemon's pure core; the
//! daemon itself builds on it.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::wall_clock::instant_of;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("'{expression}' is not a cron expression: {reason}")]
    Cron { expression: String, reason: String },
    #[error("'{0}' is not an IANA time zone (for example Europe/Oslo or UTC)")]
    TimeZone(String),
}

/// A pipeline's schedule: a cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: cron::Schedule,
    timezone: Tz,
    /// The zone whose calendar gives a slot its logical date.
    days: Tz,
}

/// One scheduled run: the instant it is due and the logical date it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub due: DateTime<Utc>,
    /// The last complete day before the slot, in the pipeline's time zone (by default the
    /// schedule's): a 02:00 run on the 25th computes as of the 24th, as `segflow run` does
    /// by default.
    pub as_of: NaiveDate,
}

/// Which missed slots to run after downtime. Missed means: no successful run recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// Skip them; wait for the next slot.
    None,
    /// Run only the most recent missed slot.
    Latest,
    /// Run every missed slot, oldest first, at most this many (the most recent ones).
    All { max: usize },
}

impl Schedule {
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let timezone: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::TimeZone(timezone.to_string()))?;
        let cron_error = |reason: String| ScheduleError::Cron {
            expression: expression.to_string(),
            reason,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let with_seconds = match fields.len() {
            5 => format!(
                "0 {} {}",
                fields[..4].join(" "),
                crontab_weekdays(fields[4])
            ),
            6 => format!("{} {}", fields[..5].join(" "), crontab_weekdays(fields[5])),
            n => {
                return Err(cron_error(format!(
                    "it has {n} fields; write minute hour day month weekday (5), or seconds first (6)"
                )));
            }
        };
        let cron =
            cron::Schedule::from_str(&with_seconds).map_err(|e| cron_error(e.to_string()))?;
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            timezone,
            days: timezone,
        })
    }

    /// The same slots, with logical dates taken from the calendar of `days`: a slot's as_of
    /// is the day before the one it falls on there, the last day that is over.
    pub fn with_days_in(self, days: Tz) -> Schedule {
        Schedule { days, ..self }
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Every slot due after `after` and at or before `until`, in order, each once.
    pub fn slots_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Slot> {
        let mut slots = Vec::new();
        // Wall-clock times are enumerated as if they were UTC (a zone without gaps), starting
        // a day early so that no local time mapping after `after` is missed.
        let local_start = after.with_timezone(&self.timezone).naive_local() - Duration::days(1);
        for local in self.cron.after(&local_start.and_utc()) {
            let local = local.naive_utc();
            let due = instant_of(self.timezone, local);
            if due > until {
                break;
            }
            if due <= after || slots.last().is_some_and(|s: &Slot| s.due >= due) {
                continue;
            }
            slots.push(Slot {
                due,
                as_of: due.with_timezone(&self.days).date_naive() - Duration::days(1),
            });
        }
        slots
    }

    /// The first slot due after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Slot> {
        self.search(|horizon| {
            self.slots_between(after, after + horizon)
                .into_iter()
                .next()
        })
    }

    /// The last slot due at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<Slot> {
        self.search(|horizon| self.slots_between(at - horizon, at).pop())
    }

    /// Looks ever further (an hour, then four times that, up to two years) until `find`
    /// finds a slot: a schedule every second and a yearly one both answer quickly.
    fn search(&self, find: impl Fn(Duration) -> Option<Slot>) -> Option<Slot> {
        let mut horizon = Duration::hours(1);
        while horizon <= Duration::days(800) {
            if let Some(slot) = find(horizon) {
                return Some(slot);
            }
            horizon = horizon * 4;
        }
        None
    }
}

/// Slots to run now: those due in (`last_considered`, `now`] that have not succeeded, chosen
/// by the catch-up policy. `succeeded` says whether a slot already has a successful run.
/// Slots due after `watched_since` came due while the daemon was up (perhaps busy with the
/// previous run): they are not missed, so `none` runs the latest of them.
pub fn due_slots(
    schedule: &Schedule,
    catchup: Catchup,
    last_considered: DateTime<Utc>,
    watched_since: DateTime<Utc>,
    now: DateTime<Utc>,
    succeeded: impl Fn(&Slot) -> bool,
) -> Vec<Slot> {
    let missed: Vec<Slot> = schedule
        .slots_between(last_considered, now)
        .into_iter()
        .filter(|slot| !succeeded(slot))
        .collect();
    match catchup {
        // Of the slots that came due while we watched, one run catches up, not a queue.
        Catchup::None => missed
            .into_iter()
            .rfind(|slot| slot.due > watched_since)
            .into_iter()
            .collect(),
        Catchup::Latest => missed.last().copied().into_iter().collect(),
        Catchup::All { max } => {
            let skip = missed.len().saturating_sub(max);
            missed.into_iter().skip(skip).collect()
        }
    }
}

/// crontab counts weekdays from Sunday = 0 (7 is Sunday too); the cron crate from Sunday = 1.
/// Numbers become names, which both read the same way.
fn crontab_weekdays(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String, after_slash: bool| {
        if number.is_empty() {
            return;
        }
        match number.parse::<usize>() {
            Ok(n) if !after_slash && n < NAMES.len() => out.push_str(NAMES[n]),
            _ => out.push_str(number),
        }
        number.clear();
    };
    let mut after_slash = false;
    for c in field.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            flush(&mut number, &mut out, after_slash);
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut number, &mut out, after_slash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn dues(schedule: &Schedule, from: &str, to: &str) -> Vec<String> {
        schedule
            .slots_between(utc(from), utc(to))
            .iter()
            .map(|s| format!("{} {}", s.due.format("%Y-%m-%dT%H:%M"), s.as_of))
            .collect()
    }

    #[test]
    fn nightly_slots_and_their_logical_dates() {
        let s = Schedule::parse("0 2 * * *", "Europe/Oslo").unwrap();
        assert_eq!(
            dues(&s, "2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z"),
            ["2026-01-10T01:00 2026-01-09", "2026-01-11T01:00 2026-01-10"]
        );
    }

    #[test]
    fn spring_forward_runs_a_skipped_slot_once() {
        // Oslo: 2026-03-29 02:00 -> 03:00. 02:30 does not exist that night.
        let s = Schedule::parse("30 2 * * *", "Europe/Oslo").unwrap();
        assert_eq!(
            dues(&s, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-28T01:30 2026-03-27",
                "2026-03-29T01:30 2026-03-28",
                "2026-03-30T00:30 2026-03-29",
            ]
        );
        // New York: 2026-03-08 02:00 -> 03:00, every 30 minutes through the gap.
        let s = Schedule::parse("*/30 1-3 8 3 *", "America/New_York").unwrap();
        assert_eq!(
            dues(&s, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z")
                .iter()
                .map(|d| &d[11..16])
                .collect::<Vec<_>>(),
            ["06:00", "06:30", "07:00", "07:30"],
            "01:00, 01:30 EST then 03:00, 03:30 EDT; 02:00 and 02:30 fold into 03:00 once"
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_slot_once() {
        // Oslo: 2026-10-25 03:00 -> 02:00. 02:30 happens twice; it runs at the first.
        let s = Schedule::parse("30 2 * * *", "Europe/Oslo").unwrap();
        assert_eq!(
            dues(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            ["2026-10-25T00:30 2026-10-24", "2026-10-26T01:30 2026-10-25"]
        );
        // New York: 2026-11-01 02:00 -> 01:00. 01:30 happens twice.
        let s = Schedule::parse("30 1 * * *", "America/New_York").unwrap();
        assert_eq!(
            dues(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
            ["2026-11-01T05:30 2026-10-31", "2026-11-02T06:30 2026-11-01"]
        );
    }

    #[test]
    fn crontab_weekdays_count_from_sunday() {
        // 2026-11-23 is a Monday.
        let s = Schedule::parse("0 6 * * 1-5", "UTC").unwrap();
        let days: Vec<String> = dues(&s, "2026-11-21T00:00:00Z", "2026-11-28T23:00:00Z")
            .iter()
            .map(|d| d[..10].to_string())
            .collect();
        assert_eq!(
            days,
            [
                "2026-11-23",
                "2026-11-24",
                "2026-11-25",
                "2026-11-26",
                "2026-11-27"
            ]
        );
        let sunday = Schedule::parse("0 6 * * 0", "UTC").unwrap();
        let seven = Schedule::parse("0 6 * * 7", "UTC").unwrap();
        let from = utc("2026-11-24T00:00:00Z");
        assert_eq!(
            sunday.next_after(from).unwrap().due,
            utc("2026-11-29T06:00:00Z")
        );
        assert_eq!(seven.next_after(from), sunday.next_after(from));
        let seconds = Schedule::parse("*/20 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(from).unwrap().due,
            utc("2026-11-24T00:00:20Z")
        );
        assert_eq!(
            sunday.latest_at_or_before(from).unwrap().due,
            utc("2026-11-22T06:00:00Z")
        );
        let on_the_slot = utc("2026-11-22T06:00:00Z");
        assert_eq!(
            sunday.latest_at_or_before(on_the_slot).unwrap().due,
            on_the_slot,
            "at or before"
        );
        let yearly = Schedule::parse("0 0 1 1 *", "UTC").unwrap();
        assert_eq!(
            yearly.latest_at_or_before(from).unwrap().due,
            utc("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let err = Schedule::parse("0 2 * *", "UTC").unwrap_err().to_string();
        assert!(err.contains("has 4 fields"), "{err}");
        assert!(matches!(
            Schedule::parse("0 25 * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert_eq!(
            Schedule::parse("0 2 * * *", "Europe/Olso").unwrap_err(),
            ScheduleError::TimeZone("Europe/Olso".into())
        );
    }

    #[test]
    fn catchup_policies_choose_missed_slots() {
        let s = Schedule::parse("0 2 * * *", "UTC").unwrap();
        let down_since = utc("2026-11-20T12:00:00Z");
        let now = utc("2026-11-25T02:00:30Z");
        let ok_on_22nd = |slot: &Slot| slot.due == utc("2026-11-22T02:00:00Z");
        let just_started = now - Duration::minutes(1);
        let pick = |policy| {
            due_slots(&s, policy, down_since, just_started, now, ok_on_22nd)
                .iter()
                .map(|slot| slot.as_of.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Catchup::Latest), ["2026-11-24"]);
        assert_eq!(
            pick(Catchup::All { max: 10 }),
            ["2026-11-20", "2026-11-22", "2026-11-23", "2026-11-24"]
        );
        assert_eq!(pick(Catchup::All { max: 2 }), ["2026-11-23", "2026-11-24"]);
        assert_eq!(
            pick(Catchup::None),
            ["2026-11-24"],
            "the slot due now still runs"
        );
        let later = utc("2026-11-25T09:00:00Z");
        let started_later = later - Duration::minutes(1);
        assert!(
            due_slots(
                &s,
                Catchup::None,
                down_since,
                started_later,
                later,
                ok_on_22nd
            )
            .is_empty(),
            "missed while down"
        );
        let busy_since = utc("2026-11-25T01:00:00Z");
        assert_eq!(
            due_slots(&s, Catchup::None, down_since, busy_since, later, ok_on_22nd).len(),
            1,
            "due while the daemon was up but busy with the previous run"
        );
    }
}
