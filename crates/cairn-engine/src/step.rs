//! A step call and what happens when it is awaited: replay from the journal, or execute the
//! action with retries and record the result durably before the workflow moves on.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use cairn_core::{
    Decision, ErrorInfo, ErrorKind, Event, RunStatus, StepCall as JournalCall, StepKey, StepKind,
};
use futures::future::{self, BoxFuture};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tracing::Instrument;

use crate::{
    action::{ActionCtx, ActionInner, Payload},
    attempt::InPlace,
    context::{Abort, Halted, RunContext, Scope, current_run},
    error::{ActionError, StepError},
    schema::Schema,
};

type Exec<O> =
    Box<dyn FnOnce(Arc<RunContext>, StepKey) -> BoxFuture<'static, Result<O, StepError>> + Send>;

/// The longest custom step key.
const MAX_KEY_LEN: usize = 200;

/// A step call: made (and keyed) when `.run(input)` is called, executed or replayed when
/// first polled. It is a `Future`, so it composes with `futures::join!` and `try_join_all`.
#[must_use = "a step does nothing until it is awaited"]
pub struct StepCall<O> {
    state: CallState<O>,
}

enum CallState<O> {
    /// Made, not yet polled: the key may still be overridden.
    Made {
        target: Result<(Arc<RunContext>, StepKey), StepError>,
        exec: Exec<O>,
    },
    /// Polled: replaying or executing.
    Running(BoxFuture<'static, Result<O, StepError>>),
    /// Finished (polling again is a bug).
    Done,
}

impl<O: Send + 'static> StepCall<O> {
    pub(crate) fn new(
        slug: &str,
        exec: impl FnOnce(Arc<RunContext>, StepKey) -> BoxFuture<'static, Result<O, StepError>>
        + Send
        + 'static,
    ) -> Self {
        let target = current_run(slug).and_then(|run| {
            let mut journal = run.journal();
            let limit = run.shared.config.limits.max_steps_per_run;
            if journal.calls_made() >= limit {
                return Err(StepError::new(ErrorInfo::new(
                    ErrorKind::Misuse,
                    cairn_core::LimitExceeded::Steps { limit }.to_string(),
                )));
            }
            let key = journal.next_key(slug);
            drop(journal);
            Ok((run, key))
        });
        StepCall {
            state: CallState::Made {
                target,
                exec: Box::new(exec),
            },
        }
    }

    /// Names the step explicitly instead of `<slug>#<n>`. Use it to keep a step's identity
    /// stable when calls of the same slug are added before it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if let CallState::Made { target, .. } = &mut self.state
            && let Ok((_, slot)) = target
        {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                *target = Err(StepError::misuse(format!(
                    "step key {key:?} must be 1 to {MAX_KEY_LEN} characters"
                )));
            } else {
                *slot = StepKey::custom(key);
            }
        }
        self
    }
}

impl<O: Send + 'static> Future for StepCall<O> {
    type Output = Result<O, StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let CallState::Made { .. } = this.state {
            let CallState::Made { target, exec } =
                std::mem::replace(&mut this.state, CallState::Done)
            else {
                unreachable!("checked just above")
            };
            this.state = CallState::Running(match target {
                Ok((run, key)) => exec(run, key),
                Err(err) => Box::pin(future::ready(Err(err))),
            });
        }
        let CallState::Running(running) = &mut this.state else {
            panic!("a step call was polled after it completed");
        };
        let result = ready!(running.as_mut().poll(cx));
        this.state = CallState::Done;
        Poll::Ready(result)
    }
}

/// The outcome of asking the journal about a call.
pub(crate) enum Begin {
    /// The history has the result.
    Replayed(Result<Value, StepError>),
    /// Execute it now.
    Execute {
        attempt: u32,
        not_before_ms: Option<i64>,
    },
}

/// Asks the journal about a call. Never returns on non-determinism (the run is aborted) or
/// when the engine is stopping before a new step.
pub(crate) async fn begin(
    run: &RunContext,
    key: &StepKey,
    kind: StepKind,
    slug: &str,
    input: &Value,
) -> Begin {
    let decision = run.journal().decide(JournalCall {
        key,
        kind,
        slug,
        input,
    });
    match decision {
        Decision::Replay {
            output,
            input_changed,
        } => {
            if input_changed {
                tracing::warn!(run = %run.run_id, step = %key, "replayed step was recorded with a different input; the recorded output is used");
            }
            Begin::Replayed(Ok(output))
        }
        Decision::ReplayError { error } => Begin::Replayed(Err(StepError::new(error))),
        Decision::Execute {
            attempt,
            not_before_ms,
        } => {
            if run.refuse_unrecorded(key, kind, slug) {
                return halt().await;
            }
            if run.should_stop() {
                run.abort(Abort::Shutdown);
                return halt().await;
            }
            Begin::Execute {
                attempt,
                not_before_ms,
            }
        }
        Decision::NonDeterminism(err) => {
            let info =
                ErrorInfo::new(ErrorKind::NonDeterminism, err.to_string()).at_step(key.clone());
            run.abort(Abort::Fail(info));
            halt().await
        }
    }
}

