//! The results of one run: machine-independent ratios, the targets they are judged against
//! (reported, never asserted), the printed table and the JSON file.

use std::path::Path;

use anyhow::Context;
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::{
    baseline::{Baseline, BaselineOptions},
    http::HttpFigures,
    scenarios::{Drained, Throughput},
    system::Machine,
};

/// Sequential 3-step workflow p50 target, microseconds.
pub const TARGET_SEQUENTIAL_P50_US: f64 = 1_000.0;
/// Concurrency of the throughput target.
pub const TARGET_CONCURRENCY: usize = 32;
/// Workflows per second at [`TARGET_CONCURRENCY`].
pub const TARGET_WF_PER_SEC: f64 = 10_000.0;
/// Steps per second as a share of the batched-insert limit.
pub const TARGET_STEP_SHARE: f64 = 0.5;

/// What was asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Store backend.
    pub store: String,
    /// The process's global allocator (see [`crate::ALLOCATOR`]).
    pub allocator: &'static str,
    /// Worker threads of the tokio runtime.
    pub tokio_workers: usize,
    /// Sequential workflows.
    pub workflows: usize,
    /// Workflows per concurrent measurement.
    pub concurrent_workflows: usize,
    /// Steps per workflow.
    pub steps: usize,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Unmeasured workflows run first in the sequential test.
    pub warmup: usize,
    /// Idle read connections the SQLite store keeps.
    pub sqlite_readers: usize,
    /// Baseline sizes.
    pub baseline: BaselineOptions,
}

/// Figures that mean the same on any machine: the engine against the disk's own limits.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// (a)'s median commit latency, µs.
    pub commit_latency_us: f64,
    /// Sequential median workflow latency divided by the steps per workflow, µs.
    pub sequential_step_latency_us: f64,
    /// `sequential_step_latency_us / commit_latency_us` (ideal ≈ 1: one fsync per step).
    pub sequential_step_latency_over_commit: f64,
    /// Sequential median workflow latency in commits of (a) (ideal: steps + 1 or + 2).
    pub sequential_workflow_in_commits: f64,
    /// Steps/s of each concurrency level divided by (b)'s rows/s.
    pub steps_per_sec_over_batched: Vec<ConcurrencyRatio>,
}

/// One concurrency level's steps/s as a share of (b).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ConcurrencyRatio {
    /// Callers.
    pub concurrency: usize,
    /// Steps/s ÷ batched rows/s.
    pub ratio: f64,
}

/// A target and how this run did against it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: String,
    /// The target, as text.
    pub target: String,
    /// The measured value, as text.
    pub measured: String,
    /// Whether it was met.
    pub met: bool,
}

/// Memory use.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Memory {
    /// VmRSS at the end of the concurrent measurements (engine still alive), KiB.
    pub rss_kib_after_concurrent: Option<u64>,
    /// VmHWM (peak RSS) at the end of the whole run, KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Crate version.
    pub version: &'static str,
    /// Unix time the run ended, seconds.
    pub finished_at_unix: u64,
    /// The machine and data directory.
    pub machine: Machine,
    /// What was asked for.
    pub settings: Settings,
    /// 1: the raw limits.
    pub baseline: Baseline,
    /// 2: sequential latency.
    pub sequential: Throughput,
    /// 3: concurrent throughput, one per level.
    pub concurrent: Vec<Throughput>,
    /// 3': enqueue then drain with a worker (absent if skipped).
    pub drained: Option<Drained>,
    /// 4: the ratios.
    pub ratios: Ratios,
    /// 5: memory.
    pub memory: Memory,
    /// 6: the same workload through the HTTP API (`--via http`), and its ratios to 2 and 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpFigures>,
    /// The targets, judged.
    pub targets: Vec<TargetCheck>,
}

impl Ratios {
    /// The ratios of these measurements.
    pub fn of(baseline: &Baseline, sequential: &Throughput, concurrent: &[Throughput]) -> Ratios {
        let commit = baseline.single.latency.p50_us;
        let workflow = sequential.latency.map_or(0.0, |latency| latency.p50_us);
        let step = workflow / sequential.steps.max(1) as f64;
        let ceiling = baseline.batched.rows_per_sec;
        Ratios {
            commit_latency_us: commit,
            sequential_step_latency_us: step,
            sequential_step_latency_over_commit: divide(step, commit),
            sequential_workflow_in_commits: divide(workflow, commit),
            steps_per_sec_over_batched: concurrent
                .iter()
                .map(|level| ConcurrencyRatio {
                    concurrency: level.concurrency,
                    ratio: divide(level.steps_per_sec, ceiling),
                })
                .collect(),
        }
    }
}

