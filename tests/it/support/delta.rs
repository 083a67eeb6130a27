//! Delta tables read by Delta readers that know nothing of segflow (the `deltalake` Python
//! package and polars, which `.ci/run` installs), and pipelines edited to publish Delta.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run;

/// Runs a Python script of Delta readers with `args`; its stdout. The script ends with
/// `os._exit`: `deltalake`'s runtime threads sometimes abort the interpreter's own exit
/// ("terminate called without an active exception") after the work is done.
pub fn python(script: &str, args: &[&str]) -> String {
    let script = format!("{script}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n");
    let ran = run(Command::new("python3").args(["-c", &script]).args(args));
    assert_eq!(
        ran.code, 0,
        "the Delta readers failed (bash .ci/run installs deltalake and polars): {ran:?}"
    );
    ran.stdout
}

/// Every Delta table under `out`: each date's files all exist, are one run's, and hold the
/// rows the log counts; the number of tables read.
pub const CONSISTENT: &str = r#"
import os, sys
import deltalake

out = sys.argv[1]
tables = 0
for name in sorted(os.listdir(out)):
    table = deltalake.DeltaTable(f"{out}/{name}")
    files = table.file_uris()
    assert all(os.path.exists(f) for f in files), (name, files)
    runs = {}
    for f in files:
        date = f.split("/as_of=")[1].split("/")[0]
        runs.setdefault(date, set()).add(os.path.basename(f).split("-")[1])
    assert all(len(r) == 1 for r in runs.values()), (name, runs)
    counted = sum(table.get_add_actions(flatten=True).column("num_records").to_pylist())
    assert table.to_pyarrow_table().num_rows == counted, name
    tables += 1
print(tables)
"#;

/// Every output of a pipeline that [`super::project::many_outputs`] wrote, published as Delta.
pub fn outputs_as_delta(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let delta: String = text
        .lines()
        .map(|line| match line.strip_suffix("/ }") {
            Some(start) if line.starts_with("  - { table:") => {
                format!("{start}/, format: delta }}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(file, delta).unwrap();
}

/// Every Delta table under `out` is whole for `as_of` (see CONSISTENT); the run whose files
/// each holds for that date, table by table.
pub fn delta_runs(out: &Path, as_of: &str, context: &str) -> Vec<String> {
    const RUNS: &str = r#"
import os, sys
import deltalake
out, as_of = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(out)):
    files = deltalake.DeltaTable(f"{out}/{name}").file_uris()
    assert all(os.path.exists(f) for f in files), (name, files)
    runs = {os.path.basename(f).split("-")[1] for f in files if f"/as_of={as_of}/" in f}
    assert len(runs) == 1, (name, runs)
    print(runs.pop())
"#;
    let read = python(CONSISTENT, &[out.to_str().unwrap()]);
    assert!(!read.trim().is_empty(), "{context}");
    python(RUNS, &[out.to_str().unwrap(), as_of])
        .lines()
        .map(str::to_string)
        .collect()
}

/// A copy of the shipped pipeline `shipped` with every output published as Delta, beside it.
pub fn delta_pipeline(shipped: &Path) -> PathBuf {
    let path = shipped.with_file_name("delta.yaml");
    let shipped = std::fs::read_to_string(shipped).unwrap();
    let mut outputs = 0;
    let text: String = shipped
        .lines()
        .map(|line| match line.strip_suffix("/\" }") {
            Some(start) if line.trim_start().starts_with("- { table:") => {
                outputs += 1;
                format!("{start}/\", format: delta }}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert_eq!(
        outputs,
        super::SHIPPED_OUTPUTS.len(),
        "every shipped output edited"
    );
    std::fs::write(&path, text).unwrap();
    path
}
