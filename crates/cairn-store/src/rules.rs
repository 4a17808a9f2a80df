//! The backend-independent decisions of the [`Store`](crate::Store) contract, shared by
//! backends: what an event does to its run's row, who may write to a run (fencing), who may
//! claim it, whether it may be parked, retried or canceled, and whether a hook may be resumed
//! or timed out.
//!
//! Every function here is pure: it is given what a backend read (in its own transaction, under
//! its own locks) and answers with a decision or the [`StoreError`] to refuse with. Backends
//! keep the storing: their SQL, their encoding of payloads, their locking. So a rule is
//! written once, and the in-memory, SQLite and PostgreSQL backends cannot drift apart on it.

use cairn_core::{ErrorInfo, ErrorKind, Event, EventRecord, RunStatus, StepKey};
use serde_json::Value;

use crate::{
    ClaimOutcome, ClaimedRun, HookRecord, HookState, Lease, NewRun, Park, RunId, RunRecord,
    StoreError, WorkerId,
};

/// What appending one event does to its run's row, besides growing the log.
///
/// [`run_effect`] decides it with the payloads as values (`O` a run output, `E` a run error,
/// `S` a hook's schema); a backend that stores them encoded maps them with
/// [`try_map`](RunEffect::try_map), e.g. to JSON text.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEffect<O = Value, E = ErrorInfo, S = Value> {
    /// Nothing (a step's events, recorded values, a hook's resume).
    None,
    /// The run ends: it takes `status`, `output` and `error` and a `finished_at`, its lease is
    /// freed and its pending hooks are closed. No event may follow in the same batch.
    End {
        /// Its final status (`succeeded`, `failed` or `canceled`).
        status: RunStatus,
        /// Its output, for a run that succeeded.
        output: Option<O>,
        /// Its error, for a run that failed or was canceled.
        error: Option<E>,
    },
    /// The run goes back to the queue (`RunRetried`): `queued`, output, error and
    /// `finished_at` cleared, lease freed, ready now.
    Requeue,
    /// The run moves to another status that is not an end.
    Status(RunStatus),
    /// A hook is registered, pending, for the step `key` (`HookCreated`).
    RegisterHook {
        /// The hook's step.
        key: StepKey,
        /// The token that resumes it.
        token: String,
        /// The JSON Schema its payload must match.
        schema: S,
        /// When waiting on it gives up (unix ms), if ever.
        timeout_at_ms: Option<i64>,
    },
}

