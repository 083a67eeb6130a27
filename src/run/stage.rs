//! Staging: every output written into its publication's staging folder, a few at once,
//! with the terminal told which are being written.

use std::collections::BTreeSet;
use std::time::Instant;

use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::engine::Engine;
use crate::pipeline::Pipeline;
use crate::progress::{Progress, thousands};
use crate::publish::Publication;

use super::Timing;
use super::error::RunError;

/// How many outputs are written at once. Each write runs its own query and DataFusion's
/// Parquet writer, which encodes in parallel too; writing two at once keeps both cores of a
/// small machine busy through the single-threaded parts of each (BENCHMARKS.md).
const CONCURRENT_WRITES: usize = 2;

/// Has the engine write every output into its publication's staging folder (but those that
/// a materialised step wrote already: `written_by_steps`), a few at a time, and hands
/// each publication its files.
pub(super) async fn stage_outputs(
    pipeline: &Pipeline,
    engine: &Engine,
    publications: &mut [Publication],
    written_by_steps: &BTreeSet<usize>,
    progress: &Progress,
) -> Result<Vec<Timing>, RunError> {
    let writing = Writing {
        progress,
        count: pipeline.outputs.len(),
        tables: Default::default(),
        done: Default::default(),
    };
    let writes: Vec<_> = pipeline
        .outputs
        .iter()
        .zip(publications.iter_mut())
        .enumerate()
        .map(|(index, (output, publication))| {
            let written = written_by_steps.contains(&index);
            stage_output(
                pipeline,
                engine,
                &output.table,
                publication,
                written,
                &writing,
            )
            .boxed()
        })
        .collect();
    futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect()
        .await
}

/// Stages one output: has the engine write it unless `written` already, then hands the
/// publication its files.
async fn stage_output(
    pipeline: &Pipeline,
    engine: &Engine,
    table: &str,
    publication: &mut Publication,
    written: bool,
    writing: &Writing<'_>,
) -> Result<Timing, RunError> {
    let started = Instant::now();
    let schema = if written {
        engine.published_schema(table).await?
    } else {
        writing.started(table);
        let (schema, _) = engine.write(table, publication.staging()).await?;
        writing.ended(table);
        schema
    };
    let rows = publication.staged(schema).await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(pipeline = %pipeline.name, table = %table, rows, seconds, "Output staged.");
    let rows_text = thousands(rows);
    writing.done(if written {
        format!("staged {table}: {rows_text} rows (written by its step)")
    } else {
        format!("wrote {table}: {rows_text} rows ({seconds:.2} s)")
    });
    Ok(Timing {
        name: table.to_string(),
        seconds,
        rows: Some(rows),
        files: None,
    })
}

/// The terminal's view of outputs written at once: which are being written, and how many
/// are done.
struct Writing<'a> {
    progress: &'a Progress,
    count: usize,
    tables: std::sync::Mutex<Vec<String>>,
    done: std::sync::atomic::AtomicUsize,
}

impl Writing<'_> {
    fn started(&self, table: &str) {
        let mut tables = self.tables.lock().expect("progress lock");
        tables.push(table.to_string());
        self.show(&tables);
    }

    fn ended(&self, table: &str) {
        let mut tables = self.tables.lock().expect("progress lock");
        tables.retain(|t| t != table);
        self.show(&tables);
    }

    fn show(&self, tables: &[String]) {
        if !tables.is_empty() {
            self.progress
                .message(format!("writing {}", tables.join(", ")));
        }
    }

    fn done(&self, what: String) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.progress.done(format!("{done}/{} {what}", self.count));
    }
}
