//! The Python the tests run beside segflow, all in `tests/it/oracles/`: independent checks
//! that compute from the raw data what segflow must publish, writers of shops as other tools
//! land them, and the browser driver.

use std::path::PathBuf;
use std::process::Command;

use super::process::{Outcome, run};

/// The path of `tests/it/oracles/<script>`.
pub fn oracle(script: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/oracles")
        .join(script);
    assert!(path.is_file(), "no oracle {}", path.display());
    path
}

/// `python3 tests/it/oracles/<script> <args>`, to its end within the commands' deadline.
pub fn python_script(script: &str, args: &[&str]) -> Outcome {
    run(Command::new("python3").arg(oracle(script)).args(args))
}
