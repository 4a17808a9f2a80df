//! `--via http`: the engine measured through its HTTP API, as Restate's figures were measured
//! through its ingress. A [`BenchServer`] serves a fresh engine (same store settings as the
//! in-process measurements, worker in the same process) on `127.0.0.1:0`; clients are tokio
//! tasks of the same process, each with one keep-alive connection ([`client`]), each request
//! `POST /workflows/{slug}?wait=60s` answered with the ended run.
//!
//! The in-process figures are measured in the same run, so [`HttpFigures`] can give the
//! ratios HTTP ÷ in-process, and the targets of issue 22 are judged against them.

pub mod client;
pub mod layers;
mod report;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::Context;
use cairn_engine::{CancellationToken, Engine, Workflow};
use cairn_server::{ServeOptions, Server, ServerError};
use serde::Serialize;
use tokio::task::JoinHandle;

pub use report::{HttpRatios, LevelRatio, check_http_targets};

use crate::{
    scenarios::{Clock, Throughput},
    stats::Latencies,
    workload::Count,
};
use client::Connection;
use layers::Layers;

/// What `--via http` measured.
#[derive(Clone, Debug, Serialize)]
pub struct HttpFigures {
    /// How the requests were made, for the report.
    pub method: String,
    /// Sequential latency: one client, one request after another.
    pub sequential: Throughput,
    /// Throughput with C clients, one per concurrency level.
    pub concurrent: Vec<Throughput>,
    /// The request's layers measured apart (HTTP alone, the engine path alone).
    pub layers: Layers,
    /// HTTP ÷ in-process, for each measurement.
    pub ratios: HttpRatios,
}

/// A `cairn-server` serving an engine (and running its worker) on a loopback port.
pub struct BenchServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    serving: JoinHandle<Result<(), ServerError>>,
}

impl BenchServer {
    /// Binds `127.0.0.1:0` and serves `engine` with the server's default options (a worker
    /// in this process, no API keys).
    pub async fn start(engine: Engine) -> anyhow::Result<BenchServer> {
        let options = ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServeOptions::default()
        };
        let server = Server::bind(engine, options)
            .await
            .context("binding the benchmark's server")?;
        let addr = server.local_addr()?;
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(server.run(shutdown.clone()));
        Ok(BenchServer {
            addr,
            shutdown,
            serving,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it (and its worker) and waits until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.serving
            .await
            .context("the benchmark's server panicked")?
            .context("the benchmark's server failed")
    }
}

/// `workflows` requests made one after another on one connection (after `warmup` unmeasured
/// ones).
pub async fn sequential(
    addr: SocketAddr,
    steps: usize,
    workflows: usize,
    warmup: usize,
) -> anyhow::Result<Throughput> {
    let mut connection = Connection::open(addr).await?;
    for n in 0..warmup {
        connection.run_one(n as u64).await?;
    }
    let mut latency = Latencies::new();
    let clock = Clock::start();
    for n in 0..workflows {
        latency.record(connection.run_one(n as u64).await?);
    }
    Ok(Throughput::new(workflows, 1, steps, &clock, Some(&latency)))
}

/// `workflows` requests made by `concurrency` clients, each looping on its own connection
/// (opened, and warmed by one unmeasured request each, before the clock starts).
pub async fn concurrent(
    addr: SocketAddr,
    steps: usize,
    workflows: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let concurrency = concurrency.max(1);
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(addr).await?);
    }
    let (connections, _) = clients(connections, concurrency).await?;
    let clock = Clock::start();
    let (_, latency) = clients(connections, workflows).await?;
    Ok(Throughput::new(
        workflows,
        concurrency,
        steps,
        &clock,
        Some(&latency),
    ))
}

/// Makes `workflows` requests over `connections`, one task per connection; hands the
/// connections back with the requests' latencies.
async fn clients(
    connections: Vec<Connection>,
    workflows: usize,
) -> anyhow::Result<(Vec<Connection>, Latencies)> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= workflows {
                        return anyhow::Ok((connection, samples));
                    }
                    samples.push(connection.run_one(n as u64).await?);
                }
            })
        })
        .collect();
    let mut latency = Latencies::new();
    let mut connections = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (connection, samples) = task.await.context("a benchmark client panicked")??;
        for took in samples {
            latency.record(took);
        }
        connections.push(connection);
    }
    Ok((connections, latency))
}

/// What the HTTP measurements run: the in-process measurements' sizes.
pub struct HttpPlan<'a> {
    /// The workflow (for the engine path measured without HTTP).
    pub workflow: &'a Workflow<Count, Count>,
    /// Steps per workflow.
    pub steps: usize,
    /// Sequential requests.
    pub workflows: usize,
    /// Unmeasured sequential requests first.
    pub warmup: usize,
    /// Requests per concurrent measurement.
    pub concurrent_workflows: usize,
    /// Client counts.
    pub concurrency: &'a [usize],
}

/// Runs the sequential and concurrent measurements over HTTP, each on a fresh engine from
/// `open` (given a name for its data directory) served by its own [`BenchServer`], and
/// compares them with the in-process figures of the same run.
pub async fn measure(
    plan: &HttpPlan<'_>,
    open: impl Fn(&str) -> anyhow::Result<Engine>,
    inproc_sequential: &Throughput,
    inproc_concurrent: &[Throughput],
) -> anyhow::Result<HttpFigures> {
    eprintln!("6. over HTTP, sequential: {} requests…", plan.workflows);
    let server = BenchServer::start(open("http-sequential")?).await?;
    let sequential = sequential(server.addr(), plan.steps, plan.workflows, plan.warmup).await?;
    eprintln!("6. layers: GET /healthz, then the server's engine path without HTTP…");
    let http_round_trip =
        layers::http_round_trip(server.addr(), plan.workflows, plan.warmup).await?;
    server.stop().await?;
    let detached_sequential = layers::detached_sequential(
        &open("detached-sequential")?,
        plan.workflow,
        plan.steps,
        plan.workflows,
        plan.warmup,
    )
    .await?;
    let mut levels = Vec::new();
    for &level in plan.concurrency {
        eprintln!(
            "6. over HTTP, concurrent: {} requests, {level} clients…",
            plan.concurrent_workflows
        );
        let server = BenchServer::start(open(&format!("http-concurrent-{level}"))?).await?;
        levels.push(concurrent(server.addr(), plan.steps, plan.concurrent_workflows, level).await?);
        server.stop().await?;
    }
    let ratios = HttpRatios::of(&sequential, &levels, inproc_sequential, inproc_concurrent);
    Ok(HttpFigures {
        method: format!(
            "POST /workflows/{{slug}}?wait={}, hyper HTTP/1.1 keep-alive",
            client::WAIT
        ),
        sequential,
        concurrent: levels,
        layers: Layers {
            http_round_trip,
            detached_sequential,
        },
        ratios,
    })
}
