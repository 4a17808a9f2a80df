//! Table tests of the journal: (history, calls) → decisions.

use serde_json::{Value, json};

use super::*;
use crate::{ErrorInfo, ErrorKind};

fn key(s: &str) -> StepKey {
    StepKey::from(s)
}

/// The slug of a numbered key (`a#0` → `a`).
fn slug_of(k: &str) -> &str {
    k.split('#').next().unwrap_or(k)
}

fn started_at(k: &str, input: Value, attempt: u32, call: Option<u32>) -> Event {
    Event::StepStarted {
        key: key(k),
        kind: StepKind::Action,
        slug: slug_of(k).into(),
        input,
        attempt,
        call,
        credentials: Vec::new(),
    }
}

fn started(k: &str, input: Value, attempt: u32) -> Event {
    started_at(k, input, attempt, None)
}

fn completed_at(k: &str, output: Value, call: Option<u32>) -> Event {
    Event::StepCompleted {
        key: key(k),
        kind: StepKind::Action,
        slug: slug_of(k).into(),
        output,
        call,
    }
}

fn completed(k: &str, output: Value) -> Event {
    completed_at(k, output, None)
}

fn attempt_failed(k: &str, attempt: u32, retry_at_ms: i64, kind: ErrorKind) -> Event {
    Event::StepAttemptFailed {
        key: key(k),
        attempt,
        error: ErrorInfo::new(kind, "boom"),
        retry_at_ms,
    }
}

fn failed(k: &str, attempts: u32, call: Option<u32>) -> Event {
    Event::StepFailed {
        key: key(k),
        kind: StepKind::Action,
        slug: slug_of(k).into(),
        error: ErrorInfo::new(ErrorKind::Action, "gave up"),
        attempts,
        call,
    }
}

fn call<'a>(key: &'a StepKey, slug: &'a str, input: &'a Value, position: u32) -> Call<'a> {
    Call {
        key,
        kind: StepKind::Action,
        slug,
        input,
        position,
    }
}

fn execute(attempt: u32, not_before_ms: Option<i64>) -> Decision {
    Decision::Execute {
        attempt,
        not_before_ms,
        failures: 0,
        recoveries: 0,
        interrupted: None,
    }
}

fn replay(output: Value) -> Decision {
    Decision::Replay {
        output,
        warning: None,
    }
}

#[test]
fn keys_count_calls_per_slug_and_positions_count_all_calls() {
    let mut journal = Journal::default();
    let made: Vec<(String, u32)> = ["a", "b", "a", "a", "b"]
        .iter()
        .map(|slug| {
            let (key, position) = journal.make_call(slug, None);
            (key.to_string(), position)
        })
        .collect();
    let keys: Vec<&str> = made.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["a#0", "b#0", "a#1", "a#2", "b#1"]);
    let positions: Vec<u32> = made.iter().map(|(_, position)| *position).collect();
    assert_eq!(positions, [0, 1, 2, 3, 4]);
}

