//! Durable waits: `ctx.sleep(..)` and hooks. A wait that has nothing else to wait beside
//! parks the run (the execution ends, the store holds the wake-up time) instead of holding a
//! task; short waits, and waits beside work in flight, are waited in-process.

use std::{
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn_core::{
    Decision, ErrorInfo, ErrorKind, Event, HOOK_SLUG, RunStatus, SLEEP_SLUG,
    StepCall as JournalCall, StepKey, StepKind, parse_duration,
};
use cairn_store::NEVER;
use futures::{FutureExt, future::BoxFuture};
use serde_json::{Value, json};

use crate::{
    action::Payload,
    context::{Abort, RunContext, abort_for},
    error::StepError,
    schema::Schema,
    step::{Begin, begin, decode_output, halt},
    workflow::WorkflowCtx,
};

/// How long to sleep: a `Duration` or a string such as `"30s"`, `"1h30m"`, `"2d"`.
#[derive(Clone, Debug)]
pub enum SleepFor {
    /// An exact duration.
    Duration(Duration),
    /// A duration string, parsed when the sleep is awaited.
    Text(String),
}

impl From<Duration> for SleepFor {
    fn from(duration: Duration) -> Self {
        SleepFor::Duration(duration)
    }
}

impl From<&str> for SleepFor {
    fn from(text: &str) -> Self {
        SleepFor::Text(text.to_owned())
    }
}

impl From<String> for SleepFor {
    fn from(text: String) -> Self {
        SleepFor::Text(text)
    }
}

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

    /// Names the hook's step.
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
    /// Sleeps durably: the run is parked (status `sleeping`, nothing held in memory) and
    /// resumes after `duration`, across restarts. On replay a finished sleep is not slept again.
    pub fn sleep(
        &self,
        duration: impl Into<SleepFor>,
    ) -> BoxFuture<'static, Result<(), StepError>> {
        let wake = match duration.into() {
            SleepFor::Duration(duration) => Ok(duration),
            SleepFor::Text(text) => {
                parse_duration(&text).map_err(|err| StepError::misuse(err.to_string()))
            }
        }
        .map(WakeAt::After);
        self.sleep_step(wake)
    }

    /// Sleeps durably until `at` (returns at once if it has passed).
    pub fn sleep_until(&self, at: SystemTime) -> BoxFuture<'static, Result<(), StepError>> {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.sleep_step(Ok(WakeAt::At(ms)))
    }

    fn sleep_step(
        &self,
        wake: Result<WakeAt, StepError>,
    ) -> BoxFuture<'static, Result<(), StepError>> {
        let run = self.run.clone();
        let key = run.journal().next_key(SLEEP_SLUG);
        async move {
            let wake =
                wake.map_err(|err| StepError::new(err.info().clone().at_step(key.clone())))?;
            if let Begin::Replayed(result) =
                begin(&run, &key, StepKind::Sleep, SLEEP_SLUG, &Value::Null).await
            {
                return result.map(drop);
            }
            let recorded = run
                .journal()
                .started_input(&key)
                .and_then(|input| input["wakeAtMs"].as_i64());
            let wake_at_ms = match recorded {
                Some(at) => at,
                None => {
                    let at = wake.resolve(run.shared.clock.now_ms());
                    let started = Event::StepStarted {
                        key: key.clone(),
                        kind: StepKind::Sleep,
                        slug: SLEEP_SLUG.to_owned(),
                        input: json!({ "wakeAtMs": at }),
                        attempt: 1,
                    };
                    // Written before the run parks, or at once if it waits here.
                    run.defer([started]);
                    at
                }
            };
            wait_or_park(&run, wake_at_ms, RunStatus::Sleeping).await;
            let done = Event::StepCompleted {
                key,
                kind: StepKind::Sleep,
                slug: SLEEP_SLUG.to_owned(),
                output: Value::Null,
            };
            run.defer([done]);
            Ok(())
        }
        .boxed()
    }

    /// Creates a hook whose payload is a `T`. Its [`token`](Hook::token) and
    /// [`resume_url`](Hook::resume_url) are available at once, so a step can send them to a
    /// person or a system; awaiting the hook parks the run (status `waiting`) until it is
    /// resumed and returns the payload.
    pub fn hook<T: Payload>(&self) -> Hook<T> {
        self.hook_with(HookOptions::new())
    }

    /// [`hook`](Self::hook) with a key and/or a timeout.
    pub fn hook_with<T: Payload>(&self, options: HookOptions) -> Hook<T> {
        let run = self.run.clone();
        let schema = Schema::cached::<T>();
        let key = match options.key {
            Some(key) => StepKey::custom(key),
            None => run.journal().next_key(HOOK_SLUG),
        };
        let call = JournalCall {
            key: &key,
            kind: StepKind::Hook,
            slug: HOOK_SLUG,
            input: &Value::Null,
        };
        let decision = run.journal().decide(call);
        let recorded = run.journal().started_input(&key).cloned();
        let token_of = |input: &Value| {
            (
                input["token"].as_str().unwrap_or_default().to_owned(),
                input["timeoutAtMs"].as_i64(),
            )
        };
        let (token, timeout_at_ms, state) = match decision {
            Decision::Replay { output, .. } => {
                let (token, timeout) = recorded.as_ref().map(token_of).unwrap_or_default();
                (token, timeout, HookState::Resumed(output))
            }
            Decision::ReplayError { error } => (
                String::new(),
                None,
                HookState::Failed(StepError::new(error)),
            ),
            Decision::NonDeterminism(err) => {
                let info =
                    ErrorInfo::new(ErrorKind::NonDeterminism, err.to_string()).at_step(key.clone());
                run.abort(Abort::Fail(info.clone()));
                (String::new(), None, HookState::Failed(StepError::new(info)))
            }
            Decision::Execute { .. }
                if recorded.is_none() && run.refuse_unrecorded(&key, StepKind::Hook, HOOK_SLUG) =>
            {
                (String::new(), None, HookState::Pending)
            }
            Decision::Execute { .. } => match recorded.as_ref().map(token_of) {
                Some((token, timeout)) => (token, timeout, HookState::Pending),
                None => {
                    let token = new_token();
                    let timeout_at_ms = options.timeout.map(|timeout| {
                        run.shared.clock.now_ms()
                            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2)
                    });
                    // Written before anything could hand the token out (see `writes`).
                    run.defer([Event::HookCreated {
                        key: key.clone(),
                        token: token.clone(),
                        schema: schema.json().clone(),
                        timeout_at_ms,
                    }]);
                    (token, timeout_at_ms, HookState::Pending)
                }
            },
        };
        Hook {
            run,
            key,
            token,
            timeout_at_ms,
            schema,
            state: Some(state),
            waiting: None,
            payload: PhantomData,
        }
    }
}

