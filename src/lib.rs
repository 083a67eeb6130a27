//! segflow turns raw e-commerce Parquet into customer segments, as SQL pipelines declared in
//! YAML. Data flows one way through the modules: `pipeline` (what to run) -> `storage`
//! (where things live) -> `engine` (DataFusion, with `segments` saying who is a member and
//! `functions` reading what exports write; on a Ballista cluster through `cluster`) ->
//! `publish` (atomic outputs), with `run` tying one run together, `history` and `lease`
//! recording and guarding runs, `notify` posting their outcomes, and `daemon` running them
//! on `schedule`. The command line is the binary's (src/main.rs, src/cli/), so this library
//! holds no `anyhow`.

pub mod cancel;
pub mod clock;
pub mod cluster;
pub mod daemon;
pub mod engine;
pub mod fault;
pub mod features;
pub mod functions;
pub mod generate;
pub mod hint;
pub mod history;
pub mod lease;
pub mod lineage;
pub mod models;
pub mod notify;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod report;
pub mod run;
pub mod runner;
pub mod schedule;
pub mod segments;
pub mod serve;
mod sql;
pub mod storage;
mod wall_clock;
