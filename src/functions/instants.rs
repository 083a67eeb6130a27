//! Every timestamp column as instants shown in the pipeline's zone. Zone-aware values keep
//! their instant (only the zone they are shown in changes); wall-clock values written without
//! a zone are read in their source's zone by the rule of [`crate::wall_clock`], which Arrow's
//! own cast cannot apply (it fails on the autumn fold and the spring gap).

use std::collections::HashMap;

use chrono::DateTime;
use chrono_tz::Tz;
use datafusion::arrow::array::{AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Column, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast,
    col,
};
use datafusion::prelude::DataFrame;

use crate::wall_clock::instant_of;

/// The type of every timestamp column that SQL sees.
pub(crate) fn instant_type(zone: Tz) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(zone.name().into()))
}

/// `frame` with its timestamp columns shown in `zone`; `wall_clock` names the columns that
/// hold wall-clock times of `source_zone` (typed as naive timestamps in microseconds).
pub(crate) fn in_zone(
    frame: DataFrame,
    zone: Tz,
    source_zone: Tz,
    wall_clock: &[String],
) -> Result<DataFrame> {
    let target = instant_type(zone);
    let reads_wall_clock = ScalarUDF::from(WallClockToInstant::new(source_zone, zone));
    let mut changed = false;
    let columns: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let name = field.name();
            let column = col(Column::new_unqualified(name));
            if wall_clock.contains(name) {
                changed = true;
                reads_wall_clock.call(vec![column]).alias(name)
            } else if matches!(field.data_type(), DataType::Timestamp(..))
                && field.data_type() != &target
            {
                changed = true;
                cast(column, target.clone()).alias(name)
            } else {
                column
            }
        })
        .collect();
    if changed {
        frame.select(columns)
    } else {
        Ok(frame)
    }
}

/// The text column `name` (a CSV or JSON timestamp) read as instants shown in `zone`: text
/// with an offset is that instant, text without one a wall-clock time of `source_zone`.
pub(crate) fn text_to_instant(name: &str, source_zone: Tz, zone: Tz) -> Expr {
    ScalarUDF::from(TextToInstant::new(name, source_zone, zone))
        .call(vec![col(Column::new_unqualified(name))])
        .alias(name)
}

/// Timestamps written as text, as instants shown in `shown_in`; see [`text_to_instant`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TextToInstant {
    /// The column, for messages.
    pub(super) column: String,
    pub(super) wall_clock: WallClockToInstant,
    signature: Signature,
}

/// Text with an offset (`+02:00`, `+0200`, `+02`, `Z`), with `T` or a space, and an optional
/// space before the offset (`2026-03-31 14:05:00 +0200`, as shop exports write it).
const WITH_OFFSET: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f %#z",
    "%Y-%m-%d %H:%M:%S%.f %#z",
];
/// Wall-clock text: a time of day to the second or the minute, or a day alone (midnight).
const WALL_CLOCK: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

impl TextToInstant {
    pub(super) fn new(column: &str, source: Tz, shown_in: Tz) -> Self {
        TextToInstant {
            column: column.to_string(),
            wall_clock: WallClockToInstant::new(source, shown_in),
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }

    /// The instant (µs) a text means; None for an empty text.
    fn instant(&self, text: &str, offsets: &mut HashMap<i64, i64>) -> Result<Option<i64>> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let zoned = DateTime::parse_from_rfc3339(text).ok().or_else(|| {
            WITH_OFFSET
                .iter()
                .find_map(|format| DateTime::parse_from_str(text, format).ok())
        });
        if let Some(instant) = zoned {
            return Ok(Some(instant.timestamp_micros()));
        }
        let wall = WALL_CLOCK
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .map(|day| day.and_time(chrono::NaiveTime::MIN))
            });
        match wall {
            Some(wall) => self
                .wall_clock
                .instant(wall.and_utc().timestamp_micros(), offsets)
                .map(Some),
            None => Err(super::parse_error(format!(
                "column {}: '{text}' is not a timestamp segflow reads; write \
                 2026-03-31 14:05:00 or 2026-03-31T14:05:00, with an offset (+02:00, +0200, \
                 Z) for an instant, without one for a wall-clock time of the source's timezone",
                self.column
            ))),
        }
    }
}

impl ScalarUDFImpl for TextToInstant {
    fn name(&self) -> &str {
        "text_to_instant"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(instant_type(self.wall_clock.shown_in))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (value, array) = super::argument(&args, self.name())?;
        let mut offsets: HashMap<i64, i64> = HashMap::new();
        let instants = super::parse_texts(&array, |text| self.instant(text, &mut offsets))?;
        super::shaped_like(value, instants_in(instants, self.wall_clock.shown_in))
    }
}

/// Naive timestamps (µs) as the instants they are in `source`, shown in `shown_in`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct WallClockToInstant {
    pub(super) source: Tz,
    pub(super) shown_in: Tz,
    signature: Signature,
}

