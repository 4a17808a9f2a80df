//! Hooks: a durable wait for a person or a system. Making one records a token (the
//! credential that resumes it) before anything could hand it out; awaiting it suspends the
//! run until the store records a resume, or its timeout passes.

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use cairn_core::{ErrorKind, Event, HOOK_SLUG, HookInput, RunStatus, StepKind};
use cairn_store::NEVER;
use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;

use crate::{
    base::{
        entropy::EntropyExt,
        error::StepError,
        schema::{Payload, Schema},
    },
    call::{
        Begin, Call, halt,
        wait::{Outside, wait_outside},
    },
    run::{Stop, body::WorkflowCtx},
};

/// Options of a hook: a stable key and a timeout.
#[derive(Clone, Debug, Default)]
pub struct HookOptions {
    key: Option<String>,
    timeout: Option<Duration>,
}

impl HookOptions {
    /// No key (the hook is `cairn.hook#<n>`) and no timeout.
    pub fn new() -> Self {
        HookOptions::default()
    }

    /// Names the hook's step (1 to 200 characters).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Gives up waiting after `timeout`: awaiting the hook then returns a `Timeout` error.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl WorkflowCtx {
    /// Creates a hook whose payload is a `T`. Its [`token`](Hook::token) and
    /// [`resume_url`](Hook::resume_url) are available at once, so a step can send them to a
    /// person or a system; awaiting the hook parks the run (status `waiting`) until it is
    /// resumed and returns the payload.
    pub fn hook<T: Payload>(&self) -> Hook<T> {
        self.hook_with(HookOptions::new())
    }

    /// [`hook`](Self::hook) with a key and/or a timeout.
    pub fn hook_with<T: Payload>(&self, options: HookOptions) -> Hook<T> {
        let schema = Schema::cached::<T>();
        let made = Call::make(
            self.run.clone(),
            StepKind::Hook,
            Arc::from(HOOK_SLUG),
            options.key,
        );
        let (call, state) = match made {
            Ok(call) => {
                let state = hook_state(&call, &schema, options.timeout);
                (Some(call), state)
            }
            Err(err) => (None, HookState::Failed(err)),
        };
        let key = call
            .as_ref()
            .map_or_else(|| cairn_core::StepKey::from(""), |call| call.key.clone());
        Hook {
            call,
            key,
            schema,
            state: Some(state),
            waiting: None,
            payload: PhantomData,
        }
    }
}

/// Where a hook is, as the workflow sees it.
enum HookState {
    /// Waiting for a resume: its token and timeout.
    Pending(HookInput),
    /// Resumed before (replayed): the payload.
    Resumed(HookInput, Value),
    /// The call failed, or must not go on.
    Failed(StepError),
}

/// Decides a new hook call: replays it, or records its creation (a fresh token).
fn hook_state(call: &Call, schema: &Schema, timeout: Option<Duration>) -> HookState {
    let recorded = call
        .started_input()
        .and_then(|input| HookInput::from_value(&input));
    match call.decide(&Value::Null) {
        Some(Begin::Replayed(Ok(payload))) => {
            HookState::Resumed(recorded.unwrap_or_else(no_token), payload)
        }
        Some(Begin::Replayed(Err(err))) => HookState::Failed(err),
        None => HookState::Failed(StepError::new(
            call.error(ErrorKind::Canceled, "the execution is stopping"),
        )),
        Some(Begin::Execute(_)) => match recorded {
            Some(input) => HookState::Pending(input),
            None => {
                let env = &call.run.env;
                let input = HookInput {
                    token: new_token(&*env.entropy),
                    timeout_at_ms: timeout.map(|timeout| {
                        env.clock.now_ms()
                            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2)
                    }),
                };
                // Written before anything could hand the token out (see `writes`).
                call.run.defer([Event::HookCreated {
                    call: Some(call.position),
                    key: call.key.clone(),
                    token: input.token.clone(),
                    schema: schema.json().clone(),
                    timeout_at_ms: input.timeout_at_ms,
                }]);
                HookState::Pending(input)
            }
        },
    }
}

