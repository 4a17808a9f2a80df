//! Layer 3, the call: the one way every kind of step is made. [`Call::make`] checks the
//! steps-per-run limit and the key's form and assigns the key; [`Call::begin`] asks the
//! journal whether to replay or execute, and applies the stop rule; `codec` turns payloads
//! into JSON and back under the limits; `attempt` runs an action attempt; `wait` waits or
//! suspends the run. Uses layers 1 and 2.
//!
//! The stop rule: once an execution stops for good (failed, lease lost, run ended elsewhere,
//! engine stopping, store failing), a call records nothing more and never returns (it halts:
//! the body is dropped). While it is merely suspending (every path waits), waits still record
//! their wake-up time, so a second sleep made in the same breath keeps its own, but a step
//! that would do work (an action attempt, a child run) does not start.

pub(crate) mod attempt;
pub(crate) mod codec;
pub(crate) mod credentials;
pub(crate) mod refresh;
pub(crate) mod wait;

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use cairn_core::{Decision, ErrorInfo, ErrorKind, Event, LimitExceeded, StepKey, StepKind};
use cairn_store::RunId;
use futures::future::{self, BoxFuture};
use serde_json::Value;

use self::credentials::CredentialPin;
use crate::{
    base::{config::MAX_STEP_KEY_LEN, credential::Scope, error::StepError},
    run::{Halted, RunContext, Stop, scope::current_run},
};

/// A step call being made: its run, its key, its kind and what it calls.
pub(crate) struct Call {
    pub(crate) run: Arc<RunContext>,
    pub(crate) key: StepKey,
    /// Its position in the order the body makes calls (see `cairn_core::Journal`).
    pub(crate) position: u32,
    pub(crate) kind: StepKind,
    pub(crate) slug: Arc<str>,
    /// Which credential the step's action is to use (`.credential_id()`, `.scope()`).
    pub(crate) pin: CredentialPin,
}

/// What a call does, once the journal has answered.
pub(crate) enum Begin {
    /// The history has the result.
    Replayed(Result<Value, StepError>),
    /// Execute it now.
    Execute(Execute),
}

/// How to execute a call the history has no result for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Execute {
    /// The attempt to make (earlier attempts are counted, across restarts).
    pub(crate) attempt: u32,
    /// Not before this time (unix ms): the backoff of a failed attempt.
    pub(crate) not_before_ms: Option<i64>,
    /// Attempts that failed (interrupted ones excluded): what the retry policy counts.
    pub(crate) failures: u32,
    /// Attempts interrupted so far, the one in `interrupted` included.
    pub(crate) recoveries: u32,
    /// The last attempt, if it was started and never finished (its worker stopped).
    pub(crate) interrupted: Option<u32>,
}

impl Call {
    /// Makes a call of `kind` and `slug` in `run`: checks the steps-per-run limit and the
    /// custom key's form, and assigns the key.
    pub(crate) fn make(
        run: Arc<RunContext>,
        kind: StepKind,
        slug: Arc<str>,
        custom_key: Option<String>,
    ) -> Result<Call, StepError> {
        let custom = custom_key.map(checked_key).transpose()?;
        let mut journal = run.journal();
        let limit = run.env.config.limits.max_steps_per_run;
        if journal.calls_made() >= limit {
            let error = LimitExceeded::Steps { limit }.to_string();
            return Err(StepError::new(ErrorInfo::new(ErrorKind::Misuse, error)));
        }
        let (key, position) = journal.make_call(&slug, custom);
        drop(journal);
        Ok(Call {
            run,
            key,
            position,
            kind,
            slug,
            pin: CredentialPin::default(),
        })
    }

    /// [`make`](Self::make) in the run of the current task (a workflow body).
    pub(crate) fn make_here(
        kind: StepKind,
        slug: Arc<str>,
        custom_key: Option<String>,
    ) -> Result<Call, StepError> {
        Call::make(current_run(&slug)?, kind, slug, custom_key)
    }

    /// Gives the call another key, before it is decided (`.key()` after `.run()`).
    pub(crate) fn rekey(&mut self, key: String) -> Result<(), StepError> {
        self.key = checked_key(key)?;
        Ok(())
    }

    /// Gives the call the next key of `family` (`<family>#<n>`), before it is decided.
    pub(crate) fn renumber(&mut self, family: &str) -> Result<(), StepError> {
        let key = self.run.journal().number(family);
        self.key = checked_key(key.to_string())?;
        Ok(())
    }

