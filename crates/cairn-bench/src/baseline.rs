//! The raw limit: what the disk and SQLite can do with the engine's settings, measured in the
//! same process on the same directory before the engine runs.
//!
//! Same settings as `cairn-store-sqlite`: rusqlite with bundled SQLite, WAL journal,
//! `synchronous=FULL` (every commit fsyncs the WAL), `BEGIN IMMEDIATE … COMMIT`, cached
//! prepared statements, and the engine's `events` table layout (without the foreign key to
//! `runs`: this is the bare insert). Rows carry a step-completion-sized JSON payload.
//!
//! - **(a) one row per transaction**: the floor of a durable step when nothing is shared,
//!   i.e. the price of one fsync'd commit.
//! - **(b) rows batched per transaction**: the ceiling of group commit, where many callers'
//!   rows share one commit.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::stats::{Latencies, LatencySummary, per_second};

/// The `events` table of the engine's schema: as version 1 made it, less its foreign key to
/// `runs` (which version 6 dropped), and without the `count` column version 3 added.
const EVENTS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS events (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    type     TEXT NOT NULL,
    step_key TEXT,
    payload  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);";

/// A step completion as the engine stores it.
const PAYLOAD: &str =
    r#"{"type":"step_completed","key":"noop#1","kind":"action","slug":"noop","output":{"n":41}}"#;

/// Events per simulated run (a 3-step workflow writes 8), so keys look like the engine's.
const EVENTS_PER_RUN: u64 = 8;

/// How much to measure.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BaselineOptions {
    /// Transactions of one row each, for (a).
    pub commits: usize,
    /// Rows inserted in batches, for (b).
    pub rows: usize,
    /// Rows per transaction in (b).
    pub batch: usize,
    /// Rows per transaction of the extra large-batch measurement (the writer's `max_batch`).
    pub large_batch: usize,
}

/// (a): one row per fsync'd commit.
#[derive(Clone, Debug, Serialize)]
pub struct SingleRowCommits {
    /// Transactions measured.
    pub commits: usize,
    /// Commits per second.
    pub ops_per_sec: f64,
    /// Latency of one `BEGIN; INSERT; COMMIT`.
    pub latency: LatencySummary,
}

/// (b): many rows per fsync'd commit.
#[derive(Clone, Debug, Serialize)]
pub struct BatchedInserts {
    /// Rows measured.
    pub rows: usize,
    /// Rows per transaction.
    pub batch: usize,
    /// Rows per second.
    pub rows_per_sec: f64,
    /// Microseconds per row.
    pub us_per_row: f64,
    /// Latency of one whole batch transaction.
    pub commit_latency: LatencySummary,
}

/// Both raw limits.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// SQLite version linked (bundled).
    pub sqlite_version: String,
    /// (a).
    pub single: SingleRowCommits,
    /// (b), the reference for the throughput ratio.
    pub batched: BatchedInserts,
    /// (b) with the writer's largest batch, for context.
    pub large_batch: BatchedInserts,
    /// (a)'s commits/s in each measurement, in order (see [`Baseline::best_of`]).
    pub single_ops_per_sec_each: Vec<f64>,
    /// (b)'s rows/s in each measurement, in order.
    pub batched_rows_per_sec_each: Vec<f64>,
}

impl Baseline {
    /// The better of two measurements, limit by limit: the machine's speed drifts during a
    /// run (neighbours on a shared host), so the limits are measured before and after the
    /// engine's tests and the ratios use the faster, which never flatters the engine.
    pub fn best_of(self, other: Baseline) -> Baseline {
        let faster = |a: BatchedInserts, b: BatchedInserts| {
            if b.rows_per_sec > a.rows_per_sec {
                b
            } else {
                a
            }
        };
        let mut single_each = self.single_ops_per_sec_each;
        single_each.extend(other.single_ops_per_sec_each);
        let mut batched_each = self.batched_rows_per_sec_each;
        batched_each.extend(other.batched_rows_per_sec_each);
        Baseline {
            sqlite_version: self.sqlite_version,
            single: if other.single.ops_per_sec > self.single.ops_per_sec {
                other.single
            } else {
                self.single
            },
            batched: faster(self.batched, other.batched),
            large_batch: faster(self.large_batch, other.large_batch),
            single_ops_per_sec_each: single_each,
            batched_rows_per_sec_each: batched_each,
        }
    }
}

/// Measures (a) and (b) on a fresh database file in `dir`.
pub fn measure(dir: &Path, options: BaselineOptions) -> anyhow::Result<Baseline> {
    ensure!(
        options.commits > 0 && options.rows > 0 && options.batch > 0 && options.large_batch > 0,
        "baseline sizes must be positive"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("baseline.db");
    let mut raw = RawSqlite::open(&path)?;
    // Warm up: create the WAL, page in the schema, fill the statement cache.
    raw.single_commits(50)?;
    raw.batches(options.batch * 4, options.batch)?;

    let started = Instant::now();
    let latency = raw.single_commits(options.commits)?;
    let single = SingleRowCommits {
        commits: options.commits,
        ops_per_sec: per_second(options.commits, started.elapsed()),
        latency: latency.summary(),
    };
    let batched = raw.batched(options.rows, options.batch)?;
    let large_batch = raw.batched(options.rows, options.large_batch)?;
    drop(raw);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("baseline.db{suffix}")));
    }
    Ok(Baseline {
        sqlite_version: rusqlite::version().to_owned(),
        single_ops_per_sec_each: vec![single.ops_per_sec],
        batched_rows_per_sec_each: vec![batched.rows_per_sec],
        single,
        batched,
        large_batch,
    })
}

