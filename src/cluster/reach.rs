//! Whether a cluster is there to run on: its scheduler answers, and has executors.

use super::{ClusterError, ClusterUrl};

/// How long a run waits for the scheduler to answer before it gives up.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks, within a bound, that the scheduler at `url` answers as a Ballista scheduler and
/// has executors to run on; returns how many. Ballista's client connects at the first query,
/// and then only says that the transport failed, or waits without a word for an executor.
/// Ballista's scheduler answers `/readyz` on its gRPC port (stock images too): 200 with the
/// executors registered, 503 while there are too few.
pub async fn reach(url: &ClusterUrl) -> Result<usize, ClusterError> {
    let unreachable = |reason: String| ClusterError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()
        .expect("an HTTP client builds");
    let answered = client
        .get(format!("http://{}:{}/readyz", url.host, url.port))
        .send()
        .await;
    let response = match answered {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return Err(unreachable(format!(
                "it accepted the connection but did not answer within {} s (a scheduler \
                 stopped, frozen or overloaded does that)",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Err(error) if error.is_connect() => {
            return Err(unreachable(crate::fault::one_line(&error)));
        }
        Err(error) => {
            return Err(ClusterError::NotAScheduler {
                url: url.to_string(),
                reason: crate::fault::one_line(&error),
            });
        }
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let executors = body
        .split_whitespace()
        .find_map(|word| word.split('/').next()?.parse::<usize>().ok());
    match (status.as_u16(), executors) {
        (200, Some(executors)) if executors > 0 => Ok(executors),
        (200 | 503, Some(_)) => Err(ClusterError::NoExecutors {
            url: url.to_string(),
        }),
        _ => Err(ClusterError::NotAScheduler {
            url: url.to_string(),
            reason: format!("/readyz answered HTTP {status}: {}", body.trim()),
        }),
    }
}