    /// Asks the journal what to do with the call. Never returns when the call must not go on
    /// (see the stop rule in the module docs): the execution is then stopping.
    pub(crate) async fn begin(&self, input: &Value) -> Begin {
        match self.decide(input) {
            Some(begin) => begin,
            None => halt().await,
        }
    }

    /// [`begin`](Self::begin) for calls that cannot wait (`now`, `random`, `uuid`, making a
    /// hook): `None` when the call must not go on. The caller then records nothing and
    /// returns a placeholder; the body stops at its next await.
    pub(crate) fn decide(&self, input: &Value) -> Option<Begin> {
        let run = &self.run;
        if let Some(stop) = run.stopping()
            && (!stop.is_suspend() || self.kind.does_work())
        {
            return None;
        }
        let decision = run.journal().decide(cairn_core::Call {
            key: &self.key,
            kind: self.kind,
            slug: &self.slug,
            input,
            position: self.position,
        });
        match decision {
            Decision::Replay { output, warning } => {
                if let Some(message) = warning {
                    tracing::warn!(run = %run.run_id, step = %self.key, "{message}");
                    run.defer([Event::StepWarning {
                        key: self.key.clone(),
                        message,
                    }]);
                }
                Some(Begin::Replayed(Ok(output)))
            }
            Decision::ReplayError { error } => Some(Begin::Replayed(Err(StepError::new(error)))),
            Decision::Execute {
                attempt,
                not_before_ms,
                failures,
                recoveries,
                interrupted,
            } => {
                if run.env.config.replay_only {
                    let message = format!(
                        "non-determinism at step {}: the workflow now makes {} `{}`, which the recorded history does not have",
                        self.key, self.kind, self.slug
                    );
                    run.stop(Stop::Fail(self.error(ErrorKind::Unrecorded, message)));
                    return None;
                }
                if self.kind.does_work() && run.env.stopping.is_cancelled() {
                    run.stop(Stop::Shutdown);
                    return None;
                }
                // Given back (as at a shutdown), the next execution replays up to here.
                if self.kind.does_work() && run.env.config.replay_every_step && run.begins_work() {
                    run.stop(Stop::Shutdown);
                    return None;
                }
                Some(Begin::Execute(Execute {
                    attempt,
                    not_before_ms,
                    failures,
                    recoveries,
                    interrupted,
                }))
            }
            Decision::NonDeterminism(err) => {
                run.stop(Stop::Fail(self.error(
                    ErrorKind::NonDeterminism,
                    non_determinism_message(&err, run.run_id),
                )));
                None
            }
        }
    }

    /// The input this step recorded when it started (a sleep's wake-up, a hook's token), if
    /// it started in an earlier execution.
    pub(crate) fn started_input(&self) -> Option<Value> {
        self.run.journal().started_input(&self.key).cloned()
    }

    /// An error of `kind` attributed to this step.
    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo::new(kind, message).at_step(self.key.clone())
    }

    /// The `StepStarted` of an attempt of this call.
    pub(crate) fn started(&self, input: Value, attempt: u32) -> Event {
        self.started_using(input, attempt, Vec::new())
    }

    /// The `StepStarted` of an attempt of this call given `credentials`.
    pub(crate) fn started_using(
        &self,
        input: Value,
        attempt: u32,
        credentials: Vec<cairn_core::UsedCredential>,
    ) -> Event {
        Event::StepStarted {
            call: Some(self.position),
            key: self.key.clone(),
            kind: self.kind,
            slug: self.slug.to_string(),
            input,
            attempt,
            credentials,
        }
    }

    /// The `StepCompleted` of this call.
    pub(crate) fn completed(&self, output: Value) -> Event {
        Event::StepCompleted {
            call: Some(self.position),
            key: self.key.clone(),
            kind: self.kind,
            slug: self.slug.to_string(),
            output,
        }
    }

    /// The `StepFailed` of this call.
    pub(crate) fn failed(&self, error: ErrorInfo, attempts: u32) -> Event {
        Event::StepFailed {
            call: Some(self.position),
            key: self.key.clone(),
            kind: self.kind,
            slug: self.slug.to_string(),
            error,
            attempts,
        }
    }

    /// Records the step's final failure, durably, and hands the error back to the workflow
    /// (never returns if the record cannot be written: the execution is stopping).
    pub(crate) async fn fail(&self, error: ErrorInfo, attempts: u32) -> StepError {
        let error = error.at_step(self.key.clone());
        match self
            .run
            .append([self.failed(error.clone(), attempts)])
            .await
        {
            Ok(()) => StepError::new(error),
            Err(Halted) => halt().await,
        }
    }
}

