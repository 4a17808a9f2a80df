//! `SimStore`: the memory store (which passes the conformance suite) with a durable log and
//! an unflushed tail, as a group-committing database has. A write is applied at once to what
//! readers see and joins the tail; a flusher commits the tail every few virtual milliseconds
//! and only then answers its writers. A store crash drops the tail: what readers see is
//! rebuilt from the durable log, and the tail's writers are told their commit may or may not
//! have happened. Commits also fail with no effect, or take effect with their answer lost.
//!
//! Each worker reaches the store through its own handle, which passes the worker's gate
//! first, so a dead worker's calls never arrive and a paused one's wait.
//!
//! Only the run operations (create, claim, renew, release, append, park, cancel, retry, hooks)
//! go through the tail: the simulated workload declares no credential, schedule, poll source
//! or webhook, whose calls go straight to what readers see.

mod ops;
mod ready;

use std::sync::{Arc, Mutex};

use cairn_store::{MemoryStore, RunId, Store, StoreError, StoreResult};
use futures::FutureExt;
use tokio::sync::{Notify, oneshot};

use crate::{
    Planted,
    gate::Gate,
    world::{World, lock},
};

/// A write as the durable log keeps it: applied again, in order, to rebuild after a crash.
type Op = Arc<dyn Fn(&MemoryStore) + Send + Sync>;

/// A write waiting in the tail: its replay, and its writer's answer (`true`: durable,
/// `false`: lost in a crash).
struct Pending {
    op: Op,
    done: oneshot::Sender<bool>,
    /// Whether it may make a run ready, so its flush wakes the idle workers (claims and
    /// renewals do not, as PostgreSQL's store sends no `NOTIFY` for them).
    wakes: bool,
}

/// The store's state, shared by every worker's handle.
pub(crate) struct Shared {
    world: Arc<World>,
    /// What readers see: the durable log with the tail applied.
    visible: Mutex<MemoryStore>,
    /// The durable log applied, for the invariants (what survives a crash).
    durable: MemoryStore,
    /// Every flushed write, in order.
    durable_ops: Mutex<Vec<Op>>,
    /// The writes applied but not flushed, in order.
    tail: Mutex<Vec<Pending>>,
    tail_grew: Notify,
    /// The idle workers' wake-ups (`Store::watch_ready`).
    wakeups: Arc<ready::Wakeups>,
    /// The last `seq` of each run that a writer was told is committed.
    acked: Mutex<std::collections::HashMap<RunId, u64>>,
}

/// One process's handle on the simulated store.
#[derive(Clone)]
pub(crate) struct SimStore {
    shared: Arc<Shared>,
    gate: Option<Arc<Gate>>,
}

impl SimStore {
    /// A new, empty store, and the task that flushes its tail (to be spawned).
    pub(crate) fn new(world: Arc<World>) -> (SimStore, impl Future<Output = ()>) {
        let shared = Arc::new(Shared {
            world,
            visible: Mutex::new(MemoryStore::new()),
            durable: MemoryStore::new(),
            durable_ops: Mutex::default(),
            tail: Mutex::default(),
            tail_grew: Notify::new(),
            wakeups: Arc::default(),
            acked: Mutex::default(),
        });
        let flusher = flush_forever(shared.clone());
        (SimStore { shared, gate: None }, flusher)
    }

    /// The handle of a worker behind `gate`.
    pub(crate) fn behind(&self, gate: Arc<Gate>) -> SimStore {
        SimStore {
            shared: self.shared.clone(),
            gate: Some(gate),
        }
    }

    /// What survives a crash (for the invariants).
    pub(crate) fn durable(&self) -> &MemoryStore {
        &self.shared.durable
    }

    fn world(&self) -> &World {
        &self.shared.world
    }

    /// What readers see now.
    fn visible(&self) -> MemoryStore {
        lock(&self.shared.visible).clone()
    }

    /// Waits at the worker's gate (a dead worker's call never arrives).
    async fn pass(&self) {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
    }

