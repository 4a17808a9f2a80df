//! `--store postgres` (issue 6): the engine on PostgreSQL, next to the server's raw commit
//! limit measured in the same run on the same database.
//!
//! 1. **Raw baseline** ([`raw`]): single-row `BEGIN; INSERT; COMMIT` from one client, and
//!    for reference from many clients at once, on a scratch table in a fresh schema.
//! 2. **Sequential latency**: one engine starts and executes workflows one at a time.
//! 3. **Worker throughput**: for each W, a fresh schema gets N queued runs (detached starts),
//!    then W worker *processes* ([`child`]), each with its own store and worker id, drain it
//!    with `run_worker`; the end is when no run is left unfinished.
//! 4. **Ratios** against the one-client commit rate, which mean the same on any machine.
//!
//! Every schema is named `cairn_bench_<pid>_<ms>_<what>` and dropped at the end (unless
//! `--keep-data`), also when a measurement fails.

pub mod child;
pub mod interleaved;
pub mod raw;
pub mod report;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use cairn_engine::{Engine, EngineConfig, Registry, Workflow};
use cairn_store::WorkerId;
use cairn_store_postgres::{PostgresOptions, PostgresStore};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::runtime::Runtime;

use crate::{
    scenarios::{self, Clock, Throughput},
    stats::per_second,
    system::{self, Machine},
    workload::{Count, noop_workflow},
};
use child::{ChildArgs, Workers};
use report::{PgReport, PgSettings, Ratios, Server, WorkerRun};

/// The server used when neither `--database-url` nor `CAIRN_DATABASE_URL` is given.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// The longest a drain may take before the run is called stuck.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// How often the parent looks whether the queue is drained.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// What to measure.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The server.
    pub url: String,
    /// Sequential workflows.
    pub workflows: usize,
    /// Unmeasured sequential workflows first.
    pub warmup: usize,
    /// Runs enqueued, then drained, per worker count.
    pub drained_workflows: usize,
    /// Steps per workflow.
    pub steps: usize,
    /// Worker process counts.
    pub workers: Vec<usize>,
    /// `max_concurrent_runs` of each worker.
    pub worker_concurrency: usize,
    /// Callers enqueueing the runs.
    pub enqueue_concurrency: usize,
    /// One-client raw commits.
    pub raw_commits: usize,
    /// Clients of the concurrent raw measurement.
    pub raw_clients: usize,
    /// Commits per client in the concurrent raw measurement.
    pub raw_client_commits: usize,
    /// The `cairn-bench` binary to start as worker processes.
    pub exe: PathBuf,
    /// Keep the schemas.
    pub keep_data: bool,
}

