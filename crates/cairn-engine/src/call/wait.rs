//! Waiting inside an execution: in-process while it is short or other steps of the run are
//! working, else by suspending the run (the execution ends, the store holds the wake-up) so
//! a parked run holds nothing.

use std::sync::Arc;

use cairn_core::RunStatus;
use cairn_store::RunId;

use crate::{
    base::config::millis,
    call::halt,
    run::{RunContext, Stop},
};

/// Waits until `until_ms`: in-process if the wait is short or other steps of the run are
/// working, else by suspending the run (this future then never completes; the run is
/// replayed when it wakes).
pub(crate) async fn wait_until(run: &Arc<RunContext>, until_ms: i64, status: RunStatus) {
    let env = &run.env;
    let limit = millis(env.config.in_process_wait_limit);
    loop {
        let now = env.clock.now_ms();
        if now >= until_ms {
            return;
        }
        let long = until_ms - now > limit;
        if long && !run.is_busy() {
            run.stop(Stop::Suspend {
                status,
                wake_at_ms: until_ms,
                child: None,
            });
            return halt().await;
        }
        // A short wait counts as work: the run should not park for a later wake-up while
        // this one is about to go on.
        let _busy = (!long).then(|| run.busy());
        tokio::select! {
            biased;
            () = env.clock.sleep_until(until_ms) => {}
            () = run.until_idle(), if long => {}
            () = env.stopping.cancelled() => {
                run.stop(Stop::Shutdown);
                return halt().await;
            }
        }
    }
}

/// What the run waits for outside the execution: a hook's resume or a child run's end.
pub(crate) struct Outside {
    /// The status a suspended run gets (`Waiting`).
    pub(crate) status: RunStatus,
    /// When a suspended run wakes even if nothing else wakes it (unix ms): a hook's timeout,
    /// a child's wake-up; `cairn_store::NEVER` for never.
    pub(crate) wake_at_ms: i64,
    /// When a run waiting in-process looks again (unix ms).
    pub(crate) recheck_at_ms: i64,
    /// The child run waited for, if any.
    pub(crate) child: Option<RunId>,
}

/// Waits for something outside the execution: suspends the run when no other step of it is
/// working (this future then never completes); else waits in-process until the recheck time
/// or until the other steps are done, and returns so the caller looks again.
pub(crate) async fn wait_outside(run: &Arc<RunContext>, outside: Outside) {
    let env = &run.env;
    if !run.is_busy() {
        run.stop(Stop::Suspend {
            status: outside.status,
            wake_at_ms: outside.wake_at_ms,
            child: outside.child,
        });
        return halt().await;
    }
    tokio::select! {
        biased;
        () = run.until_idle() => {}
        () = env.clock.sleep_until(outside.recheck_at_ms) => {}
        () = env.stopping.cancelled() => {
            run.stop(Stop::Shutdown);
            halt::<()>().await;
        }
    }
}
