//! Cairn's benchmark suite (issue 5): the raw limits of the disk and SQLite with the engine's
//! settings, then the engine's sequential latency, concurrent throughput and memory, in one
//! process run, reported as a table and a JSON file. With `--store postgres` (issue 6,
//! [`postgres`]): the server's raw commit rate next to the engine's sequential latency and the
//! throughput of 1, 2 and 4 worker processes. With `--via http` ([`http`], issue 22): the same
//! workload again through the HTTP API, and the ratios of the two.
//!
//! Run it from the workspace root:
//!
//! ```sh
//! cargo run --release -p cairn-bench --            # table + target/bench/results.json
//! cargo run --release -p cairn-bench -- --help     # sizes, concurrency levels, paths
//! cargo run --release -p cairn-bench -- --store postgres   # CAIRN_DATABASE_URL or --database-url
//! cargo run --release -p cairn-bench -- --via http # also through cairn-server, with ratios
//! ```
//!
//! The binary is `src/main.rs`; the pieces live here so the micro-benchmarks in `benches/`
//! share the workload.

/// The global allocator the `cairn-bench` binary runs with (set in `src/main.rs`), named in
/// its report: throughput figures depend on it.
pub const ALLOCATOR: &str = "mimalloc";

pub mod baseline;
pub mod http;
pub mod postgres;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod system;
pub mod workload;