/// When a sleep ends.
#[derive(Clone, Copy, Debug)]
enum WakeAt {
    After(Duration),
    At(i64),
}

impl WakeAt {
    fn resolve(self, now_ms: i64) -> i64 {
        match self {
            WakeAt::After(duration) => {
                now_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
            }
            WakeAt::At(at) => at,
        }
    }
}

/// Waits until `until_ms`: in-process if the wait is short or other steps of the run are
/// working, else by parking the run (this future then never completes; the run is replayed
/// when it wakes).
pub(crate) async fn wait_or_park(run: &Arc<RunContext>, until_ms: i64, status: RunStatus) {
    let shared = &run.shared;
    let limit = i64::try_from(shared.config.in_process_wait_limit.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = shared.clock.now_ms();
        if now >= until_ms {
            return;
        }
        let long = until_ms - now > limit;
        if long && !run.is_busy() {
            run.abort(Abort::Park {
                status,
                wake_at_ms: until_ms,
            });
            return halt().await;
        }
        // A short wait counts as work: the run should not park for a later wake-up while
        // this one is about to go on.
        let _busy = (!long).then(|| run.busy());
        tokio::select! {
            () = shared.clock.sleep_until(until_ms) => {}
            () = run.until_idle(), if long => {}
            () = shared.stopping.cancelled() => {
                run.abort(Abort::Shutdown);
                return halt().await;
            }
        }
    }
}

/// Where a hook is, as the workflow sees it.
enum HookState {
    Pending,
    Resumed(Value),
    Failed(StepError),
}