impl<O, E, S> RunEffect<O, E, S> {
    /// The status the run ends with, if this effect ends it.
    pub fn ends(&self) -> Option<RunStatus> {
        match self {
            RunEffect::End { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The same effect with its payloads converted (encoded for storage, typically); the
    /// first conversion that fails fails the whole.
    pub fn try_map<O2, E2, S2, X>(
        self,
        output: impl FnOnce(O) -> Result<O2, X>,
        error: impl FnOnce(E) -> Result<E2, X>,
        schema: impl FnOnce(S) -> Result<S2, X>,
    ) -> Result<RunEffect<O2, E2, S2>, X> {
        Ok(match self {
            RunEffect::None => RunEffect::None,
            RunEffect::End {
                status,
                output: value,
                error: info,
            } => RunEffect::End {
                status,
                output: value.map(output).transpose()?,
                error: info.map(error).transpose()?,
            },
            RunEffect::Requeue => RunEffect::Requeue,
            RunEffect::Status(status) => RunEffect::Status(status),
            RunEffect::RegisterHook {
                key,
                token,
                schema: value,
                timeout_at_ms,
            } => RunEffect::RegisterHook {
                key,
                token,
                schema: schema(value)?,
                timeout_at_ms,
            },
        })
    }
}

/// What appending `event` does to its run's row (see [`Event::resulting_status`]).
///
/// `RunCompleted` ends the run with its output, `RunFailed` with its error, `RunCanceled`
/// with the [`canceled_error`] of its reason; `RunRetried` requeues it; `HookCreated`
/// registers its hook; every other event changes nothing but the log.
pub fn run_effect(event: &Event) -> RunEffect {
    if let Event::HookCreated {
        key,
        token,
        schema,
        timeout_at_ms,
        ..
    } = event
    {
        return RunEffect::RegisterHook {
            key: key.clone(),
            token: token.clone(),
            schema: schema.clone(),
            timeout_at_ms: *timeout_at_ms,
        };
    }
    let Some(status) = event.resulting_status() else {
        return RunEffect::None;
    };
    let (output, error) = match event {
        Event::RunCompleted { output } => (Some(output.clone()), None),
        Event::RunFailed { error } => (None, Some(error.clone())),
        Event::RunCanceled { reason } => (None, Some(canceled_error(reason))),
        _ if status == RunStatus::Queued => return RunEffect::Requeue,
        _ if status.is_terminal() => (None, None),
        _ => return RunEffect::Status(status),
    };
    RunEffect::End {
        status,
        output,
        error,
    }
}

/// The error a canceled run carries: `run canceled: <reason>`, or `run canceled` for a blank
/// reason.
pub fn canceled_error(reason: &str) -> ErrorInfo {
    let message = if reason.trim().is_empty() {
        "run canceled".to_owned()
    } else {
        format!("run canceled: {reason}")
    };
    ErrorInfo::new(ErrorKind::Canceled, message)
}

/// The fencing rule: `worker` may write to `run` (append, renew or release the lease, park,
/// time a hook out) only while the run has not ended (else `RunEnded`) and `worker` is its
/// lease owner (else `LeaseLost`). `status` and `lease_owner` are the run's, as read in the
/// writing transaction.
pub fn check_fence(
    run: RunId,
    status: RunStatus,
    lease_owner: Option<&str>,
    worker: &WorkerId,
) -> Result<(), StoreError> {
    check_not_ended(run, status)?;
    if lease_owner != Some(worker.as_str()) {
        return Err(StoreError::LeaseLost {
            run,
            worker: worker.clone(),
        });
    }
    Ok(())
}

/// `RunEnded` if a run with `status` has ended: it takes no more events (canceling it is
/// refused too).
pub fn check_not_ended(run: RunId, status: RunStatus) -> Result<(), StoreError> {
    if status.is_terminal() {
        return Err(StoreError::RunEnded { run, status });
    }
    Ok(())
}

/// Only a failed or canceled run may be retried; `NotRetryable` otherwise.
pub fn check_retryable(run: RunId, status: RunStatus) -> Result<(), StoreError> {
    if !matches!(status, RunStatus::Failed | RunStatus::Canceled) {
        return Err(StoreError::NotRetryable { run, status });
    }
    Ok(())
}

/// Why [`check_claim`] refuses a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// The run has ended, with this status.
    Ended(RunStatus),
    /// Another worker holds a live lease.
    Held {
        /// The holder.
        by: WorkerId,
        /// When its lease lapses unless renewed (unix ms).
        until_ms: i64,
    },
}

impl From<ClaimRefusal> for ClaimOutcome {
    fn from(refusal: ClaimRefusal) -> ClaimOutcome {
        match refusal {
            ClaimRefusal::Ended(status) => ClaimOutcome::Ended(status),
            ClaimRefusal::Held { by, until_ms } => ClaimOutcome::Held { by, until_ms },
        }
    }
}

/// Whether `lease` may take a run (see [`Store::claim_run`](crate::Store::claim_run)): not if
/// it has ended, nor while another worker's lease on it is live (`now_ms < expires_at`). The
/// run's `ready_at` does not matter; the claimer's own lease may be taken again.
pub fn check_claim(
    status: RunStatus,
    lease_owner: Option<&str>,
    lease_expires_at_ms: Option<i64>,
    lease: &Lease,
    now_ms: i64,
) -> Result<(), ClaimRefusal> {
    if status.is_terminal() {
        return Err(ClaimRefusal::Ended(status));
    }
    if let (Some(owner), Some(until_ms)) = (lease_owner, lease_expires_at_ms)
        && owner != lease.worker.as_str()
        && until_ms > now_ms
    {
        return Err(ClaimRefusal::Held {
            by: WorkerId(owner.into()),
            until_ms,
        });
    }
    Ok(())
}

/// The columns a new run starts with (see [`Store::create_run`](crate::Store::create_run)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewRunState<'a> {
    /// `running` when created under a lease, else `queued`.
    pub status: RunStatus,
    /// The lease's holder, if any.
    pub lease_owner: Option<&'a WorkerId>,
    /// When the lease lapses, if any.
    pub lease_expires_at_ms: Option<i64>,
    /// 1 when created under a lease (as if claimed), else 0.
    pub executions: u32,
    /// When the lease lapses, or `now` for a queued run.
    pub ready_at_ms: i64,
}

/// How a run created at `now_ms` starts: queued and ready now, or running under `lease`
/// exactly as if it had been claimed.
pub fn new_run_state(lease: Option<&Lease>, now_ms: i64) -> NewRunState<'_> {
    match lease {
        Some(lease) => NewRunState {
            status: RunStatus::Running,
            lease_owner: Some(&lease.worker),
            lease_expires_at_ms: Some(lease.expires_at_ms),
            executions: 1,
            ready_at_ms: lease.expires_at_ms,
        },
        None => NewRunState {
            status: RunStatus::Queued,
            lease_owner: None,
            lease_expires_at_ms: None,
            executions: 0,
            ready_at_ms: now_ms,
        },
    }
}

