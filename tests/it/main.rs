//! Integration tests: the real binary, real Parquet files, a real S3 server on loopback and
//! real readers (DuckDB and pyarrow) and a real browser (Chromium).

// One test binary: its modules share helpers with `pub`, and nothing here is an API.
#![allow(unreachable_pub)]

mod bad_input;
mod build;
mod checks;
mod cluster;
mod common;
mod crash;
mod cross_check;
mod currencies;
mod daemon;
mod delta;
mod docs;
mod edges;
mod end_to_end;
mod fencing;
mod fixtures;
mod history;
mod http;
mod incremental;
mod init;
mod inspect;
mod labels;
mod layouts;
mod leases;
mod notify;
mod predictions;
mod preview;
mod reachability;
mod readers;
mod report;
mod s3;
mod scheduler;
mod sources;
mod status;
mod text_sources;
mod vacuum;
mod versions;
mod zones;
