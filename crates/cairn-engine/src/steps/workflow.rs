//! Workflows: plain async Rust whose action calls are durable steps. Calling a workflow from
//! another is a child run (see `child`).

use std::{fmt, marker::PhantomData, sync::Arc};

use cairn_core::{ChangedInput, ErrorInfo, ErrorKind, StepKind, validate_slug};
use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;

use crate::{
    base::{
        error::WorkflowError,
        info::WorkflowInfo,
        schema::{Payload, Schema},
    },
    call::StepCall,
    run::body::{ErasedWorkflow, WorkflowCtx},
    steps::child::execute_child,
};

type WorkflowFn<I, O> =
    dyn Fn(I, WorkflowCtx) -> BoxFuture<'static, Result<O, WorkflowError>> + Send + Sync;

/// A typed workflow with a stable slug. Its body calls actions (and child workflows) as
/// durable steps; everything else in it re-runs on every replay.
pub struct Workflow<I, O> {
    inner: Arc<WorkflowInner<I, O>>,
}

impl<I, O> Clone for Workflow<I, O> {
    fn clone(&self) -> Self {
        Workflow {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct WorkflowInner<I, O> {
    pub(crate) info: WorkflowInfo,
    slug: Arc<str>,
    /// Why the definition is unusable (a bad slug), if it is: reported when the workflow is
    /// registered or called as a child.
    pub(crate) invalid: Option<String>,
    changed_input: ChangedInput,
    pub(crate) input_schema: Schema,
    pub(crate) output_schema: Schema,
    body: Box<WorkflowFn<I, O>>,
}

impl<I: Payload, O: Payload> ErasedWorkflow for WorkflowInner<I, O> {
    fn info(&self) -> &WorkflowInfo {
        &self.info
    }

    fn changed_input(&self) -> ChangedInput {
        self.changed_input
    }

    fn input_schema(&self) -> &Schema {
        &self.input_schema
    }

    fn output_schema(&self) -> &Schema {
        &self.output_schema
    }

    fn call(
        &self,
        input: Value,
        ctx: WorkflowCtx,
    ) -> BoxFuture<'static, Result<Value, WorkflowError>> {
        let typed: I = match serde_json::from_value(input) {
            Ok(typed) => typed,
            Err(err) => {
                let info = ErrorInfo::new(
                    ErrorKind::InvalidInput,
                    format!("run input does not fit the workflow's input type: {err}"),
                );
                return futures::future::ready(Err(WorkflowError::from_info(info))).boxed();
            }
        };
        let body = (self.body)(typed, ctx);
        async move {
            let output = body.await?;
            serde_json::to_value(&output).map_err(|err| {
                WorkflowError::from_info(ErrorInfo::new(
                    ErrorKind::InvalidOutput,
                    format!("output cannot be serialized to JSON: {err}"),
                ))
            })
        }
        .boxed()
    }
}

impl<I: Payload, O: Payload> Workflow<I, O> {
    /// Starts defining the workflow `slug` (1–64 of `a-z 0-9 - _`; a bad slug is reported
    /// when the workflow is registered).
    #[allow(
        clippy::new_ret_no_self,
        reason = "the builder pattern of the spec: Workflow::new(..)...run(..)"
    )]
    pub fn new(slug: &str) -> WorkflowBuilder<I, O> {
        WorkflowBuilder {
            slug: slug.to_owned(),
            name: None,
            description: String::new(),
            changed_input: ChangedInput::Fail,
            types: PhantomData,
        }
    }

    /// Starts this workflow as a child run, as a durable step of the current workflow, and
    /// returns its output (or its error) when it ends.
    pub fn run(&self, input: I) -> StepCall<O> {
        let inner = self.inner.clone();
        StepCall::new(StepKind::Workflow, &self.inner.slug, move |call| {
            execute_child(inner, call, input).boxed()
        })
    }

    /// The workflow's slug.
    pub fn slug(&self) -> &str {
        &self.inner.info.slug
    }

    /// Name, description and schemas.
    pub fn info(&self) -> &WorkflowInfo {
        &self.inner.info
    }

    pub(crate) fn erased(&self) -> Arc<dyn ErasedWorkflow> {
        self.inner.clone()
    }

    /// Why the definition is unusable, if it is.
    pub(crate) fn invalid(&self) -> Option<&str> {
        self.inner.invalid.as_deref()
    }
}

impl<I, O> fmt::Debug for Workflow<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("slug", &self.inner.info.slug)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Workflow`]; finish with [`WorkflowBuilder::run`].
#[must_use = "a workflow is defined by calling .run(..) at the end"]
pub struct WorkflowBuilder<I, O> {
    slug: String,
    name: Option<String>,
    description: String,
    changed_input: ChangedInput,
    types: PhantomData<fn(I) -> O>,
}

impl<I: Payload, O: Payload> WorkflowBuilder<I, O> {
    /// A human name (defaults to the slug).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// What the workflow does.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// What a replayed step whose recorded input differs from the input the workflow passes
    /// now does: by default ([`ChangedInput::Fail`]) the run fails with a non-determinism
    /// error (the fix: `runs rerun <id> --from <step>`); [`ChangedInput::UseRecorded`] uses
    /// the recorded output and records a warning on the step, which `runs get` shows.
    pub fn on_changed_input(mut self, changed_input: ChangedInput) -> Self {
        self.changed_input = changed_input;
        self
    }

    /// The workflow's body.
    pub fn run<F, Fut>(self, body: F) -> Workflow<I, O>
    where
        F: Fn(I, WorkflowCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, WorkflowError>> + Send + 'static,
    {
        let invalid = validate_slug(&self.slug)
            .err()
            .map(|err| format!("workflow {err}"));
        let input_schema = Schema::of::<I>();
        let output_schema = Schema::of::<O>();
        let info = WorkflowInfo {
            name: self.name.unwrap_or_else(|| self.slug.clone()),
            slug: self.slug.clone(),
            description: self.description,
            input_schema: input_schema.json().clone(),
            output_schema: output_schema.json().clone(),
        };
        Workflow {
            inner: Arc::new(WorkflowInner {
                info,
                slug: self.slug.into(),
                invalid,
                changed_input: self.changed_input,
                input_schema,
                output_schema,
                body: Box::new(move |input, ctx| body(input, ctx).boxed()),
            }),
        }
    }
}