/// The claim a run created under a lease starts with, exactly as a store would hand it out:
/// its record and its log (`RunCreated`, then the history, numbered from 1). `None` for a run
/// created without a lease. Lets the creating process execute the run without reading it
/// back.
pub fn created_claim(run: &NewRun) -> Option<ClaimedRun> {
    let lease = run.lease.as_ref()?;
    let state = new_run_state(Some(lease), run.now_ms);
    let created = Event::RunCreated {
        workflow: run.workflow.clone(),
        input: run.input.clone(),
    };
    let events = std::iter::once(created)
        .chain(run.history.iter().cloned())
        .zip(1u64..)
        .map(|(event, seq)| EventRecord {
            seq,
            at_ms: run.now_ms,
            event,
        })
        .collect();
    let record = RunRecord {
        run_id: run.id,
        workflow: run.workflow.clone(),
        status: state.status,
        input: run.input.clone(),
        output: None,
        error: None,
        idempotency_key: run.idempotency_key.clone(),
        parent_run_id: run.parent_run_id,
        forked_from: run.forked_from.clone(),
        trigger: run.trigger.clone(),
        owner: run.owner.clone(),
        executions: state.executions,
        lease_owner: state.lease_owner.cloned(),
        lease_expires_at_ms: state.lease_expires_at_ms,
        ready_at_ms: state.ready_at_ms,
        created_at_ms: run.now_ms,
        updated_at_ms: run.now_ms,
        finished_at_ms: None,
    };
    Some(ClaimedRun {
        run: record,
        events,
    })
}

/// A run's record after `ending` (an event whose effect ends the run) was appended at
/// `now_ms`, as the store now holds it. `None` if the event does not end a run.
pub fn ended_record(mut run: RunRecord, ending: &Event, now_ms: i64) -> Option<RunRecord> {
    let RunEffect::End {
        status,
        output,
        error,
    } = run_effect(ending)
    else {
        return None;
    };
    run.status = status;
    run.output = output;
    run.error = error;
    run.finished_at_ms = Some(now_ms);
    run.updated_at_ms = now_ms;
    run.lease_owner = None;
    run.lease_expires_at_ms = None;
    Some(run)
}

/// What [`park_target`] decides: the status and `ready_at` a parked run gets (its lease is
/// freed either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkTarget {
    /// `park.status`, or `queued` when the run was woken meanwhile.
    pub status: RunStatus,
    /// `park.wake_at_ms`, or `now` when the run was woken meanwhile.
    pub ready_at_ms: i64,
    /// Whether it is parked (what [`Store::park_run`](crate::Store::park_run) returns).
    pub parked: bool,
}

/// Parking a run whose log ends at `last_seq`: if the log grew past what the parking worker
/// knows (`park.known_seq`: a hook was resumed meanwhile), or the child it waits for has
/// ended (`child_status`, the status of `park.child` as read in the parking transaction),
/// the run is made ready at once instead, so no wake-up is lost.
pub fn park_target(
    park: &Park,
    last_seq: u64,
    child_status: Option<RunStatus>,
    now_ms: i64,
) -> ParkTarget {
    debug_assert!(matches!(
        park.status,
        RunStatus::Sleeping | RunStatus::Waiting
    ));
    let child_ended = child_status.is_some_and(RunStatus::is_terminal);
    if last_seq > park.known_seq || child_ended {
        ParkTarget {
            status: RunStatus::Queued,
            ready_at_ms: now_ms,
            parked: false,
        }
    } else {
        ParkTarget {
            status: park.status,
            ready_at_ms: park.wake_at_ms,
            parked: true,
        }
    }
}

/// The child-run rule: whether a child's end wakes its parent, whose `status` and
/// `lease_owner` were read in the child's ending transaction. Only a parked parent (sleeping
/// or waiting, no lease) is woken; it becomes `queued` and ready at the child's end, as a
/// resumed hook makes its run ready. A parent that runs finds the child ended when it parks
/// (see [`park_target`]).
pub fn wakes_parent(status: RunStatus, lease_owner: Option<&str>) -> bool {
    matches!(status, RunStatus::Sleeping | RunStatus::Waiting) && lease_owner.is_none()
}

/// Whether `hook` may be resumed, its run having `run_status`: `HookNotPending` once it was
/// resumed, timed out or closed, `RunEnded` if its run ended.
pub fn check_resumable(hook: &HookRecord, run_status: RunStatus) -> Result<(), StoreError> {
    if hook.state != HookState::Pending {
        return Err(hook_not_pending(hook));
    }
    check_not_ended(hook.run_id, run_status)
}

/// Whether `hook`'s timeout may be recorded (the caller passed the fence first): `true` while
/// it is pending, `false` if it was resumed first (nothing is written then),
/// `HookNotPending` if it timed out already or was closed.
pub fn check_time_out(hook: &HookRecord) -> Result<bool, StoreError> {
    match hook.state {
        HookState::Pending => Ok(true),
        HookState::Resumed => Ok(false),
        HookState::TimedOut | HookState::Closed => Err(hook_not_pending(hook)),
    }
}

/// The refusal of a hook that is no longer pending.
fn hook_not_pending(hook: &HookRecord) -> StoreError {
    StoreError::HookNotPending {
        run: hook.run_id,
        step: hook.step_key.to_string(),
        state: hook.state,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
