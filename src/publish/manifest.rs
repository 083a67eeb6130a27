//! Parquet files listed by a JSON manifest. A run streams an output's rows into run-unique
//! files in a staging folder, moves them into `as_of=YYYY-MM-DD/` when it prepares the
//! date's publication, and, once the date is decided, writes the manifest. The manifest
//! write is the output's commit point: a reader that follows the manifest sees the previous
//! run's files until it lands, and only this run's files after.
//!
//! The manifest write is conditional: it replaces the manifest it read only if that is still
//! there and holds no greater fencing token (see [`super::journal`]), so a run overtaken by
//! a newer decision, say one that stalled past its lease while a successor published, fails
//! its commit instead of overwriting, and withdraws the files it moved. After a commit, the
//! files that the replaced manifest listed are deleted, and those that ended runs moved but
//! never listed; never a file that a manifest this commit did not replace may list.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::staging::{self, META_DIR, PublishedFile};
use super::{
    Column, Committed, Decision, OutputAt, Partition, Prepared, PublishError, PublishingRun, Sink,
    WRITE_TRIES, store_error,
};
use crate::pipeline::Output;
use crate::storage::{Location, Storage, SwapError, read_versioned};

const MANIFEST_FORMAT: u32 = 1;

/// The record of one published output of one run. Readers that want an atomic view read
/// this file and then exactly the files it lists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Manifest {
    format: u32,
    pipeline: String,
    table: String,
    as_of: NaiveDate,
    run_id: String,
    committed_at: DateTime<Utc>,
    rows: u64,
    /// Paths relative to the output URL.
    files: Vec<PublishedFile>,
    schema: Vec<Column>,
    /// The fencing token of the run's decision (see [`super::journal`]); absent from
    /// manifests written before there were tokens, which any run replaces.
    #[serde(default)]
    token: u64,
}

impl Manifest {
    /// The publication this manifest records, for an output at `location`.
    fn committed(&self, location: &Location) -> Committed {
        Committed {
            files: self.files.iter().map(|f| location.join(&f.path)).collect(),
            table: self.table.clone(),
            as_of: self.as_of,
            run_id: self.run_id.clone(),
            committed_at: self.committed_at,
            rows: self.rows,
        }
    }
}

/// An output's manifest for a date as it was read, with its version, for a commit to be
/// conditional on.
#[derive(Debug, Default)]
struct Current {
    version: Option<UpdateVersion>,
    manifest: Option<Manifest>,
}

/// An output published as manifest-listed Parquet.
#[derive(Clone)]
pub(super) struct ManifestSink {
    at: OutputAt,
}

impl ManifestSink {
    pub(super) fn new(storage: Storage, output: &Output) -> ManifestSink {
        ManifestSink {
            at: OutputAt::new(storage, output),
        }
    }

    fn manifest_location(&self, as_of: NaiveDate) -> Location {
        self.at
            .location
            .join(&format!("{META_DIR}/manifests/as_of={as_of}.json"))
    }

    /// The manifest for `as_of` now, and why it could not be read if it does not parse.
    async fn read_current(
        &self,
        store: &dyn ObjectStore,
        as_of: NaiveDate,
    ) -> Result<(Current, Option<PublishError>), PublishError> {
        let location = self.manifest_location(as_of);
        let found = read_versioned(store, &location.path())
            .await
            .map_err(|source| {
                store_error(
                    &self.at.table,
                    "read the manifest",
                    &location.path(),
                    source,
                )
            })?;
        let Some(found) = found else {
            return Ok((Current::default(), None));
        };
        let (manifest, problem) = match serde_json::from_slice(&found.bytes) {
            Ok(manifest) => (Some(manifest), None),
            Err(e) => (
                None,
                Some(PublishError::BadManifest {
                    table: self.at.table.clone(),
                    file: location.to_string(),
                    reason: e.to_string(),
                }),
            ),
        };
        let current = Current {
            version: Some(found.version),
            manifest,
        };
        Ok((current, problem))
    }

