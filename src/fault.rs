//! Whose move it is when something fails, and how a failure is told. Every error type at a
//! module edge answers once, by a `fault()` method; the binary turns the answer into the exit
//! code (1 or 2).

/// Who must act on a failure. Ordered so that of several failures, the environment's wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The command line, the spec, the SQL or the data: fix it and run again (exit 1).
    User,
    /// Storage, memory, disk, another process, or a bug in segflow (exit 2).
    Environment,
}

/// The messages of `error` and its sources, outermost first, each told once. Wrappers often
/// end their message with their source's (`context: {source}`, as object_store's and the
/// engine's errors do), so a chain printed as is repeats one cause several times: each keeps
/// only its own part here, and a message already told is dropped.
pub fn causes(error: &dyn std::error::Error) -> Vec<String> {
    let mut texts = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        texts.push(cause.to_string());
        next = cause.source();
    }
    let mut told: Vec<String> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let source = texts.get(i + 1).map(|t| t.trim_end()).unwrap_or_default();
        let own = match text.trim_end().strip_suffix(source) {
            Some(own) if !source.is_empty() => own,
            _ => text.as_str(),
        };
        let own = own.trim_end_matches(|c: char| c == ':' || c == '-' || c.is_whitespace());
        if !own.is_empty() && !told.iter().any(|t| t == own) {
            told.push(own.to_string());
        }
    }
    if told.is_empty() {
        told.push(texts[0].clone());
    }
    told
}

/// An error and its causes on one line, as the history stores it and logs tell it.
pub fn one_line(error: &dyn std::error::Error) -> String {
    causes(error).join(": ")
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: String,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text: text.to_string(),
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn each_cause_is_told_once_without_the_text_of_its_source() {
        // object_store's shape: a store error quoting a retry error quoting the response.
        let response = "Server returned non-2xx status code: 403 Forbidden: ";
        let retry = format!("Error performing PUT http://h/latest/api/token in 1ms - {response}");
        let store = format!("Generic S3 error: {retry}");
        let error = chain(&[
            "could not reach s3://lake/out/",
            &store,
            &retry,
            &retry,
            response,
        ]);
        assert_eq!(
            causes(&error),
            [
                "could not reach s3://lake/out/",
                "Generic S3 error",
                "Error performing PUT http://h/latest/api/token in 1ms",
                "Server returned non-2xx status code: 403 Forbidden",
            ]
        );
    }

    #[test]
    fn a_transparent_wrapper_still_leaves_one_line() {
        assert_eq!(causes(&chain(&["disk full", "disk full"])), ["disk full"]);
    }
}
