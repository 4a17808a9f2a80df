//! Worker processes: W copies of `cairn-bench` started in the hidden `--worker-child` mode,
//! each one engine with its own `PostgresStore` (own pool, own write queue, own `LISTEN`
//! connection) and its own worker id, exactly as W `worker` processes would run.
//!
//! The protocol is a line at a time: the child connects and prints `ready`; on `go` (stdin)
//! it starts `run_worker`; on `stop` (or stdin closing) it stops the worker, flushes its
//! store and prints `result <json>` ([`ChildReport`]) before exiting. Errors go to stderr,
//! which the child shares with the parent.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::{Context, bail, ensure};
use cairn_core::Event;
use cairn_engine::CancellationToken;
use cairn_store::WorkerId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::{postgres::open_engine, system, workload::noop_workflow};

/// The environment variable mimalloc reads at start to allow transparent huge pages or not.
const ALLOW_THP: &str = "MIMALLOC_ALLOW_THP";

/// What one worker process is asked to do.
#[derive(Clone, Debug)]
pub struct ChildArgs {
    /// The server.
    pub url: String,
    /// The schema whose queue it drains.
    pub schema: String,
    /// Which worker it is (0-based), for its worker id.
    pub index: usize,
    /// `max_concurrent_runs` of its engine.
    pub concurrency: usize,
    /// Steps per workflow (the workflow must match the one enqueued).
    pub steps: usize,
}

/// What a worker process reports when stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildReport {
    /// Which worker it was.
    pub index: usize,
    /// Its process id.
    pub pid: u32,
    /// Its lease owner name.
    pub worker_id: String,
    /// Runs it completed, from its engine's events (absent if it missed some events).
    pub runs_completed: Option<u64>,
    /// CPU time (user + system, all threads) between `go` and `stop`, µs.
    pub cpu_us: Option<u64>,
    /// Resident set size when stopped, KiB.
    pub rss_kib: Option<u64>,
}

/// The `--worker-child` mode: the body of one worker process.
pub fn child_main(args: &ChildArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let workflow = noop_workflow(args.steps);
    let worker_id = format!("cairn-bench-w{}:{}", args.index, std::process::id());
    let engine = runtime.block_on(open_engine(
        &args.url,
        &args.schema,
        &workflow,
        args.concurrency,
        Some(WorkerId(worker_id.as_str().into())),
    ))?;
    let completed = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicBool::new(false));
    let mut events = engine.subscribe();
    {
        let (completed, lagged) = (completed.clone(), lagged.clone());
        runtime.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) if matches!(event.event, Event::RunCompleted { .. }) => {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => lagged.store(true, Ordering::Relaxed),
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    let mut stdin = std::io::stdin().lock();
    say("ready")?;
    let command = read_line(&mut stdin)?;
    ensure!(command == "go", "expected `go` on stdin, got {command:?}");
    let cpu_start = system::cpu_time_us();
    let shutdown = CancellationToken::new();
    let worker = {
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        runtime.spawn(async move { engine.run_worker(shutdown).await })
    };
    // `stop`, or the parent went away: either way, stop.
    let _ = read_line(&mut stdin);
    shutdown.cancel();
    runtime.block_on(async {
        worker
            .await
            .context("the worker panicked")?
            .context("the worker failed")?;
        engine.store().flush().await.context("flushing the store")
    })?;
    let report = ChildReport {
        index: args.index,
        pid: std::process::id(),
        worker_id,
        runs_completed: (!lagged.load(Ordering::Relaxed))
            .then(|| completed.load(Ordering::Relaxed)),
        cpu_us: cpu_start
            .zip(system::cpu_time_us())
            .map(|(start, end)| end.saturating_sub(start)),
        rss_kib: system::rss_kib(),
    };
    say(&format!("result {}", serde_json::to_string(&report)?))
}

fn say(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush().context("writing to the parent")
}

/// One line without its newline; an error at end of input.
fn read_line(reader: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("end of input");
    }
    Ok(line.trim_end().to_owned())
}

/// One running worker process, seen from the parent.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The parent's handle on W worker processes. Dropping it kills those still running.
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts `count` worker processes of `exe` on `schema` and waits until each has
    /// connected (prints `ready`).
    pub fn spawn(exe: &Path, template: &ChildArgs, count: usize) -> anyhow::Result<Workers> {
        let mut workers = Workers {
            workers: Vec::with_capacity(count),
        };
        for index in 0..count {
            let mut command = Command::new(exe);
            // mimalloc asks for transparent huge pages and returns memory it stopped using:
            // a worker process, allocating as runs start and freeing as they end, zeroed
            // 2 MiB pages over and over, 60-80 ms of CPU per process per drain, so that more
            // processes cost more (decision 0054). An explicit setting is kept.
            if std::env::var_os(ALLOW_THP).is_none() {
                command.env(ALLOW_THP, "0");
            }
            let mut child = command
                .args(["--store", "postgres", "--worker-child"])
                .args(["--database-url", &template.url])
                .args(["--child-schema", &template.schema])
                .args(["--child-index", &index.to_string()])
                .args(["--worker-concurrency", &template.concurrency.to_string()])
                .args(["--steps", &template.steps.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting worker process {}", exe.display()))?;
            let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
            let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
                let _ = child.kill();
                let _ = child.wait();
                bail!("worker process {index} has no stdin/stdout pipe");
            };
            workers.workers.push(Worker {
                child,
                stdin,
                stdout: BufReader::new(stdout),
            });
        }
        for (index, worker) in workers.workers.iter_mut().enumerate() {
            let line = read_line(&mut worker.stdout)
                .with_context(|| format!("worker process {index} did not start"))?;
            ensure!(line == "ready", "worker process {index} said {line:?}");
        }
        Ok(workers)
    }

    /// Tells every worker to start draining.
    pub fn go(&mut self) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            writeln!(worker.stdin, "go")?;
            worker.stdin.flush()?;
        }
        Ok(())
    }

    /// An error if a worker process has exited (they only exit when told to).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for (index, worker) in self.workers.iter_mut().enumerate() {
            if let Some(status) = worker.child.try_wait()? {
                bail!("worker process {index} exited early ({status})");
            }
        }
        Ok(())
    }

    /// Stops every worker and collects their reports.
    pub fn stop(mut self) -> anyhow::Result<Vec<ChildReport>> {
        for worker in &mut self.workers {
            writeln!(worker.stdin, "stop")?;
            worker.stdin.flush()?;
        }
        let mut reports = Vec::with_capacity(self.workers.len());
        for (index, mut worker) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            let line = read_line(&mut worker.stdout)
                .with_context(|| format!("worker process {index} stopped without a report"))?;
            let json = line
                .strip_prefix("result ")
                .with_context(|| format!("worker process {index} said {line:?}"))?;
            reports.push(serde_json::from_str(json).context("reading a worker's report")?);
            let status = worker.child.wait()?;
            ensure!(status.success(), "worker process {index} ended {status}");
        }
        Ok(reports)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if let Ok(None) = worker.child.try_wait() {
                let _ = worker.child.kill();
                let _ = worker.child.wait();
            }
        }
    }
}
