//! Wall-clock times to instants, by one rule for the whole program. A local time that a
//! daylight-saving change makes occur twice (the autumn fold) is its first occurrence; one
//! that the change skips (the spring gap) is read with the offset in force before the jump,
//! so 02:30 in a 02:00 -> 03:00 gap is 03:30. The scheduler places its slots by this rule,
//! and sources read timestamps written without a zone by it.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant of the wall-clock time `local` in `zone`.
pub(crate) fn instant_of(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps last at most a couple of hours and never follow each other closely, so
            // three hours earlier is on the old offset.
            let before = zone
                .from_local_datetime(&(local - Duration::hours(3)))
                .earliest()
                .expect("a local time three hours before a gap exists");
            let offset = before.offset().fix().local_minus_utc();
            (local - Duration::seconds(offset.into())).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn folds_take_the_first_occurrence_and_gaps_the_old_offset() {
        let oslo = chrono_tz::Europe::Oslo;
        assert_eq!(
            instant_of(oslo, local("2025-10-26 02:30")).to_rfc3339(),
            "2025-10-26T00:30:00+00:00"
        );
        assert_eq!(
            instant_of(oslo, local("2026-03-29 02:30")).to_rfc3339(),
            "2026-03-29T01:30:00+00:00"
        );
        assert_eq!(
            instant_of(oslo, local("2026-06-01 12:00")).to_rfc3339(),
            "2026-06-01T10:00:00+00:00"
        );
    }
}
