//! One seed's world from start to end: workers start, runs are created, faults fire for a
//! minute of virtual time, then every fault stops (the heal) and every run must end; then
//! the end-of-world invariants are checked and a [`Report`] is made.

use std::{sync::Arc, time::Duration};

use cairn_engine::{Engine, EngineError, SeededEntropy, StartOptions};
use cairn_store::{HookFilter, HookState, Store};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    Planted, Report,
    checks::{NoCalls, check_log, check_replays, durable_runs},
    clock::SimClock,
    gate::Life,
    store::{SimStore, at_once},
    workers::{Workers, engine_config},
    workload::{Workload, random_plan},
    world::World,
};

/// Virtual time with faults.
const CHAOS_MS: u64 = 60_000;
/// Virtual time over which runs arrive (on average: the gaps are random).
const ARRIVALS_MS: u64 = 30_000;
/// Virtual time the heal may take before a run still going is a violation (invariant 5).
const HEAL_LIMIT_MS: u64 = 15 * 60_000;

/// Runs seed `seed`'s world to its end (on the caller's paused current-thread runtime).
pub(crate) async fn simulate(seed: u64, planted: Option<Planted>, keep_trace: bool) -> Report {
    let started = Instant::now();
    let world = Arc::new(World::new(seed, planted, keep_trace));
    let (store, flusher) = SimStore::new(world.clone());
    let flusher = tokio::spawn(flusher);
    let worker_count = usize::try_from(world.rng.between(2, 4)).unwrap_or(2);
    let run_count = world.rng.between(8, 40);
    world.note(format!(
        "seed={seed:#x} workers={worker_count} runs={run_count} planted={planted:?} faults: {}",
        world.faults()
    ));

    let mut workers = Workers::new(world.clone(), store.clone(), started, worker_count);
    (0..worker_count).for_each(|i| workers.start(i));
    let (client, workload) = client(&world, &store, started);
    // Runs arrive over the first half of the fault phase, so faults meet work in flight
    // rather than idle workers.
    let arrivals = {
        let (world, client) = (world.clone(), client.clone());
        tokio::spawn(async move {
            for index in 0..run_count {
                let gap = world.rng.below(2 * ARRIVALS_MS / run_count.max(1));
                tokio::time::sleep(Duration::from_millis(gap)).await;
                start_run(&world, &client, &workload, index).await;
            }
        })
    };
    chaos(&world, &client, &mut workers).await;
    arrivals.await.expect("every run was started");

    world.heal();
    workers.revive_all();
    heal(&world, &client, &store).await;
    // A violation cuts the heal short: runs still going then say nothing more.
    let heal_finished = world.violation().is_none();
    workers.stop_all().await;
    flusher.abort();

    let runs = durable_runs(store.durable());
    let mut steps = 0;
    for run in &runs {
        if !run.status.is_terminal() && heal_finished {
            world.violated(format!(
                "invariant 5: run {} is still {} {} s after the faults stopped",
                run.run_id,
                run.status,
                HEAL_LIMIT_MS / 1000
            ));
        }
        let log = at_once(store.durable().events(run.run_id)).expect("the memory store reads");
        steps += log.iter().filter(|r| r.event.step_key().is_some()).count();
        check_log(&world, run, &log);
    }
    let replayed = check_replays(&world, store.durable()).await;
    world.note(format!("end: {} runs, {replayed} replayed", runs.len()));
    Report {
        seed,
        trace_hash: world.trace_hash(),
        runs: runs.len(),
        steps,
        virtual_ms: world.elapsed_ms(),
        faults: world.faults_of_seed(),
        counters: world.counters(),
        violation: world.violation(),
        trace: world.trace_lines(),
    }
}

/// The process that starts runs and resumes hooks (no worker; its store calls meet the
/// commit faults too).
fn client(world: &Arc<World>, store: &SimStore, started: Instant) -> (Engine, Workload) {
    let workload = Workload::new(Arc::new(NoCalls(world.clone())), false);
    let engine = Engine::builder(Arc::new(store.clone()), workload.registry())
        .clock(Arc::new(SimClock::new(started, world.clone())))
        .entropy(Arc::new(SeededEntropy::new(world.rng.next())))
        .config(engine_config(false))
        .build()
        .expect("the workload registers");
    (engine, workload)
}

