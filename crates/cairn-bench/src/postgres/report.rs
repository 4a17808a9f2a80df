//! The results of a `--store postgres` run: the server, the settings, the raw commits, the
//! engine's figures, the ratios, the printed table and the JSON file (same style as the
//! SQLite report).

use std::path::Path;

use anyhow::Context;
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use super::{PgOptions, child::ChildReport, interleaved::Interleaved, raw::RawBaseline};
use crate::{
    report::{cpu, duration, mib, rate},
    scenarios::Throughput,
};

/// The server, as it describes itself, and this machine's cores.
#[derive(Clone, Debug, Serialize)]
pub struct Server {
    /// Cores available to the benchmark (the server may share them, as here on localhost).
    pub cpus: usize,
    /// `server_version`.
    pub version: String,
    /// `synchronous_commit` (`on`: every commit waits for its WAL flush).
    pub synchronous_commit: String,
    /// `fsync`.
    pub fsync: String,
    /// `wal_sync_method`.
    pub wal_sync_method: String,
    /// `commit_delay` (µs the server waits to group concurrent commits).
    pub commit_delay: String,
    /// `data_directory`, if this role may read it.
    pub data_directory: Option<String>,
    /// The filesystem holding it, if it is on this machine.
    pub data_dir_fs: Option<String>,
    /// That filesystem's device.
    pub data_dir_device: Option<String>,
}

impl Server {
    /// Whether the server's data would sit in memory, making every commit's flush free.
    pub fn data_in_memory(&self) -> bool {
        matches!(self.data_dir_fs.as_deref(), Some("tmpfs" | "ramfs"))
    }
}

/// What was asked for.
#[derive(Clone, Debug, Serialize)]
pub struct PgSettings {
    /// Always `postgres`.
    pub store: String,
    /// The server, password redacted.
    pub database_url: String,
    /// The run's schemas are `<schema_prefix>_raw`, `_seq`, `_w1`, … (dropped at the end
    /// unless `--keep-data`).
    pub schema_prefix: String,
    /// Sequential workflows.
    pub workflows: usize,
    /// Unmeasured sequential workflows first.
    pub warmup: usize,
    /// Runs enqueued, then drained, for each worker count.
    pub drained_workflows: usize,
    /// Steps per workflow.
    pub steps: usize,
    /// Worker counts.
    pub workers: Vec<usize>,
    /// How the workers ran: one `cairn-bench --worker-child` process each.
    pub worker_mode: String,
    /// `max_concurrent_runs` of each worker.
    pub worker_concurrency: usize,
    /// Callers enqueueing the runs.
    pub enqueue_concurrency: usize,
    /// One-client raw commits.
    pub raw_commits: usize,
    /// Clients of the concurrent raw measurement.
    pub raw_clients: usize,
    /// Commits per client there.
    pub raw_client_commits: usize,
}

impl PgSettings {
    /// The settings of `options`, with the URL as it may be shown.
    pub fn of(options: &PgOptions, database_url: &str, schema_prefix: &str) -> PgSettings {
        PgSettings {
            store: "postgres".into(),
            database_url: database_url.to_owned(),
            schema_prefix: schema_prefix.to_owned(),
            workflows: options.workflows,
            warmup: options.warmup,
            drained_workflows: options.drained_workflows,
            steps: options.steps,
            workers: options.workers.clone(),
            worker_mode: "processes".into(),
            worker_concurrency: options.worker_concurrency,
            enqueue_concurrency: options.enqueue_concurrency,
            raw_commits: options.raw_commits,
            raw_clients: options.raw_clients,
            raw_client_commits: options.raw_client_commits,
        }
    }
}

/// One worker count's measurement, on a schema of its own.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerRun {
    /// Worker processes.
    pub workers: usize,
    /// Enqueueing the runs (detached starts, one engine in this process).
    pub enqueue: Throughput,
    /// Draining them: wall clock from `go` until no run is unfinished; CPU and RSS are the
    /// worker processes' (CPU summed, RSS the largest).
    pub drain: Throughput,
    /// Share of the machine's CPUs busy during the drain (workers, server and all), 0–1.
    pub machine_busy: Option<f64>,
    /// Each worker process's own report.
    pub children: Vec<ChildReport>,
}

/// Figures that mean the same on any machine: the engine against the server's own limit.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// One-client median commit latency, µs.
    pub commit_latency_us: f64,
    /// One-client commits/s: the reference.
    pub single_commits_per_sec: f64,
    /// Sequential median workflow latency divided by the steps per workflow, µs.
    pub sequential_step_latency_us: f64,
    /// `sequential_step_latency_us / commit_latency_us`.
    pub sequential_step_latency_over_commit: f64,
    /// Sequential median workflow latency in one-client commits.
    pub sequential_workflow_in_commits: f64,
    /// Steps/s of each worker count ÷ one-client commits/s.
    pub steps_per_sec_over_single_commits: Vec<WorkersRatio>,
}

/// One worker count's steps/s as a multiple of the one-client commit rate.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WorkersRatio {
    /// Worker processes.
    pub workers: usize,
    /// Steps/s ÷ one-client commits/s.
    pub ratio: f64,
}