fn no_token() -> HookInput {
    HookInput {
        token: String::new(),
        timeout_at_ms: None,
    }
}

/// A durable hook: a token that resumes the run, and the wait for it. Await it for the
/// payload.
#[must_use = "a hook does nothing until it is awaited"]
pub struct Hook<T> {
    call: Option<Call>,
    key: cairn_core::StepKey,
    schema: Arc<Schema>,
    state: Option<HookState>,
    waiting: Option<BoxFuture<'static, Result<T, StepError>>>,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Hook<T> {
    /// The unguessable token that resumes the hook (it is the credential: keep it private to
    /// whoever should resume). Empty if the hook could not be made.
    pub fn token(&self) -> &str {
        match &self.state {
            Some(HookState::Pending(input) | HookState::Resumed(input, _)) => &input.token,
            _ => "",
        }
    }

    /// `<public url>/hooks/<token>`: POST a JSON payload there, or GET it with query
    /// parameters for link and button flows.
    pub fn resume_url(&self) -> String {
        let base = self.call.as_ref().map_or("", |call| {
            call.run.env.config.public_url.trim_end_matches('/')
        });
        format!("{base}/hooks/{}", self.token())
    }

    /// The hook's step key (empty if the hook could not be made).
    pub fn key(&self) -> &cairn_core::StepKey {
        &self.key
    }
}

impl<T: Payload> Future for Hook<T> {
    type Output = Result<T, StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.waiting.is_none() {
            let schema = this.schema.clone();
            let call = this.call.take();
            this.waiting = Some(match (this.state.take(), call) {
                (Some(HookState::Resumed(_, payload)), Some(call)) => {
                    futures::future::ready(call.decode_output(&schema, payload)).boxed()
                }
                (Some(HookState::Pending(input)), Some(call)) => wait_for_hook(call, input).boxed(),
                (Some(HookState::Failed(err)), _) => futures::future::ready(Err(err)).boxed(),
                _ => panic!("a hook was polled after it completed"),
            });
        }
        let waiting = this.waiting.as_mut().expect("set just above");
        waiting.as_mut().poll(cx)
    }
}

/// Waits for a pending hook: suspends the run (waking at the timeout, if any) once nothing
/// else of it is working; times the hook out when its time has come. A resume wakes the
/// run, which replays and finds the payload.
async fn wait_for_hook<T: Payload>(call: Call, input: HookInput) -> Result<T, StepError> {
    let run = &call.run;
    let timeout_at = input.timeout_at_ms.unwrap_or(NEVER);
    loop {
        let now = run.env.clock.now_ms();
        if now >= timeout_at {
            return time_out(&call, &input.token, now).await;
        }
        let outside = Outside {
            status: RunStatus::Waiting,
            wake_at_ms: timeout_at,
            recheck_at_ms: timeout_at,
            child: None,
        };
        wait_outside(run, outside).await;
    }
}

/// Records the hook's timeout (unless a resume came first: then the run is replayed at once
/// and sees the payload).
async fn time_out<T>(call: &Call, token: &str, now: i64) -> Result<T, StepError> {
    let run = &call.run;
    let info = call.error(
        ErrorKind::Timeout,
        format!("hook {} was not resumed before its timeout", call.key),
    );
    let event = call.failed(info.clone(), 1);
    let env = &run.env;
    let timed_out = run
        .write_then(|| {
            env.store
                .time_out_hook(token, &run.lease_holder, event.clone(), now)
        })
        .await;
    match timed_out {
        Ok(true) => {
            let seq = run.committed(1);
            env.publish(run.run_id, seq, now, [&event]);
            Err(StepError::new(info))
        }
        Ok(false) => {
            run.stop(Stop::Suspend {
                status: RunStatus::Waiting,
                wake_at_ms: now,
                child: None,
            });
            halt().await
        }
        Err(err) => {
            run.stop_for(err);
            halt().await
        }
    }
}

/// A new hook token: 192 random bits, hex (URL-safe).
fn new_token(entropy: &dyn crate::base::entropy::Entropy) -> String {
    let bytes: [u8; 24] = entropy.bytes();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("hk_{hex}")
}
