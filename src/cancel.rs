//! Why a run is being stopped, carried to everything that must stop with it. A [`Cancel`]
//! is a tokio-util cancellation token with its reason: the first reason given wins, and a
//! child (one run's) is cancelled with its parent (the daemon's shutdown) but not the other
//! way round.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// The schedule's time limit for one run.
    TimedOut(Duration),
    /// The pipeline's lease was lost, or could not be renewed in time.
    LeaseLost(String),
    /// The daemon's shutdown grace period ended.
    Shutdown,
    /// SIGINT or SIGTERM stopped a hand run.
    Signal,
    /// Whoever waited for the run stopped waiting (its future was dropped).
    CallerGone,
}

impl CancelReason {
    /// Not the pipeline's doing, so not one of its failures: a retry is not used up.
    pub fn is_interruption(&self) -> bool {
        !matches!(self, CancelReason::TimedOut(_))
    }
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::TimedOut(limit) => write!(f, "timed out after {}s", limit.as_secs()),
            CancelReason::LeaseLost(why) => f.write_str(why),
            CancelReason::Shutdown => f.write_str("stopped: the shutdown grace period ended"),
            CancelReason::Signal => f.write_str("stopped by SIGINT or SIGTERM"),
            CancelReason::CallerGone => f.write_str("its caller stopped waiting for it"),
        }
    }
}

#[derive(Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    reason: Arc<OnceLock<CancelReason>>,
    parent: Option<Arc<Cancel>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A cancel that follows this one, and can also be cancelled on its own.
    pub fn child(&self) -> Cancel {
        Cancel {
            token: self.token.child_token(),
            reason: Arc::default(),
            parent: Some(Arc::new(self.clone())),
        }
    }

    /// Cancels with `reason`, unless already cancelled.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when cancelled, with the reason.
    pub async fn cancelled(&self) -> CancelReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(CancelReason::CallerGone)
    }

    /// Why it was cancelled: its own reason, else its parent's; None while it is not.
    pub fn reason(&self) -> Option<CancelReason> {
        if !self.is_cancelled() {
            return None;
        }
        self.reason
            .get()
            .cloned()
            .or_else(|| self.parent.as_ref().and_then(|p| p.reason()))
    }

    /// Cancels with `reason` when the guard is dropped, for work whose caller may stop
    /// waiting for it.
    pub fn cancel_on_drop(&self, reason: CancelReason) -> CancelOnDrop {
        CancelOnDrop {
            cancel: self.clone(),
            reason: Some(reason),
        }
    }
}

pub struct CancelOnDrop {
    cancel: Cancel,
    reason: Option<CancelReason>,
}

impl CancelOnDrop {
    /// The work ended: dropping the guard cancels nothing.
    pub fn disarm(mut self) {
        self.reason = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(reason) = self.reason.take() {
            self.cancel.cancel(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_follows_its_parent_and_the_first_reason_wins() {
        let daemon = Cancel::new();
        let run = daemon.child();
        let other = daemon.child();
        run.cancel(CancelReason::TimedOut(Duration::from_secs(30)));
        assert!(!daemon.is_cancelled(), "a child does not cancel its parent");
        assert!(!other.is_cancelled());
        daemon.cancel(CancelReason::Shutdown);
        assert_eq!(
            run.cancelled().await,
            CancelReason::TimedOut(Duration::from_secs(30))
        );
        assert_eq!(other.cancelled().await, CancelReason::Shutdown);
        assert!(!run.reason().unwrap().is_interruption());
        assert!(other.reason().unwrap().is_interruption());
    }

    #[tokio::test]
    async fn a_dropped_guard_cancels_and_a_disarmed_one_does_not() {
        let kept = Cancel::new();
        kept.cancel_on_drop(CancelReason::CallerGone).disarm();
        assert!(!kept.is_cancelled());
        let dropped = Cancel::new();
        drop(dropped.cancel_on_drop(CancelReason::CallerGone));
        assert_eq!(dropped.cancelled().await, CancelReason::CallerGone);
    }
}
