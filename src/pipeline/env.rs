//! `${NAME}` in URLs and store options: secrets and paths that differ between machines stay
//! out of the YAML.

/// Replaces `${NAME}` and `${NAME:-default}` with values from `env`.
pub(super) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{text}' has a '${{' without its closing '}}'"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "'{text}' uses the environment variable {name}, which is not set"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_environment() {
        let env = |name: &str| (name == "DATA").then(|| "/d".to_string());
        assert_eq!(interpolate("${DATA}/orders/", &env).unwrap(), "/d/orders/");
        assert_eq!(interpolate("${OUT:-out}/x", &env).unwrap(), "out/x");
        assert!(interpolate("${OUT}/x", &env).is_err());
    }
}