/// An engine executing `workflow` on a `PostgresStore` of its own in `schema` (created if
/// missing), as one worker process would have.
pub async fn open_engine(
    url: &str,
    schema: &str,
    workflow: &Workflow<Count, Count>,
    max_concurrent_runs: usize,
    worker: Option<WorkerId>,
) -> anyhow::Result<Engine> {
    let options = PostgresOptions {
        schema: Some(schema.to_owned()),
        application_name: "cairn-bench".to_owned(),
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(url, options)
        .await
        .with_context(|| format!("connecting to {} (schema {schema})", redact_url(url)))?;
    let config = EngineConfig {
        max_concurrent_runs: max_concurrent_runs.max(1),
        ..EngineConfig::default()
    };
    let mut builder =
        Engine::builder(Arc::new(store), Registry::new().workflow(workflow)).config(config);
    if let Some(worker) = worker {
        builder = builder.worker_id(worker);
    }
    Ok(builder.build()?)
}

/// Runs every measurement and drops the schemas it made.
pub fn measure(options: &PgOptions) -> anyhow::Result<PgReport> {
    ensure!(
        options.workflows > 0 && options.drained_workflows > 0,
        "--workflows and --concurrent-workflows must be at least 1"
    );
    ensure!(
        options.workers.iter().all(|&w| w > 0),
        "--pg-workers needs counts of at least 1"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let mut run = Run {
        runtime: &runtime,
        options,
        prefix: format!("cairn_bench_{}_{stamp}", std::process::id()),
        schemas: Vec::new(),
    };
    let result = run.all();
    if !options.keep_data {
        if let Err(error) = runtime.block_on(drop_schemas(&options.url, &run.schemas)) {
            eprintln!("warning: could not drop the benchmark's schemas: {error:#}");
        }
    } else {
        eprintln!("kept schemas: {}", run.schemas.join(", "));
    }
    result
}

/// One benchmark run: its runtime, options and the schemas it has made so far.
struct Run<'a> {
    runtime: &'a Runtime,
    options: &'a PgOptions,
    prefix: String,
    schemas: Vec<String>,
}

impl Run<'_> {
    /// A new schema name, remembered for dropping.
    fn schema(&mut self, what: &str) -> String {
        let name = format!("{}_{what}", self.prefix);
        self.schemas.push(name.clone());
        name
    }

    fn all(&mut self) -> anyhow::Result<PgReport> {
        let o = self.options;
        let server = self.runtime.block_on(server_info(&o.url))?;
        if server.data_in_memory() {
            eprintln!(
                "warning: the server's data directory is in memory: commits cost nothing there"
            );
        }
        eprintln!(
            "1. raw PostgreSQL commits (1 client, then {})…",
            o.raw_clients
        );
        let schema = self.schema("raw");
        let baseline = self.runtime.block_on(async {
            create_schema(&o.url, &schema).await?;
            raw::measure(
                &o.url,
                &schema,
                o.raw_commits,
                o.raw_clients,
                o.raw_client_commits,
            )
            .await
        })?;

        eprintln!("2. sequential: {} workflows…", o.workflows);
        let raw_schema = schema;
        let schema = self.schema("seq");
        let workflow = noop_workflow(o.steps);
        let (sequential, interleaved) = self.runtime.block_on(async {
            let engine = open_engine(&o.url, &schema, &workflow, 1, None).await?;
            let measured =
                scenarios::sequential(&engine, &workflow, o.steps, o.workflows, o.warmup).await?;
            eprintln!(
                "2. sequential again, each workflow after one raw commit: {} pairs…",
                o.workflows
            );
            let interleaved =
                interleaved::measure(&o.url, &raw_schema, &engine, &workflow, o.workflows).await?;
            engine.store().flush().await?;
            anyhow::Ok((measured, interleaved))
        })?;

        let mut workers = Vec::new();
        for &count in &o.workers {
            eprintln!(
                "3. {count} worker process(es): enqueue {} runs, then drain…",
                o.drained_workflows
            );
            let schema = self.schema(&format!("w{count}"));
            workers.push(self.drain(&schema, &workflow, count)?);
        }
        let ratios = Ratios::of(&baseline, &sequential, &workers);
        Ok(PgReport {
            version: env!("CARGO_PKG_VERSION"),
            finished_at_unix: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            server,
            settings: PgSettings::of(o, &redact_url(&o.url), &self.prefix),
            baseline,
            sequential,
            interleaved,
            workers,
            ratios,
            peak_rss_kib: system::peak_rss_kib(),
        })
    }

    /// Enqueues the runs in `schema`, then lets `count` worker processes drain them.
    fn drain(
        &mut self,
        schema: &str,
        workflow: &Workflow<Count, Count>,
        count: usize,
    ) -> anyhow::Result<WorkerRun> {
        let o = self.options;
        let runs = o.drained_workflows;
        let enqueue = self.runtime.block_on(async {
            let engine = open_engine(&o.url, schema, workflow, 1, None).await?;
            let clock = Clock::start();
            scenarios::enqueue(&engine, workflow, runs, o.enqueue_concurrency).await?;
            let enqueued = Throughput::new(runs, o.enqueue_concurrency, 0, &clock, None);
            engine.store().flush().await?;
            anyhow::Ok(enqueued)
        })?;

        let template = ChildArgs {
            url: o.url.clone(),
            schema: schema.to_owned(),
            index: 0,
            concurrency: o.worker_concurrency,
            steps: o.steps,
        };
        let mut processes = Workers::spawn(&o.exe, &template, count)?;
        let mut conn = self.runtime.block_on(raw::connect(&o.url, schema))?;
        let machine_start = system::machine_cpu_ticks();
        processes.go()?;
        let started = Instant::now();
        self.runtime
            .block_on(wait_drained(&mut conn, &mut processes, started))?;
        let elapsed = started.elapsed();
        let machine_busy = machine_start
            .zip(system::machine_cpu_ticks())
            .and_then(|(start, end)| system::busy_share(start, end));
        let children = processes.stop()?;
        let succeeded = self.runtime.block_on(succeeded_runs(&mut conn))?;
        ensure!(
            succeeded == runs,
            "{succeeded} of {runs} runs succeeded in schema {schema}"
        );

        let cpu: Option<u64> = children.iter().map(|child| child.cpu_us).sum();
        let wf_per_sec = per_second(runs, elapsed);
        let drain = Throughput {
            workflows: runs,
            concurrency: o.worker_concurrency,
            steps: o.steps,
            seconds: elapsed.as_secs_f64(),
            wf_per_sec,
            steps_per_sec: wf_per_sec * o.steps as f64,
            latency: None,
            cpu_us_per_wf: cpu.map(|us| us as f64 / runs as f64),
            writer_cpu_us_per_wf: None,
            rss_kib: children.iter().filter_map(|child| child.rss_kib).max(),
        };
        Ok(WorkerRun {
            workers: count,
            enqueue,
            drain,
            machine_busy,
            children,
        })
    }
}

