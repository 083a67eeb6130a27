//! The shipped pipeline and SQL, embedded in the binary so that `segflow demo` and
//! `segflow init` work from any folder and from an installed binary.

use std::path::{Path, PathBuf};

use super::Failure;

static SHIPPED_PIPELINES: include_dir::Dir =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/pipelines");
static SHIPPED_QUERIES: include_dir::Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/queries");

/// Writes the shipped files that `dir` does not have yet; a file already there is left as it
/// is, edited or not, so that a second demo never undoes a user's changes. Returns the files
/// kept that differ from the shipped ones.
pub(super) fn write_shipped(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let failed = |e: std::io::Error| {
        Failure::Environment(anyhow::anyhow!(
            "cannot write the project files to {}: {e}",
            dir.display()
        ))
    };
    let mut kept = Vec::new();
    for (folder, tree) in [
        ("pipelines", &SHIPPED_PIPELINES),
        ("queries", &SHIPPED_QUERIES),
    ] {
        for file in files_of(tree) {
            let target = dir.join(folder).join(file.path());
            match std::fs::read(&target) {
                Ok(existing) if existing != file.contents() => kept.push(target),
                Ok(_) => {}
                Err(_) => {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(failed)?;
                    }
                    std::fs::write(&target, file.contents()).map_err(failed)?;
                }
            }
        }
    }
    Ok(kept)
}

fn files_of<'a>(dir: &'a include_dir::Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut files: Vec<_> = dir.files().collect();
    for sub in dir.dirs() {
        files.extend(files_of(sub));
    }
    files
}
