//! `segflow serve`: the published outputs over the PostgreSQL protocol, read-only and
//! authenticated, for BI and reverse-ETL tools that speak to databases, not to Parquet on
//! object storage (docs/serve.md). The protocol is the `serve` feature; a server's settings
//! ([`settings`]) and what the daemon shows of it ([`stats`]) are in every build.
//!
//! The parts, in the order a connection meets them: [`server`] accepts connections (TLS, the
//! connection limit, idle and startup timeouts); [`users`] logs them in (SCRAM-SHA-256 from a
//! file); [`session`] answers their statements after [`guard`] has sorted them and [`compat`]
//! has rewritten what DataFusion reads differently; [`catalog`] is what they read, from the
//! manifests, through [`stores`], which reads nothing else.

#[cfg(feature = "serve")]
mod catalog;
#[cfg(feature = "serve")]
mod compat;
#[cfg(feature = "serve")]
mod guard;
#[cfg(feature = "serve")]
mod server;
#[cfg(feature = "serve")]
mod session;
mod settings;
mod stats;
#[cfg(feature = "serve")]
mod stores;
#[cfg(feature = "serve")]
mod users;

#[cfg(feature = "serve")]
pub use server::{ServeError, Server};
pub use settings::{Limits, ServeSettings, TlsFiles};
pub use stats::{LATENCY_BUCKETS, ServeStats, Serving};
#[cfg(feature = "serve")]
pub use users::{UsersError, UsersFile};
