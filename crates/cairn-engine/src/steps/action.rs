//! Actions: typed leaf units of work. Calling one from a workflow is a durable step: replayed
//! from the journal, or executed with retries and its result recorded before the workflow
//! moves on.

use std::{fmt, marker::PhantomData, sync::Arc, task::Poll, time::Duration};

use cairn_core::{ErrorKind, Event, RetryPolicy, RunStatus, StepKind, validate_slug};
use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;
use tracing::Instrument;

use crate::{
    base::{
        crash_points::crash_point,
        credential::{Credential, NeededCredential, ResolvedCredential, Scope},
        entropy::EntropyExt,
        error::{ActionError, StepError},
        info::ActionInfo,
        schema::{Payload, Schema},
    },
    call::{
        Begin, Call, Execute, StepCall,
        attempt::run_attempt,
        credentials::{Resolved, resolve},
        halt,
        wait::wait_until,
    },
    run::{action_ctx::ActionCtx, scope::Scope as TaskScope},
};

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
    slug: Arc<str>,
    /// The kind its calls are recorded with ([`StepKind::Action`] unless set).
    kind: StepKind,
    /// Why the definition is unusable (a bad slug), if it is: reported when the action is
    /// registered or called.
    pub(crate) invalid: Option<String>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    input_schema: Schema,
    output_schema: Schema,
    /// The credentials it needs.
    pub(crate) needs: Arc<[NeededCredential]>,
    body: Box<ActionFn<I, O>>,
}

