//! A workflow body as an execution sees it: types erased, input and output as JSON, and the
//! [`WorkflowCtx`] handed to it. The typed `Workflow` (layer 4) implements [`ErasedWorkflow`].

use std::{fmt, sync::Arc};

use cairn_store::RunId;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::{
    base::{error::WorkflowError, info::WorkflowInfo, schema::Schema, trigger::Trigger},
    run::RunContext,
};

/// A workflow with its types erased, as the registry and the executor hold it.
pub(crate) trait ErasedWorkflow: Send + Sync + 'static {
    fn info(&self) -> &WorkflowInfo;
    fn changed_input(&self) -> cairn_core::ChangedInput;
    fn input_schema(&self) -> &Schema;
    fn output_schema(&self) -> &Schema;
    fn call(
        &self,
        input: Value,
        ctx: WorkflowCtx,
    ) -> BoxFuture<'static, Result<Value, WorkflowError>>;
}

/// What a workflow body knows about its run, and the recorded sources of time and randomness
/// (`now`, `random`, `uuid`), durable sleeps and hooks.
#[derive(Clone)]
pub struct WorkflowCtx {
    pub(crate) run: Arc<RunContext>,
}

impl WorkflowCtx {
    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.run.run_id
    }

    /// The workflow's slug.
    pub fn workflow(&self) -> &str {
        &self.run.workflow
    }

    /// What started the run: a schedule's fire time (with its zone and previous fire
    /// time), a webhook delivery, a poll source's item, the API, the CLI, a rerun, a parent
    /// run. Read from the trigger stored with the run when it was created, so every
    /// execution of the run (a replay too) gets the same answer.
    pub fn trigger(&self) -> Trigger {
        Trigger::parse(&self.run.trigger)
    }
}

impl fmt::Debug for WorkflowCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowCtx")
            .field("run_id", &self.run.run_id)
            .finish_non_exhaustive()
    }
}
