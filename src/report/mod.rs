//! `segflow report`: one self-contained HTML page of a pipeline's publication of one date,
//! drawn from what was published (the outputs' files) and the run history, never by
//! computing anything again: the RFM grids, the segments and how they moved, their
//! portraits, the win-back list, the predictions, the last runs and the lineage.

mod columns;
mod format;
mod gather;
mod model;
mod page;
mod svg;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use object_store::{ObjectStoreExt, PutPayload};

pub use gather::gather;
pub use model::{
    Bin, Cell, Column, Grid, Group, Predictions, RECENT_RUNS, Report, SIZE_HISTORY, Section,
    SegmentLine, Segments, Table, Value, ValueKind, Winback,
};

use crate::history::{HistoryError, RunHistory};
use crate::pipeline::{Pipeline, ReportSpec};
use crate::publish::PublishError;
use crate::storage::{Location, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{pipeline} has nothing published for as_of {date}{}", latest_text(.latest))]
    NotPublished {
        pipeline: String,
        date: NaiveDate,
        latest: Option<NaiveDate>,
    },
    #[error("cannot read the published {table} of as_of {as_of}")]
    Read {
        table: String,
        as_of: NaiveDate,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("cannot write the report to {url}")]
    Write {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn latest_text(latest: &Option<NaiveDate>) -> String {
    match latest {
        Some(date) => format!(" (its latest publication is {date}; leave out --as-of for it)"),
        None => " (it has published nothing yet)".to_string(),
    }
}

impl ReportError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            ReportError::NotPublished { .. } => crate::fault::Fault::User,
            ReportError::Publish(e) => e.fault(),
            ReportError::History(e) => e.fault(),
            ReportError::Storage(e) => e.fault(),
            ReportError::Read { .. } | ReportError::Write { .. } => {
                crate::fault::Fault::Environment
            }
        }
    }
}

impl Report {
    /// The page, as one HTML file.
    pub fn html(&self) -> String {
        page::render(self)
    }
}

/// Writes the report of `pipeline`'s latest publication where `spec` says: what a run with
/// `report:` does after it published, so that the page shows the newest date even after a
/// backfill of older ones.
pub async fn write_latest(
    pipeline: &Pipeline,
    storage: &Storage,
    history: &RunHistory,
    spec: &ReportSpec,
) -> Result<(), ReportError> {
    let report = gather(pipeline, storage, history, None).await?;
    write(storage, &spec.location, &spec.options, report.html()).await
}

/// Writes `html` to `location` in one put, so that a reader sees the previous report or
/// this one, never half of it.
pub async fn write(
    storage: &Storage,
    location: &Location,
    options: &BTreeMap<String, String>,
    html: String,
) -> Result<(), ReportError> {
    let store = storage.store(location, options)?;
    store
        .put(&location.path(), PutPayload::from(html.into_bytes()))
        .await
        .map_err(|source| ReportError::Write {
            url: location.to_string(),
            source,
        })?;
    Ok(())
}
