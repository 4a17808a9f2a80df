//! Panics the engine catches: a workflow body's (it fails the run) and an action attempt's
//! (it fails the attempt). While such code is polled, [`panic_is_caught`] says so, so a
//! panic hook can keep a caught panic from printing the default "thread … panicked" report,
//! and let every other panic report as usual.

use std::{
    cell::Cell,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{FutureExt, future::CatchUnwind};

thread_local! {
    /// How many engine-caught futures this thread is polling (they nest: an action in a body).
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Whether a panic raised now, on this thread, will be caught by the engine and recorded
/// (a workflow body's panic fails its run, an action's fails its attempt). Meant for panic
/// hooks: the embedded CLI's hook prints nothing for such a panic, since the recorded error
/// reports it, and hands every other panic to the default hook.
pub fn panic_is_caught() -> bool {
    CATCHING.with(|depth| depth.get() > 0)
}

/// A future whose panics are caught: it resolves to `Err(payload)` if polling it panicked.
pub(crate) struct Caught<F: Future> {
    inner: CatchUnwind<AssertUnwindSafe<F>>,
}

impl<F: Future> Caught<F> {
    /// Catches the panics of `future`.
    pub(crate) fn new(future: F) -> Self {
        Caught {
            inner: AssertUnwindSafe(future).catch_unwind(),
        }
    }
}

impl<F: Future + Unpin> Future for Caught<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        /// Counts down again however the poll ends (it cannot unwind past `catch_unwind`).
        struct Depth;
        impl Drop for Depth {
            fn drop(&mut self) {
                CATCHING.with(|depth| depth.set(depth.get() - 1));
            }
        }
        CATCHING.with(|depth| depth.set(depth.get() + 1));
        let _depth = Depth;
        self.inner.poll_unpin(cx)
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Caught, panic_is_caught};

    #[tokio::test]
    async fn a_panic_inside_is_known_to_be_caught_and_comes_back_as_an_error() {
        assert!(!panic_is_caught());
        let seen = Box::pin(async {
            let inside = panic_is_caught();
            if inside {
                panic!("inside");
            }
        });
        let result = Caught::new(seen).await;
        let payload = result.expect_err("the panic came back as an error");
        assert_eq!(super::panic_message(&*payload), "inside");
        assert!(!panic_is_caught(), "the depth counted back down");
    }
}
