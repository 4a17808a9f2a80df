//! `cairn-bench`: one command that measures the embedded store's raw limits and the engine's
//! latency, throughput and memory, prints a table and writes `target/bench/results.json`.
//!
//! ```sh
//! cargo run --release -p cairn-bench -- [--workflows N] [--steps K] [--concurrency 32,256]
//! ```
//!
//! Paths are relative to the current directory (run it from the workspace root). Each run
//! works in a fresh sub-directory of `--data-dir`, removed at the end unless `--keep-data`.
//! Targets are reported, never asserted: the exit code is 0 whatever the figures.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, ensure};
use cairn_bench::{
    baseline::{self, BaselineOptions},
    report::{Memory, Ratios, Report, Settings, check_targets},
    scenarios, system,
    workload::{noop_workflow, open_engine},
};
use cairn_store_sqlite::SqliteOptions;
use clap::{Parser, ValueEnum};

/// Measures Cairn on the embedded SQLite store: raw limits, sequential latency, concurrent
/// throughput, machine-independent ratios and memory.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version)]
struct Cli {
    /// Workflows run one after another in the sequential test.
    #[arg(long, default_value_t = 300)]
    workflows: usize,
    /// Workflows per concurrent test (and for the worker mode) [default: 10 × --workflows].
    #[arg(long)]
    concurrent_workflows: Option<usize>,
    /// No-op steps per workflow.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Concurrency levels of the concurrent test, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 256])]
    concurrency: Vec<usize>,
    /// Store backend.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Where the databases go (keep it on the disk you care about, not tmpfs).
    #[arg(long, default_value = "target/bench/tmp")]
    data_dir: PathBuf,
    /// Unmeasured workflows run before the sequential test.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// One-row transactions of baseline (1a).
    #[arg(long, default_value_t = 1_000)]
    baseline_commits: usize,
    /// Rows of baseline (1b).
    #[arg(long, default_value_t = 32_000)]
    baseline_rows: usize,
    /// Rows per transaction in baseline (1b).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Idle read connections the SQLite store keeps (`SqliteOptions::max_idle_readers`)
    /// [default: the store's default].
    #[arg(long)]
    sqlite_readers: Option<usize>,
    /// Skip the queue-drained worker mode.
    #[arg(long)]
    skip_worker: bool,
    /// Keep this run's databases.
    #[arg(long)]
    keep_data: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// The embedded SQLite store.
    Sqlite,
    /// PostgreSQL (not available yet).
    Postgres,
}

/// The largest batch the SQLite writer commits at once (`SqliteOptions::max_batch`'s default).
const WRITER_MAX_BATCH: usize = 512;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.store == StoreKind::Postgres {
        eprintln!(
            "error: --store postgres is not available yet: the PostgreSQL backend lands with issue 6; use --store sqlite"
        );
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    ensure!(cli.workflows > 0, "--workflows must be at least 1");
    ensure!(
        !cli.concurrency.is_empty() && cli.concurrency.iter().all(|&c| c > 0),
        "--concurrency needs levels of at least 1"
    );
    let concurrent_workflows = cli.concurrent_workflows.unwrap_or(cli.workflows * 10);
    ensure!(
        concurrent_workflows > 0,
        "--concurrent-workflows must be at least 1"
    );
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let run_dir = cli
        .data_dir
        .join(format!("run-{}-{}", std::process::id(), stamp.as_millis()));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating the data dir {}", run_dir.display()))?;
    let result = measure(cli, concurrent_workflows, &run_dir);
    if !cli.keep_data {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    let report = result?;
    print!("{}", report.render());
    report.write_json(&cli.json)?;
    println!("results written to {}", cli.json.display());
    Ok(())
}

fn measure(cli: &Cli, concurrent_workflows: usize, run_dir: &Path) -> anyhow::Result<Report> {
    let machine = system::Machine::describe(&cli.data_dir);
    if machine.data_in_memory() {
        eprintln!(
            "warning: {} is on {}: fsyncs cost nothing there, the figures will not mean much",
            cli.data_dir.display(),
            machine.data_dir_fs.as_deref().unwrap_or("memory")
        );
    }
    let mut options = SqliteOptions::default();
    if let Some(readers) = cli.sqlite_readers {
        options.max_idle_readers = readers;
    }
    let settings = Settings {
        store: "sqlite".into(),
        workflows: cli.workflows,
        concurrent_workflows,
        steps: cli.steps,
        concurrency: cli.concurrency.clone(),
        warmup: cli.warmup,
        sqlite_readers: options.max_idle_readers,
        baseline: BaselineOptions {
            commits: cli.baseline_commits,
            rows: cli.baseline_rows,
            batch: cli.batch,
            large_batch: WRITER_MAX_BATCH,
        },
    };

    eprintln!("1. raw SQLite limits…");
    let baseline = baseline::measure(&run_dir.join("baseline"), settings.baseline)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let workflow = noop_workflow(cli.steps);
    let max_concurrency = cli.concurrency.iter().copied().max().unwrap_or(1);
    runtime.block_on(async {
        eprintln!("2. sequential: {} workflows…", cli.workflows);
        let sequential = {
            let engine = open_engine(&run_dir.join("sequential"), &workflow, max_concurrency, &options)?;
            scenarios::sequential(&engine, &workflow, cli.steps, cli.workflows, cli.warmup)
                .await?
        };

        let mut engines = Vec::new();
        let mut concurrent = Vec::new();
        for &level in &cli.concurrency {
            eprintln!("3. concurrent: {concurrent_workflows} workflows, {level} callers…");
            let dir = run_dir.join(format!("concurrent-{level}"));
            let engine = open_engine(&dir, &workflow, max_concurrency, &options)?;
            let measured = scenarios::concurrent(
                &engine,
                &workflow,
                cli.steps,
                concurrent_workflows,
                level,
            )
            .await?;
            concurrent.push(measured);
            engines.push(engine);
        }
        let rss_kib_after_concurrent = system::rss_kib();
        drop(engines);

        let drained = if cli.skip_worker {
            None
        } else {
            eprintln!(
                "3'. worker mode: enqueue {concurrent_workflows} runs, then drain (max {max_concurrency} at once)…"
            );
            let engine = open_engine(&run_dir.join("drained"), &workflow, max_concurrency, &options)?;
            Some(
                scenarios::drained(
                    &engine,
                    &workflow,
                    cli.steps,
                    concurrent_workflows,
                    max_concurrency,
                )
                .await?,
            )
        };

        let ratios = Ratios::of(&baseline, &sequential, &concurrent);
        let targets = check_targets(&settings, &sequential, &concurrent, &ratios);
        Ok(Report {
            version: env!("CARGO_PKG_VERSION"),
            finished_at_unix: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            machine,
            settings,
            baseline,
            sequential,
            concurrent,
            drained,
            ratios,
            memory: Memory {
                rss_kib_after_concurrent,
                peak_rss_kib: system::peak_rss_kib(),
            },
            targets,
        })
    })
}