/// Starts run number `index` with a random plan, retrying (with its idempotency key) until
/// the store confirms it.
async fn start_run(world: &World, client: &Engine, workload: &Workload, index: u64) {
    let plan = random_plan(&world.rng);
    loop {
        let options = StartOptions {
            idempotency_key: Some(format!("sim-{index}")),
            ..StartOptions::default()
        };
        match client.start(&workload.plan, &plan, options).await {
            Ok(started) => {
                world.note(format!(
                    "created {} ({} steps)",
                    started.run_id,
                    plan.steps.len()
                ));
                return;
            }
            Err(err) if is_transient(&err) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("starting a run failed for good: {err}"),
        }
    }
}

/// Whether the engine's error is the store's "try again".
fn is_transient(err: &EngineError) -> bool {
    matches!(err, EngineError::Store(err) if err.is_transient())
}

/// The fault phase: every tick, the seed's process faults may fire; some pending hooks are
/// resumed.
async fn chaos(world: &World, client: &Engine, workers: &mut Workers) {
    let mut restarts: Vec<(u64, usize)> = Vec::new();
    let mut resumes: Vec<(u64, usize)> = Vec::new();
    while world.elapsed_ms() < CHAOS_MS && world.violation().is_none() {
        let tick = world.rng.between(20, 400);
        tokio::time::sleep(Duration::from_millis(tick)).await;
        let now = world.elapsed_ms();
        let faults = world.faults();
        let victim = usize::try_from(world.rng.below(workers.len() as u64)).unwrap_or(0);
        if let Some(every) = faults.worker_crash_every_ms
            && workers.life(victim) != Life::Dead
            && world.rng.chance(tick as f64 / every as f64)
        {
            world.count("worker-crashes");
            workers.crash(victim);
            restarts.push((now + world.rng.between(0, 3_000), victim));
        }
        if let Some(every) = faults.worker_pause_every_ms
            && workers.life(victim) == Life::Running
            && world.rng.chance(tick as f64 / every as f64)
        {
            world.count("worker-pauses");
            workers.pause(victim, true);
            let past_lease = crate::workers::LEASE_TTL_MS.unsigned_abs();
            resumes.push((now + past_lease + world.rng.between(0, 4_000), victim));
        }
        restarts.retain(|&(at, i)| {
            let due = at <= now;
            if due {
                workers.start(i);
            }
            !due
        });
        resumes.retain(|&(at, i)| {
            let due = at <= now;
            if due {
                workers.pause(i, false);
            }
            !due
        });
        if world.rng.chance(0.2) {
            resume_a_hook(world, client).await;
        }
    }
}

/// Resumes one pending hook, if there is one (a refusal is fine: it may have timed out).
async fn resume_a_hook(world: &World, client: &Engine) {
    let pending = client
        .list_hooks(&HookFilter {
            state: Some(HookState::Pending),
            ..HookFilter::default()
        })
        .await
        .unwrap_or_default();
    if pending.is_empty() {
        return;
    }
    let hook = &pending[usize::try_from(world.rng.below(pending.len() as u64)).unwrap_or(0)];
    let resumed = client
        .resume_hook(&hook.token, json!({ "ok": world.rng.chance(0.5) }))
        .await;
    world.note(format!(
        "resume hook of {}: {}",
        hook.run_id,
        resumed.is_ok()
    ));
}

/// The heal: faults off, every worker running; waits until every run has ended, resuming
/// pending hooks as a person would, up to the limit or the first violation.
async fn heal(world: &World, client: &Engine, store: &SimStore) {
    let deadline = world.elapsed_ms() + HEAL_LIMIT_MS;
    while world.elapsed_ms() < deadline && world.violation().is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let unended = durable_runs(store.durable())
            .iter()
            .filter(|run| !run.status.is_terminal())
            .count();
        if unended == 0 {
            world.note("healed: every run ended");
            return;
        }
        resume_a_hook(world, client).await;
    }
}