    async fn manifest(&self, as_of: NaiveDate) -> Result<Option<Manifest>, PublishError> {
        let store = self.at.store()?;
        match self.read_current(store.as_ref(), as_of).await? {
            (_, Some(problem)) => Err(problem),
            (current, None) => Ok(current.manifest),
        }
    }

    /// What the manifests folder holds: one manifest per committed date.
    async fn manifest_files(&self) -> Result<Vec<object_store::ObjectMeta>, PublishError> {
        let store = self.at.store()?;
        let folder = self.at.location.join(&format!("{META_DIR}/manifests/"));
        Ok(self.at.storage.list(&folder, store.as_ref()).await?)
    }

    /// The dates with a manifest before `as_of`, oldest first.
    async fn dates_before(&self, as_of: NaiveDate) -> Result<Vec<NaiveDate>, PublishError> {
        let mut dates: Vec<NaiveDate> = self
            .manifest_files()
            .await?
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                let date = name.strip_prefix("as_of=")?.strip_suffix(".json")?;
                crate::pipeline::parse_date(date)
            })
            .filter(|date| *date < as_of)
            .collect();
        dates.sort();
        Ok(dates)
    }

    async fn partition(&self, date: NaiveDate) -> Result<Option<Partition>, PublishError> {
        Ok(self.manifest(date).await?.map(|manifest| Partition {
            as_of: date,
            files: manifest.committed(&self.at.location).files,
        }))
    }
}

#[async_trait]
impl Sink for ManifestSink {
    async fn committed(&self, as_of: NaiveDate) -> Result<Option<Committed>, PublishError> {
        Ok(self
            .manifest(as_of)
            .await?
            .map(|m| m.committed(&self.at.location)))
    }

    async fn partitions_before(
        &self,
        as_of: NaiveDate,
        newest: Option<usize>,
    ) -> Result<Vec<Partition>, PublishError> {
        let mut dates = self.dates_before(as_of).await?;
        if let Some(newest) = newest {
            dates.drain(..dates.len().saturating_sub(newest));
        }
        let mut partitions = Vec::new();
        for date in dates {
            partitions.extend(self.partition(date).await?);
        }
        Ok(partitions)
    }

    /// The manifests folder's listing: every commit writes a manifest, which changes its
    /// name, size, or modification time and tag.
    async fn publications_fingerprint(&self) -> Result<Option<String>, PublishError> {
        let mut listed: Vec<String> = self
            .manifest_files()
            .await?
            .iter()
            .map(|meta| {
                format!(
                    "{} {} {} {}",
                    meta.location,
                    meta.size,
                    meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                    meta.e_tag.as_deref().unwrap_or_default()
                )
            })
            .collect();
        listed.sort();
        Ok(Some(listed.join("\n")))
    }

    /// One read of each date's manifest, where the trait's way reads each twice.
    async fn publications(&self) -> Result<Vec<Committed>, PublishError> {
        let mut all = Vec::new();
        for date in self.dates_before(NaiveDate::MAX).await? {
            all.extend(
                self.manifest(date)
                    .await?
                    .map(|m| m.committed(&self.at.location)),
            );
        }
        Ok(all)
    }

    async fn latest_before(&self, as_of: NaiveDate) -> Result<Option<Partition>, PublishError> {
        // A manifest that lists a date but no longer parses was a date's publication all
        // the same: the one before it is not the previous publication.
        match self.dates_before(as_of).await?.pop() {
            Some(date) => self.partition(date).await,
            None => Ok(None),
        }
    }