impl WallClockToInstant {
    pub(super) fn new(source: Tz, shown_in: Tz) -> Self {
        WallClockToInstant {
            source,
            shown_in,
            signature: Signature::exact(
                vec![DataType::Timestamp(TimeUnit::Microsecond, None)],
                Volatility::Immutable,
            ),
        }
    }
}

impl WallClockToInstant {
    /// The instant (µs) of a wall-clock time (µs), with the offset of its quarter hour
    /// looked up in `offsets` or worked out once and kept there.
    fn instant(&self, micros: i64, offsets: &mut HashMap<i64, i64>) -> Result<i64> {
        let quarter = micros.div_euclid(QUARTER_HOUR_MICROS);
        if let Some(offset) = offsets.get(&quarter) {
            return Ok(micros - offset);
        }
        let start = quarter * QUARTER_HOUR_MICROS;
        let Some(wall) = DateTime::from_timestamp_micros(start) else {
            return exec_err!("{micros} µs since 1970 is not a time segflow can place");
        };
        let offset = start - instant_of(self.source, wall.naive_utc()).timestamp_micros();
        offsets.insert(quarter, offset);
        Ok(micros - offset)
    }
}

/// Offsets are the same across a quarter of an hour of wall-clock time (zones change them on
/// the hour, the half or the quarter), so each quarter is resolved once.
const QUARTER_HOUR_MICROS: i64 = 15 * 60 * 1_000_000;

impl ScalarUDFImpl for WallClockToInstant {
    fn name(&self) -> &str {
        "wall_clock_to_instant"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(instant_type(self.shown_in))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (value, array) = super::argument(&args, self.name())?;
        let mut offsets: HashMap<i64, i64> = HashMap::new();
        let instants = array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|local| {
                local
                    .map(|micros| self.instant(micros, &mut offsets))
                    .transpose()
            })
            .collect::<Result<Vec<Option<i64>>>>()?;
        super::shaped_like(value, instants_in(instants, self.shown_in))
    }
}

/// Instants (µs) shown in `zone`.
fn instants_in(instants: Vec<Option<i64>>, zone: Tz) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(instants).with_timezone(zone.name())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn text_is_an_instant_with_an_offset_and_a_wall_clock_time_without() {
        let reader = TextToInstant::new("ordered_at", chrono_tz::Europe::Oslo, Tz::UTC);
        let mut offsets = HashMap::new();
        let mut utc = |text: &str| {
            reader.instant(text, &mut offsets).unwrap().map(|micros| {
                DateTime::from_timestamp_micros(micros)
                    .unwrap()
                    .to_rfc3339()
            })
        };
        let noon_utc = Some("2026-03-31T12:05:00+00:00".to_string());
        for text in [
            "2026-03-31T12:05:00Z",
            "2026-03-31T14:05:00+02:00",
            "2026-03-31 14:05:00 +0200",
            "2026-03-31 14:05:00+02",
            " 2026-03-31 14:05:00 ",
            "2026-03-31T14:05",
        ] {
            assert_eq!(utc(text), noon_utc, "{text}");
        }
        assert_eq!(
            utc("2026-03-31 14:05:00.25 +0200"),
            Some("2026-03-31T12:05:00.250+00:00".to_string())
        );
        assert_eq!(
            utc("2026-01-15"),
            Some("2026-01-14T23:00:00+00:00".to_string())
        );
        assert_eq!(utc(""), None);
        let error = reader.instant("31/03/2026", &mut offsets).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("column ordered_at: '31/03/2026'"),
            "{error}"
        );
    }

    #[test]
    fn wall_clock_times_become_instants_by_the_one_rule() {
        let oslo = chrono_tz::Europe::Oslo;
        let local = |text: &str| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let times = [
            "2026-06-01 12:00:00",
            "2025-10-26 02:30:00", // the fold: its first occurrence, 00:30 UTC
            "2026-03-29 02:30:00", // the gap: read on the winter offset, 01:30 UTC
            "2026-03-29 03:30:00",
        ];
        let input = TimestampMicrosecondArray::from(
            times
                .iter()
                .map(|t| Some(local(t)))
                .chain([None])
                .collect::<Vec<_>>(),
        );
        let udf = WallClockToInstant::new(oslo, Tz::UTC);
        let output = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(input))],
                arg_fields: vec![Arc::new(Field::new(
                    "t",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    true,
                ))],
                number_rows: 5,
                return_field: Arc::new(Field::new("t", instant_type(Tz::UTC), true)),
                config_options: Default::default(),
            })
            .unwrap()
            .to_array(5)
            .unwrap();
        let output = output.as_primitive::<TimestampMicrosecondType>();
        let utc = |micros: i64| {
            DateTime::from_timestamp_micros(micros)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        let found: Vec<String> = (0..4).map(|i| utc(output.value(i))).collect();
        assert_eq!(
            found,
            [
                "2026-06-01 10:00:00",
                "2025-10-26 00:30:00",
                "2026-03-29 01:30:00",
                "2026-03-29 01:30:00",
            ]
        );
        assert!(output.is_null(4));
    }
}
