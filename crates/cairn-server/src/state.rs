//! What every handler shares: the engine, the limits, and the server's shutdown signal.

use std::{sync::Arc, time::Duration};

use cairn_engine::Engine;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{auth::ApiKeys, metrics::Metrics};

/// The state handlers are given.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The engine every request goes through.
    pub(crate) engine: Engine,
    /// The largest body accepted, in bytes (the engine's payload limit).
    pub(crate) body_limit: usize,
    /// The longest `?wait=` honoured.
    pub(crate) max_wait: Duration,
    /// The keys protected routes accept (none: open).
    pub(crate) keys: ApiKeys,
    /// Fires when the server stops: waits answer at once, streams end.
    pub(crate) shutdown: CancellationToken,
    /// Slots for runs a `?wait` start executes in this process (the worker's concurrency);
    /// `None` without a worker here: other processes execute every run.
    pub(crate) executions: Option<Arc<Semaphore>>,
    /// Those executions, waited for when the server stops.
    pub(crate) executing: TaskTracker,
    /// `GET /openapi.json`, built once.
    pub(crate) openapi: Arc<serde_json::Value>,
    /// What `GET /metrics` shows.
    pub(crate) metrics: Arc<Metrics>,
}
