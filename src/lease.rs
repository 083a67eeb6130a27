//! Leases: at most one run of a pipeline at a time, across every daemon that shares a state
//! store. A lease is a numbered series of small objects (`leases/<pipeline>/<epoch>.json`),
//! each written with a create-only put: whoever creates epoch n+1 holds the lease until the
//! expiry written in it. Renewing creates the next epoch, so a holder that stalled past its
//! expiry and was overtaken finds its renewal refused and knows it lost the lease. Only
//! create-only puts are needed, which local disks, memory and S3 all offer.

use std::time::Duration;

use crate::cancel::{Cancel, CancelReason};
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::storage::{Location, Storage, StorageError, read_object};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not {action} the lease {url}")]
    Store {
        action: &'static str,
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

impl LeaseError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            LeaseError::Storage(e) => e.fault(),
            LeaseError::Store { .. } => crate::fault::Fault::Environment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    epoch: u64,
    expires_at: DateTime<Utc>,
    /// Who holds it, for the person told to wait: the machine, the process, and since when
    /// it has held the lease without a break. Absent from records of older versions.
    #[serde(default)]
    host: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    /// Given up by its holder (true), or written to be renewed (false); absent from records
    /// of older versions, which said neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released: Option<bool>,
}

/// Who holds a lease, as its newest record says.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub since: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)?;
        if let Some(since) = self.since {
            write!(f, ", since {}", since.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        write!(
            f,
            " (its lease runs to {} unless renewed)",
            self.expires_at.format("%H:%M:%S UTC")
        )
    }
}

/// Where one daemon takes its leases, under which name, and for how long.
#[derive(Debug, Clone)]
pub struct Leases {
    storage: Storage,
    state: Location,
    holder: String,
    ttl: Duration,
    clock: Clock,
}

/// A held lease. Dropping it without [`Lease::release`] lets it expire by itself.
#[derive(Debug)]
pub struct Lease {
    leases: Leases,
    folder: Location,
    epoch: u64,
    expires_at: DateTime<Utc>,
    since: DateTime<Utc>,
    /// The holder that let this lease expire unreleased, when this take was a takeover.
    taken_over: Option<Holder>,
}

/// Epochs are zero-padded so that listing order is numeric order.
fn epoch_name(epoch: u64) -> String {
    format!("{epoch:020}.json")
}

