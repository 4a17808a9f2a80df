//! Actions: typed leaf units of work. Calling one from a workflow is a durable step.

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use cairn_core::{RetryPolicy, StepKey, validate_slug};
use cairn_store::RunId;
use futures::{FutureExt, future::BoxFuture};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{error::ActionError, schema::Schema, step::StepCall};

/// A type that can be a step's or a run's input or output: JSON with a schema.
pub trait Payload: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

impl<T: Serialize + DeserializeOwned + JsonSchema + Send + 'static> Payload for T {}

type ActionFn<I, O> =
    dyn Fn(I, ActionCtx) -> BoxFuture<'static, Result<O, ActionError>> + Send + Sync;

/// A typed action with a stable slug. Define it once (usually in a `static LazyLock`) and call
/// [`Action::run`] from workflows.
///
/// ```
/// # use std::sync::LazyLock;
/// # use cairn_engine::{Action, ActionCtx, ActionError, Retry};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Signup { name: String }
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Brief { brief: String }
/// pub static RESEARCH: LazyLock<Action<Signup, Brief>> = LazyLock::new(|| {
///     Action::new("research-signup")
///         .description("Look up the company behind a signup")
///         .retry(Retry::exponential().max_attempts(5))
///         .run(|input: Signup, _ctx: ActionCtx| async move {
///             Ok(Brief { brief: format!("{} looks promising", input.name) })
///         })
/// });
/// ```
pub struct Action<I, O> {
    pub(crate) inner: Arc<ActionInner<I, O>>,
}

impl<I, O> Clone for Action<I, O> {
    fn clone(&self) -> Self {
        Action {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct ActionInner<I, O> {
    pub(crate) info: ActionInfo,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Option<Duration>,
    pub(crate) input_schema: Schema,
    pub(crate) output_schema: Schema,
    pub(crate) body: Box<ActionFn<I, O>>,
}

/// What is known of an action without its types: for listings and tools.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionInfo {
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

impl<I: Payload, O: Payload> Action<I, O> {
    /// Starts defining the action `slug` (1–64 of `a-z 0-9 - _`).
    #[allow(
        clippy::new_ret_no_self,
        reason = "the builder pattern of the spec: Action::new(..)...run(..)"
    )]
    pub fn new(slug: &str) -> ActionBuilder<I, O> {
        ActionBuilder {
            slug: slug.to_owned(),
            name: None,
            description: String::new(),
            retry: RetryPolicy::default(),
            timeout: None,
            types: PhantomData,
        }
    }

    /// Calls the action as a durable step of the current workflow. The step key is assigned
    /// now; `.key("name")` overrides it. Await the call to run (or replay) the step.
    pub fn run(&self, input: I) -> StepCall<O> {
        let inner = self.inner.clone();
        StepCall::new(&self.inner.info.slug, move |run, key| {
            crate::step::execute_action(inner, run, key, input).boxed()
        })
    }

    /// The action's slug.
    pub fn slug(&self) -> &str {
        &self.inner.info.slug
    }

    /// Name, description and schemas.
    pub fn info(&self) -> &ActionInfo {
        &self.inner.info
    }
}

impl<I, O> fmt::Debug for Action<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Action")
            .field("slug", &self.inner.info.slug)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Action`]; finish with [`ActionBuilder::run`].
#[must_use = "an action is defined by calling .run(..) at the end"]
pub struct ActionBuilder<I, O> {
    slug: String,
    name: Option<String>,
    description: String,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    types: PhantomData<fn(I) -> O>,
}

impl<I: Payload, O: Payload> ActionBuilder<I, O> {
    /// A human name (defaults to the slug).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// What the action does (shown in listings, and to LLMs when it is a tool).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// How failed attempts are retried (default: 3 attempts, 1 s then 2 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Fails an attempt that runs longer than `timeout` (retryable).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The action's body. It receives the validated input and an [`ActionCtx`]; its output is
    /// validated against the output schema before it is recorded.
    ///
    /// # Panics
    /// If the slug is invalid: action definitions are static, so this is a programming error.
    pub fn run<F, Fut>(self, body: F) -> Action<I, O>
    where
        F: Fn(I, ActionCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ActionError>> + Send + 'static,
    {
        if let Err(err) = validate_slug(&self.slug) {
            panic!("Action::new: {err}");
        }
        let input_schema = Schema::of::<I>();
        let output_schema = Schema::of::<O>();
        let info = ActionInfo {
            name: self.name.unwrap_or_else(|| self.slug.clone()),
            slug: self.slug,
            description: self.description,
            input_schema: input_schema.json().clone(),
            output_schema: output_schema.json().clone(),
        };
        Action {
            inner: Arc::new(ActionInner {
                info,
                retry: self.retry,
                timeout: self.timeout,
                input_schema,
                output_schema,
                body: Box::new(move |input, ctx| body(input, ctx).boxed()),
            }),
        }
    }
}

/// What an action's body knows about the step it executes.
#[derive(Clone, Debug)]
pub struct ActionCtx {
    pub(crate) run_id: RunId,
    pub(crate) step_key: StepKey,
    pub(crate) attempt: u32,
    pub(crate) cancel: CancellationToken,
    pub(crate) span: tracing::Span,
}

impl ActionCtx {
    /// The run this step belongs to.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The step's key.
    pub fn step_key(&self) -> &StepKey {
        &self.step_key
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `<run-id>:<step-key>`: the same for every attempt of this step. Pass it to APIs that
    /// deduplicate requests so a retried step does its side effect once.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run_id, self.step_key)
    }

    /// Fired when the run is canceled or the attempt timed out: stop work early.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the cancellation signal has fired.
    pub fn is_canceled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The tracing span of this attempt.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}
