//! Leases: at most one run of a pipeline at a time, across every daemon that shares a state
//! store. A lease is a numbered series of small objects (`leases/<pipeline>/<epoch>.json`),
//! each written with a create-only put: whoever creates epoch n+1 holds the lease until the
//! expiry written in it. Renewing creates the next epoch, so a holder that stalled past its
//! expiry and was overtaken finds its renewal refused and knows it lost the lease. Only
//! create-only puts are needed, which local disks, memory and S3 all offer.

use std::time::Duration;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    epoch: u64,
    expires_at: DateTime<Utc>,
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
        let now = self.clock.now();
        let next_epoch = match latest(&self.storage, &folder).await? {
            Some((_, Some(record))) if record.expires_at > now && record.holder != self.holder => {
                return Ok(None);
            }
            Some((epoch, _)) => epoch + 1,
            None => 1,
        };
        let expires_at = now + self.ttl;
        let lease = Lease {
            leases: self.clone(),
            folder,
            epoch: next_epoch,
            expires_at,
        };
        Ok(lease.claim(next_epoch, expires_at).await?.then_some(lease))
    }
}

impl Lease {
    /// Extends the lease; false when another holder took it over (the caller must stop).
    pub async fn renew(&mut self) -> Result<bool, LeaseError> {
        let next = self.epoch + 1;
        let expires_at = self.leases.clock.now() + self.leases.ttl;
        let won = self.claim(next, expires_at).await?;
        if won {
            self.epoch = next;
            self.expires_at = expires_at;
            self.forget_old().await;
        }
        Ok(won)
    }

    /// Until when the lease is ours without another renewal.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Gives the lease up at once, for the next daemon not to wait for its expiry.
    pub async fn release(self) -> Result<(), LeaseError> {
        let now = self.leases.clock.now();
        self.claim(self.epoch + 1, now).await.map(|_| ())
    }

    /// Creates epoch `epoch`; false if it exists already (someone else got there first).
    async fn claim(&self, epoch: u64, expires_at: DateTime<Utc>) -> Result<bool, LeaseError> {
        let location = self.folder.join(&epoch_name(epoch));
        let store = self.leases.storage.store(&location, &Default::default())?;
        let record = LeaseRecord {
            holder: self.leases.holder.clone(),
            epoch,
            expires_at,
        };
        let body = serde_json::to_vec(&record).expect("a lease record serialises");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(&location.path(), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(LeaseError::Store {
                action: "write",
                url: location.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Deletes epochs well behind the current one; nothing depends on them.
    async fn forget_old(&self) {
        if self.epoch <= 10 {
            return;
        }
        let old = self.folder.join(&epoch_name(self.epoch - 10));
        if let Ok(store) = self.leases.storage.store(&old, &Default::default()) {
            let _ = store.delete(&old.path()).await;
        }
    }
}

/// The newest epoch and its record. A record that does not parse was written by something
/// else; it counts as expired, so that the next epoch replaces it.
async fn latest(
    storage: &Storage,
    folder: &Location,
) -> Result<Option<(u64, Option<LeaseRecord>)>, LeaseError> {
    let store = storage.store(folder, &Default::default())?;
    let newest = storage
        .list(folder, store.as_ref())
        .await?
        .into_iter()
        .filter_map(|object| Some((epoch_of(object.location.filename()?)?, object)))
        .max_by_key(|(epoch, _)| *epoch);
    let Some((epoch, newest)) = newest else {
        return Ok(None);
    };
    let url = folder.join(&folder.relative(&newest.location)).to_string();
    let bytes = read_object(store.as_ref(), &newest.location)
        .await
        .map_err(|source| LeaseError::Store {
            action: "read",
            url,
            source: Box::new(source),
        })?;
    Ok(Some((epoch, serde_json::from_slice(&bytes).ok())))
}

fn epoch_of(file_name: &str) -> Option<u64> {
    file_name.strip_suffix(".json")?.parse().ok()
}
