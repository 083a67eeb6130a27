//! The scheduler's address that a pipeline (`engine.cluster`) and `segflow cluster executor`
//! are given: plain configuration, known to every build, with or without the `cluster`
//! feature.

use super::ClusterError;

/// A scheduler's address, as clients and executors are given it: `df://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for ClusterUrl {
    type Err = ClusterError;

    fn from_str(text: &str) -> Result<ClusterUrl, ClusterError> {
        let bad = || ClusterError::BadUrl(text.to_string());
        let address = text.strip_prefix("df://").ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port = port.trim_end_matches('/').parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(ClusterUrl {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_df_host_port() {
        let url: ClusterUrl = "df://scheduler.internal:50050".parse().unwrap();
        assert_eq!(url.host, "scheduler.internal");
        assert_eq!(url.port, 50050);
        assert_eq!(url.to_string(), "df://scheduler.internal:50050");
        for bad in [
            "scheduler:50050",
            "df://scheduler",
            "df://:50050",
            "df://host:port",
        ] {
            assert!(bad.parse::<ClusterUrl>().is_err(), "{bad}");
        }
    }
}