    /// Runs a write: applied to what readers see, then answered once flushed (see the module
    /// docs for the faults). A refused write writes nothing and is answered at once. Once
    /// answered `Ok`, run `run`'s log up to this write counts as acknowledged (invariant 2).
    async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        run: Option<RunId>,
        op: impl Fn(&MemoryStore) -> StoreResult<T> + Send + Sync + 'static,
    ) -> StoreResult<T> {
        self.pass().await;
        let world = self.world();
        if world.fault("commit-fails", |f| f.commit_fails) {
            world.note(format!("{what}: the commit failed, nothing written"));
            return Err(StoreError::Unavailable(
                "simulated: the commit failed; nothing was written".into(),
            ));
        }
        let op = Arc::new(op);
        let (result, done, seq) = {
            let visible = lock(&self.shared.visible);
            let result = op(&visible);
            if let Err(err) = &result {
                if matches!(err, StoreError::LeaseLost { .. }) {
                    world.count("fence-rejections");
                }
                world.note(format!("{what}: refused: {err}"));
                return result;
            }
            let replay: Op = {
                let op = op.clone();
                Arc::new(move |store: &MemoryStore| drop(op(store)))
            };
            let (done, durable) = oneshot::channel();
            let wakes = !matches!(what, "claim" | "claim-ready" | "renew");
            lock(&self.shared.tail).push(Pending {
                op: replay,
                done,
                wakes,
            });
            let seq = run.map(|run| (run, last_seq(&visible, run)));
            (result, durable, seq)
        };
        self.shared.tail_grew.notify_one();
        if world.planted != Some(Planted::AckBeforeFsync) && done.await != Ok(true) {
            return Err(StoreError::MaybeCommitted(
                "simulated: the store crashed before the commit was durable".into(),
            ));
        }
        if world.fault("ack-lost", |f| f.ack_lost) {
            world.note(format!("{what}: committed, the answer lost"));
            return Err(StoreError::MaybeCommitted(
                "simulated: the commit's answer was lost".into(),
            ));
        }
        if let Some((run, seq)) = seq {
            let mut acked = lock(&self.shared.acked);
            let entry = acked.entry(run).or_default();
            *entry = (*entry).max(seq);
        }
        result
    }
}

/// The `seq` of the last event of run `id` in `store` (0 for none).
fn last_seq(store: &MemoryStore, id: RunId) -> u64 {
    at_once(store.events(id))
        .ok()
        .and_then(|events| events.last().map(|record| record.seq))
        .unwrap_or(0)
}

/// Applies a memory-store call, which completes at once (it never waits).
pub(crate) fn at_once<F: Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("the memory store answers without waiting")
}

/// Flushes the tail whenever it has writes, a few virtual milliseconds after the first
/// (the group), or loses it to a store crash.
async fn flush_forever(shared: Arc<Shared>) {
    let world = shared.world.clone();
    let group_ms = world.rng.between(1, 5);
    loop {
        if lock(&shared.tail).is_empty() {
            shared.tail_grew.notified().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(group_ms)).await;
        let batch = std::mem::take(&mut *lock(&shared.tail));
        if batch.is_empty() {
            continue;
        }
        if world.fault("store-crashes", |f| f.store_crash) {
            crash(&shared, batch);
            continue;
        }
        let wakes = batch.iter().any(|pending| pending.wakes);
        {
            let mut durable = lock(&shared.durable_ops);
            for pending in batch {
                (pending.op)(&shared.durable);
                durable.push(pending.op);
                // A writer that is gone (its worker was killed) hears nothing: that is fine.
                let _ = pending.done.send(true);
            }
        }
        if wakes {
            shared.wakeups.after_flush(&world).await;
        }
    }
}

/// A store crash: the tail is gone, readers see the durable log again, the tail's writers
/// learn their commits may not have happened; and nothing a writer was told is committed
/// may be missing (invariant 2).
fn crash(shared: &Shared, lost: Vec<Pending>) {
    let world = &shared.world;
    let rebuilt = MemoryStore::new();
    for op in lock(&shared.durable_ops).iter() {
        op(&rebuilt);
    }
    *lock(&shared.visible) = rebuilt;
    world.note(format!("store crash: {} unflushed writes lost", lost.len()));
    for pending in lost {
        let _ = pending.done.send(false);
    }
    for (run, seq) in lock(&shared.acked).iter() {
        let durable = last_seq(&shared.durable, *run);
        if durable < *seq {
            world.violated(format!(
                "invariant 2: run {run}'s log was acknowledged up to seq {seq}, but after a \
                 store crash it ends at {durable}"
            ));
        }
    }
}
