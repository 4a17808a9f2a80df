//! Where the time of a request over HTTP goes, measured by leaving layers out: the HTTP round
//! trip alone (`GET /healthz`: client, hyper, axum, no engine), and the server's engine path
//! alone (`Engine::start` detached, executed by the worker, `Engine::wait_until_ended`: what
//! the `?wait` handler does, without HTTP). Set beside in-process `Engine::run` and the whole
//! request, they split the difference between the two.

use std::net::SocketAddr;

use anyhow::Context;
use cairn_engine::{CancellationToken, Engine, StartOptions, Workflow};
use serde::Serialize;

use crate::{
    http::client::Connection,
    scenarios::{Clock, Throughput},
    stats::{Latencies, LatencySummary},
    workload::{Count, ensure_succeeded},
};

/// The layers measured one after another.
#[derive(Clone, Debug, Serialize)]
pub struct Layers {
    /// `GET /healthz` round trips on one keep-alive connection.
    pub http_round_trip: LatencySummary,
    /// Sequential runs started as the server starts them (detached, `trigger: api`),
    /// executed by `run_worker` in this process and awaited with `wait_until_ended`.
    pub detached_sequential: Throughput,
}

/// `requests` `GET /healthz` round trips on one connection to `addr` (after `warmup`).
pub async fn http_round_trip(
    addr: SocketAddr,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<LatencySummary> {
    let mut connection = Connection::open(addr).await?;
    for _ in 0..warmup {
        connection.health().await?;
    }
    let mut latency = Latencies::new();
    for _ in 0..requests {
        latency.record(connection.health().await?);
    }
    Ok(latency.summary())
}

/// `workflows` runs one after another, each started detached and awaited until it ended,
/// executed by a worker of `engine` in this process (after `warmup` unmeasured ones). The
/// worker is stopped afterwards.
pub async fn detached_sequential(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    steps: usize,
    workflows: usize,
    warmup: usize,
) -> anyhow::Result<Throughput> {
    let shutdown = CancellationToken::new();
    let worker = {
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        tokio::spawn(async move { engine.run_worker(shutdown).await })
    };
    for n in 0..warmup {
        start_and_wait(engine, workflow, n as u64).await?;
    }
    let mut latency = Latencies::new();
    let clock = Clock::start();
    for n in 0..workflows {
        latency.record(start_and_wait(engine, workflow, n as u64).await?);
    }
    let measured = Throughput::new(workflows, 1, steps, &clock, Some(&latency));
    shutdown.cancel();
    worker
        .await
        .context("the worker panicked")?
        .context("the worker failed")?;
    Ok(measured)
}

/// What the `?wait` handler does for one request, timed.
async fn start_and_wait(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    n: u64,
) -> anyhow::Result<std::time::Duration> {
    let started = std::time::Instant::now();
    let options = StartOptions {
        trigger: Some("api".into()),
        ..StartOptions::default()
    };
    let run = engine.start(workflow, &Count { n }, options).await?;
    let ended = engine.wait_until_ended(run.run_id).await?;
    let took = started.elapsed();
    ensure_succeeded(ended.run_id, ended.status, ended.error.as_ref())?;
    Ok(took)
}
