//! The engine measurements: sequential latency, concurrent throughput (C callers each looping
//! `Engine::run`), and a queue-drained mode (runs enqueued detached, then a worker drains
//! them).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use cairn_core::{Event, RunStatus};
use cairn_engine::{CancellationToken, Engine, StartOptions, Workflow};
use cairn_store::RunId;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    stats::{Latencies, LatencySummary, per_second},
    system,
    workload::{Count, run_one},
};

/// Throughput and latency of one engine measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Workflows measured.
    pub workflows: usize,
    /// Callers running workflows at once (1 for the sequential test).
    pub concurrency: usize,
    /// Steps per workflow.
    pub steps: usize,
    /// Wall-clock seconds of the measurement.
    pub seconds: f64,
    /// Workflows completed per second.
    pub wf_per_sec: f64,
    /// Steps completed per second (`wf_per_sec × steps`).
    pub steps_per_sec: f64,
    /// Per-workflow latency, start to end (absent for the queue-drained mode, where it would
    /// only measure the queue).
    pub latency: Option<LatencySummary>,
    /// Process CPU time (all threads, user + system) per workflow, µs: how much machine a
    /// workflow costs, steadier than wall-clock figures on a noisy host.
    pub cpu_us_per_wf: Option<f64>,
    /// CPU time of the SQLite store's writer thread per workflow, µs: the part of the work
    /// one thread does for every workflow, so `1e6 ÷` it bounds the workflows per second
    /// (absent for PostgreSQL).
    pub writer_cpu_us_per_wf: Option<f64>,
    /// Resident set size at the end of the measurement, KiB.
    pub rss_kib: Option<u64>,
}

impl Throughput {
    /// The figures of `workflows` runs (of `steps` steps) measured since `clock` started.
    pub fn new(
        workflows: usize,
        concurrency: usize,
        steps: usize,
        clock: &Clock,
        latency: Option<&Latencies>,
    ) -> Throughput {
        let elapsed = clock.wall.elapsed();
        let per_wf = |start: Option<u64>, end: Option<u64>| {
            start
                .zip(end)
                .map(|(start, end)| end.saturating_sub(start) as f64 / workflows.max(1) as f64)
        };
        let cpu_us_per_wf = per_wf(clock.cpu_us, system::cpu_time_us());
        let writer_cpu_us_per_wf = per_wf(clock.writer_cpu_us, writer_cpu_time_us());
        let wf_per_sec = per_second(workflows, elapsed);
        Throughput {
            workflows,
            concurrency,
            steps,
            seconds: elapsed.as_secs_f64(),
            wf_per_sec,
            steps_per_sec: wf_per_sec * steps as f64,
            latency: latency.map(Latencies::summary),
            cpu_us_per_wf,
            writer_cpu_us_per_wf,
            rss_kib: system::rss_kib(),
        }
    }
}

/// CPU time of every SQLite store's writer thread so far, µs (idle stores add nothing).
fn writer_cpu_time_us() -> Option<u64> {
    system::thread_cpu_time_us(cairn_store_sqlite::WRITER_THREAD_NAME)
}

/// When a measurement started, by the wall clock and by the process's CPU time.
pub struct Clock {
    wall: Instant,
    cpu_us: Option<u64>,
    writer_cpu_us: Option<u64>,
}

impl Clock {
    /// Starts measuring now.
    pub fn start() -> Clock {
        Clock {
            cpu_us: system::cpu_time_us(),
            writer_cpu_us: writer_cpu_time_us(),
            wall: Instant::now(),
        }
    }
}

/// `workflows` runs started and awaited one after another (after `warmup` unmeasured ones).
pub async fn sequential(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    steps: usize,
    workflows: usize,
    warmup: usize,
) -> anyhow::Result<Throughput> {
    for n in 0..warmup {
        run_one(engine, workflow, n as u64).await?;
    }
    let mut latency = Latencies::new();
    let clock = Clock::start();
    for n in 0..workflows {
        latency.record(run_one(engine, workflow, n as u64).await?);
    }
    Ok(Throughput::new(workflows, 1, steps, &clock, Some(&latency)))
}