/// A durable hook: a token that resumes the run, and the wait for it. Await it for the
/// payload.
#[must_use = "a hook does nothing until it is awaited"]
pub struct Hook<T> {
    run: Arc<RunContext>,
    key: StepKey,
    token: String,
    timeout_at_ms: Option<i64>,
    schema: Arc<Schema>,
    state: Option<HookState>,
    waiting: Option<BoxFuture<'static, Result<T, StepError>>>,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Hook<T> {
    /// The unguessable token that resumes the hook (it is the credential: keep it private to
    /// whoever should resume).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `<public url>/hooks/<token>`: POST a JSON payload there, or GET it with query
    /// parameters for link and button flows.
    pub fn resume_url(&self) -> String {
        format!(
            "{}/hooks/{}",
            self.run.shared.config.public_url.trim_end_matches('/'),
            self.token
        )
    }

    /// The hook's step key.
    pub fn key(&self) -> &StepKey {
        &self.key
    }
}

impl<T: Payload> Future for Hook<T> {
    type Output = Result<T, StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.waiting.is_none() {
            let (run, key, schema) = (this.run.clone(), this.key.clone(), this.schema.clone());
            this.waiting = Some(match this.state.take() {
                Some(HookState::Resumed(payload)) => {
                    futures::future::ready(decode_output(&schema, &key, payload)).boxed()
                }
                Some(HookState::Failed(err)) => futures::future::ready(Err(err)).boxed(),
                Some(HookState::Pending) => {
                    wait_for_hook(run, key, this.token.clone(), this.timeout_at_ms).boxed()
                }
                None => panic!("a hook was polled after it completed"),
            });
        }
        let waiting = this.waiting.as_mut().expect("set just above");
        waiting.as_mut().poll(cx)
    }
}

/// Waits for a pending hook: parks the run (waking at the timeout, if any) once nothing else
/// of it is working; times the hook out when its time has come.
async fn wait_for_hook<T: Payload>(
    run: Arc<RunContext>,
    key: StepKey,
    token: String,
    timeout_at_ms: Option<i64>,
) -> Result<T, StepError> {
    let shared = run.shared.clone();
    loop {
        let now = shared.clock.now_ms();
        if timeout_at_ms.is_some_and(|at| now >= at) {
            return time_out(&run, &key, &token, now).await;
        }
        if !run.is_busy() {
            run.abort(Abort::Park {
                status: RunStatus::Waiting,
                wake_at_ms: timeout_at_ms.unwrap_or(NEVER),
            });
            return halt().await;
        }
        tokio::select! {
            () = run.until_idle() => {}
            () = shared.clock.sleep_until(timeout_at_ms.unwrap_or(NEVER)) => {}
            () = shared.stopping.cancelled() => {
                run.abort(Abort::Shutdown);
                return halt().await;
            }
        }
    }
}

/// Records the hook's timeout (unless a resume came first: then the run is replayed at once
/// and sees the payload).
async fn time_out<T>(
    run: &RunContext,
    key: &StepKey,
    token: &str,
    now: i64,
) -> Result<T, StepError> {
    let info = ErrorInfo::new(
        ErrorKind::Timeout,
        format!("hook {key} was not resumed before its timeout"),
    )
    .at_step(key.clone());
    let event = Event::StepFailed {
        key: key.clone(),
        kind: StepKind::Hook,
        slug: HOOK_SLUG.to_owned(),
        error: info.clone(),
        attempts: 1,
    };
    let timed_out = run
        .write_then(|| {
            let store = &run.shared.store;
            store.time_out_hook(token, &run.shared.worker, event.clone(), now)
        })
        .await;
    match timed_out {
        Ok(true) => {
            run.note_appended(&event, now);
            Err(StepError::new(info))
        }
        Ok(false) => {
            run.abort(Abort::Park {
                status: RunStatus::Waiting,
                wake_at_ms: now,
            });
            halt().await
        }
        Err(err) => {
            run.abort(abort_for(err));
            halt().await
        }
    }
}

/// A new hook token: 192 random bits, hex (URL-safe).
fn new_token() -> String {
    let mut bytes = [0u8; 24];
    if let Err(err) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {err}");
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("hk_{hex}")
}
