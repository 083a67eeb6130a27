//! Typed values of the YAML: pipeline variables (which reach SQL as query parameters) and the
//! column types a source declares (which are checked against the Parquet schema).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::scalar::ScalarValue;

/// The type of a pipeline variable, as written after `type:` in the YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarType {
    Int,
    Float,
    String,
    Date,
    Bool,
    /// An instant shown in a time zone: only segflow's own `$as_of_start` and `$as_of_end`.
    Instant,
    List(Box<VarType>),
}

impl VarType {
    pub fn parse(text: &str) -> Option<VarType> {
        Some(match text.trim() {
            "int" => VarType::Int,
            "float" => VarType::Float,
            "string" => VarType::String,
            "date" => VarType::Date,
            "bool" => VarType::Bool,
            _ => return None,
        })
    }

    fn data_type(&self) -> DataType {
        match self {
            VarType::Int => DataType::Int64,
            VarType::Float => DataType::Float64,
            VarType::String => DataType::Utf8,
            VarType::Date => DataType::Date32,
            VarType::Bool => DataType::Boolean,
            // Only lists need a type without a value, and no list holds instants; an
            // instant's own zone comes with its value (`to_scalar`).
            VarType::Instant => DataType::Timestamp(TimeUnit::Microsecond, None),
            VarType::List(item) => {
                DataType::List(Arc::new(Field::new("item", item.data_type(), true)))
            }
        }
    }
}

impl fmt::Display for VarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarType::Int => f.write_str("int"),
            VarType::Float => f.write_str("float"),
            VarType::String => f.write_str("string"),
            VarType::Date => f.write_str("date"),
            VarType::Bool => f.write_str("bool"),
            VarType::Instant => f.write_str("timestamp"),
            VarType::List(item) => write!(f, "list of {item}"),
        }
    }
}

/// A pipeline variable's value; always of its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    Int(i64),
    Float(f64),
    String(String),
    Date(NaiveDate),
    Bool(bool),
    Instant(DateTime<Tz>),
    List(VarType, Vec<VarValue>),
}

impl VarValue {
    pub fn var_type(&self) -> VarType {
        match self {
            VarValue::Int(_) => VarType::Int,
            VarValue::Float(_) => VarType::Float,
            VarValue::String(_) => VarType::String,
            VarValue::Date(_) => VarType::Date,
            VarValue::Bool(_) => VarType::Bool,
            VarValue::Instant(_) => VarType::Instant,
            VarValue::List(item, _) => VarType::List(Box::new(item.clone())),
        }
    }

    /// Parses text (a `--var k=v` value, or a YAML scalar) as a value of `ty`. Lists are
    /// written comma-separated.
    pub fn parse_as(ty: &VarType, text: &str) -> Result<VarValue, String> {
        let text = text.trim();
        match ty {
            VarType::Int => text
                .parse()
                .map(VarValue::Int)
                .map_err(|_| format!("'{text}' is not an int")),
            VarType::Float => text
                .parse()
                .map(VarValue::Float)
                .map_err(|_| format!("'{text}' is not a float")),
            VarType::String => Ok(VarValue::String(text.to_string())),
            VarType::Date => parse_date(text)
                .map(VarValue::Date)
                .ok_or_else(|| format!("'{text}' is not a date (YYYY-MM-DD)")),
            VarType::Instant => Err("a timestamp cannot be given as a var".to_string()),
            VarType::Bool => match text {
                "true" => Ok(VarValue::Bool(true)),
                "false" => Ok(VarValue::Bool(false)),
                _ => Err(format!("'{text}' is not a bool (true or false)")),
            },
            VarType::List(item) => {
                let items = if text.is_empty() {
                    Vec::new()
                } else {
                    text.split(',')
                        .map(|part| VarValue::parse_as(item, part))
                        .collect::<Result<_, _>>()?
                };
                Ok(VarValue::List((**item).clone(), items))
            }
        }
    }

    /// Whether the value may stand where SQL expects `data_type`: numbers for numbers,
    /// text for text, dates for dates and timestamps. Arrow would cast a date to an integer;
    /// a var used like that is a mistake to report, not to convert.
    pub fn fits(&self, data_type: &DataType) -> bool {
        match (self, data_type) {
            (VarValue::Int(_), t) => t.is_integer() || t.is_floating() || t.is_decimal(),
            (VarValue::Float(_), t) => t.is_floating() || t.is_decimal(),
            (VarValue::String(_), t) => t.is_string(),
            (VarValue::Date(_), DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => {
                true
            }
            (VarValue::Bool(_), DataType::Boolean) => true,
            (VarValue::Instant(_), DataType::Timestamp(..)) => true,
            (
                VarValue::List(..),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..),
            ) => true,
            (_, DataType::Null) => true,
            _ => false,
        }
    }

    /// The value as a DataFusion literal, the form in which it reaches SQL as `$name`.
    pub fn to_scalar(&self) -> ScalarValue {
        match self {
            VarValue::Int(v) => ScalarValue::Int64(Some(*v)),
            VarValue::Float(v) => ScalarValue::Float64(Some(*v)),
            VarValue::String(v) => ScalarValue::Utf8(Some(v.clone())),
            VarValue::Date(v) => ScalarValue::Date32(Some(days_since_epoch(*v))),
            VarValue::Bool(v) => ScalarValue::Boolean(Some(*v)),
            VarValue::Instant(v) => ScalarValue::TimestampMicrosecond(
                Some(v.timestamp_micros()),
                Some(v.timezone().name().into()),
            ),
            VarValue::List(item, values) => {
                let scalars: Vec<ScalarValue> = values.iter().map(VarValue::to_scalar).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&scalars, &item.data_type()))
            }
        }
    }
}