    /// The Parquet format keeps no old versions: a file a run wrote in a partition that the
    /// date's manifest does not list is a killed run's, once old enough.
    async fn vacuum(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<Location>, PublishError> {
        let store = self.at.store()?;
        let mut live: BTreeSet<String> = BTreeSet::new();
        for date in self.dates_before(NaiveDate::MAX).await? {
            if let Some(manifest) = self.manifest(date).await? {
                live.extend(manifest.files.into_iter().map(|f| f.path));
            }
        }
        let mut doomed: Vec<Path> = Vec::new();
        for object in self
            .at
            .storage
            .list(&self.at.location, store.as_ref())
            .await?
        {
            let relative = self.at.location.relative(&object.location);
            // Only files a run wrote (part-<run id>-<n>.zstd.parquet): a file someone else
            // put in a partition is not vacuum's to delete.
            let ours = object
                .location
                .filename()
                .is_some_and(staging::is_published_name);
            if relative.starts_with("as_of=")
                && ours
                && !live.contains(&relative)
                && object.last_modified < cutoff
            {
                doomed.push(object.location);
            }
        }
        let leftovers =
            staging::leftovers(&self.at.storage, store.as_ref(), &self.at.location, cutoff).await?;
        doomed.extend(leftovers.into_iter().map(|object| object.location));
        let output = (self.at.table.as_str(), &self.at.location);
        staging::delete_all(store.as_ref(), output, doomed, dry_run).await
    }

    /// Makes sure the store can fence at all, unless the run writes as the single writer.
    async fn ready(&self, run: &PublishingRun) -> Result<(), PublishError> {
        if run.single_writer {
            return Ok(());
        }
        let store = self.at.store()?;
        self.at
            .storage
            .check_swap(&self.at.location, store.as_ref())
            .await
            .map_err(|source| PublishError::Commit {
                table: self.at.table.clone(),
                source,
            })
    }

    async fn accepts(&self, _schema: &SchemaRef) -> Result<(), PublishError> {
        Ok(())
    }

    /// Writes the manifest if the one there holds no greater token, as one conditional
    /// write on the version read (the commit point), then deletes the files of the manifest
    /// it replaced. A manifest that does not parse (a hand edit, a store that lost half a
    /// write) is replaced all the same: a re-run is how it gets repaired.
    async fn apply(
        &self,
        run: &PublishingRun,
        decision: &Decision,
        prepared: &Prepared,
    ) -> Result<Committed, PublishError> {
        let table = self.at.table.as_str();
        let store = self.at.store()?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            pipeline: run.pipeline.clone(),
            table: table.to_string(),
            as_of: run.as_of,
            run_id: decision.run_id.clone(),
            committed_at: decision.decided_at,
            rows: prepared.rows(),
            files: prepared.files.clone(),
            schema: prepared.columns.clone(),
            token: decision.token,
        };
        let location = self.manifest_location(run.as_of);
        for _ in 0..WRITE_TRIES {
            let (current, problem) = self.read_current(store.as_ref(), run.as_of).await?;
            if let Some(error) = problem {
                tracing::warn!(%error, "The run replaces a manifest that is not valid.");
            }
            let live = current.manifest.as_ref();
            if live.is_some_and(|m| m.run_id == manifest.run_id && m.files == manifest.files) {
                // Committed already: by this run's first try, or by a run completing it.
                return Ok(manifest.committed(&self.at.location));
            }
            if let Some(newer) = live.filter(|m| decision.fenced() && m.token > decision.token) {
                return Err(PublishError::Overtaken {
                    table: table.to_string(),
                    as_of: run.as_of,
                    by: format!(" (run {})", newer.run_id),
                });
            }
            // An unfenced run keeps the token it replaces, so that the fencing of later
            // runs goes on from there.
            let manifest = Manifest {
                token: decision.token.max(live.map_or(0, |m| m.token)),
                ..manifest.clone()
            };
            let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
            let expected = current.version.as_ref();
            let written = self
                .at
                .storage
                .write(
                    &location,
                    store.as_ref(),
                    body,
                    (expected, run.single_writer),
                )
                .await;
            match written {
                Ok(()) => {
                    self.tidy(store.as_ref(), run, &manifest, current.manifest.as_ref())
                        .await;
                    return Ok(manifest.committed(&self.at.location));
                }
                // Another commit landed in between: read again whose it was.
                Err(SwapError::Changed { .. }) => continue,
                Err(refused @ (SwapError::Unsupported { .. } | SwapError::Locked { .. })) => {
                    return Err(PublishError::Commit {
                        table: table.to_string(),
                        source: refused,
                    });
                }
                Err(SwapError::Store { url, source }) => {
                    return Err(PublishError::Store {
                        table: table.to_string(),
                        action: "write the manifest",
                        file: url,
                        source,
                    });
                }
            }
        }
        Err(PublishError::Commit {
            table: table.to_string(),
            source: SwapError::Changed {
                url: location.to_string(),
            },
        })
    }
}

