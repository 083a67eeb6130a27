//! Incremental steps whose results fold (`incremental.fold`): the step's SQL runs over the
//! files wholly before the as_of day's end together, and that one result (the settled fold)
//! is kept with the list of the files it covers. A later night reuses it when the files it
//! covers are still there unchanged, runs the step's SQL over the files settled since,
//! merges the two with the fold's SQL and keeps that instead; the files with rows after the
//! night are computed every run and merged last. A per-customer aggregate of every order ever
//! paid is then read from one kept table of customers, not from every order of the history.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Fields, SchemaRef};
use datafusion::common::Column;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, Expr, cast, col};
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::super::sources::SourceParts;
use super::super::{Engine, EngineError, Params, Scratch};
use super::cache::{CacheSpec, FOLDS, KeptFold, StepFolder, short_hex};
use super::{FilesDone, files_table, latest_time, write_one_file};
use crate::pipeline::Step;
use crate::storage::{Location, StorageError};

/// The files a kept fold covers, written beside it (`<digest>.files`) once its data is whole:
/// a fold without its list is not used.
#[derive(Debug, Serialize, Deserialize)]
struct Covered {
    /// Each file's key and the latest time among its rows.
    files: Vec<(String, Option<i64>)>,
}

/// One file of the source in this run: its listing, key and latest time.
struct RunFile<'a> {
    meta: &'a ObjectMeta,
    key: &'a str,
    latest: Option<i64>,
}

impl Engine {
    /// Registers a folded incremental step (see the module's comment) as the fold of its
    /// settled result and its open files' result.
    pub(super) async fn add_folded(
        &self,
        step: &Step,
        source: &SourceParts,
        chain: &[&Step],
        params: &Params,
        version: &str,
        (cache, scratch): (Option<&CacheSpec>, &Scratch),
    ) -> Result<FilesDone, EngineError> {
        let fold = step.fold_step().expect("a folded step");
        let as_of_end = params.as_of_end_micros();
        let step_root = cache.map(|c| c.root.join(&format!("{}/", step.name)));
        let folder = match &step_root {
            Some(root) => self.step_folder(root, version).await?,
            None => StepFolder::default(),
        };
        let full = cache.is_some_and(|c| c.full);
        let mut candidates: Vec<(&KeptFold, Covered)> = Vec::new();
        if !full {
            for kept in folder.folds.iter().filter(|f| f.version == version) {
                if let Some(covered) = self.read_covered(&kept.list).await {
                    candidates.push((kept, covered));
                }
            }
        }
        let recorded: HashMap<&str, Option<i64>> = candidates
            .iter()
            .flat_map(|(_, covered)| covered.files.iter())
            .map(|(key, latest)| (key.as_str(), *latest))
            .collect();
        let keys: Vec<String> = source
            .files
            .iter()
            .map(|file| self.file_key(source, file))
            .collect();
        let mut files = Vec::with_capacity(keys.len());
        for (meta, key) in source.files.iter().zip(&keys) {
            let known = self
                .latest_known(key)
                .or_else(|| recorded.get(key.as_str()).copied());
            let latest = match known {
                Some(latest) => latest,
                None => {
                    let url = super::super::text::file_url(&source.location, meta);
                    let rows = self
                        .file_frame(source, meta)
                        .map_err(|e| super::in_file(self.plan_error(step, e), &url))?;
                    let incremental = step.incremental.as_ref().expect("incremental");
                    latest_time(rows, &incremental.time)
                        .await
                        .map_err(|e| super::in_file(self.execute_error(step, e), &url))?
                }
            };
            files.push(RunFile { meta, key, latest });
        }
        let schema = {
            let first = self
                .files_plan(source, &pairs(&[&files[0]]), chain, params)
                .await?;
            Arc::new(first.schema().as_arrow().clone())
        };
        let (settled, open): (Vec<&RunFile>, Vec<&RunFile>) = files
            .iter()
            .partition(|f| f.latest.is_none_or(|latest| latest < as_of_end));
        let settled_keys: BTreeSet<&str> = settled.iter().map(|f| f.key).collect();
        // The kept fold that covers the most of the settled files and nothing else.
        let base = candidates
            .iter()
            .filter(|(_, covered)| {
                covered
                    .files
                    .iter()
                    .all(|(key, _)| settled_keys.contains(key.as_str()))
            })
            .max_by_key(|(_, covered)| covered.files.len());
        let covered: BTreeSet<&str> = base
            .map(|(_, covered)| covered.files.iter().map(|(k, _)| k.as_str()).collect())
            .unwrap_or_default();
        let new: Vec<&RunFile> = settled
            .iter()
            .copied()
            .filter(|f| !covered.contains(f.key))
            .collect();
        let digest = {
            let mut hasher = blake3::Hasher::new();
            for key in &settled_keys {
                hasher.update(key.as_bytes());
                hasher.update(&[0]);
            }
            short_hex(hasher.finalize())
        };
        let settled_result: Option<Location> = match (base, new.is_empty()) {
            _ if settled.is_empty() => None,
            (Some((kept, _)), true) => Some(kept.data.clone()),
            _ => {
                let computed = self.files_plan(source, &pairs(&new), chain, params).await?;
                let frame = match base {
                    None => computed,
                    Some((kept, _)) => {
                        let kept_rows = self.kept_table(step, &kept.data, &schema)?;
                        self.folded(&fold, &schema, kept_rows.union(computed), params)
                            .await?
                    }
                };
                let data = match &step_root {
                    Some(root) => root.join(&format!("{version}/{FOLDS}/{digest}.parquet")),
                    None => scratch.target_of(&step.name).folder.join("settled.parquet"),
                };
                write_one_file(frame, &data)
                    .await
                    .map_err(|e| self.execute_error(step, e))?;
                if let Some(root) = &step_root {
                    let list = root.join(&format!("{version}/{FOLDS}/{digest}.files"));
                    let covered = Covered {
                        files: settled
                            .iter()
                            .map(|f| (f.key.to_string(), f.latest))
                            .collect(),
                    };
                    self.write_covered(&list, &covered).await?;
                }
                Some(data)
            }
        };
        let settled_frame = match &settled_result {
            None => None,
            Some(data) => Some(self.kept_table(step, data, &schema)?),
        };
        let open_frame = match open.is_empty() {
            true => None,
            false => Some(
                self.files_plan(source, &pairs(&open), chain, params)
                    .await?,
            ),
        };
        // One part is already folded, and is the step's table as it is; the fold is planned
        // over it all the same, so that a broken fold fails every night, not only those
        // with two parts.
        let table = match (settled_frame, open_frame) {
            (Some(settled), Some(open)) => {
                self.folded(&fold, &schema, settled.union(open), params)
                    .await?
            }
            (Some(only), None) | (None, Some(only)) => {
                self.folded(&fold, &schema, Ok(only.clone()), params)
                    .await?;
                only
            }
            (None, None) => unreachable!("a source has files"),
        };
        self.ctx
            .register_table(step.name.as_str(), table.into_view())
            .map_err(|e| self.plan_error(step, e))?;
        if let Some(root) = &step_root {
            let current = settled_result.is_some().then_some(digest.as_str());
            self.forget_stale(root, &folder, version, &Default::default())
                .await;
            self.forget_stale_folds(root, &folder, version, current)
                .await;
        }
        let computed = (new.len() + open.len()) as u64;
        Ok(FilesDone {
            computed,
            reused: files.len() as u64 - computed,
        })
    }