impl fmt::Display for VarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarValue::Int(v) => write!(f, "{v}"),
            VarValue::Float(v) => write!(f, "{v}"),
            VarValue::String(v) => write!(f, "{v}"),
            VarValue::Date(v) => write!(f, "{v}"),
            VarValue::Bool(v) => write!(f, "{v}"),
            VarValue::Instant(v) => write!(f, "{}", v.to_rfc3339()),
            VarValue::List(_, values) => {
                let parts: Vec<String> = values.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");
    (date - epoch).num_days() as i32
}

/// A column type a source declares: what SQL sees, whatever narrower or equivalent type each
/// file stores it as (see [`ColumnType::accepts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    BigInt,
    Double,
    String,
    Bool,
    Date,
    Timestamp,
    Decimal { precision: u8, scale: i8 },
    List(Box<ColumnType>),
}

impl ColumnType {
    pub fn parse(text: &str) -> Option<ColumnType> {
        let text = text.trim().to_ascii_lowercase();
        if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
            return ColumnType::parse(inner).map(|item| ColumnType::List(Box::new(item)));
        }
        if let Some(args) = text
            .strip_prefix("decimal(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let (precision, scale) = args.split_once(',')?;
            return Some(ColumnType::Decimal {
                precision: precision.trim().parse().ok()?,
                scale: scale.trim().parse().ok()?,
            });
        }
        Some(match text.as_str() {
            "int" | "integer" | "int32" => ColumnType::Int,
            "bigint" | "long" | "int64" => ColumnType::BigInt,
            "double" | "float" | "float64" => ColumnType::Double,
            "string" | "varchar" | "text" | "utf8" => ColumnType::String,
            "bool" | "boolean" => ColumnType::Bool,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    /// Whether a file's column of type `found` can be read as this type without losing
    /// anything: any timestamp unit or zone, narrower integers, float32, string kinds, date64,
    /// and decimals with no more whole or fractional digits.
    pub fn accepts(&self, found: &DataType) -> bool {
        use DataType::*;
        match (self, found) {
            (_, Dictionary(_, value)) => self.accepts(value),
            (ColumnType::Int, Int8 | Int16 | Int32 | UInt8 | UInt16) => true,
            (ColumnType::BigInt, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32) => true,
            (ColumnType::Double, Float16 | Float32 | Float64) => true,
            (ColumnType::String, Utf8 | LargeUtf8 | Utf8View) => true,
            (ColumnType::Bool, Boolean) => true,
            (ColumnType::Date, Date32 | Date64) => true,
            (ColumnType::Timestamp, Timestamp(..)) => true,
            (
                ColumnType::Decimal { precision, scale },
                Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s),
            ) => {
                s <= scale
                    && i16::from(*p) - i16::from(*s) <= i16::from(*precision) - i16::from(*scale)
            }
            (ColumnType::List(item), List(field) | LargeList(field) | ListView(field)) => {
                item.accepts(field.data_type())
            }
            _ => false,
        }
    }

    /// The Arrow type SQL sees for a declared column; timestamps are instants in
    /// microseconds, shown in the pipeline's zone (`zone`); strings are string views, which
    /// DataFusion computes with fastest (published files get plain strings again).
    pub fn arrow_type(&self, zone: &str) -> DataType {
        match self {
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::String => DataType::Utf8View,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into())),
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::List(item) => {
                DataType::List(Arc::new(Field::new("item", item.arrow_type(zone), true)))
            }
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Int => f.write_str("int"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::String => f.write_str("string"),
            ColumnType::Bool => f.write_str("bool"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::List(item) => write!(f, "list<{item}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_accept_what_converts_without_loss() {
        let ts = ColumnType::parse("timestamp").unwrap();
        assert!(ts.accepts(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into())
        )));
        assert!(ts.accepts(&DataType::Timestamp(TimeUnit::Nanosecond, None)));
        assert!(!ts.accepts(&DataType::Int64));
        let dec = ColumnType::parse("decimal(12, 2)").unwrap();
        assert!(dec.accepts(&DataType::Decimal128(12, 2)));
        assert!(dec.accepts(&DataType::Decimal128(10, 2)));
        assert!(dec.accepts(&DataType::Decimal128(9, 1)));
        assert!(!dec.accepts(&DataType::Decimal128(14, 2)));
        assert!(!dec.accepts(&DataType::Decimal128(12, 4)));
        let bigint = ColumnType::parse("bigint").unwrap();
        assert!(bigint.accepts(&DataType::Int32));
        assert!(bigint.accepts(&DataType::UInt32));
        assert!(!bigint.accepts(&DataType::UInt64));
        assert!(!bigint.accepts(&DataType::Float64));
        let tags = ColumnType::parse("list<string>").unwrap();
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        assert!(tags.accepts(&list));
        // SQL sees strings as string views; files may hold either kind.
        let views = DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert!(tags.accepts(&views));
        assert_eq!(tags.arrow_type("UTC"), views);
        assert!(ColumnType::parse("strnig").is_none());
    }

    #[test]
    fn vars_parse_by_declared_type() {
        assert_eq!(
            VarValue::parse_as(&VarType::Int, "42"),
            Ok(VarValue::Int(42))
        );
        assert!(VarValue::parse_as(&VarType::Int, "4.2").is_err());
        assert!(VarValue::parse_as(&VarType::Date, "2024-02-30").is_err());
        let ids = VarValue::parse_as(&VarType::List(Box::new(VarType::Int)), "1, 2,3").unwrap();
        assert_eq!(
            ids,
            VarValue::List(
                VarType::Int,
                vec![VarValue::Int(1), VarValue::Int(2), VarValue::Int(3)]
            )
        );
    }
}