/// A non-determinism error's message, with the run's id in the fix it suggests.
pub(crate) fn non_determinism_message(err: &cairn_core::NonDeterminism, run: RunId) -> String {
    err.to_string().replace("<run-id>", &run.to_string())
}

/// A custom step key, checked.
fn checked_key(key: String) -> Result<StepKey, StepError> {
    if key.is_empty() || key.len() > MAX_STEP_KEY_LEN {
        return Err(StepError::misuse(format!(
            "step key {key:?} must be 1 to {MAX_STEP_KEY_LEN} characters"
        )));
    }
    Ok(StepKey::custom(key))
}

/// Never completes: the execution is stopping and its future will be dropped.
pub(crate) async fn halt<T>() -> T {
    future::pending().await
}

type Exec<O> = Box<dyn FnOnce(Call) -> BoxFuture<'static, Result<O, StepError>> + Send>;

/// A step call: made (and keyed) when `.run(input)` is called, executed or replayed when
/// first polled. It is a `Future`, so it composes with `futures::join!` and `try_join_all`.
#[must_use = "a step does nothing until it is awaited"]
pub struct StepCall<O> {
    state: CallState<O>,
}

enum CallState<O> {
    /// Made, not yet polled: the key may still be overridden.
    Made {
        call: Result<Call, StepError>,
        exec: Exec<O>,
    },
    /// Polled: replaying or executing.
    Running(BoxFuture<'static, Result<O, StepError>>),
    /// Finished (polling again is a bug).
    Done,
}

impl<O: Send + 'static> StepCall<O> {
    /// A call of `kind`/`slug` in the current task's run, executed by `exec` when polled.
    pub(crate) fn new(
        kind: StepKind,
        slug: &Arc<str>,
        exec: impl FnOnce(Call) -> BoxFuture<'static, Result<O, StepError>> + Send + 'static,
    ) -> Self {
        StepCall {
            state: CallState::Made {
                call: Call::make_here(kind, slug.clone(), None),
                exec: Box::new(exec),
            },
        }
    }

    /// Names the step explicitly instead of `<slug>#<n>` (1 to 200 characters). Use it to
    /// keep a step's identity stable when calls of the same slug are added before it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        if let CallState::Made { call, .. } = &mut self.state
            && let Ok(made) = call
            && let Err(err) = made.rekey(key.into())
        {
            *call = Err(err);
        }
        self
    }

    /// Names the step `<family>#<n>`, `n` counting the earlier steps of this execution named
    /// in the same family (as `<slug>#<n>` counts a slug's calls), so a series of steps an
    /// integration makes keeps its keys across replays: an agent's turns are
    /// `agent:researcher/model#0`, `#1`, … The key must fit in 200 characters.
    pub fn numbered_key(mut self, family: &str) -> Self {
        if let CallState::Made { call, .. } = &mut self.state
            && let Ok(made) = call
            && let Err(err) = made.renumber(family)
        {
            *call = Err(err);
        }
        self
    }
}

impl<O: Send + 'static> StepCall<O> {
    /// Resolves the action's credentials at `scope` only (e.g. [`Scope::User`]: the person
    /// the run is for), instead of the project's default, then the organization's. No effect
    /// on steps that use no credentials.
    pub fn scope(mut self, scope: Scope) -> Self {
        if let CallState::Made { call: Ok(made), .. } = &mut self.state {
            made.pin.scope = Some(scope);
        }
        self
    }

    /// Gives the action this credential (by id) for the credential type it is of, whatever
    /// the scopes would pick. It must belong to the run's organization (and its project or
    /// user).
    pub fn credential_id(mut self, id: impl Into<String>) -> Self {
        if let CallState::Made { call: Ok(made), .. } = &mut self.state {
            made.pin.id = Some(id.into());
        }
        self
    }
}

impl<O: Send + 'static> Future for StepCall<O> {
    type Output = Result<O, StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let CallState::Made { .. } = this.state {
            let CallState::Made { call, exec } =
                std::mem::replace(&mut this.state, CallState::Done)
            else {
                unreachable!("checked just above")
            };
            this.state = CallState::Running(match call {
                Ok(call) => exec(call),
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
