//! `cairn-bench`: one command that measures the embedded store's raw limits and the engine's
//! latency, throughput and memory, prints a table and writes `target/bench/results.json`.
//!
//! ```sh
//! cargo run --release -p cairn-bench -- [--workflows N] [--steps K] [--concurrency 32,256]
//! cargo run --release -p cairn-bench -- --store postgres [--database-url URL] [--pg-workers 1,2,4]
//! cargo run --release -p cairn-bench -- --via http     # the same again over HTTP, with ratios
//! ```
//!
//! With `--store postgres` the raw limit is the server's single-row commit rate and the
//! throughput comes from W worker processes (this binary again, in the hidden
//! `--worker-child` mode) draining a queue; see `cairn_bench::postgres`.
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
    http::{self, HttpPlan},
    postgres::{self, PgOptions, child::ChildArgs},
    report::{Memory, Ratios, Report, Settings, check_targets},
    scenarios, system,
    workload::{noop_workflow, open_engine},
};
use cairn_store_sqlite::SqliteOptions;
use clap::{Parser, ValueEnum};

/// The allocator, as an application that cares about throughput picks one (Restate's server
/// ships jemalloc): with glibc's, allocation was nearly a third of the tokio threads' time
/// under load (sampled with `perf`) and a tenth of a workflow's instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures Cairn on the embedded SQLite store (or PostgreSQL): raw limits, sequential
/// latency, concurrent throughput, machine-independent ratios and memory.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version)]
struct Cli {
    /// Workflows run one after another in the sequential test.
    #[arg(long, default_value_t = 300)]
    workflows: usize,
    /// Workflows per concurrent test (and for the worker mode; PostgreSQL: runs drained per
    /// worker count) [default: 20,000; PostgreSQL: 30 × --workflows].
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
    /// SQLite: worker threads of the tokio runtime [default: one fewer than the CPUs, at
    /// least one: the store's writer thread gets a core of its own].
    #[arg(long)]
    tokio_workers: Option<usize>,
    /// How the engine is driven: `inproc`, by calls in this process; `http`, those same
    /// measurements and then the same workload through the HTTP API (`cairn-server` on a
    /// loopback port, clients with a keep-alive connection each), with the ratios of the two
    /// (SQLite only).
    #[arg(long, value_enum, default_value_t = Via::Inproc)]
    via: Via,
    /// Skip the queue-drained worker mode (PostgreSQL: the worker processes).
    #[arg(long)]
    skip_worker: bool,
    /// Keep this run's databases (PostgreSQL: its schemas).
    #[arg(long)]
    keep_data: bool,
    /// PostgreSQL: the server (its schemas `cairn_bench_*` are made and dropped).
    #[arg(long, env = "CAIRN_DATABASE_URL", default_value = postgres::DEFAULT_URL)]
    database_url: String,
    /// PostgreSQL: worker process counts, each draining a fresh queue of
    /// --concurrent-workflows runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    pg_workers: Vec<usize>,
    /// PostgreSQL: most runs each worker executes at once (`max_concurrent_runs`).
    #[arg(long, default_value_t = 256)]
    worker_concurrency: usize,
    /// PostgreSQL: clients of the concurrent raw-commit reference.
    #[arg(long, default_value_t = 32)]
    pg_clients: usize,
    /// PostgreSQL: one-row transactions per client in that reference.
    #[arg(long, default_value_t = 125)]
    pg_client_commits: usize,
    /// Internal: run as one worker process of the PostgreSQL measurement.
    #[arg(long, hide = true)]
    worker_child: bool,
    /// Internal: the worker process's schema.
    #[arg(long, hide = true, default_value = "")]
    child_schema: String,
    /// Internal: the worker process's index.
    #[arg(long, hide = true, default_value_t = 0)]
    child_index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// The embedded SQLite store.
    Sqlite,
    /// PostgreSQL (`--database-url`): raw commits, sequential latency, W worker processes.
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Via {
    /// `Engine::run` calls in this process.
    Inproc,
    /// The in-process measurements, then the same over HTTP (`POST /workflows/{slug}?wait=`).
    Http,
}

/// SQLite's default workflows per concurrent test: about half a second at 256 callers, so
/// the start (every caller beginning at once on an empty store) and the end (callers running
/// out of work one by one, the concurrency falling below C) weigh little. With 3,000, under
/// a tenth of a second, the same build measured 10% fewer wf/s at C=256 (median of five
/// alternating pairs, every pair lower) and varied more from run to run (coefficient of
/// variation 6.3% against 4.8%).
const SQLITE_CONCURRENT_WORKFLOWS: usize = 20_000;

/// PostgreSQL's default runs drained per worker count, per sequential workflow: enough for
/// the drains to last seconds, so the start (every worker claiming a full batch) weighs little.
const PG_DRAINED_PER_WORKFLOW: usize = 30;

/// The largest batch the SQLite writer commits at once (`SqliteOptions::max_batch`'s default).
const WRITER_MAX_BATCH: usize = 512;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if cli.worker_child {
        postgres::child::child_main(&ChildArgs {
            url: cli.database_url.clone(),
            schema: cli.child_schema.clone(),
            index: cli.child_index,
            concurrency: cli.worker_concurrency,
            steps: cli.steps,
        })
    } else if cli.store == StoreKind::Postgres {
        if cli.via == Via::Http {
            eprintln!("error: --via http is measured on SQLite only; leave out --store postgres");
            return ExitCode::FAILURE;
        }
        run_postgres(&cli)
    } else {
        run(&cli)
    };
    match result {
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
    let concurrent_workflows = cli
        .concurrent_workflows
        .unwrap_or(SQLITE_CONCURRENT_WORKFLOWS);
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

fn run_postgres(cli: &Cli) -> anyhow::Result<()> {
    let options = PgOptions {
        url: cli.database_url.clone(),
        workflows: cli.workflows,
        warmup: cli.warmup,
        drained_workflows: cli
            .concurrent_workflows
            .unwrap_or(cli.workflows * PG_DRAINED_PER_WORKFLOW),
        steps: cli.steps,
        workers: if cli.skip_worker {
            Vec::new()
        } else {
            cli.pg_workers.clone()
        },
        worker_concurrency: cli.worker_concurrency.max(1),
        enqueue_concurrency: cli.concurrency.iter().copied().max().unwrap_or(1).max(1),
        raw_commits: cli.baseline_commits.max(1),
        raw_clients: cli.pg_clients.max(1),
        raw_client_commits: cli.pg_client_commits.max(1),
        exe: std::env::current_exe().context("finding this binary to start workers")?,
        keep_data: cli.keep_data,
    };
    let report = postgres::measure(&options)?;
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
        allocator: cairn_bench::ALLOCATOR,
        tokio_workers: cli
            .tokio_workers
            .unwrap_or_else(|| system::cpus().saturating_sub(1))
            .max(1),
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
        .worker_threads(settings.tokio_workers)
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

        let http = match cli.via {
            Via::Inproc => None,
            Via::Http => {
                let plan = HttpPlan {
                    workflow: &workflow,
                    steps: cli.steps,
                    workflows: cli.workflows,
                    warmup: cli.warmup,
                    concurrent_workflows,
                    concurrency: &cli.concurrency,
                };
                let open = |name: &str| open_engine(&run_dir.join(name), &workflow, max_concurrency, &options);
                Some(http::measure(&plan, open, &sequential, &concurrent).await?)
            }
        };

        eprintln!("1. raw SQLite limits again (the ratios use the faster of the two)…");
        let again = baseline::measure(&run_dir.join("baseline"), settings.baseline)?;
        let baseline = baseline.best_of(again);
        let ratios = Ratios::of(&baseline, &sequential, &concurrent);
        let mut targets = check_targets(&settings, &sequential, &concurrent, &ratios);
        targets.extend(http.iter().flat_map(http::check_http_targets));
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
            http,
            targets,
        })
    })
}
