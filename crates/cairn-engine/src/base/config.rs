//! How an engine behaves: its configuration and the limits it enforces on what users give it.

use std::time::Duration;

use cairn_core::Limits;

/// How the engine behaves. The defaults suit a single machine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a run's lease lasts without a heartbeat. A crashed worker's runs are taken
    /// over this long after its last heartbeat. Default 15 s.
    pub lease_ttl: Duration,
    /// How often an idle worker looks for ready runs (runs started in this process wake it at
    /// once). Default 250 ms.
    pub poll_interval: Duration,
    /// Most runs one worker executes at once. Default 256.
    pub max_concurrent_runs: usize,
    /// Payload and history limits.
    pub limits: Limits,
    /// How long a stopping worker waits for steps in flight before it lets go. Default 30 s.
    pub shutdown_grace: Duration,
    /// Waits (sleeps, hooks, retry backoffs) up to this long are waited in-process, holding
    /// the lease; longer ones park the run. Default 1 s.
    pub in_process_wait_limit: Duration,
    /// For replaying a recorded history against current code (`cairn::testing::replay`):
    /// a step that is not in the history fails the run with an
    /// [`Unrecorded`](cairn_core::ErrorKind::Unrecorded) error instead of executing.
    /// Default false.
    pub replay_only: bool,
    /// For tests: an execution gives its run back before each step it would begin after its
    /// first, so every step begins with a replay of the run's whole history from the store,
    /// maybe on another worker (as a worker that caches no workflow state, Temporal's
    /// `MaxCachedWorkflows = 0`). Slow; `cairn-sim` turns it on for some seeds. Default false.
    pub replay_every_step: bool,
    /// The base of hooks' resume URLs (`<public_url>/hooks/<token>`): where the HTTP server
    /// is reachable. Default `http://127.0.0.1:3000`.
    pub public_url: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            max_concurrent_runs: 256,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(30),
            in_process_wait_limit: Duration::from_secs(1),
            replay_only: false,
            replay_every_step: false,
            public_url: "http://127.0.0.1:3000".to_owned(),
        }
    }
}

impl EngineConfig {
    /// The lease's time to live in milliseconds.
    pub(crate) fn lease_ttl_ms(&self) -> i64 {
        millis(self.lease_ttl)
    }
}

/// A duration in whole milliseconds, saturating (durations this large never occur in practice).
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The longest custom step key (`.key("…")`).
pub const MAX_STEP_KEY_LEN: usize = 200;
