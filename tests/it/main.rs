//! Where a test goes: in the folder of the part of segflow it would catch broken, in the file
//! named for its command or topic, on a shop from `support::shops` (one of three sizes).
//!
//! - `commands/`: a command's or flag's own behaviour and messages (init, validate, render and
//!   show, preview, vacuum, runs and backfill, report, cluster, bad input).
//! - `scheduling/`: when runs happen and how they meet: the daemon, its slots and retries,
//!   leases, competing runs, killed runs, the status page, webhooks.
//! - `sources/`: how inputs are read: files and folders, CSV and JSON, landings' layouts,
//!   versions of rows, time zones, currencies.
//! - `results/`: what the shipped pipeline computes, against oracles: segments, RFM, checks,
//!   predictions, incremental steps, the hand-built shop's known answers.
//! - `outputs/`: how and where results are published and read back: Delta, S3, BI readers.
//! - `docs/`: the README and `docs/` as written, and the build they promise.
//! - `support/`: what tests share, and no tests; `oracles/`: the Python the tests run.
//!
//! The tests run the real binary on real Parquet files, with a real S3 server on loopback,
//! real readers (DuckDB, pyarrow, Delta readers) and a real browser (Chromium). Each process
//! a test starts, and each wait on a process or the network, has a deadline.

// One test binary: its modules share helpers with `pub`, and nothing here is an API.
#![allow(unreachable_pub)]

// The tests cover every feature, and none is skipped quietly in a build that lacks one.
#[cfg(not(all(feature = "cluster", feature = "delta", feature = "serve")))]
compile_error!(
    "the integration tests cover the cluster, Delta Lake and serve too: run them with `cargo \
     test --features full`, as .ci/run does (docs/development.md, \"Features\")"
);

mod support;

mod commands {
    mod bad_input;
    mod cluster;
    mod init;
    mod inspect;
    mod preview;
    mod report;
    mod runs_and_backfill;
    mod vacuum;
    mod validate;
}

mod scheduling {
    mod competing_runs;
    mod daemon;
    mod killed_runs;
    mod leases;
    mod notify;
    mod slots;
    mod status_page;
}

mod sources {
    mod currencies;
    mod layouts;
    mod parquet;
    mod text;
    mod versions;
    mod zones;
}

mod results {
    mod checks;
    mod cross_check;
    mod edges;
    mod end_to_end;
    mod incremental;
    mod known_answers;
    mod labels;
    mod predictions;
}

mod outputs {
    mod delta;
    mod readers;
    mod s3;
    mod serve;
}

mod docs {
    mod build;
    mod pages;
}
