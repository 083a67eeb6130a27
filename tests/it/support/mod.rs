//! What the tests share, and no tests: processes with deadlines, projects on generated shops,
//! readers of what runs publish, servers on loopback (S3, webhooks) and the Python oracles.
//! The names most tests use are re-exported here (`use crate::support::{Project, Size, ...}`);
//! the rest are reached through their module.

pub mod daemon;
pub mod delta;
pub mod oracles;
pub mod process;
pub mod project;
pub mod published;
pub mod s3;
pub mod shop_by_hand;
pub mod shops;
pub mod webhook;

pub use oracles::{oracle, python_script};
pub use process::{COMMAND_DEADLINE, Outcome, Spawned, run, segflow, wait_for_log};
pub use project::*;
pub use published::*;
pub use shops::*;