#[test]
fn decisions_against_canned_histories() {
    let input = json!({"n": 1});
    let cases: Vec<(&str, Vec<Event>, Decision)> = vec![
        ("empty history executes", vec![], execute(1, None)),
        (
            "completed step replays",
            vec![started("a#0", input.clone(), 1), completed("a#0", json!(7))],
            replay(json!(7)),
        ),
        (
            "failed attempts carry their count and backoff across restarts",
            vec![
                started("a#0", input.clone(), 1),
                attempt_failed("a#0", 1, 5_000, ErrorKind::Action),
            ],
            Decision::Execute {
                attempt: 2,
                not_before_ms: Some(5_000),
                failures: 1,
                recoveries: 0,
                interrupted: None,
            },
        ),
        (
            "a started attempt with no outcome was interrupted: not a failure",
            vec![started("a#0", input.clone(), 1)],
            Decision::Execute {
                attempt: 2,
                not_before_ms: None,
                failures: 0,
                recoveries: 1,
                interrupted: Some(1),
            },
        ),
        (
            "interruptions recorded before count as recoveries, not failures",
            vec![
                started("a#0", input.clone(), 1),
                attempt_failed("a#0", 1, 10, ErrorKind::Interrupted),
                started("a#0", input.clone(), 2),
                attempt_failed("a#0", 2, 20, ErrorKind::Action),
                started("a#0", input.clone(), 3),
            ],
            Decision::Execute {
                attempt: 4,
                not_before_ms: Some(20),
                failures: 1,
                recoveries: 2,
                interrupted: Some(3),
            },
        ),
        (
            "a step that failed for good replays its error",
            vec![started("a#0", input.clone(), 3), failed("a#0", 3, None)],
            Decision::ReplayError {
                error: ErrorInfo::new(ErrorKind::Action, "gave up"),
            },
        ),
        (
            "a retried run runs a failed step again from attempt 1",
            vec![
                started("a#0", input.clone(), 3),
                failed("a#0", 3, None),
                Event::RunRetried,
            ],
            execute(1, None),
        ),
        (
            "a retried run keeps completed steps",
            vec![completed("a#0", json!(1)), Event::RunRetried],
            replay(json!(1)),
        ),
        (
            "a changed input is non-determinism by default",
            vec![
                started("a#0", json!({"n": 2}), 1),
                completed("a#0", json!(1)),
            ],
            Decision::NonDeterminism(NonDeterminism::InputChanged {
                key: key("a#0"),
                recorded: json!({"n": 2}),
                called: input.clone(),
            }),
        ),
        (
            "a different slug at the same key is non-determinism",
            vec![Event::StepCompleted {
                key: key("a#0"),
                kind: StepKind::Action,
                slug: "other".into(),
                output: json!(1),
                call: None,
            }],
            Decision::NonDeterminism(NonDeterminism::Mismatch {
                key: key("a#0"),
                recorded_kind: StepKind::Action,
                recorded_slug: "other".into(),
                called_kind: StepKind::Action,
                called_slug: "a".into(),
            }),
        ),
    ];
    for (name, history, expected) in cases {
        let mut journal = Journal::new(&history, ChangedInput::Fail);
        let k = key("a#0");
        assert_eq!(journal.decide(call(&k, "a", &input, 0)), expected, "{name}");
    }
}

/// A history of completed calls, each at its position, of the given keys.
fn history_of(keys: &[&str]) -> Vec<Event> {
    let mut events = Vec::new();
    for (position, k) in keys.iter().enumerate() {
        let position = Some(u32::try_from(position).unwrap());
        events.push(started_at(k, json!(k), 1, position));
        events.push(completed_at(k, json!(k), position));
    }
    events
}

/// Makes the calls `keys` (each with its key as input) against `history`; returns the first
/// decision that is not a replay or an execution, or `Ok` with how many replayed.
fn calls_against(history: &[Event], keys: &[&str]) -> Result<usize, NonDeterminism> {
    let mut journal = Journal::new(history, ChangedInput::Fail);
    let mut replayed = 0;
    for k in keys {
        let (made, position) = journal.make_call(slug_of(k), None);
        assert_eq!(
            made.as_str(),
            *k,
            "keys in the table are the automatic ones"
        );
        match journal.decide(call(&made, slug_of(k), &json!(k), position)) {
            Decision::Replay { .. } => replayed += 1,
            Decision::Execute { .. } => {}
            Decision::NonDeterminism(err) => return Err(err),
            other => panic!("{other:?}"),
        }
    }
    match journal.unmade() {
        Some(err) => Err(err),
        None => Ok(replayed),
    }
}