/// Never completes: the execution is being aborted and its future will be dropped.
pub(crate) async fn halt<T>() -> T {
    future::pending().await
}

/// Serializes a step's input, checking the payload limit.
pub(crate) fn encode_input<I: Serialize>(
    run: &RunContext,
    key: &StepKey,
    input: &I,
) -> Result<Value, StepError> {
    let value = serde_json::to_value(input).map_err(|err| {
        StepError::new(
            ErrorInfo::new(
                ErrorKind::InvalidInput,
                format!("input cannot be serialized to JSON: {err}"),
            )
            .at_step(key.clone()),
        )
    })?;
    check_size(run, key, "input", &value)?;
    Ok(value)
}

/// Checks a payload against the configured limit.
pub(crate) fn check_size(
    run: &RunContext,
    key: &StepKey,
    what: &str,
    value: &Value,
) -> Result<(), StepError> {
    let size = json_size(value);
    run.shared
        .config
        .limits
        .check_payload(|| format!("{what} of step {key}"), size)
        .map_err(|err| {
            StepError::new(
                ErrorInfo::new(ErrorKind::PayloadTooLarge, err.to_string()).at_step(key.clone()),
            )
        })
}

/// The serialized size of a JSON value in bytes.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value)
        .map(|()| counter.0)
        .unwrap_or(usize::MAX)
}

/// Validates a replayed or fresh output against `schema` and turns it into `O`.
pub(crate) fn decode_output<O: DeserializeOwned>(
    schema: &Schema,
    key: &StepKey,
    output: Value,
) -> Result<O, StepError> {
    let invalid = |message: String| {
        StepError::new(ErrorInfo::new(ErrorKind::InvalidOutput, message).at_step(key.clone()))
    };
    schema.validate(&output).map_err(|v| {
        invalid(format!(
            "recorded output does not match the current output schema: {v}"
        ))
    })?;
    serde_json::from_value(output).map_err(|err| {
        invalid(format!(
            "recorded output does not fit the output type: {err}"
        ))
    })
}

/// Records a step's final failure and hands the error back to the workflow (never returns
/// if the record cannot be written: the execution is aborted).
pub(crate) async fn fail_step(
    run: &RunContext,
    key: &StepKey,
    kind: StepKind,
    slug: &str,
    error: ErrorInfo,
    attempts: u32,
) -> StepError {
    let error = error.at_step(key.clone());
    let event = Event::StepFailed {
        key: key.clone(),
        kind,
        slug: slug.to_owned(),
        error: error.clone(),
        attempts,
    };
    match run.append([event]).await {
        Ok(()) => StepError::new(error),
        Err(Halted) => halt().await,
    }
}