impl Leases {
    pub fn new(
        storage: Storage,
        state: &Location,
        holder: String,
        ttl: Duration,
        clock: Clock,
    ) -> Leases {
        Leases {
            storage,
            state: state.as_folder(),
            holder,
            ttl,
            clock,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease on `pipeline` if nobody else holds an unexpired one.
    pub async fn acquire(&self, pipeline: &str) -> Result<Option<Lease>, LeaseError> {
        let folder = self.state.join(&format!("leases/{pipeline}/"));
        let store = self.storage.store(&folder, &Default::default())?;
        let epochs = epochs(&self.storage, &folder, store.as_ref()).await?;
        let now = self.clock.now();
        let mut taken_over = None;
        let next_epoch = match epochs.last() {
            Some((epoch, object)) => {
                let url = folder.join(&folder.relative(&object.location)).to_string();
                let bytes = read_object(store.as_ref(), &object.location)
                    .await
                    .map_err(|source| LeaseError::Store {
                        action: "read",
                        url,
                        source: Box::new(source),
                    })?;
                // A record that does not parse was written by something else; it counts as
                // expired, so that the next epoch replaces it.
                let record = serde_json::from_slice::<LeaseRecord>(&bytes).ok();
                let held = record
                    .as_ref()
                    .is_some_and(|r| r.expires_at > now && r.holder != self.holder);
                if held {
                    return Ok(None);
                }
                // Left to expire by another holder: a daemon that died or froze.
                taken_over =
                    record.filter(|r| r.released == Some(false) && r.holder != self.holder);
                epoch + 1
            }
            None => 1,
        };
        let expires_at = now + self.ttl;
        let lease = Lease {
            leases: self.clone(),
            folder,
            epoch: next_epoch,
            expires_at,
            since: now,
            taken_over: taken_over.map(|r| r.holder_info()),
        };
        let held = lease.claim(next_epoch, expires_at, false).await?
            && lease.nobody_ahead_of(next_epoch).await?
            && self.clock.now() < expires_at;
        if !held {
            return Ok(None);
        }
        // Keep the folder small: nothing reads epochs far behind the newest.
        for (epoch, object) in &epochs {
            if epoch + KEPT_EPOCHS < next_epoch {
                let _ = store.delete(&object.location).await;
            }
        }
        Ok(Some(lease))
    }

    /// Who holds the lease on `pipeline` now, if anyone does.
    pub async fn holder_of(&self, pipeline: &str) -> Result<Option<Holder>, LeaseError> {
        let folder = self.state.join(&format!("leases/{pipeline}/"));
        let store = self.storage.store(&folder, &Default::default())?;
        let epochs = epochs(&self.storage, &folder, store.as_ref()).await?;
        let Some((_, newest)) = epochs.last() else {
            return Ok(None);
        };
        let bytes = read_object(store.as_ref(), &newest.location)
            .await
            .map_err(|source| LeaseError::Store {
                action: "read",
                url: folder.join(&folder.relative(&newest.location)).to_string(),
                source: Box::new(source),
            })?;
        Ok(serde_json::from_slice::<LeaseRecord>(&bytes)
            .ok()
            .filter(|r| r.expires_at > self.clock.now())
            .map(|r| r.holder_info()))
    }
}

impl LeaseRecord {
    fn holder_info(&self) -> Holder {
        Holder {
            host: self.host.clone(),
            pid: self.pid,
            since: self.since,
            expires_at: self.expires_at,
        }
    }
}

/// Old epochs kept for whoever wants to see who held a lease lately.
const KEPT_EPOCHS: u64 = 10;

impl Lease {
    /// Extends the lease; false when it is no longer ours: another holder took it over, or it
    /// expired before this renewal (then another daemon may hold it, so it must be taken
    /// again, not renewed). On false the caller must stop what the lease protects.
    pub async fn renew(&mut self) -> Result<bool, LeaseError> {
        let now = self.leases.clock.now();
        if now >= self.expires_at {
            return Ok(false);
        }
        let next = self.epoch + 1;
        let expires_at = now + self.leases.ttl;
        let won = self.claim(next, expires_at, false).await? && self.nobody_ahead_of(next).await?;
        if won {
            self.epoch = next;
            self.expires_at = expires_at;
            if next > KEPT_EPOCHS {
                let old = self.folder.join(&epoch_name(next - KEPT_EPOCHS - 1));
                if let Ok(store) = self.leases.storage.store(&old, &Default::default()) {
                    let _ = store.delete(&old.path()).await;
                }
            }
        }
        Ok(won)
    }

    /// The epoch the lease is held at: greater than every earlier holder's, and so the
    /// fencing token of the run it covers (see [`crate::publish::journal`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether at least a third of the lease is left, when its first renewal is due: what a
    /// run needs to start under it.
    pub fn has_a_third_left(&self) -> bool {
        self.leases.clock.now() + self.leases.ttl / 3 < self.expires_at
    }

    /// Who let the lease expire without giving it up (a daemon that died or froze), when
    /// taking it was a takeover.
    pub fn taken_over(&self) -> Option<&Holder> {
        self.taken_over.as_ref()
    }

    /// Until when the lease is ours without another renewal.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Gives the lease up at once, for the next daemon not to wait for its expiry. A lease
    /// that has expired is left alone: another daemon may hold it by now.
    pub async fn release(self) -> Result<(), LeaseError> {
        let now = self.leases.clock.now();
        if now >= self.expires_at {
            return Ok(());
        }
        self.claim(self.epoch + 1, now, true).await.map(|_| ())
    }

    /// Whether no epoch after ours exists. A create-only put can bring back an epoch that was
    /// deleted as old (a put delayed for minutes, say), so winning it proves nothing until
    /// nobody is found ahead.
    async fn nobody_ahead_of(&self, epoch: u64) -> Result<bool, LeaseError> {
        let store = self
            .leases
            .storage
            .store(&self.folder, &Default::default())?;
        let epochs = epochs(&self.leases.storage, &self.folder, store.as_ref()).await?;
        Ok(epochs.last().is_none_or(|(newest, _)| *newest <= epoch))
    }

    /// Creates epoch `epoch`; false if another holder created it first. An epoch that exists
    /// with our name on it is ours: a put whose answer was lost (its future dropped) wrote it.
    async fn claim(
        &self,
        epoch: u64,
        expires_at: DateTime<Utc>,
        released: bool,
    ) -> Result<bool, LeaseError> {
        let location = self.folder.join(&epoch_name(epoch));
        let store = self.leases.storage.store(&location, &Default::default())?;
        let record = LeaseRecord {
            holder: self.leases.holder.clone(),
            epoch,
            expires_at,
            host: hostname(),
            pid: std::process::id(),
            since: Some(self.since),
            released: Some(released),
        };
        let body = serde_json::to_vec(&record).expect("a lease record serialises");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let store_error = |action, source| LeaseError::Store {
            action,
            url: location.to_string(),
            source: Box::new(source),
        };
        match store
            .put_opts(&location.path(), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = read_object(store.as_ref(), &location.path())
                    .await
                    .map_err(|source| store_error("read", source))?;
                Ok(serde_json::from_slice::<LeaseRecord>(&existing)
                    .is_ok_and(|r| r.holder == self.leases.holder))
            }
            Err(source) => Err(store_error("write", source)),
        }
    }
}

impl Lease {
    /// Renews the lease for as long as the work it protects goes on; meant to be raced
    /// against that work. Renews when two thirds of the lease are left. Returns when the
    /// lease is lost (taken over, or expired before a renewal landed): then the work must
    /// stop, and the lease must not be released. When renewals keep failing so long that
    /// the lease would expire, `work` is cancelled while the lease still holds, and renewals
    /// go on while it winds down.
    pub async fn keep(&mut self, work: &Cancel) {
        let clock = self.leases.clock.clone();
        let renew_every = self.leases.ttl / 3;
        let stop = |reason: String| work.cancel(CancelReason::LeaseLost(reason));
        loop {
            let due =
                self.expires_at - chrono::Duration::from_std(renew_every * 2).unwrap_or_default();
            clock
                .sleep((due - clock.now()).to_std().unwrap_or_default())
                .await;
            // A renewal that only lands after the expiry comes too late.
            let left = (self.expires_at - clock.now()).to_std().unwrap_or_default();
            let renewed = tokio::select! {
                renewed = self.renew() => renewed,
                () = clock.sleep(left) => Ok(false),
            };
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    stop(
                        "the lease was lost (taken over by another process, or it expired)"
                            .to_string(),
                    );
                    return;
                }
                Err(error) if clock.now() + renew_every >= self.expires_at => {
                    tracing::warn!(%error, "Could not renew the lease; cancelling the run.");
                    stop(format!("the lease could not be renewed: {error}"));
                    clock.sleep(renew_every / 4).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "Could not renew the lease; will try again.");
                    clock.sleep(renew_every / 4).await;
                }
            }
        }
    }
}

/// A holder name no other process uses: the machine's name and a fresh UUID.
pub fn unique_holder() -> String {
    format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple())
}

/// The name of this machine, as lease records and error messages show it.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The epochs in a lease folder, oldest first.
async fn epochs(
    storage: &Storage,
    folder: &Location,
    store: &dyn object_store::ObjectStore,
) -> Result<Vec<(u64, object_store::ObjectMeta)>, LeaseError> {
    let mut epochs: Vec<(u64, object_store::ObjectMeta)> = storage
        .list(folder, store)
        .await?
        .into_iter()
        .filter_map(|object| Some((epoch_of(object.location.filename()?)?, object)))
        .collect();
    epochs.sort_by_key(|(epoch, _)| *epoch);
    Ok(epochs)
}

fn epoch_of(file_name: &str) -> Option<u64> {
    file_name.strip_suffix(".json")?.parse().ok()
}