impl Ratios {
    /// The ratios of these measurements.
    pub fn of(baseline: &RawBaseline, sequential: &Throughput, workers: &[WorkerRun]) -> Ratios {
        let commit = baseline.single.latency.p50_us;
        let commits_per_sec = baseline.single.ops_per_sec;
        let workflow = sequential.latency.map_or(0.0, |latency| latency.p50_us);
        let step = workflow / sequential.steps.max(1) as f64;
        Ratios {
            commit_latency_us: commit,
            single_commits_per_sec: commits_per_sec,
            sequential_step_latency_us: step,
            sequential_step_latency_over_commit: divide(step, commit),
            sequential_workflow_in_commits: divide(workflow, commit),
            steps_per_sec_over_single_commits: workers
                .iter()
                .map(|run| WorkersRatio {
                    workers: run.workers,
                    ratio: divide(run.drain.steps_per_sec, commits_per_sec),
                })
                .collect(),
        }
    }
}

fn divide(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Everything a `--store postgres` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct PgReport {
    /// Crate version.
    pub version: &'static str,
    /// Unix time the run ended, seconds.
    pub finished_at_unix: u64,
    /// The server.
    pub server: Server,
    /// What was asked for.
    pub settings: PgSettings,
    /// 1: the raw commits.
    pub baseline: RawBaseline,
    /// 2: sequential latency.
    pub sequential: Throughput,
    /// 2 again, each workflow after one raw commit (see `interleaved`).
    pub interleaved: Interleaved,
    /// 3: queue drained by W worker processes, one per worker count.
    pub workers: Vec<WorkerRun>,
    /// 4: the ratios.
    pub ratios: Ratios,
    /// VmHWM of this (parent) process at the end, KiB.
    pub peak_rss_kib: Option<u64>,
}

impl PgReport {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED);
        table.set_header(["#", "measurement", "throughput", "p50", "p99", "notes"]);
        let (single, many) = (&self.baseline.single, &self.baseline.concurrent);
        table.add_row([
            "1a".into(),
            "raw PG: 1 row INSERT + COMMIT per txn, 1 client".into(),
            format!("{} ops/s", rate(single.ops_per_sec)),
            duration(single.latency.p50_us),
            duration(single.latency.p99_us),
            format!("{} commits; BEGIN, INSERT, COMMIT", single.commits),
        ]);
        table.add_row([
            "1c".into(),
            format!("raw PG: same, {} clients at once", many.clients),
            format!("{} ops/s", rate(many.ops_per_sec)),
            duration(many.latency.p50_us),
            duration(many.latency.p99_us),
            format!("{} commits; for reference", many.commits),
        ]);
        table.add_row(crate::report::sequential_row(&self.sequential));
        for run in &self.workers {
            let (enqueue, drain) = (&run.enqueue, &run.drain);
            table.add_row([
                "3".into(),
                format!(
                    "W={} worker processes drain {} wf × {} steps",
                    run.workers, drain.workflows, drain.steps
                ),
                format!(
                    "{} wf/s, {} steps/s",
                    rate(drain.wf_per_sec),
                    rate(drain.steps_per_sec)
                ),
                "—".into(),
                "—".into(),
                format!(
                    "≤ {} runs/worker; split {}; workers' {}; machine CPU {} busy; RSS/worker ≤ {}; enqueue {} runs/s",
                    drain.concurrency,
                    split(&run.children),
                    cpu(drain),
                    run.machine_busy
                        .map_or("n/a".into(), |busy| format!("{:.0}%", busy * 100.0)),
                    mib(drain.rss_kib),
                    rate(enqueue.wf_per_sec),
                ),
            ]);
        }
        let r = &self.ratios;
        table.add_row(crate::report::latency_ratio_row(
            r.sequential_step_latency_over_commit,
            r.sequential_step_latency_us,
            r.commit_latency_us,
            r.sequential_workflow_in_commits,
        ));
        let turns = &self.interleaved;
        table.add_row([
            "4".into(),
            "sequential wf ÷ raw commit, measured in turns".into(),
            format!("{:.2}×", turns.workflow_in_commits),
            duration(turns.workflow.p50_us),
            duration(turns.workflow.p99_us),
            format!(
                "{} pairs of one commit then one workflow; commit p50 {}",
                turns.pairs,
                duration(turns.commit.p50_us)
            ),
        ]);
        for level in &r.steps_per_sec_over_single_commits {
            table.add_row([
                "4".into(),
                format!("steps/s W={} ÷ (1a) commits/s", level.workers),
                format!("{:.2}×", level.ratio),
                "—".into(),
                "—".into(),
                format!("(1a) = {} commits/s", rate(r.single_commits_per_sec)),
            ]);
        }
        for column in 2..5 {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let server = &self.server;
        format!(
            "Cairn benchmark: store postgres ({}), PostgreSQL {}, synchronous_commit={}, fsync={}, \
             wal_sync_method={}, commit_delay={}, {} CPUs shared with the server, data dir {} ({} on {})\n\
             workers: one `cairn-bench --worker-child` process each (own pool, own worker id)\n{table}\n",
            self.settings.database_url,
            server.version,
            server.synchronous_commit,
            server.fsync,
            server.wal_sync_method,
            server.commit_delay,
            server.cpus,
            server.data_directory.as_deref().unwrap_or("unknown"),
            server.data_dir_fs.as_deref().unwrap_or("unknown fs"),
            server
                .data_dir_device
                .as_deref()
                .unwrap_or("unknown device"),
        )
    }

    /// Writes the report as pretty JSON to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Runs completed by each worker, `a/b/c` (`?` where a worker missed events).
fn split(children: &[ChildReport]) -> String {
    children
        .iter()
        .map(|child| child.runs_completed.map_or("?".into(), |n| n.to_string()))
        .collect::<Vec<_>>()
        .join("/")
}
