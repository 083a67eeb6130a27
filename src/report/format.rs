//! Numbers as people read them: thousands separators, money with the shop's currency when
//! the data names one, shares as percentages, durations in the largest sensible unit.

/// `1234567` → `1,234,567`.
pub(super) fn count(n: u64) -> String {
    crate::progress::thousands(n)
}

/// A signed whole number, grouped: `-1234` → `-1,234`.
pub(super) fn integer(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", count(n.unsigned_abs()))
}

/// What stands for a value that is no number (NaN, infinite) or missing.
pub(super) const NO_VALUE: &str = "–";

/// Money with two decimals and thousands separators, with the currency's symbol (or code)
/// when the report knows it: `€1,234.50`, `CHF 1,234.50`, `1,234.50`.
pub(super) fn money(amount: f64, currency: Option<&str>) -> String {
    if !amount.is_finite() {
        return NO_VALUE.to_string();
    }
    let sign = if amount < 0.0 { "-" } else { "" };
    let cents = format!("{:.2}", amount.abs());
    let (whole, fraction) = cents.split_once('.').expect("two decimals");
    let digits = format!("{}.{fraction}", group_thousands(whole));
    match currency {
        None => format!("{sign}{digits}"),
        Some(code) => match symbol(code) {
            Some(symbol) => format!("{sign}{symbol}{digits}"),
            None => format!("{sign}{code} {digits}"),
        },
    }
}

/// Money rounded to whole units, for axes and cells where cents are noise.
pub(super) fn money_rounded(amount: f64, currency: Option<&str>) -> String {
    let text = money(amount.round(), currency);
    text.strip_suffix(".00")
        .map_or(text.clone(), str::to_string)
}

/// A share of 1 as a percentage with one decimal: `0.1234` → `12.3%`.
pub(super) fn percent(share: f64) -> String {
    if !share.is_finite() {
        return NO_VALUE.to_string();
    }
    format!("{:.1}%", share * 100.0)
}

/// `0.4 s`, `12 s`, `3 min 05 s`, `2 h 04 min`.
pub(super) fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if seconds < 3600.0 {
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        let minutes = (seconds / 60.0).round() as u64;
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// A number with at most `decimals` decimals, grouped: `1234.5` → `1,234.5`.
pub(super) fn decimal(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return NO_VALUE.to_string();
    }
    let text = format!("{:.decimals$}", value.abs());
    let sign = if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    match text.split_once('.') {
        Some((whole, fraction)) => format!("{sign}{}.{fraction}", group_thousands(whole)),
        None => format!("{sign}{}", group_thousands(&text)),
    }
}

/// Whole digits, grouped as the terminal's counts are; digits past u64 stay as they are.
fn group_thousands(digits: &str) -> String {
    digits
        .parse::<u64>()
        .map_or_else(|_| digits.to_string(), crate::progress::thousands)
}

/// The symbols of the currencies people recognise by symbol alone; others keep their code.
fn symbol(code: &str) -> Option<&'static str> {
    match code.to_ascii_uppercase().as_str() {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        "INR" => Some("₹"),
        "KRW" => Some("₩"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(money(1234.5, None), "1,234.50");
        assert_eq!(money(-1234.5, Some("EUR")), "-€1,234.50");
        assert_eq!(money(0.004, Some("chf")), "chf 0.00");
        assert_eq!(money(999999.999, Some("USD")), "$1,000,000.00");
        assert_eq!(money_rounded(1234.56, Some("GBP")), "£1,235");
        assert_eq!(percent(0.12345), "12.3%");
        assert_eq!(decimal(-0.04, 1), "0.0");
        assert_eq!(decimal(12345.678, 2), "12,345.68");
        assert_eq!(duration(4.25), "4.2 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(7440.0), "2 h 04 min");
        assert_eq!(integer(-1234), "-1,234");
        for odd in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(money(odd, Some("EUR")), NO_VALUE);
            assert_eq!(money_rounded(odd, None), NO_VALUE);
            assert_eq!(decimal(odd, 2), NO_VALUE);
            assert_eq!(percent(odd), NO_VALUE);
        }
    }
}
