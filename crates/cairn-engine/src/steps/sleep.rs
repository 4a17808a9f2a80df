//! Durable sleeps: `ctx.sleep(..)` and `ctx.sleep_until(..)`. The wake-up time is recorded
//! when the sleep starts, so a replay (after a crash or a park) sleeps until the same time.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn_core::{ErrorKind, RunStatus, SLEEP_SLUG, SleepInput, StepKind, parse_duration};
use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;

use crate::{
    base::error::StepError,
    call::{Begin, Call, wait::wait_until},
    run::body::WorkflowCtx,
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

impl WorkflowCtx {
    /// Sleeps durably: the run is parked (status `sleeping`, nothing held in memory) and
    /// resumes after `duration`, across restarts. On replay a finished sleep is not slept again.
    pub fn sleep(
        &self,
        duration: impl Into<SleepFor>,
    ) -> BoxFuture<'static, Result<(), StepError>> {
        let wake = match duration.into() {
            SleepFor::Duration(duration) => Ok(duration),
            SleepFor::Text(text) => parse_duration(&text).map_err(|err| err.to_string()),
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
        wake: Result<WakeAt, String>,
    ) -> BoxFuture<'static, Result<(), StepError>> {
        let call = Call::make(
            self.run.clone(),
            StepKind::Sleep,
            Arc::from(SLEEP_SLUG),
            None,
        );
        async move {
            let call = call?;
            let wake =
                wake.map_err(|message| StepError::new(call.error(ErrorKind::Misuse, message)))?;
            if let Begin::Replayed(result) = call.begin(&Value::Null).await {
                return result.map(drop);
            }
            let run = &call.run;
            let recorded = call
                .started_input()
                .and_then(|input| SleepInput::from_value(&input));
            let wake_at_ms = match recorded {
                Some(input) => input.wake_at_ms,
                None => {
                    let wake_at_ms = wake.resolve(run.env.clock.now_ms());
                    // Written before the run parks, or at once if it waits here.
                    run.defer([call.started(SleepInput { wake_at_ms }.to_value(), 1)]);
                    wake_at_ms
                }
            };
            wait_until(run, wake_at_ms, RunStatus::Sleeping).await;
            run.defer([call.completed(Value::Null)]);
            Ok(())
        }
        .boxed()
    }
}
