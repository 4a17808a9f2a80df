//! Shared test fixtures: an engine on a real SQLite file in a temporary directory, and small
//! payload types.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use cairn_core::RunStatus;
use cairn_engine::{Engine, EngineConfig, EngineError, Payload, Registry, StartOptions, Workflow};
use cairn_store::{RunId, RunRecord};
use cairn_store_sqlite::SqliteStore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

/// An engine over a fresh SQLite store; keep the `TempDir` alive for the test's length.
pub fn engine(registry: Registry) -> (Engine, TempDir) {
    engine_with(registry, EngineConfig::default())
}

/// Like [`engine`], with a configuration (short leases and polls make tests quick).
pub fn engine_with(registry: Registry, mut config: EngineConfig) -> (Engine, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteStore::open_in_dir(dir.path()).expect("open store");
    config.poll_interval = config.poll_interval.min(Duration::from_millis(20));
    (
        Engine::builder(Arc::new(store), registry)
            .config(config)
            .build()
            .expect("valid registry"),
        dir,
    )
}

/// A number in, a number out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Num {
    pub n: i64,
}

/// A text in or out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Text {
    pub text: String,
}

/// Nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// Polls `check` until it is true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().await
}

/// Starts a run of `workflow` with default options.
pub async fn start<I: Payload, O: Payload>(
    engine: &Engine,
    workflow: &Workflow<I, O>,
    input: I,
) -> RunId {
    engine
        .start(workflow, &input, StartOptions::default())
        .await
        .expect("start")
        .run_id
}

/// Executes a run on a task of its own.
pub fn spawn_execute(
    engine: &Engine,
    id: RunId,
) -> tokio::task::JoinHandle<Result<RunRecord, EngineError>> {
    let engine = engine.clone();
    tokio::spawn(async move { engine.execute(id).await })
}

/// Waits (with a deadline) until the run has `status`.
pub async fn wait_for_status(engine: &Engine, id: RunId, status: RunStatus) {
    let reached = eventually(Duration::from_secs(10), async || {
        engine
            .get_run(id)
            .await
            .is_ok_and(|detail| detail.run.status == status)
    })
    .await;
    assert!(reached, "run {id} never became {status}");
}
