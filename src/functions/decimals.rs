//! Decimals that exports write as text, read exactly.

use datafusion::arrow::array::Decimal128Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `text` (the text of the column `name`) as a decimal(`precision`, `scale`), exactly or
/// failing; see [`TextToDecimal`].
pub(crate) fn text_to_decimal(text: Expr, name: &str, precision: u8, scale: i8) -> Expr {
    ScalarUDF::from(TextToDecimal::new(name, precision, scale))
        .call(vec![text])
        .alias(name)
}

/// Decimals written as text, read exactly: a value with more decimal places than the
/// column's scale, or more digits than its precision, fails naming the column and value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TextToDecimal {
    pub(super) column: String,
    pub(super) precision: u8,
    pub(super) scale: i8,
    signature: Signature,
}

impl TextToDecimal {
    pub(super) fn new(column: &str, precision: u8, scale: i8) -> Self {
        TextToDecimal {
            column: column.to_string(),
            precision,
            scale,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }

    /// The value in units of the scale; None for an empty text.
    fn units(&self, text: &str) -> Result<Option<i128>> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let fail = |why: &str| {
            Err(super::parse_error(format!(
                "column {}: '{text}' is not a decimal({},{}): {why}",
                self.column, self.precision, self.scale
            )))
        };
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction)
        {
            return fail("write digits with an optional '.' and sign");
        }
        let scale = usize::try_from(self.scale.max(0)).expect("a non-negative scale");
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > scale {
            return fail("it has more decimal places than the column keeps");
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() + scale > usize::from(self.precision) {
            return fail("it has more digits than the column holds");
        }
        let text = format!("{whole}{fraction:0<scale$}");
        let units: i128 = if text.is_empty() {
            0
        } else {
            text.parse().expect("digits")
        };
        Ok(Some(if negative { -units } else { units }))
    }
}

impl ScalarUDFImpl for TextToDecimal {
    fn name(&self) -> &str {
        "text_to_decimal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(self.precision, self.scale))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (value, array) = super::argument(&args, self.name())?;
        let units = super::parse_texts(&array, |text| self.units(text))?;
        let decimals =
            Decimal128Array::from(units).with_precision_and_scale(self.precision, self.scale)?;
        super::shaped_like(value, decimals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_exactly_or_fail() {
        let amount = TextToDecimal::new("amount", 6, 2);
        let units = |text: &str| amount.units(text).map_err(|e| e.to_string());
        assert_eq!(units("12.3"), Ok(Some(1230)));
        assert_eq!(units(" -0.05 "), Ok(Some(-5)));
        assert_eq!(units("+7"), Ok(Some(700)));
        assert_eq!(units("12.340"), Ok(Some(1234)));
        assert_eq!(units("0012.34"), Ok(Some(1234)));
        assert_eq!(units(""), Ok(None));
        for (text, why) in [
            ("12.349", "more decimal places"),
            ("12345.6", "more digits"),
            ("12.3x", "write digits"),
            ("1e3", "write digits"),
            (".", "write digits"),
        ] {
            let error = units(text).unwrap_err();
            assert!(
                error.contains(&format!("column amount: '{text}' is not a decimal(6,2)"))
                    && error.contains(why),
                "{text}: {error}"
            );
        }
    }
}
