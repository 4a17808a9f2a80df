//! Tables of the shared rules: each decision on canned inputs, as every backend relies on it.

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus, StepKey, StepKind};
use serde_json::json;

use super::*;
use crate::{HookRecord, HookState, Lease, Park, RunId, StoreError, WorkerId};

fn worker(name: &str) -> WorkerId {
    WorkerId(name.into())
}

fn hook(state: HookState) -> HookRecord {
    HookRecord {
        token: "t".to_owned(),
        run_id: RunId::new(),
        step_key: StepKey::numbered(cairn_core::HOOK_SLUG, 0),
        state,
        schema: json!({}),
        created_at_ms: 1,
        timeout_at_ms: None,
        closed_at_ms: None,
    }
}

#[test]
fn terminal_events_end_the_run_with_output_or_error() {
    assert_eq!(
        run_effect(&Event::RunCompleted { output: json!(1) }),
        RunEffect::End {
            status: RunStatus::Succeeded,
            output: Some(json!(1)),
            error: None,
        }
    );
    let error = ErrorInfo::new(ErrorKind::Workflow, "boom");
    assert_eq!(
        run_effect(&Event::RunFailed {
            error: error.clone()
        }),
        RunEffect::End {
            status: RunStatus::Failed,
            output: None,
            error: Some(error),
        }
    );
}

#[test]
fn a_canceled_run_carries_its_reason_or_a_plain_message() {
    for (reason, message) in [("bye", "run canceled: bye"), ("  ", "run canceled")] {
        let effect = run_effect(&Event::RunCanceled {
            reason: reason.to_owned(),
        });
        assert_eq!(
            effect,
            RunEffect::End {
                status: RunStatus::Canceled,
                output: None,
                error: Some(ErrorInfo::new(ErrorKind::Canceled, message)),
            }
        );
        assert_eq!(effect.ends(), Some(RunStatus::Canceled));
    }
}

#[test]
fn retries_requeue_hooks_register_and_steps_change_nothing() {
    assert_eq!(run_effect(&Event::RunRetried), RunEffect::Requeue);
    assert_eq!(run_effect(&Event::RunRetried).ends(), None);
    let key = StepKey::numbered(cairn_core::HOOK_SLUG, 0);
    let created = Event::HookCreated {
        call: None,
        key: key.clone(),
        token: "t".to_owned(),
        schema: json!({"type": "object"}),
        timeout_at_ms: Some(9),
    };
    assert_eq!(
        run_effect(&created),
        RunEffect::RegisterHook {
            key,
            token: "t".to_owned(),
            schema: json!({"type": "object"}),
            timeout_at_ms: Some(9),
        }
    );
    let started = Event::StepStarted {
        call: None,
        key: StepKey::numbered("a", 0),
        kind: StepKind::Action,
        slug: "a".to_owned(),
        input: json!(null),
        attempt: 1,
        credentials: Vec::new(),
    };
    assert_eq!(run_effect(&started), RunEffect::None);
}

#[test]
fn try_map_converts_every_payload_and_stops_at_the_first_failure() {
    let encoded = run_effect(&Event::RunCompleted { output: json!(2) }).try_map(
        |output| Ok::<_, ()>(output.to_string()),
        |error| Ok(error.message),
        |schema| Ok(schema.to_string()),
    );
    assert_eq!(
        encoded,
        Ok(RunEffect::End {
            status: RunStatus::Succeeded,
            output: Some("2".to_owned()),
            error: None,
        })
    );
    let refused = run_effect(&Event::RunFailed {
        error: ErrorInfo::new(ErrorKind::Workflow, "x"),
    })
    .try_map(|_| Ok(()), |_| Err::<(), _>("no"), |_| Ok(()));
    assert_eq!(refused, Err("no"));
}

#[test]
fn the_fence_refuses_ended_runs_then_other_owners() {
    let (run, me) = (RunId::new(), worker("me"));
    assert!(check_fence(run, RunStatus::Running, Some("me"), &me).is_ok());
    assert!(check_fence(run, RunStatus::Waiting, Some("me"), &me).is_ok());
    assert!(matches!(
        check_fence(run, RunStatus::Canceled, Some("me"), &me),
        Err(StoreError::RunEnded {
            status: RunStatus::Canceled,
            ..
        })
    ));
    for owner in [None, Some("other")] {
        assert!(matches!(
            check_fence(run, RunStatus::Running, owner, &me),
            Err(StoreError::LeaseLost { worker, .. }) if worker == me
        ));
    }
}