impl<I: Payload, O: Payload> Action<I, O> {
    /// Starts defining the action `slug` (1–64 of `a-z 0-9 - _`; a bad slug is reported when
    /// the action is registered or called).
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
            kind: StepKind::Action,
            needs: Vec::new(),
            types: PhantomData,
        }
    }

    /// Calls the action as a durable step of the current workflow. The step key is assigned
    /// now; `.key("name")` overrides it. Await the call to run (or replay) the step.
    pub fn run(&self, input: I) -> StepCall<O> {
        let inner = self.inner.clone();
        StepCall::new(self.inner.kind, &self.inner.slug, move |call| {
            execute_action(inner, call, input).boxed()
        })
    }

    /// [`run`](Self::run) with the input and output as JSON (what an agent's tool call
    /// has): the input is checked against the action's input schema before the action runs
    /// (a violation fails the step with `invalid_input`, naming the JSON paths), and the
    /// output is the recorded JSON.
    pub fn run_json(&self, input: Value) -> StepCall<Value> {
        let inner = self.inner.clone();
        StepCall::new(self.inner.kind, &self.inner.slug, move |call| {
            async move {
                let output = execute_action(inner, call, input).await?;
                serde_json::to_value(output).map_err(|err| {
                    StepError::misuse(format!("an action's output stopped being JSON: {err}"))
                })
            }
            .boxed()
        })
    }

    /// Runs the action's body inside the calling action's attempt, with JSON in and out: no
    /// step is recorded, the caller's `ctx` (its credentials, resources, cancellation) is the
    /// body's, and its input and output are checked against the schemas as a step's are (a
    /// violation is an `invalid_input` / `invalid_output` error). For helpers that run inside
    /// an action what they would run as steps in a workflow (an agent's tools).
    pub(crate) fn run_inline(
        &self,
        input: Value,
        ctx: ActionCtx,
    ) -> BoxFuture<'static, Result<Value, ActionError>> {
        let inner = self.inner.clone();
        async move {
            let slug = &inner.info.slug;
            if let Err(violations) = inner.input_schema.validate(&input) {
                let message =
                    format!("input does not match the schema of action {slug}: {violations}");
                return Err(ActionError::fatal(message).with_kind(ErrorKind::InvalidInput));
            }
            let typed = I::deserialize(&input).map_err(|err| {
                ActionError::fatal(format!("input does not fit the action's input type: {err}"))
                    .with_kind(ErrorKind::InvalidInput)
            })?;
            let output = serde_json::to_value((inner.body)(typed, ctx).await?).map_err(|err| {
                ActionError::fatal(format!("output cannot be serialized to JSON: {err}"))
                    .with_kind(ErrorKind::InvalidOutput)
            })?;
            if let Err(violations) = inner.output_schema.validate(&output) {
                let message =
                    format!("output does not match the schema of action {slug}: {violations}");
                return Err(ActionError::fatal(message).with_kind(ErrorKind::InvalidOutput));
            }
            Ok(output)
        }
        .boxed()
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
    kind: StepKind,
    needs: Vec<NeededCredential>,
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

    /// Fails an attempt that runs longer than `timeout` (retryable), measured on the engine's
    /// clock.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Records the action's calls as steps of `kind` instead of [`StepKind::Action`]: an
    /// integration that calls a language model uses [`StepKind::Llm`], so inspection shows
    /// its steps as model calls. Replay, retries and credentials are those of an action;
    /// only kinds that do work are accepted (others are reported when the action is
    /// registered or called).
    pub fn kind(mut self, kind: StepKind) -> Self {
        self.kind = kind;
        self
    }

    /// Declares a credential the action needs, resolvable at any scope. Its body reads the
    /// resolved fields with [`ActionCtx::credential`]; which credential a step gets is decided
    /// per step (`.credential_id(..)`, `.scope(..)`, then the project's default, then the
    /// organization's).
    pub fn credential(self, credential: &Credential) -> Self {
        self.credential_in(credential, Scope::ALL)
    }

    /// Declares a credential the action needs, resolvable only at `scopes` (e.g. only
    /// [`Scope::User`] for an action that acts as a person).
    pub fn credential_in(
        mut self,
        credential: &Credential,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Self {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            scopes = Scope::ALL.to_vec();
        }
        self.needs
            .retain(|need| need.credential.key() != credential.key());
        self.needs.push(NeededCredential {
            credential: credential.clone(),
            scopes,
            optional: false,
        });
        self
    }

    /// Declares a credential the action uses when one resolves, and runs without otherwise
    /// (e.g. an HTTP request that may or may not need a token). Its body reads it with
    /// [`ActionCtx::optional_credential`].
    pub fn optional_credential(mut self, credential: &Credential) -> Self {
        self = self.credential(credential);
        if let Some(need) = self.needs.last_mut() {
            need.optional = true;
        }
        self
    }

    /// The action's body. It receives the validated input and an [`ActionCtx`]; its output is
    /// validated against the output schema before it is recorded.
    pub fn run<F, Fut>(self, body: F) -> Action<I, O>
    where
        F: Fn(I, ActionCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ActionError>> + Send + 'static,
    {
        let invalid = validate_slug(&self.slug)
            .err()
            .map(|err| format!("action {err}"))
            .or_else(|| {
                (!matches!(self.kind, StepKind::Action | StepKind::Llm)).then(|| {
                    format!(
                        "action {:?} is given the step kind {}; an action's kind is action or llm",
                        self.slug, self.kind
                    )
                })
            });
        let input_schema = Schema::of::<I>();
        let output_schema = Schema::of::<O>();
        let info = ActionInfo {
            name: self.name.unwrap_or_else(|| self.slug.clone()),
            slug: self.slug.clone(),
            description: self.description,
            input_schema: input_schema.json().clone(),
            output_schema: output_schema.json().clone(),
            credentials: self
                .needs
                .iter()
                .map(|need| need.credential.key().to_owned())
                .collect(),
        };
        Action {
            inner: Arc::new(ActionInner {
                info,
                slug: self.slug.into(),
                kind: self.kind,
                invalid,
                retry: self.retry,
                timeout: self.timeout,
                input_schema,
                output_schema,
                needs: self.needs.into(),
                body: Box::new(move |input, ctx| body(input, ctx).boxed()),
            }),
        }
    }
}

/// A step still running after this long has its `StepStarted` written at once, so inspection
/// shows it in flight; a faster one writes it together with its outcome, in one commit.
const STARTED_EVENT_DELAY: Duration = Duration::from_millis(20);

