//! The invariants checked once the world has healed and its workers have stopped (1 and the
//! "acknowledged means durable" half of 2 are checked as the world runs, in `workers` and
//! `store`): each run's durable log, its attempts, and its replay from scratch.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use cairn::testing::{ReplayError, replay};
use cairn_core::{ErrorKind, Event, EventRecord, RunStatus, SleepInput, StepKey, StepKind};
use cairn_engine::{ActionCtx, ActionError};
use cairn_store::{MemoryStore, RunFilter, RunRecord, Store};
use futures::future::BoxFuture;
use serde_json::json;

use crate::{
    store::at_once,
    workload::{Probe, StepPlan, Workload, act_retry_policy},
    world::World,
};

/// Every run in the durable log, oldest first.
pub(crate) fn durable_runs(durable: &MemoryStore) -> Vec<RunRecord> {
    let mut runs = at_once(durable.list_runs(&RunFilter {
        limit: usize::MAX,
        ..RunFilter::default()
    }))
    .expect("the memory store lists");
    runs.reverse();
    runs
}

/// Invariant 2 on one log: dense from 1, at most one result per step. Invariant 5's second
/// half: no step took more counted attempts than its retry policy allows (an interrupted
/// attempt, cut off by its worker's crash or lost lease, is not counted: the engine gives
/// those a budget of their own, `Limits::max_step_recoveries`).
pub(crate) fn check_log(world: &World, run: &RunRecord, log: &[EventRecord]) {
    let max_attempts = act_retry_policy().max_attempts;
    let mut results = HashSet::new();
    let mut counted: HashMap<&StepKey, u32> = HashMap::new();
    let mut wakes: HashMap<&StepKey, i64> = HashMap::new();
    for (index, record) in log.iter().enumerate() {
        if record.seq != index as u64 + 1 {
            world.violated(format!(
                "invariant 2: run {}'s log has seq {} at position {}",
                run.run_id,
                record.seq,
                index + 1
            ));
            return;
        }
        let over = |key: &StepKey, what: String| {
            format!(
                "invariant 5: step {key} of run {} {what}, beyond its policy's {max_attempts} \
                 attempts ({})",
                run.run_id,
                history(log, key)
            )
        };
        match &record.event {
            Event::StepStarted {
                key,
                kind: StepKind::Sleep,
                input,
                ..
            } => {
                if let Some(sleep) = SleepInput::from_value(input) {
                    wakes.insert(key, sleep.wake_at_ms);
                }
            }
            // Timers fire late or early (`timers-early`): a sleep still ends at its time.
            Event::StepCompleted {
                key,
                kind: StepKind::Sleep,
                ..
            } if wakes.get(key).is_some_and(|wake| record.at_ms < *wake) => {
                world.violated(format!(
                    "sleep {key} of run {} ended at {} ms, before its wake-up time {} ms",
                    run.run_id, record.at_ms, wakes[key]
                ));
            }
            Event::StepCompleted { key, .. } | Event::StepFailed { key, .. }
                if !results.insert(key.clone()) =>
            {
                world.violated(format!(
                    "invariant 2: step {key} of run {} has two results in its log ({})",
                    run.run_id,
                    history(log, key)
                ));
            }
            Event::StepAttemptFailed { key, error, .. } if error.kind != ErrorKind::Interrupted => {
                let failures = counted.entry(key).or_default();
                *failures += 1;
                if *failures >= max_attempts {
                    world.violated(over(
                        key,
                        format!("failed {failures} counted attempts and was to be tried again"),
                    ));
                }
            }
            Event::StepFailed {
                key,
                kind: StepKind::Action,
                error,
                ..
            } if error.kind != ErrorKind::Recoveries
                && counted.get(key).copied().unwrap_or(0) + 1 > max_attempts =>
            {
                world.violated(over(
                    key,
                    "failed for good after too many counted attempts".into(),
                ));
            }
            _ => {}
        }
    }
}

/// One step's events in a log, as `seq:type[:attempt]` (for a violation's message).
fn history(log: &[EventRecord], key: &StepKey) -> String {
    log.iter()
        .filter(|record| record.event.step_key() == Some(key))
        .map(|record| match &record.event {
            Event::StepStarted { attempt, .. } | Event::StepAttemptFailed { attempt, .. } => {
                format!("{}:{}:{attempt}", record.seq, record.event.type_name())
            }
            event => format!("{}:{}", record.seq, event.type_name()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A probe for replays: replay must never call an action.
pub(crate) struct NoCalls(pub(crate) Arc<World>);

impl Probe for NoCalls {
    fn attempt(&self, ctx: ActionCtx) -> BoxFuture<'static, Result<(), ActionError>> {
        self.0.violated(format!(
            "invariant 4: replaying run {} called action step {}",
            ctx.run_id(),
            ctx.step_key()
        ));
        Box::pin(async { Err(ActionError::fatal("replay called an action")) })
    }
}

/// Invariant 4: every ended run's durable history replays from scratch against the same
/// code to the same end, calling no action. Invariant 6's second half: the first run whose
/// first two steps differ in kind fails to replay with `NonDeterminism` against changed code
/// (its steps rotated). Returns how many runs were replayed.
pub(crate) async fn check_replays(world: &Arc<World>, durable: &MemoryStore) -> usize {
    let same = Workload::new(Arc::new(NoCalls(world.clone())), false);
    let changed = Workload::new(Arc::new(NoCalls(world.clone())), true);
    let mut replayed = 0;
    let mut changed_tried = false;
    for run in durable_runs(durable) {
        if !matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
            continue;
        }
        let events = at_once(durable.events(run.run_id)).expect("the memory store reads");
        let export = json!({ "input": run.input, "events": events });
        let replayed_now = match run.workflow.as_str() {
            "plan" => replay(&same.plan, &export).await,
            _ => replay(&same.leaf, &export).await,
        };
        replayed += 1;
        if let Err(err) = replayed_now {
            world.violated(format!(
                "invariant 4: run {} ({}) does not replay from its durable history: {err}",
                run.run_id, run.workflow
            ));
        }
        if !changed_tried && run.workflow == "plan" && first_steps_differ(&run.input) {
            changed_tried = true;
            world.count("non-determinism-checks");
            match replay(&changed.plan, &export).await {
                Err(ReplayError::NonDeterminism(_)) => {}
                other => world.violated(format!(
                    "invariant 6: run {} replayed against changed code without \
                     NonDeterminism: {other:?}",
                    run.run_id
                )),
            }
        }
    }
    replayed
}

/// Whether a plan's first two steps are of different kinds (so rotating them changes the
/// first step call).
fn first_steps_differ(input: &serde_json::Value) -> bool {
    let steps: Vec<StepPlan> = serde_json::from_value(input["steps"].clone()).unwrap_or_default();
    match &steps[..] {
        [first, second, ..] => std::mem::discriminant(first) != std::mem::discriminant(second),
        _ => false,
    }
}