#[test]
fn only_failed_or_canceled_runs_are_retryable() {
    let run = RunId::new();
    assert!(check_retryable(run, RunStatus::Failed).is_ok());
    assert!(check_retryable(run, RunStatus::Canceled).is_ok());
    for status in [RunStatus::Succeeded, RunStatus::Queued, RunStatus::Running] {
        assert!(matches!(
            check_retryable(run, status),
            Err(StoreError::NotRetryable { .. })
        ));
    }
    assert!(check_not_ended(run, RunStatus::Sleeping).is_ok());
    assert!(check_not_ended(run, RunStatus::Succeeded).is_err());
}

#[test]
fn a_claim_waits_for_a_live_lease_of_another_worker_only() {
    let lease = Lease {
        worker: worker("me"),
        expires_at_ms: 100,
    };
    let claim = |status, owner, until| check_claim(status, owner, until, &lease, 50);
    assert_eq!(claim(RunStatus::Queued, None, None), Ok(()));
    assert_eq!(claim(RunStatus::Running, Some("me"), Some(90)), Ok(()));
    assert_eq!(claim(RunStatus::Running, Some("other"), Some(50)), Ok(()));
    assert_eq!(
        claim(RunStatus::Running, Some("other"), Some(51)),
        Err(ClaimRefusal::Held {
            by: worker("other"),
            until_ms: 51
        })
    );
    assert_eq!(
        claim(RunStatus::Failed, None, None),
        Err(ClaimRefusal::Ended(RunStatus::Failed))
    );
    assert!(matches!(
        ClaimOutcome::from(ClaimRefusal::Ended(RunStatus::Failed)),
        ClaimOutcome::Ended(RunStatus::Failed)
    ));
}

#[test]
fn a_new_run_starts_queued_or_as_if_claimed() {
    let queued = new_run_state(None, 7);
    assert_eq!(
        (queued.status, queued.executions, queued.ready_at_ms),
        (RunStatus::Queued, 0, 7)
    );
    assert_eq!(
        (queued.lease_owner, queued.lease_expires_at_ms),
        (None, None)
    );
    let lease = Lease {
        worker: worker("me"),
        expires_at_ms: 20,
    };
    let leased = new_run_state(Some(&lease), 7);
    assert_eq!(
        (leased.status, leased.executions, leased.ready_at_ms),
        (RunStatus::Running, 1, 20)
    );
    assert_eq!(leased.lease_owner, Some(&lease.worker));
    assert_eq!(leased.lease_expires_at_ms, Some(20));
}

#[test]
fn parking_yields_to_a_log_that_grew_and_to_an_ended_child() {
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: crate::NEVER,
        known_seq: 4,
        child: None,
    };
    let parked = ParkTarget {
        status: RunStatus::Waiting,
        ready_at_ms: crate::NEVER,
        parked: true,
    };
    let ready_now = ParkTarget {
        status: RunStatus::Queued,
        ready_at_ms: 10,
        parked: false,
    };
    assert_eq!(park_target(&park, 4, None, 10), parked);
    assert_eq!(park_target(&park, 5, None, 10), ready_now);
    for unended in [RunStatus::Queued, RunStatus::Running, RunStatus::Waiting] {
        assert_eq!(
            park_target(&park, 4, Some(unended), 10),
            parked,
            "{unended}"
        );
    }
    for ended in [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Canceled] {
        assert_eq!(park_target(&park, 4, Some(ended), 10), ready_now, "{ended}");
    }
}

#[test]
fn a_child_end_wakes_only_a_parked_parent() {
    assert!(wakes_parent(RunStatus::Sleeping, None));
    assert!(wakes_parent(RunStatus::Waiting, None));
    assert!(!wakes_parent(RunStatus::Waiting, Some("w1")), "leased");
    for status in [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Canceled,
    ] {
        assert!(!wakes_parent(status, None), "{status}");
    }
}

#[test]
fn hooks_resume_once_while_their_run_waits_and_time_out_unless_resumed() {
    let pending = hook(HookState::Pending);
    assert!(check_resumable(&pending, RunStatus::Waiting).is_ok());
    assert!(matches!(
        check_resumable(&pending, RunStatus::Canceled),
        Err(StoreError::RunEnded { .. })
    ));
    for state in [HookState::Resumed, HookState::TimedOut, HookState::Closed] {
        assert!(matches!(
            check_resumable(&hook(state), RunStatus::Canceled),
            Err(StoreError::HookNotPending { state: refused, .. }) if refused == state
        ));
    }
    assert!(matches!(check_time_out(&pending), Ok(true)));
    assert!(matches!(
        check_time_out(&hook(HookState::Resumed)),
        Ok(false)
    ));
    for state in [HookState::TimedOut, HookState::Closed] {
        assert!(matches!(
            check_time_out(&hook(state)),
            Err(StoreError::HookNotPending { .. })
        ));
    }
}