fn divide(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Judges the targets.
pub fn check_targets(
    settings: &Settings,
    sequential: &Throughput,
    concurrent: &[Throughput],
    ratios: &Ratios,
) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let p50 = sequential.latency.map_or(f64::INFINITY, |l| l.p50_us);
    let note = if settings.steps == 3 {
        String::new()
    } else {
        format!(" (target is for 3 steps; ran {})", settings.steps)
    };
    checks.push(TargetCheck {
        name: format!("sequential {}-step p50", settings.steps),
        target: format!("≤ {}{note}", duration(TARGET_SEQUENTIAL_P50_US)),
        measured: duration(p50),
        met: p50 <= TARGET_SEQUENTIAL_P50_US,
    });
    if let Some(level) = concurrent
        .iter()
        .find(|level| level.concurrency == TARGET_CONCURRENCY)
    {
        checks.push(TargetCheck {
            name: format!("{TARGET_CONCURRENCY}-concurrent throughput"),
            target: format!("≥ {} wf/s", rate(TARGET_WF_PER_SEC)),
            measured: format!("{} wf/s", rate(level.wf_per_sec)),
            met: level.wf_per_sec >= TARGET_WF_PER_SEC,
        });
    }
    if let Some(best) = ratios
        .steps_per_sec_over_batched
        .iter()
        .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
    {
        checks.push(TargetCheck {
            name: "steps/s ÷ batched-insert limit (1b)".into(),
            target: format!("≥ {:.0}%", TARGET_STEP_SHARE * 100.0),
            measured: format!("{:.1}% (best, C={})", best.ratio * 100.0, best.concurrency),
            met: best.ratio >= TARGET_STEP_SHARE,
        });
    }
    checks
}