/// Replays or executes one action step.
pub(crate) async fn execute_action<I: Payload, O: Payload>(
    action: Arc<ActionInner<I, O>>,
    run: Arc<RunContext>,
    key: StepKey,
    input: I,
) -> Result<O, StepError> {
    let slug = action.info.slug.as_str();
    let input = encode_input(&run, &key, &input)?;
    let (mut attempt, mut not_before_ms) =
        match begin(&run, &key, StepKind::Action, slug, &input).await {
            Begin::Replayed(result) => return decode_output(&action.output_schema, &key, result?),
            Begin::Execute {
                attempt,
                not_before_ms,
            } => (attempt, not_before_ms),
        };
    if let Err(violations) = action.input_schema.validate(&input) {
        let error = ErrorInfo::new(
            ErrorKind::InvalidInput,
            format!("input does not match the schema of action {slug}: {violations}"),
        );
        return Err(fail_step(&run, &key, StepKind::Action, slug, error, 0).await);
    }
    loop {
        if let Some(deadline) = not_before_ms {
            // A long backoff parks the run like a sleep; the attempt count is in the log.
            crate::wait::wait_or_park(&run, deadline, RunStatus::Sleeping).await;
        }
        let _busy = run.busy();
        // The attempt's effects leave the process: what the body recorded must be durable.
        if run.flush().await.is_err() {
            return halt().await;
        }
        // The start is recorded with the outcome (the input moves into it then), or at once
        // if the attempt runs long.
        let mut start_recorded = false;
        let result = 'attempt: {
            let attempt_run = attempt_action(&action, &run, &key, &input, attempt);
            tokio::pin!(attempt_run);
            // Most attempts finish at their first poll: they arm no timer.
            if let Poll::Ready(result) = futures::poll!(&mut attempt_run) {
                break 'attempt result;
            }
            tokio::select! {
                biased;
                result = &mut attempt_run => result,
                () = tokio::time::sleep(STARTED_EVENT_DELAY) => {
                    // Still running: show it in flight now rather than with its outcome. The
                    // attempt is polled in place, so it goes on while the start is written.
                    run.defer([action_started(&key, slug, input.clone(), attempt)]);
                    start_recorded = true;
                    let (written, result) = tokio::join!(run.flush(), &mut attempt_run);
                    if written.is_err() {
                        // The execution is being aborted, which drops this step.
                        return halt().await;
                    }
                    result
                }
            }
        };
        let error = match result.and_then(|output| encode_output(&action, &run, &key, output)) {
            Ok((output, value)) => {
                let done = Event::StepCompleted {
                    key: key.clone(),
                    kind: StepKind::Action,
                    slug: slug.to_owned(),
                    output: value,
                };
                // Written by the next barrier (see `writes`): the body goes on from memory.
                let started = (!start_recorded).then(|| action_started(&key, slug, input, attempt));
                run.defer(started.into_iter().chain([done]));
                return Ok(output);
            }
            Err(error) => error,
        };
        let retryable = error.retryable;
        let info = error.into_info();
        let (outcome, step_error) = if retryable && action.retry.allows_another(attempt) {
            let now = run.shared.clock.now_ms();
            let delay = action.retry.backoff(attempt, random_unit());
            let retry_at_ms = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            tracing::info!(run = %run.run_id, step = %key, attempt, error = %info.message, "step attempt failed; retrying");
            not_before_ms = Some(retry_at_ms);
            (
                Event::StepAttemptFailed {
                    key: key.clone(),
                    attempt,
                    error: info,
                    retry_at_ms,
                },
                None,
            )
        } else {
            let error = info.at_step(key.clone());
            let failed = Event::StepFailed {
                key: key.clone(),
                kind: StepKind::Action,
                slug: slug.to_owned(),
                error: error.clone(),
                attempts: attempt,
            };
            (failed, Some(StepError::new(error)))
        };
        let started = (!start_recorded).then(|| action_started(&key, slug, input.clone(), attempt));
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

/// The `StepStarted` of an action's attempt.
fn action_started(key: &StepKey, slug: &str, input: Value, attempt: u32) -> Event {
    Event::StepStarted {
        key: key.clone(),
        kind: StepKind::Action,
        slug: slug.to_owned(),
        input,
        attempt,
    }
}

/// A step still running after this long has its `StepStarted` written at once, so inspection
/// shows it in flight; a faster one writes it together with its outcome, in one commit.
const STARTED_EVENT_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs one attempt of the action body (in place, see `attempt`), with its timeout and the
/// run's cancellation signal.
async fn attempt_action<I: Payload, O: Payload>(
    action: &Arc<ActionInner<I, O>>,
    run: &Arc<RunContext>,
    key: &StepKey,
    input: &Value,
    attempt: u32,
) -> Result<O, ActionError> {
    let typed = I::deserialize(input).map_err(|err| {
        ActionError::fatal(format!("input does not fit the action's input type: {err}"))
            .with_kind(ErrorKind::InvalidInput)
    })?;
    // A token of the attempt's own: the action holds it (`ActionCtx::cancellation`), and
    // cancelling it must not cancel the run.
    let cancel = run.cancel.child_token();
    let span = tracing::info_span!("step", run = %run.run_id, step = %key, attempt);
    let ctx = ActionCtx {
        run_id: run.run_id,
        step_key: key.clone(),
        attempt,
        cancel: cancel.clone(),
        span: span.clone(),
    };
    if let Some(stand_in) = run.shared.overrides.get(&action.info.slug) {
        drop(typed);
        let output = stand_in(input.clone(), ctx).await?;
        return serde_json::from_value(output).map_err(|err| {
            ActionError::fatal(format!(
                "the stand-in's output does not fit the output type: {err}"
            ))
            .with_kind(ErrorKind::InvalidOutput)
        });
    }
    let body = (action.body)(typed, ctx);
    let scope = Scope::Action {
        slug: action.info.slug.clone(),
        key: key.clone(),
    };
    let running = InPlace::new(scope.enter(body).instrument(span));
    match action.timeout {
        None => running.await,
        // On a timeout the attempt is dropped, which moves it onto a task of its own: it
        // runs on, told to stop by its cancellation signal.
        Some(limit) => tokio::time::timeout(limit, running)
            .await
            .unwrap_or_else(|_| {
                cancel.cancel();
                let message = format!("attempt {attempt} timed out after {}", humanize(limit));
                Err(ActionError::retryable(message).with_kind(ErrorKind::Timeout))
            }),
    }
}

/// Serializes and validates an action's output; a violation is fatal (retrying the same code
/// would not fix it).
fn encode_output<I, O: Payload>(
    action: &ActionInner<I, O>,
    run: &RunContext,
    key: &StepKey,
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
    check_size(run, key, "output", &value)
        .map_err(|err| ActionError::fatal(err.message()).with_kind(ErrorKind::PayloadTooLarge))?;
    Ok((output, value))
}

/// A uniform draw in `0..1` from the OS, for backoff jitter.
pub(crate) fn random_unit() -> f64 {
    let bits = getrandom::u64().unwrap_or(0) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

fn humanize(duration: std::time::Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}
