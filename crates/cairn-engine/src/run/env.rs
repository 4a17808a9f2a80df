//! The narrow environment an execution works in: the store, the clock, the entropy, the
//! configuration, where committed events are published, and how child runs are run. The
//! runtime (layer 6) builds it and implements [`ChildRuns`]; the layers between see only this.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use async_trait::async_trait;
use cairn_core::{ErrorInfo, Event, StepKey};
use cairn_store::{Lease, NewRun, RunId, Store, WorkerId};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    base::{
        clock::{Clock, StoreClock},
        config::EngineConfig,
        entropy::{Entropy, EntropyExt},
        error::ActionError,
        oauth_http::OAuthHttp,
        resources::Resources,
        vault::Keyring,
    },
    run::{RunContext, Stop, action_ctx::ActionCtx, body::ErasedWorkflow, ended::EndWaiters},
};

/// A stand-in for an action's body, on JSON values (the testing harness's mocks). It runs
/// where the action's body would (same timeout, same panic handling), and its output is still
/// validated against the action's output schema.
pub type ActionOverride =
    Arc<dyn Fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;

/// An event committed to a run's log by this process, for live progress displays. Published
/// after the commit, with the event's position in the log.
#[derive(Clone, Debug)]
pub struct RunEvent {
    /// The run.
    pub run_id: RunId,
    /// The event's position in the run's log, from 1.
    pub seq: u64,
    /// When it was written (unix ms).
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

/// What executions share with the rest of the engine.
pub(crate) struct RunEnv {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The store's clock when `clock` is it (no clock was injected): read now and then.
    pub(crate) store_clock: Option<Arc<StoreClock>>,
    pub(crate) entropy: Arc<dyn Entropy>,
    pub(crate) config: EngineConfig,
    pub(crate) worker: WorkerId,
    /// How many leases this worker has taken (see [`RunEnv::lease`]).
    pub(crate) claims: std::sync::atomic::AtomicU64,
    /// Fired when the engine stops: executions let go at their next step boundary.
    pub(crate) stopping: CancellationToken,
    /// Where committed events go (see [`RunEvent`]).
    pub(crate) events: broadcast::Sender<RunEvent>,
    /// Who waits for a run's end here; told when this process commits it.
    pub(crate) end_waiters: Arc<EndWaiters>,
    pub(crate) resources: Resources,
    pub(crate) overrides: HashMap<String, ActionOverride>,
    /// The master key credentials are sealed with.
    pub(crate) keyring: Keyring,
    /// The HTTP client OAuth tokens are refreshed (and codes exchanged) with.
    pub(crate) oauth: OAuthHttp,
    /// The runtime, which runs child runs (weak: the runtime owns this environment).
    pub(crate) children: Weak<dyn ChildRuns>,
}

impl RunEnv {
    /// Reads the store's clock if the engine runs on it and the last reading is due: before
    /// leases or due runs are judged (claims, creations, renewals).
    pub(crate) async fn read_store_clock(&self) {
        if let Some(clock) = &self.store_clock
            && clock.read_due()
        {
            clock.read_store(self.store.as_ref()).await;
        }
    }

    /// A new lease of this worker's, from now, for a claim (or a creation) of its own. Each
    /// is held under a name of its own, `<worker>/<n>`: an execution that a later claim of
    /// the same run in this process superseded (it stalled past its lease, the run went
    /// elsewhere and came back) is then refused by the fence like another worker's, instead
    /// of writing from its stale log under the new claim (found by `cairn-sim`, decision
    /// 0044).
    pub(crate) fn lease(&self) -> Lease {
        self.numbered_lease("")
    }

    /// A new lease for a claim of the worker loop (`claim_ready`), held as `<worker>/c<n>`:
    /// until the loop has heard the claim's answer nothing else here may take such a run
    /// over (see [`RunEnv::holds`]).
    pub(crate) fn loop_lease(&self) -> Lease {
        self.numbered_lease("c")
    }

    fn numbered_lease(&self, kind: &str) -> Lease {
        let claim = self
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.lease_for(&WorkerId(format!("{}/{kind}{claim}", self.worker).into()))
    }

    /// Whether `holder` is a lease this worker took for a run it created or claimed to
    /// execute at once (not one of the worker loop's claims, whose executions the loop
    /// starts itself): such a run, not executing here, is this process's to execute.
    pub(crate) fn holds(&self, holder: &WorkerId) -> bool {
        match holder.0.strip_prefix(&*self.worker.0) {
            Some("") => true,
            Some(claim) => claim.strip_prefix('/').is_some_and(|n| !n.starts_with('c')),
            None => false,
        }
    }

    /// The lease held under `holder` (an execution's claim), renewed from now.
    pub(crate) fn lease_for(&self, holder: &WorkerId) -> Lease {
        Lease {
            worker: holder.clone(),
            expires_at_ms: self.clock.now_ms() + self.config.lease_ttl_ms(),
        }
    }

    /// A new run id: a UUIDv7 of the engine's clock and entropy.
    pub(crate) fn new_run_id(&self) -> RunId {
        let millis = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        let random: [u8; 10] = self.entropy.bytes();
        RunId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// Whether anyone listens to committed events (if not, nothing is copied for them).
    pub(crate) fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Publishes events committed to `run_id`'s log, the first at `first_seq`.
    pub(crate) fn publish<'a>(
        &self,
        run_id: RunId,
        first_seq: u64,
        at_ms: i64,
        events: impl IntoIterator<Item = &'a Event> + Clone,
    ) {
        self.end_waiters.committed(run_id, events.clone());
        if !self.has_subscribers() {
            return;
        }
        for (seq, event) in (first_seq..).zip(events) {
            let _ = self.events.send(RunEvent {
                run_id,
                seq,
                at_ms,
                event: event.clone(),
            });
        }
    }

    /// Publishes a created run: its `RunCreated` (seq 1) and the history it was created with.
    pub(crate) fn publish_created(&self, run: &NewRun, at_ms: i64) {
        if !self.has_subscribers() {
            return;
        }
        let created = Event::RunCreated {
            workflow: run.workflow.clone(),
            input: run.input.clone(),
        };
        self.publish(run.id, 1, at_ms, std::iter::once(&created));
        self.publish(run.id, 2, at_ms, &run.history);
    }

    /// The runtime's child runs, or a shutdown when the engine is gone.
    pub(crate) fn children(&self) -> Result<Arc<dyn ChildRuns>, Stop> {
        self.children.upgrade().ok_or(Stop::Shutdown)
    }
}

/// Where a child run stands after its parent asked for it.
pub(crate) enum ChildState {
    /// It ended: its output, or its error.
    Ended(Result<Value, ErrorInfo>),
    /// It has not ended and cannot go on here now (parked, or held by another worker).
    Waiting {
        /// The child run.
        run_id: RunId,
        /// When it is due (unix ms; `cairn_store::NEVER` when only a resume wakes it).
        ready_at_ms: i64,
    },
}

/// Runs child runs: implemented by the runtime, used by a workflow's child step.
#[async_trait]
pub(crate) trait ChildRuns: Send + Sync {
    /// Creates the child run of `parent`'s step `key` (or finds it, if an earlier execution
    /// created it) and executes it here as far as it goes now.
    async fn run_child(
        self: Arc<Self>,
        parent: &RunContext,
        key: &StepKey,
        workflow: Arc<dyn ErasedWorkflow>,
        input: Value,
    ) -> Result<ChildState, Stop>;
}
