//! The values a step's SQL sees as `$name`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, SecondsFormat, TimeZone};
use chrono_tz::Tz;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::EngineError;
use crate::hint::did_you_mean;
use crate::pipeline::{AS_OF, AS_OF_END, AS_OF_START, RUN_ID, Step, VarValue};

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

impl Params {
    /// `$as_of_end` in microseconds since the epoch.
    pub fn as_of_end_micros(&self) -> i64 {
        match &self.values[AS_OF_END] {
            VarValue::Instant(end) => end.timestamp_micros(),
            other => unreachable!("as_of_end is an instant, not {other:?}"),
        }
    }

    /// The value of `$name` (written with its `$`), or why a step cannot use it.
    pub(super) fn get(&self, placeholder: &str) -> Result<&VarValue, String> {
        let name = placeholder.trim_start_matches('$');
        self.values.get(name).ok_or_else(|| {
            let hint = did_you_mean(name, self.values.keys().map(String::as_str));
            format!("uses the parameter {placeholder}, which is not a pipeline var or as_of{hint}")
        })
    }

    /// The step's SQL with each `$name` replaced by its value as a literal, everything else
    /// as written (comments, layout): what the engine runs, for a person to read or to paste
    /// into `datafusion-cli` (as `dbt compile` prints a model).
    pub fn render(&self, step: &Step) -> Result<String, EngineError> {
        let text = &step.sql.text;
        let problem = |message: String| EngineError::Plan {
            what: step.kind.noun(),
            step: step.name.clone(),
            file: step.sql_file.display().to_string(),
            message,
        };
        let tokens = Tokenizer::new(&GenericDialect {}, text)
            .tokenize_with_location()
            .map_err(|e| problem(format!("it is not valid SQL: {e}")))?;
        let lines = line_starts(text);
        let mut rendered = String::with_capacity(text.len());
        let mut copied = 0;
        for token in tokens {
            let Token::Placeholder(placeholder) = &token.token else {
                continue;
            };
            let value = self.get(placeholder).map_err(problem)?;
            let start = byte_offset(text, &lines, token.span.start.line, token.span.start.column);
            rendered.push_str(&text[copied..start]);
            rendered.push_str(&literal(value));
            copied = start + placeholder.len();
        }
        rendered.push_str(&text[copied..]);
        Ok(rendered)
    }
}

/// The byte where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The byte at a tokenizer location (line and column from 1, columns in characters).
fn byte_offset(text: &str, lines: &[usize], line: u64, column: u64) -> usize {
    let start = lines[usize::try_from(line).expect("a line fits usize") - 1];
    let column = usize::try_from(column).expect("a column fits usize") - 1;
    text[start..]
        .char_indices()
        .nth(column)
        .map_or(text.len(), |(i, _)| start + i)
}

/// A SQL literal that DataFusion reads as exactly the value `$name` is bound to: instants
/// keep their zone (a plain TIMESTAMP literal would lose it), empty lists their item type.
fn literal(value: &VarValue) -> String {
    let typed = |expr: String| format!("arrow_cast({expr}, '{}')", value.to_scalar().data_type());
    // A negative number in parentheses: `10 -$n` must not become `10 --5`, a comment.
    match value {
        VarValue::Int(v) if *v < 0 => format!("({v})"),
        VarValue::Int(v) => v.to_string(),
        VarValue::Float(v) if v.is_finite() && v.is_sign_negative() => format!("({v:?})"),
        VarValue::Float(v) if v.is_finite() => format!("{v:?}"),
        VarValue::Float(v) => format!("CAST('{v}' AS DOUBLE)"),
        VarValue::String(v) => format!("'{}'", v.replace('\'', "''")),
        VarValue::Date(v) => format!("DATE '{v}'"),
        VarValue::Bool(v) => v.to_string(),
        VarValue::Instant(v) => typed(format!(
            "'{}'",
            v.to_rfc3339_opts(SecondsFormat::AutoSi, false)
        )),
        VarValue::List(_, items) if items.is_empty() => typed("make_array()".to_string()),
        VarValue::List(_, items) => {
            let items: Vec<String> = items.iter().map(literal).collect();
            format!("make_array({})", items.join(", "))
        }
    }
}

/// The first instant of `day` in `zone`: midnight, or where a daylight-saving change skips
/// midnight, the first wall-clock time after the gap.
pub(super) fn start_of_day(day: NaiveDate, zone: Tz) -> chrono::DateTime<Tz> {
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
    fn rendering_replaces_parameters_and_keeps_everything_else() {
        let text = "-- uses $n in a comment\nSELECT 10 -$n AS x, '$n' AS s, $note AS t,\n  \
                    $when AS w, $ids AS i, $none AS e, $f AS f -- é $n\n";
        let step = Step {
            name: "s".into(),
            kind: crate::pipeline::StepKind::Query,
            sql_file: "s.sql".into(),
            sql: crate::sql::StepSql {
                text: text.into(),
                tables: Default::default(),
            },
            line: None,
            incremental: None,
        };
        let day = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let vars = BTreeMap::from([
            ("n".to_string(), VarValue::Int(-5)),
            ("note".to_string(), VarValue::String("it's".into())),
            ("when".to_string(), VarValue::Date(day)),
            (
                "ids".to_string(),
                VarValue::List(
                    crate::pipeline::VarType::Int,
                    vec![VarValue::Int(1), VarValue::Int(2)],
                ),
            ),
            (
                "none".to_string(),
                VarValue::List(crate::pipeline::VarType::Int, vec![]),
            ),
            ("f".to_string(), VarValue::Float(-0.5)),
        ]);
        let params = Params::new(day, chrono_tz::Europe::Oslo, "run", &vars);
        assert_eq!(
            params.render(&step).unwrap(),
            "-- uses $n in a comment\nSELECT 10 -(-5) AS x, '$n' AS s, 'it''s' AS t,\n  \
             DATE '2026-03-31' AS w, make_array(1, 2) AS i, \
             arrow_cast(make_array(), 'List(Int64)') AS e, (-0.5) AS f -- é $n\n"
        );
    }

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