/// Replays or executes one action step.
async fn execute_action<I: Payload, O: Payload>(
    action: Arc<ActionInner<I, O>>,
    call: Call,
    input: impl serde::Serialize,
) -> Result<O, StepError> {
    if let Some(invalid) = &action.invalid {
        return Err(StepError::misuse(invalid.clone()));
    }
    let run = &call.run;
    let input = call.encode_input(&input)?;
    let Execute {
        mut attempt,
        mut not_before_ms,
        mut failures,
        recoveries,
        interrupted,
    } = match call.begin(&input).await {
        Begin::Replayed(result) => return call.decode_output(&action.output_schema, result?),
        Begin::Execute(execute) => execute,
    };
    if let Err(violations) = action.input_schema.validate(&input) {
        let error = call.error(
            ErrorKind::InvalidInput,
            format!(
                "input does not match the schema of action {}: {violations}",
                call.slug
            ),
        );
        return Err(call.fail(error, 0).await);
    }
    if let Some(cut_off) = interrupted {
        // Its worker stopped mid-attempt: not the action's failure, but a step that keeps
        // taking its worker down is given up on.
        run.defer([interrupted_attempt(&call, cut_off, run.env.clock.now_ms())]);
        not_before_ms = None;
        let limit = run.env.config.limits.max_step_recoveries;
        if recoveries >= limit {
            let error = call.error(
                ErrorKind::Recoveries,
                format!(
                    "step {} was interrupted {recoveries} times (its worker stopped before the attempt finished: a crash, a kill, or a step that takes its worker down); giving up after {limit} (Limits::max_step_recoveries)",
                    call.key
                ),
            );
            return Err(call.fail(error, attempt - 1).await);
        }
    }
    loop {
        if let Some(deadline) = not_before_ms {
            // A long backoff parks the run like a sleep; the attempt count is in the log.
            wait_until(run, deadline, RunStatus::Sleeping).await;
        }
        let _busy = run.busy();
        // The credentials of this attempt, resolved now: one set after a failure is used by
        // the retry. Actions that need none skip it, and so do stand-ins (tests' mocks).
        let resolved = if action.needs.is_empty()
            || run.env.overrides.contains_key(&action.info.slug)
        {
            Ok(Resolved::default())
        } else {
            let resolved = resolve(&run.env, &action.needs, &run.owner, &call.pin).await;
            if let Ok(resolved) = &resolved {
                // Their `Debug` shows ids, scopes and field names; values print redacted.
                tracing::debug!(run = %run.run_id, step = %call.key, credentials = ?resolved.credentials, "credentials resolved");
            }
            resolved
        };
        let used = resolved.as_ref().map(Resolved::used).unwrap_or_default();
        // When an earlier execution of the run may have died mid-attempt, the start is written
        // before the attempt: a step that takes its process down is then known as interrupted
        // however soon it does so (see `Limits::max_step_recoveries`). Else it is recorded with
        // the outcome (the input moves into it then), or at once if the attempt runs long:
        // writing it early in every run costs a tenth of the concurrent throughput (measured
        // in docs/decisions/0028-engine-layers.md).
        let mut start_recorded = run.executed_before;
        if start_recorded {
            run.defer([call.started_using(input.clone(), attempt, used.clone())]);
        }
        // The attempt's effects leave the process: what the body recorded must be durable,
        // and the run still this execution's (a zombie's lease may have lapsed).
        if run.flush().await.is_err() || !run.hold_lease().await {
            return halt().await;
        }
        // Everything recorded before this attempt is durable (the earlier steps' results
        // included); the attempt has not begun.
        crash_point!("after-commit-before-attempt");
        let result = 'attempt: {
            let credentials = match resolved {
                Ok(resolved) => resolved.shared(),
                Err(error) => break 'attempt Err(error),
            };
            let attempt_run = attempt_action(&action, &call, &input, attempt, credentials);
            tokio::pin!(attempt_run);
            // Most attempts finish at their first poll: they arm no timer.
            if let Poll::Ready(result) = futures::poll!(&mut attempt_run) {
                break 'attempt result;
            }
            if start_recorded {
                break 'attempt attempt_run.await;
            }
            tokio::select! {
                biased;
                result = &mut attempt_run => result,
                () = run.env.clock.sleep(STARTED_EVENT_DELAY) => {
                    // Still running: show it in flight now rather than with its outcome. The
                    // attempt is polled in place, so it goes on while the start is written.
                    run.defer([call.started_using(input.clone(), attempt, used.clone())]);
                    start_recorded = true;
                    let (written, result) = tokio::join!(run.flush(), &mut attempt_run);
                    if written.is_err() {
                        // The execution is stopping, which drops this step.
                        return halt().await;
                    }
                    result
                }
            }
        };
        let error = match result.and_then(|output| encode_output(&action, &call, output)) {
            Ok((output, value)) => {
                // The attempt's effects happened; its result is only in memory.
                crash_point!("after-action-before-commit");
                // Written by the next barrier (see `writes`): the body goes on from memory.
                let started = (!start_recorded).then(|| call.started_using(input, attempt, used));
                run.defer(started.into_iter().chain([call.completed(value)]));
                return Ok(output);
            }
            Err(error) => error,
        };
        let retryable = error.retryable;
        let retry_after = error.retry_after;
        let info = error.into_info();
        failures += 1;
        let (outcome, step_error) = if retryable && action.retry.allows_another(failures) {
            let env = &run.env;
            let delay =
                retry_after.unwrap_or_else(|| action.retry.backoff(failures, env.entropy.unit()));
            let retry_at_ms =
                env.clock.now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            tracing::info!(run = %run.run_id, step = %call.key, attempt, error = %info.message, "step attempt failed; retrying");
            not_before_ms = Some(retry_at_ms);
            let failed = Event::StepAttemptFailed {
                key: call.key.clone(),
                attempt,
                error: info,
                retry_at_ms,
            };
            (failed, None)
        } else {
            let error = info.at_step(call.key.clone());
            (
                call.failed(error.clone(), attempt),
                Some(StepError::new(error)),
            )
        };
        let started = (!start_recorded).then(|| call.started_using(input.clone(), attempt, used));
        if run
            .append(started.into_iter().chain([outcome]))
            .await
            .is_err()
        {
            return halt().await;
        }
        match step_error {
            Some(err) => return Err(err),
            None => attempt += 1,
        }
    }
}