    /// The fold's SQL planned over `parts` (two results of the step, unioned), which it reads
    /// under the step's name, with the step's columns and types: a fold that sums a sum
    /// widens its decimals, and a result must read the same whichever way it was made.
    pub(super) async fn folded(
        &self,
        fold: &Step,
        schema: &SchemaRef,
        parts: Result<DataFrame, DataFusionError>,
        params: &Params,
    ) -> Result<DataFrame, EngineError> {
        let parts = parts.map_err(|e| self.plan_error(fold, e))?;
        let ctx = self.file_context();
        ctx.register_table(fold.name.as_str(), parts.into_view())
            .map_err(|e| self.plan_error(fold, e))?;
        let folded = self.plan_in(&ctx, fold, params).await?;
        let names =
            |fields: &Fields| -> Vec<String> { fields.iter().map(|f| f.name().clone()).collect() };
        let (wanted, made) = (
            names(schema.fields()),
            names(folded.schema().as_arrow().fields()),
        );
        if wanted != made {
            return Err(self.plan_message(
                fold,
                format!(
                    "the fold must return the step's columns in the step's order ({}), but \
                     it returns ({})",
                    wanted.join(", "),
                    made.join(", ")
                ),
            ));
        }
        let columns: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|field| {
                cast(
                    col(Column::new_unqualified(field.name())),
                    field.data_type().clone(),
                )
                .alias(field.name())
            })
            .collect();
        folded.select(columns).map_err(|e| self.plan_error(fold, e))
    }

    /// A kept (or just written) settled fold as a table of the step's schema; its file is
    /// named if it fails to decode.
    fn kept_table(
        &self,
        step: &Step,
        data: &Location,
        schema: &SchemaRef,
    ) -> Result<DataFrame, EngineError> {
        self.remember_kept(&step.name, std::iter::once(data.to_string()));
        let table = files_table(&[data.as_str()], Arc::new(ParquetFormat::default()), schema)
            .and_then(|table| self.ctx.read_table(table))
            .map_err(|e| self.plan_error(step, e))?;
        Ok(table)
    }

    /// The list of files a kept fold covers; None when it cannot be read (a fold being
    /// written, or damaged), so that the fold is not used.
    async fn read_covered(&self, list: &Location) -> Option<Covered> {
        let store = self.storage.store(list, &Default::default()).ok()?;
        let bytes = store.get(&list.path()).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    async fn write_covered(&self, list: &Location, covered: &Covered) -> Result<(), EngineError> {
        let store = self.storage.store(list, &Default::default())?;
        let json = serde_json::to_vec(covered).expect("a list of files serialises");
        store
            .put(&list.path(), json.into())
            .await
            .map_err(|source| StorageError::Write {
                url: list.to_string(),
                source,
            })?;
        Ok(())
    }
}

fn pairs<'a>(files: &[&'a RunFile<'a>]) -> Vec<(&'a ObjectMeta, &'a str)> {
    files.iter().map(|f| (f.meta, f.key)).collect()
}
