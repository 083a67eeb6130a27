//! The date journal: one small record per pipeline and date in the state store
//! (`dates/<pipeline>/as_of=<date>.json`) that makes a date one run's whole publication,
//! whatever stalls.
//!
//! Every output is committed on its own, so a run that stops between two commits would
//! leave a date half its own. The journal puts one decision before those commits, ordered by
//! a fencing token: the epoch of the run's lease, which grows with every holder.
//! 1. A run *claims* the date before it computes anything. A claim is refused if the date
//!    holds a claim with a greater token, so a run that stalled past its lease cannot claim
//!    over the run that took the lease over.
//! 2. Once every output is staged, checked and moved into its partition, the run *decides*,
//!    with a conditional write on its own claim: the decision lists every output's files.
//!    It fails if a newer run has claimed the date since, so a run taken over before it
//!    decided publishes nothing.
//! 3. It then commits each output. A commit replaces what is live only if that holds no
//!    greater token, so a late commit never undoes a newer decision.
//! 4. A run that finds, at its claim, a decision not wholly committed (its run was killed
//!    or frozen between commits) commits the rest before it goes on: a decided publication
//!    is always completed, and a date is never left torn.

use chrono::{DateTime, NaiveDate, Utc};
use object_store::{ObjectStore, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{Decision, PublishError, PublishingRun, WRITE_TRIES, store_error};
use crate::storage::{Location, Storage, SwapError, read_versioned};

const JOURNAL_FORMAT: u32 = 1;

/// Where a pipeline's date records are kept.
#[derive(Debug, Clone)]
pub struct Journal {
    storage: Storage,
    /// `<state>/dates/<pipeline>/`.
    folder: Location,
}

/// What fences a run's publications: the pipeline's journal, and the run's token (the epoch
/// of the lease it runs under).
#[derive(Debug, Clone)]
pub struct Fence {
    pub journal: Journal,
    pub token: u64,
}

/// What the state store holds for one date.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DateRecord {
    format: u32,
    pipeline: String,
    as_of: NaiveDate,
    /// The newest run to claim the date: only it may decide.
    claimed_by: String,
    claimed_at: DateTime<Utc>,
    /// Its fencing token.
    token: u64,
    /// The newest decided publication of the date.
    decided: Option<Decision>,
}

impl Journal {
    /// The journal of `pipeline` in the state store `state`.
    pub fn in_state(storage: Storage, state: &Location, pipeline: &str) -> Journal {
        Journal {
            storage,
            folder: state.as_folder().join(&format!("dates/{pipeline}/")),
        }
    }

    fn location(&self, as_of: NaiveDate) -> Location {
        self.folder.join(&format!("as_of={as_of}.json"))
    }

    fn store(&self) -> Result<std::sync::Arc<dyn ObjectStore>, PublishError> {
        Ok(self.storage.store(&self.folder, &Default::default())?)
    }

    /// The newest decision for `as_of`, if any.
    pub async fn decided(&self, as_of: NaiveDate) -> Result<Option<Decision>, PublishError> {
        let store = self.store()?;
        let found = self.read(store.as_ref(), as_of).await?;
        Ok(found.and_then(|(record, _)| record.decided))
    }