/// The record of an attempt its worker never finished.
fn interrupted_attempt(call: &Call, attempt: u32, now_ms: i64) -> Event {
    let message = format!(
        "attempt {attempt} was interrupted: its worker stopped (a crash, a kill, a lost lease) before it finished; not counted against the retry policy"
    );
    Event::StepAttemptFailed {
        key: call.key.clone(),
        attempt,
        error: call.error(ErrorKind::Interrupted, message),
        retry_at_ms: now_ms,
    }
}

/// Runs one attempt of the action body (or its stand-in), in place, with its timeout and the
/// run's cancellation signal.
async fn attempt_action<I: Payload, O: Payload>(
    action: &Arc<ActionInner<I, O>>,
    call: &Call,
    input: &Value,
    attempt: u32,
    credentials: Arc<[ResolvedCredential]>,
) -> Result<O, ActionError> {
    let run = &call.run;
    // A token of the attempt's own: the action holds it (`ActionCtx::cancellation`), and
    // cancelling it must not cancel the run.
    let cancel = run.cancel.child_token();
    let span = tracing::info_span!("step", run = %run.run_id, step = %call.key, attempt);
    let ctx = ActionCtx {
        run_id: run.run_id,
        step_key: call.key.clone(),
        attempt,
        cancel: cancel.clone(),
        span: span.clone(),
        resources: run.env.resources.clone(),
        credentials,
    };
    let scope = TaskScope::Action {
        slug: action.slug.clone(),
        ctx: ctx.clone(),
    };
    let body: BoxFuture<'static, Result<O, ActionError>> =
        match run.env.overrides.get(&action.info.slug) {
            Some(stand_in) => {
                let output = stand_in(input.clone(), ctx);
                async move {
                    serde_json::from_value(output.await?).map_err(|err| {
                        ActionError::fatal(format!(
                            "the stand-in's output does not fit the output type: {err}"
                        ))
                        .with_kind(ErrorKind::InvalidOutput)
                    })
                }
                .boxed()
            }
            None => {
                let typed = I::deserialize(input).map_err(|err| {
                    ActionError::fatal(format!("input does not fit the action's input type: {err}"))
                        .with_kind(ErrorKind::InvalidInput)
                })?;
                (action.body)(typed, ctx)
            }
        };
    let body = scope.enter(body).instrument(span);
    run_attempt(&*run.env.clock, body, action.timeout, &cancel, attempt).await
}

/// Serializes and validates an action's output; a violation is fatal (retrying the same code
/// would not fix it).
fn encode_output<I, O: Payload>(
    action: &ActionInner<I, O>,
    call: &Call,
    output: O,
) -> Result<(O, Value), ActionError> {
    let value = serde_json::to_value(&output).map_err(|err| {
        ActionError::fatal(format!("output cannot be serialized to JSON: {err}"))
            .with_kind(ErrorKind::InvalidOutput)
    })?;
    if let Err(violations) = action.output_schema.validate(&value) {
        let message = format!(
            "output does not match the schema of action {}: {violations}",
            action.info.slug
        );
        return Err(ActionError::fatal(message).with_kind(ErrorKind::InvalidOutput));
    }
    call.check_size("output", &value)
        .map_err(|err| ActionError::fatal(err.message()).with_kind(ErrorKind::PayloadTooLarge))?;
    Ok((output, value))
}
