//! Workflows: plain async Rust whose action calls are durable steps, and the context they get.

use std::{fmt, marker::PhantomData, sync::Arc, time::SystemTime};

use cairn_core::{ErrorInfo, ErrorKind, Event, StepKey, StepKind, validate_slug};
use cairn_store::RunId;
use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    action::Payload,
    clock::system_time,
    context::{Abort, RunContext},
    error::{StepError, WorkflowError},
    schema::Schema,
    step::{Begin, StepCall, begin, decode_output, encode_input, fail_step, halt},
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

struct WorkflowInner<I, O> {
    info: WorkflowInfo,
    strict_inputs: bool,
    input_schema: Schema,
    output_schema: Schema,
    body: Box<WorkflowFn<I, O>>,
}

/// What is known of a workflow without its types: for listings and the API.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInfo {
    /// Stable identifier.
    pub slug: String,
    /// Human name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: Value,
    /// JSON Schema of its output.
    pub output_schema: Value,
}

/// A workflow with its types erased, as the registry and executor hold it.
pub(crate) trait ErasedWorkflow: Send + Sync + 'static {
    fn info(&self) -> &WorkflowInfo;
    fn strict_inputs(&self) -> bool;
    fn input_schema(&self) -> &Schema;
    fn output_schema(&self) -> &Schema;
    fn call(
        &self,
        input: Value,
        ctx: WorkflowCtx,
    ) -> BoxFuture<'static, Result<Value, WorkflowError>>;
}

impl<I: Payload, O: Payload> ErasedWorkflow for WorkflowInner<I, O> {
    fn info(&self) -> &WorkflowInfo {
        &self.info
    }

