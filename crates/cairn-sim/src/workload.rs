//! What the simulated workers run: `plan`, a workflow whose input lists its steps (actions,
//! sleeps, a child run of `leaf`, hooks with a time-out), and the action `act`, whose every
//! attempt first asks its [`Probe`] (the simulator's checks and faults) whether and how it
//! goes. Plans are drawn from the seed; the workflow code itself is deterministic, as
//! workflow code must be.

use std::{sync::Arc, time::Duration};

use cairn_core::RetryPolicy;
use cairn_engine::{Action, ActionCtx, ActionError, HookOptions, Registry, Workflow, WorkflowCtx};
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rng::SimRng;

/// A `plan` run's input: the steps it makes, in order.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<StepPlan>,
}

/// One step of a plan.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum StepPlan {
    /// Calls `act` with `n`.
    Act { n: u64 },
    /// Sleeps this long.
    Sleep { ms: u64 },
    /// Runs `leaf` with `n` as a child run.
    Child { n: u64 },
    /// Waits for a hook, giving up after this long.
    Hook { timeout_ms: u64 },
}

/// A number in and out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Num {
    pub(crate) n: u64,
}

/// What a hook is resumed with.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Approval {
    pub(crate) ok: bool,
}

/// Decides what an attempt of `act` does before it does it; an `Err` fails the attempt.
pub(crate) trait Probe: Send + Sync + 'static {
    /// Called first thing in every attempt.
    fn attempt(&self, ctx: ActionCtx) -> BoxFuture<'static, Result<(), ActionError>>;
}

/// The attempts of `act`: three, quick backoffs, a one-second time-out.
pub(crate) fn act_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(200),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(2),
        jitter: 0.2,
    }
}

/// How long an attempt of `act` may take.
pub(crate) const ACT_TIMEOUT: Duration = Duration::from_secs(1);

/// The workflows and the action, as one process registers them.
pub(crate) struct Workload {
    pub(crate) plan: Workflow<Plan, Num>,
    pub(crate) leaf: Workflow<Num, Num>,
}

impl Workload {
    /// The workload whose attempts of `act` ask `probe`. With `rotated`, `plan` makes its
    /// steps starting from the second (changed code, for the non-determinism check).
    pub(crate) fn new(probe: Arc<dyn Probe>, rotated: bool) -> Workload {
        let act = Action::new("act")
            .retry(act_retry_policy())
            .timeout(ACT_TIMEOUT)
            .run(move |input: Num, ctx: ActionCtx| {
                let attempt = probe.attempt(ctx);
                async move {
                    attempt.await?;
                    Ok(Num { n: input.n * 2 + 1 })
                }
            });
        let leaf = {
            let act = act.clone();
            Workflow::new("leaf").run(move |input: Num, _ctx: WorkflowCtx| {
                let act = act.clone();
                async move { Ok(act.run(input).await?) }
            })
        };
        let plan = {
            let (act, leaf) = (act.clone(), leaf.clone());
            Workflow::new("plan").run(move |plan: Plan, ctx: WorkflowCtx| {
                let (act, leaf) = (act.clone(), leaf.clone());
                async move {
                    let mut steps = plan.steps;
                    if rotated && !steps.is_empty() {
                        steps.rotate_left(1);
                    }
                    let mut total = 0;
                    for step in steps {
                        match step {
                            StepPlan::Act { n } => total += act.run(Num { n }).await?.n,
                            StepPlan::Sleep { ms } => ctx.sleep(Duration::from_millis(ms)).await?,
                            StepPlan::Child { n } => total += leaf.run(Num { n }).await?.n,
                            StepPlan::Hook { timeout_ms } => {
                                let options =
                                    HookOptions::new().timeout(Duration::from_millis(timeout_ms));
                                // A hook that timed out is recorded as such; the plan goes on.
                                if let Ok(approval) = ctx.hook_with::<Approval>(options).await {
                                    total += u64::from(approval.ok);
                                }
                            }
                        }
                    }
                    Ok(Num { n: total })
                }
            })
        };
        Workload { plan, leaf }
    }

    /// A registry of both workflows (and so of `act`).
    pub(crate) fn registry(&self) -> Registry {
        Registry::new().workflow(&self.plan).workflow(&self.leaf)
    }
}

/// A random plan of one to six steps.
pub(crate) fn random_plan(rng: &SimRng) -> Plan {
    let steps = (0..rng.between(1, 6))
        .map(|_| match rng.below(10) {
            0..=5 => StepPlan::Act { n: rng.below(100) },
            6 => StepPlan::Sleep {
                ms: rng.between(10, 5_000),
            },
            7 | 8 => StepPlan::Child { n: rng.below(100) },
            _ => StepPlan::Hook {
                timeout_ms: rng.between(500, 10_000),
            },
        })
        .collect();
    Plan { steps }
}
