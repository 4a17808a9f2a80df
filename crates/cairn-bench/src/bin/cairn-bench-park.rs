//! Parked runs cost a row, not a task: parks N runs (default 100,000) on a sleep, then reports
//! the worker's resident memory with all of them parked (against its memory before any run
//! existed, measured in the same process) and the time to wake and finish them all.
//!
//! ```text
//! cargo run --release -p cairn-bench --bin cairn-bench-park -- --runs 100000
//! ```
//!
//! Time is a `ManualClock` over the real SQLite store: every run sleeps until one instant, the
//! clock jumps there once every run is parked, and the worker wakes them through the store's
//! `ready_at` index, as it would days later.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use cairn_bench::system::rss_kib;
use cairn_core::RunStatus;
use cairn_engine::{
    CancellationToken, Clock, Engine, EngineConfig, ManualClock, Registry, StartOptions, Workflow,
    WorkflowCtx,
};
use cairn_store::{RunFilter, Store};
use cairn_store_sqlite::SqliteStore;
use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Options.
#[derive(Parser)]
struct Args {
    /// How many runs to park.
    #[arg(long, default_value_t = 100_000)]
    runs: usize,
    /// Where the SQLite file goes (on the disk being measured).
    #[arg(long, default_value = "target/bench/park")]
    dir: std::path::PathBuf,
}

/// When to wake, as unix ms.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Nap {
    wake_at_ms: i64,
}

fn nap() -> Workflow<Nap, Nap> {
    Workflow::new("nap").run(|input: Nap, ctx: WorkflowCtx| async move {
        let until = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(input.wake_at_ms).unwrap_or(0));
        ctx.sleep_until(until).await?;
        Ok(input)
    })
}

/// Whether any run has `status`.
async fn any_with(store: &dyn Store, status: RunStatus) -> anyhow::Result<bool> {
    let filter = RunFilter {
        status: Some(status),
        limit: 1,
        ..RunFilter::default()
    };
    Ok(!store.list_runs(&filter).await?.is_empty())
}

async fn wait_until_none(store: &dyn Store, statuses: &[RunStatus]) -> anyhow::Result<()> {
    loop {
        let mut busy = false;
        for status in statuses {
            busy |= any_with(store, *status).await?;
        }
        if !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).context("create the data dir")?;
    let store = Arc::new(SqliteStore::open_in_dir(&args.dir)?);
    let now = cairn_engine::SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(now));
    let wake_at_ms = now + 86_400_000;
    let workflow = nap();
    let config = EngineConfig {
        in_process_wait_limit: Duration::ZERO,
        ..EngineConfig::default()
    };
    let engine = Engine::builder(store.clone(), Registry::new().workflow(&workflow))
        .config(config)
        .clock(clock.clone())
        .build()
        .expect("valid registry");
    let rss_before = rss_kib().unwrap_or(0);

    let started = Instant::now();
    for _ in 0..args.runs {
        engine
            .start(&workflow, &Nap { wake_at_ms }, StartOptions::default())
            .await?;
    }
    let created = started.elapsed();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run_worker(shutdown).await }
    });
    wait_until_none(&*store, &[RunStatus::Queued, RunStatus::Running]).await?;
    let parked_after = started.elapsed();
    let rss_parked = rss_kib().unwrap_or(0);

    let woken = Instant::now();
    clock.advance_to(wake_at_ms);
    wait_until_none(
        &*store,
        &[RunStatus::Sleeping, RunStatus::Queued, RunStatus::Running],
    )
    .await?;
    let wake_time = woken.elapsed();
    let rss_end = rss_kib().unwrap_or(0);
    shutdown.cancel();
    worker.await??;

    let n = args.runs as f64;
    println!("parked runs:            {}", args.runs);
    println!(
        "create {} runs:        {:.1} s ({:.0} runs/s)",
        args.runs,
        created.as_secs_f64(),
        n / created.as_secs_f64()
    );
    println!(
        "create + park all:      {:.1} s ({:.0} runs/s)",
        parked_after.as_secs_f64(),
        n / parked_after.as_secs_f64()
    );
    println!(
        "wake + finish all:      {:.1} s ({:.0} runs/s)",
        wake_time.as_secs_f64(),
        n / wake_time.as_secs_f64()
    );
    println!(
        "worker RSS before runs: {:.1} MiB",
        rss_before as f64 / 1024.0
    );
    println!(
        "worker RSS, all parked: {:.1} MiB ({:+.1} MiB, {:.0} bytes per parked run)",
        rss_parked as f64 / 1024.0,
        (rss_parked as f64 - rss_before as f64) / 1024.0,
        (rss_parked as f64 - rss_before as f64) * 1024.0 / n
    );
    println!("worker RSS at the end:  {:.1} MiB", rss_end as f64 / 1024.0);
    Ok(())
}