/// `workflows` runs executed by `concurrency` callers, each looping `Engine::run` (after a
/// warm-up of `concurrency` unmeasured runs).
pub async fn concurrent(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    steps: usize,
    workflows: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let concurrency = concurrency.max(1);
    callers(engine, workflow, concurrency, concurrency).await?;
    let clock = Clock::start();
    let latency = callers(engine, workflow, workflows, concurrency).await?;
    Ok(Throughput::new(
        workflows,
        concurrency,
        steps,
        &clock,
        Some(&latency),
    ))
}

/// Runs `workflows` runs on `concurrency` tasks; returns their latencies in one histogram.
///
/// Each task keeps plain samples, not a histogram of its own: 256 histograms would weigh
/// more than the engine whose memory the run reports.
async fn callers(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    workflows: usize,
    concurrency: usize,
) -> anyhow::Result<Latencies> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (engine, workflow, next) = (engine.clone(), workflow.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= workflows {
                        return anyhow::Ok(samples);
                    }
                    samples.push(run_one(&engine, &workflow, n as u64).await?);
                }
            })
        })
        .collect();
    let mut latency = Latencies::new();
    for task in tasks {
        for took in task.await.context("a benchmark caller panicked")?? {
            latency.record(took);
        }
    }
    Ok(latency)
}

/// The queue-drained mode's two phases.
#[derive(Clone, Debug, Serialize)]
pub struct Drained {
    /// Enqueueing: `workflows` detached starts by `concurrency` callers (runs created/s).
    pub enqueue: Throughput,
    /// Draining: one worker (`max_concurrent_runs` = `concurrency`) executing them all.
    pub drain: Throughput,
}

/// Enqueues `workflows` runs detached (with `concurrency` callers), then lets one worker
/// execute them all. The engine is stopped afterwards: give this mode its own engine.
pub async fn drained(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    steps: usize,
    workflows: usize,
    concurrency: usize,
) -> anyhow::Result<Drained> {
    let concurrency = concurrency.max(1);
    let clock = Clock::start();
    let ids = enqueue(engine, workflow, workflows, concurrency).await?;
    let enqueue = Throughput::new(workflows, concurrency, 0, &clock, None);

    let mut events = engine.subscribe();
    let shutdown = CancellationToken::new();
    let clock = Clock::start();
    let worker = {
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        tokio::spawn(async move { engine.run_worker(shutdown).await })
    };
    let mut pending: HashSet<RunId> = ids.iter().copied().collect();
    while !pending.is_empty() {
        match events.recv().await {
            Ok(event) => match event.event {
                Event::RunCompleted { .. } => {
                    pending.remove(&event.run_id);
                }
                Event::RunFailed { error, .. } => bail!("run {} failed: {error}", event.run_id),
                _ => {}
            },
            Err(RecvError::Lagged(_)) => {
                // Missed some events: ask the store about the runs still pending.
                poll_until_ended(engine, &mut pending).await?;
            }
            Err(RecvError::Closed) => bail!("the engine's event stream closed"),
        }
    }
    let drain = Throughput::new(workflows, concurrency, steps, &clock, None);
    shutdown.cancel();
    worker
        .await
        .context("the worker panicked")?
        .context("the worker failed")?;
    Ok(Drained { enqueue, drain })
}

/// Creates `workflows` queued runs with `concurrency` callers; returns their ids.
pub async fn enqueue(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    workflows: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<RunId>> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (engine, workflow, next) = (engine.clone(), workflow.clone(), next.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= workflows {
                        return anyhow::Ok(ids);
                    }
                    let count = Count { n: n as u64 };
                    let started = engine
                        .start(&workflow, &count, StartOptions::default())
                        .await?;
                    ids.push(started.run_id);
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(workflows);
    for task in tasks {
        ids.extend(task.await.context("an enqueueing caller panicked")??);
    }
    Ok(ids)
}

/// Reads each pending run until none is left unended (the fallback when events were missed).
async fn poll_until_ended(engine: &Engine, pending: &mut HashSet<RunId>) -> anyhow::Result<()> {
    let store = engine.store();
    while !pending.is_empty() {
        let mut ended = Vec::new();
        for &id in pending.iter() {
            let run = store
                .get_run(id)
                .await?
                .with_context(|| format!("run {id} vanished"))?;
            match run.status {
                RunStatus::Succeeded => ended.push(id),
                status if status.is_terminal() => {
                    bail!("run {id} ended {status}: {:?}", run.error)
                }
                _ => {}
            }
        }
        for id in ended {
            pending.remove(&id);
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}