/// Thousands-separated, no decimals (`12,345`).
pub fn rate(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds shown as µs below 1 ms, else ms.
pub fn duration(us: f64) -> String {
    if !us.is_finite() {
        "n/a".into()
    } else if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".into(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    )
}

/// The table row of the sequential measurement (both stores print it the same way).
pub(crate) fn sequential_row(s: &Throughput) -> [String; 6] {
    let (p50, p99) = percentiles(s);
    [
        "2".into(),
        format!("sequential: {} wf × {} steps", s.workflows, s.steps),
        format!(
            "{} wf/s, {} steps/s",
            rate(s.wf_per_sec),
            rate(s.steps_per_sec)
        ),
        p50,
        p99,
        format!("per wf: Engine::run; {}", cpu(s)),
    ]
}

/// The table row of a concurrency level: `section`, `what` before `C=…`, what drives the load
/// (`callers`) before the CPU figure, and what that figure counts (`counted`) after it.
pub(crate) fn concurrent_row(
    section: &str,
    what: &str,
    (callers, counted): (&str, &str),
    level: &Throughput,
) -> [String; 6] {
    let (p50, p99) = percentiles(level);
    [
        section.into(),
        format!(
            "{what}C={}: {} wf × {} steps",
            level.concurrency, level.workflows, level.steps
        ),
        format!(
            "{} wf/s, {} steps/s",
            rate(level.wf_per_sec),
            rate(level.steps_per_sec)
        ),
        p50,
        p99,
        format!(
            "{callers}; {}{counted}; RSS {}",
            cpu(level),
            mib(level.rss_kib)
        ),
    ]
}

/// The table row of the sequential step latency measured in commit latencies (both stores).
pub(crate) fn latency_ratio_row(
    ratio: f64,
    step_us: f64,
    commit_us: f64,
    commits_per_workflow: f64,
) -> [String; 6] {
    [
        "4".into(),
        "sequential step latency ÷ (1a) commit latency".into(),
        format!("{ratio:.2}×"),
        duration(step_us),
        "—".into(),
        format!(
            "p50 wf ÷ steps vs p50 commit {}; one workflow takes {commits_per_workflow:.1} commit latencies",
            duration(commit_us)
        ),
    ]
}

/// The CPU a workflow cost, and the part of it on the SQLite writer thread (the serial part).
pub(crate) fn cpu(level: &Throughput) -> String {
    let total = level
        .cpu_us_per_wf
        .map_or_else(|| "CPU n/a".into(), |us| format!("CPU {us:.0} µs/wf"));
    match level.writer_cpu_us_per_wf {
        Some(writer) => format!("{total} (writer thread {writer:.0})"),
        None => total,
    }
}

pub(crate) fn percentiles(level: &Throughput) -> (String, String) {
    level.latency.map_or_else(
        || ("—".into(), "—".into()),
        |l| (duration(l.p50_us), duration(l.p99_us)),
    )
}

/// Measurements of one limit, before and after the engine's tests: `a / b`.
fn each(runs: &[f64]) -> String {
    runs.iter()
        .map(|&per_sec| rate(per_sec))
        .collect::<Vec<_>>()
        .join(" / ")
}

impl Report {
    /// The human-readable tables.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED);
        table.set_header(["#", "measurement", "throughput", "p50", "p99", "notes"]);
        let (b, single, batched, large) = (
            &self.baseline,
            &self.baseline.single,
            &self.baseline.batched,
            &self.baseline.large_batch,
        );
        table.add_row([
            "1a".into(),
            "raw SQLite: 1 row + fsync'd commit per txn".into(),
            format!("{} ops/s", rate(single.ops_per_sec)),
            duration(single.latency.p50_us),
            duration(single.latency.p99_us),
            format!(
                "{} commits, SQLite {}; best of {}",
                single.commits,
                b.sqlite_version,
                each(&b.single_ops_per_sec_each)
            ),
        ]);
        for (label, batch, runs) in [
            ("1b", batched, Some(&b.batched_rows_per_sec_each)),
            ("1b'", large, None),
        ] {
            let runs = runs.map_or(String::new(), |runs| format!("; best of {}", each(runs)));
            table.add_row([
                label.into(),
                format!("raw SQLite: {} rows per txn", batch.batch),
                format!("{} rows/s", rate(batch.rows_per_sec)),
                duration(batch.commit_latency.p50_us),
                duration(batch.commit_latency.p99_us),
                format!("{:.2} µs/row; p50/p99 per txn{runs}", batch.us_per_row),
            ]);
        }
        table.add_row(sequential_row(&self.sequential));
        for level in &self.concurrent {
            table.add_row(concurrent_row(
                "3",
                "concurrent ",
                ("C callers loop Engine::run", ""),
                level,
            ));
        }
        if let Some(drained) = &self.drained {
            let (enqueue, drain) = (&drained.enqueue, &drained.drain);
            table.add_row([
                "3'".into(),
                format!(
                    "enqueue detached: {} runs, C={}",
                    enqueue.workflows, enqueue.concurrency
                ),
                format!("{} runs/s", rate(enqueue.wf_per_sec)),
                "—".into(),
                "—".into(),
                "Engine::start without execute_here".into(),
            ]);
            table.add_row([
                "3'".into(),
                format!(
                    "worker drains queue: {} wf × {} steps",
                    drain.workflows, drain.steps
                ),
                format!(
                    "{} wf/s, {} steps/s",
                    rate(drain.wf_per_sec),
                    rate(drain.steps_per_sec)
                ),
                "—".into(),
                "—".into(),
                format!(
                    "run_worker, max {} runs at once; {}",
                    drain.concurrency,
                    cpu(drain)
                ),
            ]);
        }
        let r = &self.ratios;
        table.add_row(latency_ratio_row(
            r.sequential_step_latency_over_commit,
            r.sequential_step_latency_us,
            r.commit_latency_us,
            r.sequential_workflow_in_commits,
        ));
        for level in &r.steps_per_sec_over_batched {
            table.add_row([
                "4".into(),
                format!("steps/s C={} ÷ (1b) rows/s", level.concurrency),
                format!("{:.1}%", level.ratio * 100.0),
                "—".into(),
                "—".into(),
                format!(
                    "ceiling {} rows/s",
                    rate(self.baseline.batched.rows_per_sec)
                ),
            ]);
        }
        table.add_row([
            "5".into(),
            "RSS at the end of (3)".into(),
            mib(self.memory.rss_kib_after_concurrent),
            "—".into(),
            "—".into(),
            format!("peak {}", mib(self.memory.peak_rss_kib)),
        ]);
        for row in self.http.iter().flat_map(HttpFigures::rows) {
            table.add_row(row);
        }
        for column in 2..5 {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }

        let mut targets = Table::new();
        targets.load_style(UTF8_FULL_CONDENSED);
        targets.set_header(["target (reported, not asserted)", "goal", "measured", ""]);
        for check in &self.targets {
            targets.add_row([
                check.name.clone(),
                check.target.clone(),
                check.measured.clone(),
                if check.met { "met" } else { "missed" }.into(),
            ]);
        }
        let m = &self.machine;
        format!(
            "Cairn benchmark: store {}, allocator {}, {} CPUs, tokio workers {}, data dir {} ({} on {})\n{table}\n{targets}\n",
            self.settings.store,
            self.settings.allocator,
            m.cpus,
            self.settings.tokio_workers,
            m.data_dir,
            m.data_dir_fs.as_deref().unwrap_or("unknown fs"),
            m.data_dir_device.as_deref().unwrap_or("unknown device"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(rate(0.4), "0");
        assert_eq!(rate(999.0), "999");
        assert_eq!(rate(1_000.0), "1,000");
        assert_eq!(rate(12_345_678.4), "12,345,678");
        assert_eq!(duration(12.34), "12.3 µs");
        assert_eq!(duration(2_500.0), "2.50 ms");
        assert_eq!(duration(f64::INFINITY), "n/a");
    }
}