impl ManifestSink {
    /// After a commit: deletes the files of the manifest it replaced, the files of ended runs
    /// in the partition that no manifest lists (a run killed between moving and committing).
    /// Safe only now: a run that could still come to list them would hold an older token,
    /// and its commit is refused. The publication is live whatever happens here, so failures
    /// are only logged.
    async fn tidy(
        &self,
        store: &dyn ObjectStore,
        run: &PublishingRun,
        manifest: &Manifest,
        replaced: Option<&Manifest>,
    ) {
        let location = &self.at.location;
        let live: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let replaced = replaced.iter().flat_map(|m| m.files.iter());
        let mut doomed: Vec<Path> = replaced
            .filter(|f| !live.contains(f.path.as_str()))
            .map(|f| location.join(&f.path).path())
            .collect();
        let stranded =
            staging::stranded_in_partition(&self.at.storage, store, (location, run), &live);
        match stranded.await {
            Ok(stranded) => doomed.extend(stranded),
            Err(error) => {
                tracing::warn!(table = %self.at.table, %error, "Could not list the partition to tidy it.")
            }
        }
        for path in doomed {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(file = %path, %error, "Could not delete a superseded file; readers that follow the manifest do not see it.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::engine::ParquetTarget;
    use crate::pipeline::OutputFormat;
    use crate::publish::Publication;

    fn sink_and_run(name: &str) -> (ManifestSink, PublishingRun, Location, Output) {
        let location = Location::parse(&format!("memory:///publish-test/{name}/")).unwrap();
        let output = Output {
            table: name.into(),
            earlier: location.clone(),
            location: location.clone(),
            format: OutputFormat::Parquet,
            options: BTreeMap::new(),
        };
        let run = PublishingRun {
            pipeline: "test".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 1, 31).unwrap(),
            run_id: "run1".into(),
            ended_runs: BTreeSet::new(),
            single_writer: false,
        };
        let sink = ManifestSink::new(Storage::new(), &output);
        (sink, run, location, output)
    }

    /// Publishes what `sql` returns as the run's only output, unfenced.
    async fn publish(
        at: (&ManifestSink, &PublishingRun, &Output),
        ctx: &SessionContext,
        sql: &str,
        file_rows: Option<usize>,
    ) -> (u64, Committed, SchemaRef) {
        let (staged, committed, schema) = publish_with_token(at, ctx, sql, file_rows, 0).await;
        (staged, committed.unwrap(), schema)
    }

    /// [`publish`] by a run fenced with `token` (0: unfenced).
    async fn publish_with_token(
        (sink, run, output): (&ManifestSink, &PublishingRun, &Output),
        ctx: &SessionContext,
        sql: &str,
        file_rows: Option<usize>,
        token: u64,
    ) -> (u64, Result<Committed, PublishError>, SchemaRef) {
        let mut publication = Publication::begin(&sink.at.storage, output, run)
            .await
            .unwrap();
        let target = ParquetTarget {
            file_rows: file_rows.or(publication.staging().file_rows),
            ..publication.staging().clone()
        };
        let schema = write(ctx, sql, &target).await;
        let staged = publication.staged(Arc::clone(&schema)).await.unwrap();
        let prepared = publication.prepare().await.unwrap();
        let decision = Decision {
            run_id: run.run_id.clone(),
            token,
            decided_at: Utc::now(),
            outputs: vec![prepared],
        };
        (staged, publication.commit(&decision).await, schema)
    }

    #[tokio::test]
    async fn commits_are_ordered_by_token_and_an_unfenced_run_keeps_the_token_it_replaces() {
        let (sink, run, location, output) = sink_and_run("tokens");
        let ctx = SessionContext::new();
        ctx.register_object_store(
            location.store_url().as_ref(),
            sink.at.storage.store(&location, &BTreeMap::new()).unwrap(),
        );
        let sql = "SELECT 1 AS n";
        let run_as = |id: &str| PublishingRun {
            run_id: id.into(),
            ..run.clone()
        };
        let (b, c) = (run_as("b"), run_as("c"));
        let (_, fenced, _) = publish_with_token((&sink, &b, &output), &ctx, sql, None, 5).await;
        assert_eq!(fenced.unwrap().run_id, "b");
        // An older token is refused: the live publication is a newer run's.
        let (_, older, _) = publish_with_token((&sink, &c, &output), &ctx, sql, None, 3).await;
        assert!(
            matches!(older, Err(PublishError::Overtaken { .. })),
            "{older:?}"
        );
        assert_eq!(sink.manifest(run.as_of).await.unwrap().unwrap().token, 5);
        // An unfenced run (the demo) replaces it, and keeps its token for later runs.
        let (_, unfenced, _) = publish((&sink, &run, &output), &ctx, sql, None).await;
        assert_eq!(unfenced.run_id, run.run_id);
        assert_eq!(sink.manifest(run.as_of).await.unwrap().unwrap().token, 5);
        let (_, still_older, _) =
            publish_with_token((&sink, &c, &output), &ctx, sql, None, 4).await;
        assert!(matches!(still_older, Err(PublishError::Overtaken { .. })));
    }

    async fn write(ctx: &SessionContext, sql: &str, target: &ParquetTarget) -> SchemaRef {
        let frame = ctx.sql(sql).await.unwrap();
        let schema = Arc::new(frame.schema().as_arrow().clone());
        crate::engine::write_parquet(frame, target).await.unwrap();
        schema
    }

    #[tokio::test]
    async fn large_outputs_are_split_into_files_in_row_order() {
        let (sink, run, location, output) = sink_and_run("numbers");
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(300));
        let storage = sink.at.storage.clone();
        ctx.register_object_store(
            location.store_url().as_ref(),
            storage.store(&location, &BTreeMap::new()).unwrap(),
        );
        let sql = "SELECT * FROM generate_series(1, 3500) AS t(n) ORDER BY n";
        let (staged, committed, _) = publish((&sink, &run, &output), &ctx, sql, Some(1000)).await;
        assert_eq!(staged, 3500);
        assert_eq!(committed.rows, 3500);
        let manifest = sink.manifest(run.as_of).await.unwrap().unwrap();
        assert_eq!(manifest.committed(&location), committed);
        let names: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names.len(), manifest.files.len(), "file names are distinct");
        assert!(manifest.files.len() >= 3, "{:?}", manifest.files);
        // Read in the manifest's order, the files hold the rows in the query's order.
        let mut numbers = Vec::new();
        for (file, url) in manifest.files.iter().zip(&committed.files) {
            let batches = ctx
                .read_parquet(url.as_str(), Default::default())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(rows as u64, file.rows, "{}", file.path);
            for batch in batches {
                let column = batch
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                numbers.extend(column.values().iter().copied());
            }
        }
        assert_eq!(numbers, (1..=3500).collect::<Vec<i64>>());
        let partitions = sink
            .partitions_before(run.as_of.succ_opt().unwrap(), None)
            .await;
        let partitions = partitions.unwrap();
        assert_eq!(partitions.len(), 1);
        assert_eq!(partitions[0].files.len(), manifest.files.len());
    }

    #[tokio::test]
    async fn an_output_without_rows_is_one_file_with_its_columns() {
        let (sink, run, location, output) = sink_and_run("nothing");
        let ctx = SessionContext::new();
        ctx.register_object_store(
            location.store_url().as_ref(),
            sink.at.storage.store(&location, &BTreeMap::new()).unwrap(),
        );
        let sql =
            "SELECT n, CAST(n AS VARCHAR) AS name FROM generate_series(1, 10) AS t(n) WHERE n > 10";
        let (staged, committed, schema) = publish((&sink, &run, &output), &ctx, sql, None).await;
        assert_eq!(staged, 0);
        assert_eq!(committed.files.len(), 1);
        let frame = ctx
            .read_parquet(committed.files[0].as_str(), Default::default())
            .await
            .unwrap();
        assert_eq!(frame.schema().as_arrow().fields(), schema.fields());
        assert_eq!(frame.count().await.unwrap(), 0);
    }
}
