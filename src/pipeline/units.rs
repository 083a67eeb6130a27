//! Durations and sizes as people write them in a spec.

/// `30s`, `15m`, `2h`, `1d`, `1h 30m`: humantime's forms, with overflow checked (a hand-written
/// `number * 86_400` wrapped around on a long enough number of days).
pub(super) fn parse_duration(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// A span as a data engineer writes a max_age: `36h`, `104h 12m`.
pub fn hours(span: std::time::Duration) -> String {
    let minutes = span.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// `57.5` for 0.575, `90` for 0.9: a share as people write a percentage.
pub fn percent(share: f64) -> String {
    let text = format!("{:.1}", share * 100.0);
    text.trim_end_matches(".0").to_string()
}

/// `512MiB`, `8GiB`, `2GB`, `1.5G`: decimal or binary units, as datafusion-cli reads them.
pub fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    // `as` would saturate an out-of-range size to usize::MAX without a word.
    let bytes = number * factor;
    (bytes.is_finite() && bytes < usize::MAX as f64).then_some(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_overflow_checked() {
        assert_eq!(
            parse_duration("1h 30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("1d"),
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("999999999999999d"),
            None,
            "overflow is refused"
        );
        assert_eq!(parse_duration("90"), None, "a unit is required");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999999999999TiB"), None, "too large");
    }
}
