//! Where a step call finds its run: the task-local scope a workflow body (or an action) runs in.

use std::sync::Arc;

use crate::{
    base::error::StepError,
    run::{RunContext, action_ctx::ActionCtx},
};

tokio::task_local! {
    static SCOPE: Scope;
}

/// What the current task is executing.
#[derive(Clone)]
pub(crate) enum Scope {
    /// A workflow body: step calls are recorded in this run.
    Workflow(Arc<RunContext>),
    /// An action's `run`: step calls are refused.
    Action {
        /// The action's slug.
        slug: Arc<str>,
        /// The attempt's context (its step's key among it), for work done inside the
        /// attempt ([`ActionCtx::current`]).
        ctx: ActionCtx,
    },
}

impl Scope {
    /// Runs `future` inside this scope.
    pub(crate) async fn enter<F: Future>(self, future: F) -> F::Output {
        SCOPE.scope(self, future).await
    }
}

/// The run a step call of `slug` belongs to, or why it cannot be made here.
pub(crate) fn current_run(slug: &str) -> Result<Arc<RunContext>, StepError> {
    match SCOPE.try_with(Scope::clone) {
        Ok(Scope::Workflow(run)) => Ok(run),
        Ok(Scope::Action { slug: caller, ctx }) => Err(StepError::misuse(format!(
            "`{slug}` was called from inside action `{caller}` (step {}); an action cannot call another action or workflow: call both from the workflow, one after the other",
            ctx.step_key
        ))),
        Err(_) => Err(StepError::misuse(format!(
            "`{slug}`.run() was called outside a workflow; call it from a workflow's body, or start a run with Engine::start"
        ))),
    }
}

/// The context of the action attempt the current task runs, if it runs one.
pub(crate) fn current_action() -> Option<ActionCtx> {
    match SCOPE.try_with(Scope::clone) {
        Ok(Scope::Action { ctx, .. }) => Some(ctx),
        _ => None,
    }
}
