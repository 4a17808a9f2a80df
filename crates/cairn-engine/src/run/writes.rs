//! How an execution's events reach the store: recorded in memory at once, written
//! together at the last moment that keeps every guarantee.
//!
//! The rule: an event must be durable before anything outside the workflow body can depend
//! on it. That is before an action attempt or a child run starts (their effects leave the
//! process), before the run parks, releases its lease or ends, and before a hook can time
//! out. Until then the body goes on from memory: a step completed just before the next one
//! starts is written with that start's barrier, and the last step's result is written with
//! the run's end, in one commit. When the body waits on something else (parallel steps in
//! flight), whatever it recorded is written at once, in the background, so a long wait never
//! leaves a result unwritten.
//!
//! A run started with `Engine::run` (no idempotency key) is not even
//! created until its first write: `RunCreated` and the first steps share one commit. Nobody
//! else can know of the run before then: its id is fresh and nothing outside has seen it.
//!
//! Writes of one execution are serialized by `write_lock`, so they reach the store in the
//! order the events were recorded. Once committed, events are published with their `seq`
//! (see `RunEvent`); an execution that is stopping for good records nothing more.

use std::sync::{Arc, PoisonError};

use cairn_core::Event;
use cairn_store::{NewRun, StoreError};

use crate::run::{Halted, RunContext};

/// What an execution has recorded but not written yet.
#[derive(Default)]
pub(crate) struct Unwritten {
    /// Events recorded, not in the store yet.
    events: Vec<Event>,
    /// The run itself, when it is created by its first write.
    create: Option<NewRun>,
}

impl Unwritten {
    /// Starts with the run still to be created (or `None`: it exists).
    pub(crate) fn new(create: Option<NewRun>) -> Self {
        Unwritten {
            events: Vec::new(),
            create,
        }
    }
}

/// How long the first retry of a write that met a transient store error waits; each later
/// retry waits four times longer, up to [`MAX_WRITE_RETRY_DELAY_MS`].
const FIRST_WRITE_RETRY_DELAY_MS: u64 = 20;
/// After a wait this long, a write gives up and the execution lets the run go.
const MAX_WRITE_RETRY_DELAY_MS: u64 = 2_000;

impl RunContext {
    fn unwritten(&self) -> std::sync::MutexGuard<'_, Unwritten> {
        self.unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `events` now; they are written by the next barrier. An execution stopping
    /// for good records nothing.
    pub(crate) fn defer(&self, events: impl IntoIterator<Item = Event>) {
        if self.is_ending() {
            return;
        }
        self.unwritten().events.extend(events);
    }

    /// Whether the run is still to be created by its first write.
    pub(crate) fn creation_pending(&self) -> bool {
        self.unwritten().create.is_some()
    }

    /// Writes everything recorded so far (and waits for writes already under way), retrying
    /// transient store errors. Returns the time of the write.
    pub(crate) async fn write(&self) -> Result<i64, StoreError> {
        let _order = self.write_lock.lock().await;
        self.write_unlocked().await
    }

    /// [`write`](Self::write), then `op` before anything recorded later is written: for a
    /// store operation that appends on its own (parking, a hook's timeout).
    pub(crate) async fn write_then<T, F>(&self, op: impl FnOnce() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let _order = self.write_lock.lock().await;
        self.write_unlocked().await?;
        op().await
    }

    async fn write_unlocked(&self) -> Result<i64, StoreError> {
        let Unwritten { events, create } = std::mem::take(&mut *self.unwritten());
        let mut delay_ms = FIRST_WRITE_RETRY_DELAY_MS;
        loop {
            let now = self.env.clock.now_ms();
            match self.write_once(create.as_ref(), &events, now).await {
                Ok(()) => return Ok(now),
                // An append that may have committed is not sent again: it would record its
                // events twice. The execution stops and gives the run back; the next claim
                // reads the log as committed (a create is sent again: same id, no harm).
                Err(StoreError::MaybeCommitted(why)) if create.is_none() => {
                    return Err(StoreError::MaybeCommitted(why));
                }
                Err(err) if err.is_transient() && delay_ms <= MAX_WRITE_RETRY_DELAY_MS => {
                    tracing::warn!(run = %self.run_id, error = %err, "store unavailable; retrying the write");
                    self.env
                        .clock
                        .sleep(std::time::Duration::from_millis(delay_ms))
                        .await;
                    delay_ms *= 4;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt at writing `events`, creating the run first if `create` holds it (all or
    /// nothing, so a retry writes the same again); publishes them once committed.
    async fn write_once(
        &self,
        create: Option<&NewRun>,
        events: &[Event],
        now: i64,
    ) -> Result<(), StoreError> {
        let env = &self.env;
        if let Some(new) = create {
            // The run's first events go in as its history: they take effect as if appended
            // (an end ends it, a hook is registered), in the same commit.
            let lease = env.lease_for(&self.lease_holder);
            let leased_until = lease.expires_at_ms;
            let run = NewRun {
                history: events.to_vec(),
                lease: Some(lease),
                now_ms: now,
                ..new.clone()
            };
            let outcome = env.store.create_run(run).await?;
            // The id is fresh and the run has no idempotency key: a conflict is this write's
            // own earlier attempt, committed although its answer was lost.
            if outcome.run_id != self.run_id {
                return Err(StoreError::Corrupt(format!(
                    "creating run {} answered with run {}",
                    self.run_id, outcome.run_id
                )));
            }
            self.created_at(now, leased_until);
            // The execution started from the claim made in memory, whose log has the
            // `RunCreated` (seq 1) now written with the history.
            let first = self.committed(events.len() as u64);
            debug_assert_eq!(first, 2);
            env.publish_created(new, now);
            env.publish(self.run_id, first, now, events);
            return Ok(());
        }
        if !events.is_empty() {
            env.store
                .append(self.run_id, &self.lease_holder, events, now)
                .await?;
            let first = self.committed(events.len() as u64);
            env.publish(self.run_id, first, now, events);
        }
        Ok(())
    }

    /// A barrier: everything recorded so far is durable when it returns `Ok`. A failure
    /// stops the execution.
    pub(crate) async fn flush(&self) -> Result<(), Halted> {
        match self.write().await {
            Ok(_) => Ok(()),
            Err(err) => {
                self.stop_for(err);
                Err(Halted)
            }
        }
    }

    /// Records the event that ends the run and writes it with everything recorded before it.
    /// Unlike [`defer`](Self::defer), it records even when the execution is stopping for
    /// good (a non-determinism, a misuse): the run's end is what such a stop records.
    pub(crate) async fn record_end(&self, event: Event) -> Result<i64, StoreError> {
        self.unwritten().events.push(event);
        self.write().await
    }

    /// Records `events` and writes them; a failure stops the execution.
    pub(crate) async fn append(
        &self,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<(), Halted> {
        self.defer(events);
        self.flush().await
    }

    /// Starts writing what the body recorded, without waiting, if it recorded any event:
    /// called when the body waits on something else.
    pub(crate) fn write_soon(self: &Arc<Self>) {
        if self.unwritten().events.is_empty() {
            return;
        }
        let run = self.clone();
        tokio::spawn(async move {
            let _ = run.flush().await;
        });
    }
}

/// Polls a workflow body and, whenever it waits with events still unwritten, starts writing
/// them (see the module docs).
pub(crate) struct WriteWhenWaiting<F> {
    pub(crate) run: Arc<RunContext>,
    pub(crate) body: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for WriteWhenWaiting<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let polled = self.body.as_mut().poll(cx);
        if polled.is_pending() {
            self.run.write_soon();
        }
        polled
    }
}
