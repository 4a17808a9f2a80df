//! The benchmarked workload: a workflow of `K` no-op action steps, and an engine over a fresh
//! SQLite store, built only through the public API a user has.

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::{Context, ensure};
use cairn_core::{ErrorInfo, RunStatus};
use cairn_engine::{
    Action, ActionCtx, Engine, EngineConfig, Registry, Retry, StartOptions, Workflow, WorkflowCtx,
};
use cairn_store::RunId;
use cairn_store_sqlite::{SqliteOptions, SqliteStore};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The workflow's slug.
pub const WORKFLOW: &str = "bench-noop";
/// The no-op action's slug.
pub const ACTION: &str = "noop";

/// The payload passed from step to step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Count {
    /// A number the steps pass along unchanged.
    pub n: u64,
}

/// The no-op action: returns its input (no retries, nothing to wait for).
pub fn noop_action() -> Action<Count, Count> {
    Action::new(ACTION)
        .description("Returns its input")
        .retry(Retry::none())
        .run(|input: Count, _ctx: ActionCtx| async move { Ok(input) })
}

/// A workflow that calls the no-op action `steps` times in a row (keys `noop#0…`).
pub fn noop_workflow(steps: usize) -> Workflow<Count, Count> {
    let noop = noop_action();
    Workflow::new(WORKFLOW).run(move |input: Count, _ctx: WorkflowCtx| {
        let noop = noop.clone();
        async move {
            let mut value = input;
            for _ in 0..steps {
                value = noop.run(value).await?;
            }
            Ok(value)
        }
    })
}

/// An engine executing `workflow` on a new SQLite store in `dir` (which must not hold one),
/// with the store's `options`.
pub fn open_engine(
    dir: &Path,
    workflow: &Workflow<Count, Count>,
    max_concurrent_runs: usize,
    options: &SqliteOptions,
) -> anyhow::Result<Engine> {
    let path = dir.join(cairn_store_sqlite::DATABASE_FILE);
    let store = SqliteStore::open_with(&path, options.clone())
        .with_context(|| format!("opening a SQLite store at {}", path.display()))?;
    let config = EngineConfig {
        max_concurrent_runs: max_concurrent_runs.max(1),
        ..EngineConfig::default()
    };
    Ok(
        Engine::builder(Arc::new(store), Registry::new().workflow(workflow))
            .config(config)
            .build()
            .expect("valid registry"),
    )
}

/// Starts one run here and executes it to its end, as a request handler calling the engine
/// would; returns how long it took. A run that does not succeed is an error.
pub async fn run_one(
    engine: &Engine,
    workflow: &Workflow<Count, Count>,
    n: u64,
) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let run = engine
        .run(workflow, &Count { n }, StartOptions::default())
        .await?;
    let took = started.elapsed();
    ensure_succeeded(run.run_id, run.status, run.error.as_ref())?;
    Ok(took)
}

/// Fails the measurement unless the run succeeded, saying how it ended.
pub(crate) fn ensure_succeeded(
    run_id: RunId,
    status: RunStatus,
    error: Option<&ErrorInfo>,
) -> anyhow::Result<()> {
    ensure!(
        status == RunStatus::Succeeded,
        "run {run_id} ended {status} instead of succeeding: {error:?}"
    );
    Ok(())
}
