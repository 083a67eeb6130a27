//! How a server serves: where it listens, who logs in, TLS, and the limits of each query and
//! connection. In every build, as the command line's shape is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What bounds each query and connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Planning, running and sending a query's rows, all of it.
    pub statement_timeout: Duration,
    /// The memory pool of each query; a query that needs more fails, and spills nothing.
    pub query_memory: usize,
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub users: PathBuf,
    pub tls: Option<TlsFiles>,
    /// Refuse connections that do not use TLS.
    pub require_tls: bool,
    pub limits: Limits,
    /// How often the outputs' manifests are read again for new publications.
    pub refresh: Duration,
}
