//! Time as the scheduler sees it. Production uses the system clock; tests and simulations use
//! a [`ManualClock`], which moves only when told, so that each decision the daemon takes (a
//! slot is due, a retry waits N seconds, a run ran out of time, a lease expired) can be
//! checked at exact instants instead of by sleeping and hoping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(ManualClock),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        match self {
            Clock::System => tokio::time::sleep(duration).await,
            Clock::Manual(clock) => clock.sleep(duration).await,
        }
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it. It also knows when
/// every pending sleep wants to wake, which is how a test sees what the daemon is waiting for.
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    now: watch::Sender<DateTime<Utc>>,
    sleepers: Mutex<BTreeMap<u64, DateTime<Utc>>>,
    next_sleeper: AtomicU64,
}

/// Forgets a sleeper when its sleep ends or is dropped (a cancelled `select!` branch).
struct Sleeper<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.inner
            .sleepers
            .lock()
            .expect("sleepers lock")
            .remove(&self.id);
    }
}

impl ManualClock {
    pub fn starting_at(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            inner: Arc::new(Inner {
                now: watch::Sender::new(start),
                sleepers: Mutex::new(BTreeMap::new()),
                next_sleeper: AtomicU64::new(0),
            }),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.inner.now.borrow()
    }

    /// Moves time forward, waking every sleep whose time has come.
    pub fn advance(&self, by: Duration) {
        self.inner.now.send_modify(|now| *now += to_chrono(by));
    }

    /// When the pending sleeps want to wake, earliest first.
    pub fn wakeups(&self) -> Vec<DateTime<Utc>> {
        let mut wakeups: Vec<DateTime<Utc>> = self
            .inner
            .sleepers
            .lock()
            .expect("sleepers lock")
            .values()
            .copied()
            .collect();
        wakeups.sort();
        wakeups
    }

    async fn sleep(&self, duration: Duration) {
        let wake_at = self.now() + to_chrono(duration);
        let id = self.inner.next_sleeper.fetch_add(1, Ordering::Relaxed);
        self.inner
            .sleepers
            .lock()
            .expect("sleepers lock")
            .insert(id, wake_at);
        let _sleeper = Sleeper {
            inner: &self.inner,
            id,
        };
        let mut now = self.inner.now.subscribe();
        // The sender lives in `inner`, which outlives this borrow, so waiting cannot fail.
        let _ = now.wait_for(|now| *now >= wake_at).await;
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_wake_when_the_clock_reaches_them() {
        let start = "2030-01-01T00:00:00Z".parse().unwrap();
        let manual = ManualClock::starting_at(start);
        let clock = Clock::Manual(manual.clone());
        let sleeping = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(60)).await }
        });
        while manual.wakeups().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(manual.wakeups(), [start + chrono::Duration::seconds(60)]);
        manual.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished());
        manual.advance(Duration::from_secs(1));
        sleeping.await.unwrap();
        assert!(manual.wakeups().is_empty(), "a finished sleep is forgotten");
        assert_eq!(clock.now(), start + chrono::Duration::seconds(60));
    }
}
