//! Where a step call finds its run: the task-local scope a workflow body (or an action) runs in.

use std::sync::Arc;

use cairn_core::StepKey;

use crate::{base::error::StepError, run::RunContext};

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
        slug: String,
        /// The step executing it.
        key: StepKey,
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
        Ok(Scope::Action { slug: caller, key }) => Err(StepError::misuse(format!(
            "`{slug}` was called from inside action `{caller}` (step {key}); an action cannot call another action or workflow: call both from the workflow, one after the other"
        ))),
        Err(_) => Err(StepError::misuse(format!(
            "`{slug}`.run() was called outside a workflow; call it from a workflow's body, or start a run with Engine::start"
        ))),
    }
}