/// A connection configured like the engine's writer, and the next row to insert.
struct RawSqlite {
    conn: Connection,
    next_row: u64,
}

impl RawSqlite {
    fn open(path: &Path) -> anyhow::Result<RawSqlite> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
        ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "SQLite refused WAL mode on {} (journal_mode={mode}); put the data dir on a local disk",
            path.display()
        );
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(EVENTS_TABLE)?;
        Ok(RawSqlite { conn, next_row: 0 })
    }

    fn statement(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Inserts `count` rows in one transaction.
    fn transaction(&mut self, count: usize) -> rusqlite::Result<()> {
        self.statement("BEGIN IMMEDIATE")?;
        {
            let mut insert = self.conn.prepare_cached(
                "INSERT INTO events (run_id, seq, at, type, step_key, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for _ in 0..count {
                let row = self.next_row;
                self.next_row += 1;
                let run_id = format!("0190a000-0000-7000-8000-{:012x}", row / EVENTS_PER_RUN);
                let seq = i64::try_from(row % EVENTS_PER_RUN + 1).unwrap_or(i64::MAX);
                insert.execute(params![
                    run_id,
                    seq,
                    1_700_000_000_000_i64,
                    "step_completed",
                    "noop#1",
                    PAYLOAD
                ])?;
            }
        }
        self.statement("COMMIT")
    }

    /// `commits` transactions of one row each, timed one by one.
    fn single_commits(&mut self, commits: usize) -> anyhow::Result<Latencies> {
        let mut latency = Latencies::new();
        for _ in 0..commits {
            let started = Instant::now();
            self.transaction(1)
                .context("a one-row transaction failed")?;
            latency.record(started.elapsed());
        }
        Ok(latency)
    }

    /// `rows` rows in transactions of `batch`; returns the per-transaction latencies.
    fn batches(&mut self, rows: usize, batch: usize) -> anyhow::Result<Latencies> {
        let mut latency = Latencies::new();
        let mut left = rows;
        while left > 0 {
            let count = left.min(batch);
            let started = Instant::now();
            self.transaction(count)
                .context("a batched transaction failed")?;
            latency.record(started.elapsed());
            left -= count;
        }
        Ok(latency)
    }

    fn batched(&mut self, rows: usize, batch: usize) -> anyhow::Result<BatchedInserts> {
        let started = Instant::now();
        let latency = self.batches(rows, batch)?;
        let elapsed = started.elapsed();
        Ok(BatchedInserts {
            rows,
            batch,
            rows_per_sec: per_second(rows, elapsed),
            us_per_row: micros(elapsed) / rows as f64,
            commit_latency: latency.summary(),
        })
    }
}

fn micros(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_baseline_measures_both_limits() {
        let dir = std::env::temp_dir().join(format!("cairn-bench-baseline-{}", std::process::id()));
        let options = BaselineOptions {
            commits: 5,
            rows: 100,
            batch: 10,
            large_batch: 50,
        };
        let baseline = measure(&dir, options).expect("baseline");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(baseline.single.latency.count, 5);
        assert!(baseline.single.ops_per_sec > 0.0);
        assert_eq!(baseline.batched.commit_latency.count, 10);
        assert_eq!(baseline.large_batch.commit_latency.count, 2);
        assert!(baseline.batched.rows_per_sec > 0.0);
    }

    fn measured(ops_per_sec: f64, rows_per_sec: f64) -> Baseline {
        let latency = LatencySummary {
            count: 1,
            mean_us: 1.0,
            p50_us: 1.0,
            p90_us: 1.0,
            p99_us: 1.0,
            max_us: 1.0,
        };
        let batch = |rows_per_sec| BatchedInserts {
            rows: 1,
            batch: 1,
            rows_per_sec,
            us_per_row: 1e6 / rows_per_sec,
            commit_latency: latency,
        };
        Baseline {
            sqlite_version: "3".into(),
            single: SingleRowCommits {
                commits: 1,
                ops_per_sec,
                latency,
            },
            batched: batch(rows_per_sec),
            large_batch: batch(rows_per_sec * 2.0),
            single_ops_per_sec_each: vec![ops_per_sec],
            batched_rows_per_sec_each: vec![rows_per_sec],
        }
    }

    #[test]
    fn the_best_of_two_baselines_takes_each_limit_from_the_faster() {
        let best = measured(3_000.0, 90_000.0).best_of(measured(2_000.0, 120_000.0));

        assert_eq!(best.single.ops_per_sec, 3_000.0);
        assert_eq!(best.batched.rows_per_sec, 120_000.0);
        assert_eq!(best.large_batch.rows_per_sec, 240_000.0);
        assert_eq!(best.single_ops_per_sec_each, [3_000.0, 2_000.0]);
        assert_eq!(best.batched_rows_per_sec_each, [90_000.0, 120_000.0]);
    }
}