    async fn read(
        &self,
        store: &dyn ObjectStore,
        as_of: NaiveDate,
    ) -> Result<Option<(DateRecord, UpdateVersion)>, PublishError> {
        let location = self.location(as_of);
        let found = read_versioned(store, &location.path())
            .await
            .map_err(|source| {
                store_error(
                    "(journal)",
                    "read the date record",
                    &location.path(),
                    source,
                )
            })?;
        let Some(found) = found else {
            return Ok(None);
        };
        let record =
            serde_json::from_slice(&found.bytes).map_err(|e| PublishError::BadJournal {
                file: location.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some((record, found.version)))
    }

    /// Claims `run`'s date with the fencing token `token`; returns the date's newest
    /// decision, which may still have outputs to commit.
    pub async fn claim(
        &self,
        run: &PublishingRun,
        token: u64,
    ) -> Result<Option<Decision>, PublishError> {
        let store = self.store()?;
        for _ in 0..WRITE_TRIES {
            let found = self.read(store.as_ref(), run.as_of).await?;
            let (previous, expected) = match found {
                Some((record, version)) => (Some(record), Some(version)),
                None => (None, None),
            };
            if let Some(newer) = previous.as_ref().filter(|r| r.token > token) {
                return Err(self.claimed(run, newer));
            }
            let decided = previous.and_then(|r| r.decided);
            let record = DateRecord {
                format: JOURNAL_FORMAT,
                pipeline: run.pipeline.clone(),
                as_of: run.as_of,
                claimed_by: run.run_id.clone(),
                claimed_at: Utc::now(),
                token,
                decided: decided.clone(),
            };
            match self.write(store.as_ref(), &record, expected, run).await {
                Ok(()) => return Ok(decided),
                // Another claim landed in between: read again whose it was.
                Err(SwapError::Changed { .. }) => continue,
                Err(source) => return Err(PublishError::Journal { source }),
            }
        }
        Err(self.contended(run))
    }

    /// Records `decision` as the date's publication if `run`'s claim is still the newest;
    /// otherwise a newer run claimed the date, and this one must publish nothing.
    pub async fn decide(
        &self,
        run: &PublishingRun,
        decision: &Decision,
    ) -> Result<(), PublishError> {
        let store = self.store()?;
        for _ in 0..WRITE_TRIES {
            let found = self.read(store.as_ref(), run.as_of).await?;
            let Some((record, version)) = found else {
                return Err(PublishError::Claimed {
                    as_of: run.as_of,
                    by: "a run that removed the date record".to_string(),
                });
            };
            if record.decided.as_ref() == Some(decision) {
                // A retried write whose first attempt landed.
                return Ok(());
            }
            if record.claimed_by != run.run_id || record.token != decision.token {
                return Err(self.claimed(run, &record));
            }
            let record = DateRecord {
                decided: Some(decision.clone()),
                ..record
            };
            match self
                .write(store.as_ref(), &record, Some(version), run)
                .await
            {
                Ok(()) => return Ok(()),
                Err(SwapError::Changed { .. }) => continue,
                Err(source) => return Err(PublishError::Journal { source }),
            }
        }
        Err(self.contended(run))
    }

    fn contended(&self, run: &PublishingRun) -> PublishError {
        PublishError::Journal {
            source: SwapError::Changed {
                url: self.location(run.as_of).to_string(),
            },
        }
    }

    fn claimed(&self, run: &PublishingRun, newer: &DateRecord) -> PublishError {
        PublishError::Claimed {
            as_of: run.as_of,
            by: format!("run {}", newer.claimed_by),
        }
    }

    /// Writes `record` if the stored one is still `expected`.
    async fn write(
        &self,
        store: &dyn ObjectStore,
        record: &DateRecord,
        expected: Option<UpdateVersion>,
        run: &PublishingRun,
    ) -> Result<(), SwapError> {
        let location = self.location(record.as_of);
        let body = serde_json::to_vec_pretty(record).expect("a date record serialises");
        self.storage
            .write(
                &location,
                store,
                body,
                (expected.as_ref(), run.single_writer),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(run_id: &str) -> PublishingRun {
        PublishingRun {
            pipeline: "p".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            run_id: run_id.into(),
            ended_runs: Default::default(),
            single_writer: false,
        }
    }

    fn decision(run_id: &str, token: u64) -> Decision {
        Decision {
            run_id: run_id.into(),
            token,
            decided_at: Utc::now(),
            outputs: Vec::new(),
        }
    }

    fn journal(name: &str) -> Journal {
        let state = Location::parse(&format!("memory:///journal-test/{name}/")).unwrap();
        Journal::in_state(Storage::new(), &state, "p")
    }

    #[tokio::test]
    async fn only_the_newest_claim_decides_and_an_older_token_cannot_claim() {
        let journal = journal("newest");
        let (old, new) = (run("old"), run("new"));
        assert_eq!(journal.claim(&old, 5).await.unwrap(), None);
        assert_eq!(journal.claim(&new, 7).await.unwrap(), None);
        // The run that took the lease over claimed in between: the old one cannot decide,
        // nor claim again.
        let refused = journal.decide(&old, &decision("old", 5)).await.unwrap_err();
        assert!(matches!(refused, PublishError::Claimed { ref by, .. } if by == "run new"));
        assert!(matches!(
            journal.claim(&old, 5).await.unwrap_err(),
            PublishError::Claimed { .. }
        ));
        let decided = decision("new", 7);
        journal.decide(&new, &decided).await.unwrap();
        // A retried decision whose first write landed succeeds.
        journal.decide(&new, &decided).await.unwrap();
        assert_eq!(
            journal.decided(new.as_of).await.unwrap(),
            Some(decided.clone())
        );
        // The next claim is handed the decision, to complete what it left.
        assert_eq!(journal.claim(&run("next"), 9).await.unwrap(), Some(decided));
    }
}
