//! The README's two commands (`cargo run -- demo`, the quick build without the `cluster` and
//! `delta` features, then `.ci/run`'s `cargo test --features full`) share one build: a dependency
//! compiled for `cargo run` must be reused by the tests, or DataFusion is compiled twice.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each library unit of a build as (package, features, opt-level), from cargo's unit graph.
fn library_units(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let scratch = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(args)
        .args([
            "--locked",
            "--offline",
            "--unit-graph",
            "-Z",
            "unstable-options",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The unit graph is a nightly flag; it only reads the plan and builds nothing, and a
        // target folder of its own keeps it off the lock of the build that runs this test.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", scratch.path());
    let output = crate::support::run(&mut command);
    assert_eq!(output.code, 0, "{output:?}");
    let graph: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for unit in graph["units"].as_array().unwrap() {
        let package = unit["pkg_id"].as_str().unwrap();
        if unit["mode"] != "build" || package.starts_with("path+") {
            continue;
        }
        units.entry(package.to_owned()).or_default().insert(format!(
            "{} opt {}",
            unit["features"], unit["profile"]["opt_level"]
        ));
    }
    units
}

#[test]
fn cargo_run_and_cargo_test_share_every_dependency_build() {
    let run = library_units(&["build", "--bin", "segflow"]);
    let test = library_units(&["test", "--no-run", "--features", "full"]);
    let split: Vec<String> = run
        .iter()
        .filter(|(package, builds)| test.get(*package).is_none_or(|t| !builds.is_subset(t)))
        .map(|(package, builds)| format!("{package}: run {builds:?}, test {:?}", test.get(package)))
        .collect();
    assert!(
        split.is_empty(),
        "these dependencies build differently for `cargo run` and `cargo test --features full`; \
         turn on the test build's features in Cargo.toml's unification block ([build-dependencies] \
         for a crate that build scripts or proc macros use):\n{}",
        split.join("\n")
    );
    assert!(
        run.keys().any(|p| p.contains("datafusion@55")),
        "the graph lists DataFusion"
    );
    // What the features are for: the quick build compiles neither Ballista nor delta-rs.
    let optional: Vec<&String> = run
        .keys()
        .filter(|p| p.contains("#ballista") || p.contains("#deltalake"))
        .collect();
    assert!(
        optional.is_empty(),
        "the quick build (`cargo run`) compiles {optional:?}; they belong behind the cluster \
         and delta features"
    );
    assert!(
        test.keys().any(|p| p.contains("#ballista-scheduler@"))
            && test.keys().any(|p| p.contains("#deltalake-core@")),
        "the full build lists Ballista and delta-rs"
    );
}
