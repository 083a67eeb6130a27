//! What a PostgreSQL protocol server has done, counted as it goes: what the daemon's
//! `/metrics` and status page show of the server it runs (`segflow schedule --serve`). In
//! every build, so that the daemon shows it without knowing the protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts that `/metrics` and the status page show.
#[derive(Debug, Default)]
pub struct ServeStats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub queries_total: AtomicU64,
    pub queries_failed: AtomicU64,
    /// Microseconds from a query's start until its last row was handed to the connection.
    pub query_micros_total: AtomicU64,
    /// How many queries finished within each of [`LATENCY_BUCKETS`] seconds.
    pub query_latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
}

/// The upper bounds, in seconds, of the query latency histogram.
pub const LATENCY_BUCKETS: [f64; 8] = [0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0];

impl ServeStats {
    /// Counts a query that ended after `elapsed`.
    pub fn finished(&self, elapsed: Duration, failed: bool) {
        self.queries_total.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.queries_failed.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.query_micros_total.fetch_add(micros, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.query_latency_buckets) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A server's address and counts, as the daemon shows them.
#[derive(Debug, Clone)]
pub struct Serving {
    pub address: SocketAddr,
    pub stats: Arc<ServeStats>,
}
