//! The simulated worker processes: each one a real [`Engine`] running its worker loop on the
//! simulator's thread, with its own clock, seeded randomness and gate. A crash kills the
//! worker's tasks and shuts its gate for good (whatever it had in flight never arrives); a
//! restart is a new process with a new identity. Each attempt of `act` checks invariant 1
//! against the durable log as the engine begins it, passes the worker's gate, and then does
//! what the seed's faults draw.

use std::{sync::Arc, time::Duration};

use cairn_core::Event;
use cairn_engine::{ActionCtx, ActionError, Engine, EngineConfig, SeededEntropy};
use cairn_store::WorkerId;
use futures::future::BoxFuture;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::SimClock,
    gate::{Gate, Life},
    store::{SimStore, at_once},
    workload::{ACT_TIMEOUT, Probe, Workload},
    world::World,
};

/// The lease time to live of every simulated worker, in milliseconds.
pub(crate) const LEASE_TTL_MS: i64 = 3_000;

/// The configuration of every simulated engine: short leases and polls, so that faults
/// show within virtual seconds.
pub(crate) fn engine_config(replay_every_step: bool) -> EngineConfig {
    EngineConfig {
        replay_every_step,
        lease_ttl: Duration::from_millis(LEASE_TTL_MS.unsigned_abs()),
        poll_interval: Duration::from_millis(250),
        max_concurrent_runs: 8,
        shutdown_grace: Duration::from_secs(1),
        ..EngineConfig::default()
    }
}

/// One worker process while it lives.
struct Worker {
    name: String,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// The worker processes of one world, by slot.
pub(crate) struct Workers {
    world: Arc<World>,
    store: SimStore,
    started: Instant,
    slots: Vec<Option<Worker>>,
    incarnations: Vec<u32>,
}

impl Workers {
    /// `count` empty slots.
    pub(crate) fn new(
        world: Arc<World>,
        store: SimStore,
        started: Instant,
        count: usize,
    ) -> Workers {
        Workers {
            world,
            store,
            started,
            slots: (0..count).map(|_| None).collect(),
            incarnations: vec![0; count],
        }
    }

    /// How many slots.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The state of slot `i`'s worker (`Dead` when none runs there).
    pub(crate) fn life(&self, i: usize) -> Life {
        self.slots[i].as_ref().map_or(Life::Dead, |w| w.gate.life())
    }

    /// Starts a new worker process in slot `i` (a no-op if one lives there).
    pub(crate) fn start(&mut self, i: usize) {
        if self.slots[i].is_some() {
            return;
        }
        self.incarnations[i] += 1;
        let name = format!("w{i}.{}", self.incarnations[i]);
        let gate = Arc::new(Gate::new());
        let probe = Arc::new(WorkerProbe {
            world: self.world.clone(),
            store: self.store.clone(),
            gate: gate.clone(),
            worker: name.clone(),
        });
        let workload = Workload::new(probe, false);
        let engine = Engine::builder(
            Arc::new(self.store.behind(gate.clone())),
            workload.registry(),
        )
        .clock(Arc::new(SimClock::new(self.started, self.world.clone())))
        .entropy(Arc::new(SeededEntropy::new(self.world.rng.next())))
        .worker_id(WorkerId(name.clone().into()))
        .config(engine_config(self.replay_every_step(&name)))
        .build()
        .expect("the workload registers");
        let shutdown = CancellationToken::new();
        let task = {
            let (shutdown, world, name) = (shutdown.clone(), self.world.clone(), name.clone());
            tokio::spawn(async move {
                if let Err(err) = engine.run_worker(shutdown).await {
                    world.note(format!("{name}: worker loop failed: {err}"));
                }
            })
        };
        self.world.note(format!("{name}: started"));
        self.slots[i] = Some(Worker {
            name,
            gate,
            shutdown,
            task,
        });
    }

    /// Whether a worker started now replays every step (the seed's `replay-every-step`; the
    /// heal phase keeps it, as it is no fault).
    fn replay_every_step(&self, name: &str) -> bool {
        let on = self.world.seed_replays_every_step();
        if on {
            self.world.count("replay-every-step-workers");
            self.world
                .note(format!("{name}: keeps no workflow state between steps"));
        }
        on
    }

    /// `kill -9` of slot `i`'s worker: its tasks end, nothing it started goes on.
    pub(crate) fn crash(&mut self, i: usize) {
        if let Some(worker) = self.slots[i].take() {
            worker.gate.set(Life::Dead);
            worker.task.abort();
            self.world.note(format!("{}: killed", worker.name));
        }
    }

    /// Pauses (`true`) or resumes slot `i`'s worker.
    pub(crate) fn pause(&mut self, i: usize, paused: bool) {
        if let Some(worker) = &self.slots[i] {
            if worker.gate.life() == Life::Dead {
                return;
            }
            worker
                .gate
                .set(if paused { Life::Paused } else { Life::Running });
            let what = if paused { "paused" } else { "resumed" };
            self.world.note(format!("{}: {what}", worker.name));
        }
    }

    /// Every slot running: the dead restarted, the paused resumed.
    pub(crate) fn revive_all(&mut self) {
        for i in 0..self.len() {
            self.pause(i, false);
            self.start(i);
        }
    }

    /// Stops every worker as a shutdown does and waits for it.
    pub(crate) async fn stop_all(&mut self) {
        for worker in self.slots.iter_mut().filter_map(Option::take) {
            worker.shutdown.cancel();
            let _ = worker.task.await;
        }
    }
}

/// The probe of one worker's attempts of `act`.
struct WorkerProbe {
    world: Arc<World>,
    store: SimStore,
    gate: Arc<Gate>,
    worker: String,
}

impl Probe for WorkerProbe {
    fn attempt(&self, ctx: ActionCtx) -> BoxFuture<'static, Result<(), ActionError>> {
        let (world, store, gate, worker) = (
            self.world.clone(),
            self.store.clone(),
            self.gate.clone(),
            self.worker.clone(),
        );
        Box::pin(async move {
            let (run, key, attempt) = (ctx.run_id(), ctx.step_key().clone(), ctx.attempt());
            world.count("action-attempts");
            world.note(format!("{worker}: act {run} {key} attempt {attempt}"));
            // Invariant 1: no attempt begins once the step has a durable result.
            let recorded = at_once(cairn_store::Store::events(store.durable(), run))
                .unwrap_or_default()
                .into_iter()
                .any(|record| match &record.event {
                    Event::StepCompleted { key: done, .. }
                    | Event::StepFailed { key: done, .. } => *done == key,
                    _ => false,
                });
            if recorded {
                world.violated(format!(
                    "invariant 1: attempt {attempt} of step {key} of run {run} began on {worker} \
                     after the step's result was durable"
                ));
            }
            // The engine began the attempt above; a worker paused now runs the body's first
            // line later, maybe after another worker recorded the step (decision 0042: no
            // check can close that window; actions take an idempotency key for it).
            gate.pass().await;
            if world.fault("action-panics", |f| f.action_panics) {
                panic!("simulated panic in act");
            }
            if world.fault("action-times-out", |f| f.action_times_out) {
                tokio::time::sleep(ACT_TIMEOUT * 2).await;
            } else if world.fault("action-slow", |f| f.action_slow) {
                let ms = world.rng.between(1, 800);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if world.fault("action-fatal", |f| f.action_fatal) {
                return Err(ActionError::fatal("simulated fatal failure"));
            }
            if world.fault("action-fails", |f| f.action_fails) {
                return Err(ActionError::retryable("simulated failure"));
            }
            Ok(())
        })
    }
}
