//! How a run fails, and what a failure is told with: the disk that filled up, the source
//! file that does not decode.

use chrono::NaiveDate;

use crate::cancel::CancelReason;
use crate::engine::{Engine, EngineError};
use crate::pipeline::{Pipeline, SelectError};
use crate::publish::PublishError;

use super::{CheckResult, CheckStatus};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("could not create a scratch folder for intermediate results")]
    Scratch(#[source] std::io::Error),
    #[error(
        "a disk filled up (no space left on device): {disks}. Free space there, or move what \
         fills it: segflow keeps intermediate results and spill files in its scratch folder \
         (point TMPDIR at a bigger disk, `TMPDIR=/mnt/big segflow run ...`; engine.scratch \
         moves the intermediate results alone), and writes each output where its url says"
    )]
    DiskFull {
        /// The local places the run writes to, on the disks that are (nearly) full.
        disks: String,
        #[source]
        source: Box<RunError>,
    },
    #[error(
        "reading a source failed, but every source file read back whole afterwards: a storage \
         or network failure, most likely; run again"
    )]
    ReadFailed(#[source] Box<RunError>),
    #[error("{} steps do not plan:{}", .0.len(), each_on_a_line(.0))]
    Steps(Vec<RunError>),
    #[error("the run was cancelled: {0}")]
    Cancelled(CancelReason),
    #[error("{} of the run failed, so nothing was published:{}", checks_failed(.0), failed_checks(.0))]
    ChecksFailed(Vec<CheckResult>),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(
        "the run would write where it reads; one may not be in the other, or a run would \
         overwrite or delete what it reads. Give each a folder of its own:{}",
        .0.iter().map(|l| format!("\n  {l}")).collect::<String>()
    )]
    Collisions(Vec<String>),
    #[error("no output of the pipeline is published for {as_of}")]
    NothingPublished { as_of: NaiveDate },
    #[error("the run crashed: {0}")]
    Crashed(String),
}

fn checks_failed(checks: &[CheckResult]) -> String {
    match checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .count()
    {
        1 => "a check".to_string(),
        n => format!("{n} checks"),
    }
}

fn failed_checks(checks: &[CheckResult]) -> String {
    checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .map(|c| format!("\n  {}", c.summary()))
        .collect()
}

fn each_on_a_line(errors: &[RunError]) -> String {
    errors
        .iter()
        .map(|e| format!("\n  {}", crate::fault::one_line(e)))
        .collect()
}

impl RunError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            RunError::Engine(e) => e.fault(),
            RunError::Publish(e) => e.fault(),
            RunError::Steps(errors) => errors
                .iter()
                .map(RunError::fault)
                .max()
                .unwrap_or(crate::fault::Fault::User),
            RunError::Select(_)
            | RunError::ChecksFailed(_)
            | RunError::NothingPublished { .. }
            | RunError::Collisions(_) => crate::fault::Fault::User,
            RunError::Scratch(_)
            | RunError::DiskFull { .. }
            | RunError::ReadFailed(_)
            | RunError::Cancelled(_)
            | RunError::Crashed(_) => crate::fault::Fault::Environment,
        }
    }
}

/// Out of disk, DataFusion and the Parquet writer say only "No space left on device": say
/// where segflow writes, and how to move it.
pub(super) fn name_full_disk(error: RunError, pipeline: &Pipeline) -> RunError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut full = false;
    while let Some(current) = cause {
        let io_full = current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
        full |= io_full || current.to_string().contains("No space left on device");
        cause = current.source();
    }
    if !full {
        return error;
    }
    RunError::DiskFull {
        disks: full_disks(pipeline),
        source: Box::new(error),
    }
}

/// Where a run writes on local disks (the scratch folder, local outputs), grouped by disk:
/// those nearly out of space, or all of them if none is (something freed space since).
fn full_disks(pipeline: &Pipeline) -> String {
    /// Less than this left counts as full: a write that failed for space left little.
    const NEARLY_FULL: u64 = 64 << 20;
    #[derive(Default)]
    struct OnDisk {
        folders: Vec<String>,
        outputs: Vec<(String, std::path::PathBuf)>,
    }
    let temp = std::env::temp_dir();
    let mut folders = Vec::new();
    match pipeline
        .engine
        .scratch
        .as_ref()
        .and_then(|s| s.local_path())
    {
        Some(scratch) => {
            folders.push((format!("the scratch folder {}", scratch.display()), scratch));
            folders.push((
                format!("the spill folder {} (TMPDIR)", temp.display()),
                temp,
            ));
        }
        None => folders.push((format!("the scratch folder {}", temp.display()), temp)),
    }
    let outputs = pipeline
        .outputs
        .iter()
        .filter_map(|o| Some((o.table.clone(), o.location.local_path()?)));
    let mut disks: Vec<(crate::storage::DiskSpace, OnDisk)> = Vec::new();
    let places = folders
        .into_iter()
        .map(|f| (true, f))
        .chain(outputs.map(|o| (false, o)));
    for (is_folder, (name, path)) in places {
        let Some(space) = crate::storage::space_of(&path) else {
            continue;
        };
        let at = match disks.iter().position(|(known, _)| known.disk == space.disk) {
            Some(at) => at,
            None => {
                disks.push((space, OnDisk::default()));
                disks.len() - 1
            }
        };
        let on_disk = &mut disks[at].1;
        match is_folder {
            true => on_disk.folders.push(name),
            false => on_disk.outputs.push((name, path)),
        }
    }
    let nearly_full = disks.iter().any(|(space, _)| space.available < NEARLY_FULL);
    disks
        .iter()
        .filter(|(space, _)| !nearly_full || space.available < NEARLY_FULL)
        .map(|(space, on_disk)| {
            let mut names = on_disk.folders.clone();
            match on_disk.outputs.as_slice() {
                [] => {}
                [(table, path)] => names.push(format!("output '{table}' at {}", path.display())),
                several => {
                    let tables: Vec<&str> = several.iter().map(|(t, _)| t.as_str()).collect();
                    let under = several
                        .iter()
                        .map(|(_, path)| path.as_path())
                        .reduce(common_folder)
                        .unwrap_or(std::path::Path::new("/"));
                    names.push(format!(
                        "the outputs {} under {}",
                        tables.join(", "),
                        under.display()
                    ));
                }
            }
            format!(
                "{} ({} KiB free on that disk)",
                names.join(" and "),
                space.available / 1024
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The deepest folder that holds both `a` and `b`.
fn common_folder<'a>(a: &'a std::path::Path, b: &std::path::Path) -> &'a std::path::Path {
    a.ancestors()
        .find(|folder| b.starts_with(folder))
        .unwrap_or(a)
}

/// A query that stopped at data that does not decode names no file: find it. When every file
/// reads back whole, the data was not the problem.
pub(super) async fn name_damaged_file(engine: &Engine, error: RunError) -> RunError {
    let unreadable = matches!(
        error,
        RunError::Engine(EngineError::UnreadableData { .. } | EngineError::UnparsedText { .. })
    );
    if !unreadable {
        return error;
    }
    match (engine.find_damaged_file().await, error) {
        (Some(damaged), _) => damaged.into(),
        // No file repeats it: the SQL's own cast failed.
        (None, RunError::Engine(EngineError::UnparsedText { otherwise })) => (*otherwise).into(),
        (None, error) => RunError::ReadFailed(Box::new(error)),
    }
}