#[test]
fn the_order_of_calls_is_checked_against_the_history() {
    let recorded = history_of(&["a#0", "b#0"]);
    let cases: Vec<(&str, &[&str], Result<usize, &str>)> = vec![
        ("the same calls replay", &["a#0", "b#0"], Ok(2)),
        (
            "calls after the last recorded one are new work",
            &["a#0", "b#0", "c#0"],
            Ok(2),
        ),
        (
            "reordered calls fail at the first position that differs",
            &["b#0", "a#0"],
            Err(
                "at call 0: the history has a#0 (action a) but the workflow now calls b#0 (action b)",
            ),
        ),
        (
            "an inserted call is out of order",
            &["a#0", "c#0", "b#0"],
            Err(
                "at call 1: the history has b#0 (action b) but the workflow now calls c#0 (action c)",
            ),
        ),
        (
            "a removed call, with the body going on, is out of order",
            &["b#0"],
            Err("at call 0: the history has a#0"),
        ),
        (
            "a removed call at the end is found when the body ends",
            &["a#0"],
            Err("at call 1: the history has b#0 (action b), which the workflow no longer makes"),
        ),
    ];
    for (name, calls, expected) in cases {
        let result = calls_against(&recorded, calls).map_err(|err| err.to_string());
        match (result, expected) {
            (Ok(replayed), Ok(want)) => assert_eq!(replayed, want, "{name}"),
            (Err(text), Err(want)) => assert!(text.contains(want), "{name}: {text}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn parallel_calls_are_checked_in_the_order_they_were_made_not_finished() {
    // Made a#0 then b#0; b finished first, so its events come first in the log.
    let history = vec![
        started_at("b#0", json!("b#0"), 1, Some(1)),
        completed_at("b#0", json!("b#0"), Some(1)),
        started_at("a#0", json!("a#0"), 1, Some(0)),
        completed_at("a#0", json!("a#0"), Some(0)),
    ];
    assert_eq!(calls_against(&history, &["a#0", "b#0"]), Ok(2));
    assert!(calls_against(&history, &["b#0", "a#0"]).is_err());
}

#[test]
fn histories_without_positions_keep_the_key_check_only() {
    let history = vec![
        completed("b#0", json!("b#0")),
        completed("a#0", json!("a#0")),
    ];
    assert_eq!(calls_against(&history, &["a#0", "b#0"]), Ok(2));
    let history = [started("a#0", json!(1), 1), completed("a#0", json!(1))];
    let err = calls_against(&history, &["a#0"]).unwrap_err();
    assert!(
        err.to_string().contains("input"),
        "the key check stays: {err}"
    );
}

#[test]
fn after_a_retry_calls_past_the_step_that_runs_again_are_free_to_differ() {
    // a#0 completed, b#0 failed; the retry runs b again, which may now lead elsewhere.
    let mut history = history_of(&["a#0"]);
    history.push(started_at("b#0", json!("b#0"), 1, Some(1)));
    history.push(failed("b#0", 1, Some(1)));
    history.push(started_at("d#0", json!("d#0"), 1, Some(2)));
    history.push(Event::RunRetried);
    assert_eq!(calls_against(&history, &["a#0", "b#0", "c#0"]), Ok(1));
    let err = calls_against(&history, &["b#0", "a#0"]).unwrap_err();
    assert!(err.to_string().contains("at call 0"), "{err}");
}

#[test]
fn a_changed_input_the_workflow_allows_replays_with_one_warning() {
    let history = history_of(&["a#0"]);
    let mut journal = Journal::new(&history, ChangedInput::UseRecorded);
    let k = key("a#0");
    let Decision::Replay { output, warning } = journal.decide(call(&k, "a", &json!(2), 0)) else {
        panic!("replays")
    };
    assert_eq!(output, json!("a#0"));
    let warning = warning.expect("a warning");
    assert!(
        warning.contains("\"a#0\"") && warning.contains('2'),
        "{warning}"
    );
    let mut warned = history.clone();
    warned.push(Event::StepWarning {
        key: k.clone(),
        message: warning,
    });
    let mut journal = Journal::new(&warned, ChangedInput::UseRecorded);
    assert_eq!(
        journal.decide(call(&k, "a", &json!(2), 0)),
        replay(json!("a#0"))
    );
}

#[test]
fn patched_takes_the_new_path_in_new_executions_and_where_the_marker_was_recorded() {
    // A new run: the marker is made at the next position.
    let mut fresh = Journal::default();
    let Patched::New {
        key: marker,
        position,
    } = fresh.patched("sms")
    else {
        panic!("new")
    };
    assert_eq!((marker.as_str(), position), ("cairn.patch:sms", 0));
    assert_eq!(fresh.calls_made(), 1);

    // A run recorded before the patch: a#0 then b#0 at 0 and 1; no marker at 1.
    let old = history_of(&["a#0", "b#0"]);
    let mut journal = Journal::new(&old, ChangedInput::Fail);
    let (k, p) = journal.make_call("a", None);
    assert!(matches!(
        journal.decide(call(&k, "a", &json!("a#0"), p)),
        Decision::Replay { .. }
    ));
    assert_eq!(journal.patched("sms"), Patched::Old);
    assert_eq!(journal.calls_made(), 1, "the old path makes no call");

    // A run recorded with the marker at 1 replays it.
    let mut marked = history_of(&["a#0"]);
    marked.push(Event::StepCompleted {
        key: key("cairn.patch:sms"),
        kind: StepKind::Patch,
        slug: crate::PATCH_SLUG.into(),
        output: json!(true),
        call: Some(1),
    });
    let mut journal = Journal::new(&marked, ChangedInput::Fail);
    let (k, p) = journal.make_call("a", None);
    journal.decide(call(&k, "a", &json!("a#0"), p));
    assert_eq!(journal.patched("sms"), Patched::Replayed);
    assert_eq!(journal.unmade(), None);
}

#[test]
fn a_different_kind_at_the_same_key_is_non_determinism() {
    let history = [completed("x#0", json!(1))];
    let mut journal = Journal::new(&history, ChangedInput::Fail);
    let k = key("x#0");
    let decision = journal.decide(Call {
        key: &k,
        kind: StepKind::Workflow,
        slug: "x",
        input: &Value::Null,
        position: 0,
    });
    let Decision::NonDeterminism(err) = decision else {
        panic!("{decision:?}")
    };
    let text = err.to_string();
    assert!(
        text.contains("action `x`") && text.contains("workflow `x`"),
        "{text}"
    );
}

#[test]
fn one_key_is_decided_once_per_execution() {
    let mut journal = Journal::default();
    let (k, p) = journal.make_call("a", Some(key("custom")));
    assert!(matches!(
        journal.decide(call(&k, "a", &Value::Null, p)),
        Decision::Execute { .. }
    ));
    assert_eq!(
        journal.decide(call(&k, "a", &Value::Null, p)),
        Decision::NonDeterminism(NonDeterminism::DuplicateKey { key: k.clone() })
    );
    assert_eq!(journal.calls_made(), 1);
}

#[test]
fn applied_events_update_later_decisions() {
    let mut journal = Journal::default();
    journal.apply(&completed("b#0", json!(true)));
    let k = key("b#0");
    assert_eq!(
        journal.decide(call(&k, "b", &Value::Null, 0)),
        replay(json!(true))
    );
}

#[test]
fn hooks_replay_their_payload_once_resumed_and_keep_their_token_while_pending() {
    let k = key("cairn.hook#0");
    let created = Event::HookCreated {
        key: k.clone(),
        token: "hk_abc".into(),
        schema: json!({}),
        timeout_at_ms: Some(9),
        call: Some(0),
    };
    let call = Call {
        key: &k,
        kind: StepKind::Hook,
        slug: crate::HOOK_SLUG,
        input: &Value::Null,
        position: 0,
    };
    let mut pending = Journal::new([&created], ChangedInput::Fail);
    assert!(
        matches!(
            pending.decide(call),
            Decision::Execute {
                interrupted: None,
                ..
            }
        ),
        "a pending hook waits on; it was not interrupted"
    );
    assert_eq!(
        pending.started_input(&k),
        Some(&json!({"token": "hk_abc", "timeoutAtMs": 9}))
    );
    let resumed = Event::HookResumed {
        key: k.clone(),
        payload: json!({"ok": true}),
    };
    let mut done = Journal::new([&created, &resumed], ChangedInput::Fail);
    assert_eq!(done.decide(call), replay(json!({"ok": true})));
}

#[test]
fn an_llm_step_started_without_an_outcome_was_interrupted_as_an_action_would_be() {
    let mut start = started("m#0", json!(1), 1);
    if let Event::StepStarted { kind, .. } = &mut start {
        *kind = StepKind::Llm;
    }
    let mut journal = Journal::new(&[start], ChangedInput::Fail);
    let k = key("m#0");
    let decision = journal.decide(Call {
        key: &k,
        kind: StepKind::Llm,
        slug: "m",
        input: &json!(1),
        position: 0,
    });
    let Decision::Execute { interrupted, .. } = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(interrupted, Some(1));
}

#[test]
fn families_are_numbered_like_slugs_and_apart_from_them() {
    let mut journal = Journal::default();
    let _ = journal.make_call("a", None);
    let keys = [
        journal.number("agent:r/model"),
        journal.number("agent:r/tool:a"),
        journal.number("agent:r/model"),
    ];
    let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        ["agent:r/model#0", "agent:r/tool:a#0", "agent:r/model#1"]
    );
    assert_eq!(journal.make_call("a", None).0.to_string(), "a#1");
}
