//! Running one action attempt in place: polled by the step's own task, with no hop to another
//! worker thread, yet behaving like a task of its own.
//!
//! A spawned task per attempt cost two cross-thread wake-ups per step (spawn onto an idle
//! worker, then wake the workflow when it finishes): a seventh of a sequential workflow's
//! latency. Restate's SDK runs `ctx.run` closures in place the same way. What a task gave is
//! kept: a panic fails the attempt instead of the run's task, and an attempt the step stops
//! waiting for (its timeout elapsed, or the execution was dropped: canceled, lease lost,
//! engine stopping) is moved onto a task of its own, so it still runs on, sees its
//! cancellation signal and finishes, as before.
//!
//! One thing differs: the attempts of a workflow's parallel steps share its task, so they run
//! concurrently but not on two threads at once. CPU-heavy action bodies belong in
//! `tokio::task::spawn_blocking`, as anywhere in async Rust.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use std::time::Duration;

use cairn_core::ErrorKind;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::base::{
    clock::Clock,
    error::ActionError,
    panics::{Caught, panic_message},
};

type Body<O> = Caught<Pin<Box<dyn Future<Output = O> + Send>>>;

/// An action attempt polled in place (see the module docs). Resolves to the body's result,
/// or to a retryable error if the body panicked.
pub(crate) struct InPlace<O: Send + 'static> {
    body: Option<Body<Result<O, ActionError>>>,
}

impl<O: Send + 'static> InPlace<O> {
    pub(crate) fn new(body: impl Future<Output = Result<O, ActionError>> + Send + 'static) -> Self {
        let body: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(body);
        InPlace {
            body: Some(Caught::new(body)),
        }
    }
}

impl<O: Send + 'static> Future for InPlace<O> {
    type Output = Result<O, ActionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(Err(ActionError::retryable(
                "action attempt polled after it finished",
            )));
        };
        let outcome = std::task::ready!(body.poll_unpin(cx));
        self.body = None;
        Poll::Ready(outcome.unwrap_or_else(|panic| {
            Err(ActionError::retryable(format!(
                "action panicked: {}",
                panic_message(&*panic)
            )))
        }))
    }
}

impl<O: Send + 'static> Drop for InPlace<O> {
    /// An attempt still running when the step stops waiting for it runs on, on its own task.
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        // Outside a runtime (it is shutting down) there is nothing left to run it on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(body.map(drop));
        }
    }
}

/// Runs one attempt of an action's body in place, with the action's timeout measured on the
/// engine's clock. On a timeout, `cancel` is fired and the attempt fails, retryably.
pub(crate) async fn run_attempt<O: Send + 'static>(
    clock: &dyn Clock,
    body: impl Future<Output = Result<O, ActionError>> + Send + 'static,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    attempt: u32,
) -> Result<O, ActionError> {
    let running = InPlace::new(body);
    let Some(limit) = timeout else {
        return running.await;
    };
    // On a timeout the attempt is dropped, which moves it onto a task of its own: it runs
    // on, told to stop by its cancellation signal.
    tokio::select! {
        biased;
        result = running => result,
        () = clock.sleep(limit) => {
            cancel.cancel();
            let message = format!("attempt {attempt} timed out after {:.3}s", limit.as_secs_f64());
            Err(ActionError::retryable(message).with_kind(ErrorKind::Timeout))
        }
    }
}
