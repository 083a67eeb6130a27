//! segflow turns raw e-commerce Parquet into customer segments, as SQL pipelines declared in
//! YAML. Data flows one way through the modules: `spec` (what to run) -> `storage` (where
//! things live) -> `engine` (DataFusion) -> `publish` (atomic Parquet outputs), with `run`
//! tying one run together and `cli` on top.

pub mod cancel;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod engine;
pub mod fault;
pub mod generate;
pub mod history;
pub mod lease;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod run;
pub mod schedule;
pub mod segments;
pub mod sql;
pub mod storage;
pub mod wall_clock;
