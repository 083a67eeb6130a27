//! The values a step's SQL sees as `$name`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::pipeline::{AS_OF, AS_OF_END, AS_OF_START, RUN_ID, VarValue};

/// The values a step's SQL sees as `$name`: the run's parameters and the pipeline vars.
#[derive(Debug, Clone)]
pub struct Params {
    pub(super) values: BTreeMap<String, VarValue>,
}

impl Params {
    /// `$as_of`, the as_of day's first instant and the first after it (`$as_of_start`,
    /// `$as_of_end`) in `zone`, `$run_id`, and the vars.
    pub fn new(
        as_of: NaiveDate,
        zone: Tz,
        run_id: &str,
        vars: &BTreeMap<String, VarValue>,
    ) -> Params {
        let mut values = vars.clone();
        values.insert(AS_OF.to_string(), VarValue::Date(as_of));
        let next = as_of.succ_opt().expect("as_of is before the end of time");
        values.insert(
            AS_OF_START.to_string(),
            VarValue::Instant(start_of_day(as_of, zone)),
        );
        values.insert(
            AS_OF_END.to_string(),
            VarValue::Instant(start_of_day(next, zone)),
        );
        values.insert(RUN_ID.to_string(), VarValue::String(run_id.to_string()));
        Params { values }
    }
}

/// The first instant of `day` in `zone`: midnight, or where a daylight-saving change skips
/// midnight, the first wall-clock time after the gap.
fn start_of_day(day: NaiveDate, zone: Tz) -> chrono::DateTime<Tz> {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    (0..=24 * 4)
        .map(|quarter| midnight + chrono::Duration::minutes(15 * quarter))
        .find_map(|local| zone.from_local_datetime(&local).earliest())
        .expect("every day has a wall-clock time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::scalar::ScalarValue;

    #[test]
    fn the_as_of_day_runs_from_its_first_instant_to_the_next_days() {
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        let start = |text: &str, zone: Tz| start_of_day(day(text), zone).to_utc().to_rfc3339();
        // Oslo's spring-forward day has 23 hours.
        let oslo = chrono_tz::Europe::Oslo;
        assert_eq!(start("2026-03-29", oslo), "2026-03-28T23:00:00+00:00");
        assert_eq!(start("2026-03-30", oslo), "2026-03-29T22:00:00+00:00");
        // In Santiago the clocks skip midnight on 2026-09-06: the day starts at 01:00 (-03).
        let santiago = chrono_tz::America::Santiago;
        assert_eq!(start("2026-09-06", santiago), "2026-09-06T04:00:00+00:00");
        let params = Params::new(day("2026-03-29"), oslo, "run", &BTreeMap::new());
        assert_eq!(
            params.values[AS_OF_END].to_scalar(),
            ScalarValue::TimestampMicrosecond(
                Some(1_774_821_600_000_000),
                Some("Europe/Oslo".into())
            )
        );
    }
}