/// Polls until no run in the schema is unfinished, failing if a worker dies or the drain
/// takes longer than [`DRAIN_DEADLINE`].
async fn wait_drained(
    conn: &mut PgConnection,
    processes: &mut Workers,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        let unfinished: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE finished_at IS NULL)")
                .fetch_one(&mut *conn)
                .await
                .context("polling the queue")?;
        if !unfinished {
            return Ok(());
        }
        processes.check_running()?;
        if started.elapsed() > DRAIN_DEADLINE {
            bail!("the queue was not drained within {DRAIN_DEADLINE:?}");
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

async fn succeeded_runs(conn: &mut PgConnection) -> anyhow::Result<usize> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(usize::try_from(count).unwrap_or(0))
}

async fn create_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating schema {schema}"))?;
    conn.close().await.ok();
    Ok(())
}

async fn drop_schemas(url: &str, schemas: &[String]) -> anyhow::Result<()> {
    if schemas.is_empty() {
        return Ok(());
    }
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    for schema in schemas {
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping schema {schema}"))?;
    }
    conn.close().await.ok();
    Ok(())
}

/// The server's version and durability settings, and where its data lives if that
/// directory is visible from here.
async fn server_info(url: &str) -> anyhow::Result<Server> {
    let mut conn = PgConnection::connect(url).await.with_context(|| {
        format!(
            "connecting to {} (set --database-url or CAIRN_DATABASE_URL)",
            redact_url(url)
        )
    })?;
    let setting = |name: &'static str| sqlx::query("SELECT current_setting($1, true)").bind(name);
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "data_directory",
    ] {
        let value: Option<String> = setting(name).fetch_one(&mut conn).await?.try_get(0)?;
        settings.push(value.unwrap_or_default());
    }
    conn.close().await.ok();
    let [
        version,
        synchronous_commit,
        fsync,
        wal_sync_method,
        commit_delay,
        data_dir,
    ] = <[String; 6]>::try_from(settings).expect("six settings were read");
    let machine = (!data_dir.is_empty() && std::path::Path::new(&data_dir).exists())
        .then(|| Machine::describe(std::path::Path::new(&data_dir)));
    Ok(Server {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        version,
        synchronous_commit,
        fsync,
        wal_sync_method,
        commit_delay,
        data_directory: (!data_dir.is_empty()).then_some(data_dir),
        data_dir_fs: machine.as_ref().and_then(|m| m.data_dir_fs.clone()),
        data_dir_device: machine.and_then(|m| m.data_dir_device),
    })
}

/// A database URL without its password, for messages and the report.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url(DEFAULT_URL), DEFAULT_URL);
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
