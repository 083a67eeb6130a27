//! Leases: at most one run of a pipeline at a time, across every daemon that shares a state
//! store. A lease is a numbered series of small objects (`leases/<pipeline>/<epoch>.json`),
//! each written with a create-only put: whoever creates epoch n+1 holds the lease until the
//! expiry written in it. Renewing creates the next epoch, so a holder that stalled past its
//! expiry and was overtaken finds its renewal refused and knows it lost the lease. Only
//! create-only puts are needed, which local disks, memory and S3 all offer.

use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// A held lease. Dropping it without [`Lease::release`] lets it expire by itself.
#[derive(Debug)]
pub struct Lease {
    storage: Storage,
    folder: Location,
    holder: String,
    epoch: u64,
    ttl: Duration,
}

/// Epochs are zero-padded so that listing order is numeric order.
fn epoch_name(epoch: u64) -> String {
    format!("{epoch:020}.json")
}

impl Lease {
    /// Takes the lease on `pipeline` if nobody else holds an unexpired one.
    pub async fn acquire(
        storage: &Storage,
        state: &Location,
        pipeline: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let folder = state.as_folder().join(&format!("leases/{pipeline}/"));
        let current = latest(storage, &folder).await?;
        let next_epoch = match &current {
            Some(record) if record.expires_at > Utc::now() && record.holder != holder => {
                return Ok(None);
            }
            Some(record) => record.epoch + 1,
            None => 1,
        };
        let lease = Lease {
            storage: storage.clone(),
            folder,
            holder: holder.to_string(),
            epoch: next_epoch - 1,
            ttl,
        };
        lease.claim(next_epoch, Utc::now() + ttl).await.map(|won| {
            won.then_some(Lease {
                epoch: next_epoch,
                ..lease
            })
        })
    }

    /// Extends the lease; false when another holder took it over (the caller must stop).
    pub async fn renew(&mut self) -> Result<bool, LeaseError> {
        let next = self.epoch + 1;
        let won = self.claim(next, Utc::now() + self.ttl).await?;
        if won {
            self.epoch = next;
            self.forget_old().await;
        }
        Ok(won)
    }

    /// Gives the lease up at once, for the next daemon not to wait for its expiry.
    pub async fn release(self) -> Result<(), LeaseError> {
        self.claim(self.epoch + 1, Utc::now()).await.map(|_| ())
    }

    /// Creates epoch `epoch`; false if it exists already (someone else got there first).
    async fn claim(&self, epoch: u64, expires_at: DateTime<Utc>) -> Result<bool, LeaseError> {
        let location = self.folder.join(&epoch_name(epoch));
        let store = self.storage.store(&location, &Default::default())?;
        let record = LeaseRecord {
            holder: self.holder.clone(),
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
        if let Ok(store) = self.storage.store(&old, &Default::default()) {
            let _ = store.delete(&old.path()).await;
        }
    }
}

async fn latest(storage: &Storage, folder: &Location) -> Result<Option<LeaseRecord>, LeaseError> {
    let store = storage.store(folder, &Default::default())?;
    let Some(newest) = storage.list(folder, store.as_ref()).await?.pop() else {
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
    // A record that does not parse was written by something else; treat it as expired so
    // that the next epoch replaces it.
    Ok(serde_json::from_slice(&bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = Location::parse(&format!("{}/", dir.path().display())).unwrap();
        let storage = Storage::new();
        let ttl = Duration::from_millis(300);
        let mut a = Lease::acquire(&storage, &state, "p", "a", ttl)
            .await
            .unwrap()
            .expect("free");
        assert!(
            Lease::acquire(&storage, &state, "p", "b", ttl)
                .await
                .unwrap()
                .is_none()
        );
        assert!(a.renew().await.unwrap());
        assert!(
            Lease::acquire(&storage, &state, "q", "b", ttl)
                .await
                .unwrap()
                .is_some(),
            "other pipelines are free"
        );

        // a stalls past its expiry: b takes over, and a's renewal is refused.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = Lease::acquire(&storage, &state, "p", "b", ttl)
            .await
            .unwrap()
            .expect("expired");
        assert!(!a.renew().await.unwrap(), "a lost the lease");
        b.release().await.unwrap();
        assert!(
            Lease::acquire(&storage, &state, "p", "c", ttl)
                .await
                .unwrap()
                .is_some(),
            "released at once"
        );
    }
}