    fn strict_inputs(&self) -> bool {
        self.strict_inputs
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
    /// Starts defining the workflow `slug` (1–64 of `a-z 0-9 - _`).
    #[allow(
        clippy::new_ret_no_self,
        reason = "the builder pattern of the spec: Workflow::new(..)...run(..)"
    )]
    pub fn new(slug: &str) -> WorkflowBuilder<I, O> {
        WorkflowBuilder {
            slug: slug.to_owned(),
            name: None,
            description: String::new(),
            strict_inputs: false,
            types: PhantomData,
        }
    }

    /// Starts this workflow as a child run, as a durable step of the current workflow, and
    /// returns its output (or its error) when it ends.
    pub fn run(&self, input: I) -> StepCall<O> {
        let inner = self.inner.clone();
        StepCall::new(&self.inner.info.slug, move |run, key| {
            execute_child(inner, run, key, input).boxed()
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
    strict_inputs: bool,
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

    /// Makes a replayed step whose recorded input differs from the new input a
    /// non-determinism error (by default it is a warning and the recorded output is used).
    pub fn strict_inputs(mut self) -> Self {
        self.strict_inputs = true;
        self
    }

    /// The workflow's body.
    ///
    /// # Panics
    /// If the slug is invalid: workflow definitions are static, so this is a programming error.
    pub fn run<F, Fut>(self, body: F) -> Workflow<I, O>
    where
        F: Fn(I, WorkflowCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, WorkflowError>> + Send + 'static,
    {
        if let Err(err) = validate_slug(&self.slug) {
            panic!("Workflow::new: {err}");
        }
        let input_schema = Schema::of::<I>();
        let output_schema = Schema::of::<O>();
        let info = WorkflowInfo {
            name: self.name.unwrap_or_else(|| self.slug.clone()),
            slug: self.slug,
            description: self.description,
            input_schema: input_schema.json().clone(),
            output_schema: output_schema.json().clone(),
        };
        Workflow {
            inner: Arc::new(WorkflowInner {
                info,
                strict_inputs: self.strict_inputs,
                input_schema,
                output_schema,
                body: Box::new(move |input, ctx| body(input, ctx).boxed()),
            }),
        }
    }
}

/// What a workflow body knows about its run, and the recorded sources of time and randomness.
#[derive(Clone)]
pub struct WorkflowCtx {
    pub(crate) run: Arc<RunContext>,
}

impl fmt::Debug for WorkflowCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowCtx")
            .field("run_id", &self.run.run_id)
            .finish_non_exhaustive()
    }
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

    /// The current time, recorded: a replay sees the same value.
    pub fn now(&self) -> SystemTime {
        let clock = self.run.shared.clock.clone();
        let ms = self.recorded(StepKind::Now, "cairn.now", move || {
            Value::from(clock.now_ms())
        });
        system_time(ms.as_i64().unwrap_or_default())
    }

    /// A uniform random number in `0..1`, recorded: a replay sees the same value.
    pub fn random(&self) -> f64 {
        let value = self.recorded(StepKind::Random, "cairn.random", || {
            Value::from(crate::step::random_unit())
        });
        value.as_f64().unwrap_or_default()
    }

    /// A random UUID (v4), recorded: a replay sees the same value.
    pub fn uuid(&self) -> Uuid {
        let value = self.recorded(StepKind::Uuid, "cairn.uuid", || {
            Value::from(Uuid::new_v4().to_string())
        });
        value
            .as_str()
            .and_then(|text| Uuid::parse_str(text).ok())
            .unwrap_or_default()
    }

    /// Replays a recorded value or produces and records a new one (written with the next
    /// barrier, see `writes`).
    fn recorded(&self, kind: StepKind, slug: &str, produce: impl FnOnce() -> Value) -> Value {
        let run = &self.run;
        let key = run.journal().next_key(slug);
        let decision = run.journal().decide(cairn_core::StepCall {
            key: &key,
            kind,
            slug,
            input: &Value::Null,
        });
        match decision {
            cairn_core::Decision::Replay { output, .. } => output,
            cairn_core::Decision::NonDeterminism(err) => {
                run.abort(Abort::Fail(
                    ErrorInfo::new(ErrorKind::NonDeterminism, err.to_string()).at_step(key),
                ));
                produce()
            }
            cairn_core::Decision::Execute { .. } | cairn_core::Decision::ReplayError { .. } => {
                run.refuse_unrecorded(&key, kind, slug);
                let output = produce();
                run.defer([Event::StepCompleted {
                    key,
                    kind,
                    slug: slug.to_owned(),
                    output: output.clone(),
                }]);
                output
            }
        }
    }
}

/// Replays or executes a child-workflow step: the child is its own run, linked to this one.
async fn execute_child<I: Payload, O: Payload>(
    child: Arc<WorkflowInner<I, O>>,
    run: Arc<RunContext>,
    key: StepKey,
    input: I,
) -> Result<O, StepError> {
    let slug = child.info.slug.as_str();
    let input = encode_input(&run, &key, &input)?;
    match begin(&run, &key, StepKind::Workflow, slug, &input).await {
        Begin::Replayed(result) => return decode_output(&child.output_schema, &key, result?),
        Begin::Execute { .. } => {}
    }
    if let Err(violations) = child.input_schema.validate(&input) {
        let error = ErrorInfo::new(
            ErrorKind::InvalidInput,
            format!("input does not match the schema of workflow {slug}: {violations}"),
        );
        return Err(fail_step(&run, &key, StepKind::Workflow, slug, error, 0).await);
    }
    let started = Event::StepStarted {
        key: key.clone(),
        kind: StepKind::Workflow,
        slug: slug.to_owned(),
        input: input.clone(),
        attempt: 1,
    };
    run.defer([started]);
    let _busy = run.busy();
    if run.flush().await.is_err() {
        return halt().await;
    }
    let erased: Arc<dyn ErasedWorkflow> = child.clone();
    let outcome = match run
        .shared
        .clone()
        .run_child(&run, &key, erased, input)
        .await
    {
        Ok(outcome) => outcome,
        Err(abort) => {
            run.abort(abort);
            return halt().await;
        }
    };
    match outcome {
        Ok(output) => {
            let done = Event::StepCompleted {
                key: key.clone(),
                kind: StepKind::Workflow,
                slug: slug.to_owned(),
                output: output.clone(),
            };
            // The child's own run holds its result durably; this is written by the next barrier.
            run.defer([done]);
            decode_output(&child.output_schema, &key, output)
        }
        Err(child_error) => {
            let error = ErrorInfo::new(
                ErrorKind::ChildFailed,
                format!("child workflow {slug} failed: {child_error}"),
            );
            Err(fail_step(&run, &key, StepKind::Workflow, slug, error, 1).await)
        }
    }
}
