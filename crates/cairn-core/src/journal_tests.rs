//! Table tests of the journal: (history, calls) → decisions.

use serde_json::{Value, json};

use super::*;
use crate::ErrorKind;

fn key(s: &str) -> StepKey {
    StepKey::from(s)
}

fn started(k: &str, slug: &str, input: Value, attempt: u32) -> Event {
    Event::StepStarted {
        key: key(k),
        kind: StepKind::Action,
        slug: slug.into(),
        input,
        attempt,
    }
}

fn completed(k: &str, slug: &str, output: Value) -> Event {
    Event::StepCompleted {
        key: key(k),
        kind: StepKind::Action,
        slug: slug.into(),
        output,
    }
}

fn failed_attempt(k: &str, attempt: u32, retry_at_ms: i64) -> Event {
    Event::StepAttemptFailed {
        key: key(k),
        attempt,
        error: ErrorInfo::new(ErrorKind::Action, "boom"),
        retry_at_ms,
    }
}

fn failed(k: &str, slug: &str, attempts: u32) -> Event {
    Event::StepFailed {
        key: key(k),
        kind: StepKind::Action,
        slug: slug.into(),
        error: ErrorInfo::new(ErrorKind::Action, "gave up"),
        attempts,
    }
}

fn call<'a>(key: &'a StepKey, slug: &'a str, input: &'a Value) -> Call<'a> {
    Call {
        key,
        kind: StepKind::Action,
        slug,
        input,
    }
}

#[test]
fn keys_count_calls_per_slug() {
    let mut journal = Journal::default();
    let keys: Vec<String> = ["a", "b", "a", "a", "b"]
        .iter()
        .map(|slug| journal.make_call(slug, None).to_string())
        .collect();
    assert_eq!(keys, ["a#0", "b#0", "a#1", "a#2", "b#1"]);
}

#[test]
fn decisions_against_canned_histories() {
    let input = json!({"n": 1});
    let cases: Vec<(&str, Vec<Event>, Decision)> = vec![
        (
            "empty history executes",
            vec![],
            Decision::Execute {
                attempt: 1,
                not_before_ms: None,
            },
        ),
        (
            "completed step replays",
            vec![
                started("a#0", "a", input.clone(), 1),
                completed("a#0", "a", json!(7)),
            ],
            Decision::Replay {
                output: json!(7),
                input_changed: false,
            },
        ),
        (
            "started but unrecorded step runs again as the next attempt",
            vec![started("a#0", "a", input.clone(), 1)],
            Decision::Execute {
                attempt: 2,
                not_before_ms: None,
            },
        ),
        (
            "failed attempts carry their count and backoff across restarts",
            vec![
                started("a#0", "a", input.clone(), 1),
                failed_attempt("a#0", 1, 5_000),
            ],
            Decision::Execute {
                attempt: 2,
                not_before_ms: Some(5_000),
            },
        ),
        (
            "a step that failed for good replays its error",
            vec![started("a#0", "a", input.clone(), 3), failed("a#0", "a", 3)],
            Decision::ReplayError {
                error: ErrorInfo::new(ErrorKind::Action, "gave up"),
            },
        ),
        (
            "a retried run runs a failed step again from attempt 1",
            vec![
                started("a#0", "a", input.clone(), 3),
                failed("a#0", "a", 3),
                Event::RunRetried,
            ],
            Decision::Execute {
                attempt: 1,
                not_before_ms: None,
            },
        ),
        (
            "a retried run keeps completed steps",
            vec![completed("a#0", "a", json!(1)), Event::RunRetried],
            Decision::Replay {
                output: json!(1),
                input_changed: false,
            },
        ),
        (
            "changed input is reported, not fatal, by default",
            vec![
                started("a#0", "a", json!({"n": 2}), 1),
                completed("a#0", "a", json!(1)),
            ],
            Decision::Replay {
                output: json!(1),
                input_changed: true,
            },
        ),
        (
            "a different slug at the same key is non-determinism",
            vec![completed("a#0", "other", json!(1))],
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
        let mut journal = Journal::new(&history, false);
        let k = key("a#0");
        assert_eq!(journal.decide(call(&k, "a", &input)), expected, "{name}");
    }
}

#[test]
fn a_different_kind_at_the_same_key_is_non_determinism() {
    let history = [completed("x#0", "x", json!(1))];
    let mut journal = Journal::new(&history, false);
    let k = key("x#0");
    let decision = journal.decide(Call {
        key: &k,
        kind: StepKind::Workflow,
        slug: "x",
        input: &Value::Null,
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
fn strict_journals_fail_on_changed_input() {
    let history = [
        started("a#0", "a", json!(1), 1),
        completed("a#0", "a", json!("out")),
    ];
    let mut journal = Journal::new(&history, true);
    let k = key("a#0");
    let decision = journal.decide(call(&k, "a", &json!(2)));
    assert!(
        matches!(
            decision,
            Decision::NonDeterminism(NonDeterminism::InputChanged { .. })
        ),
        "{decision:?}"
    );
}

#[test]
fn one_key_is_decided_once_per_execution() {
    let mut journal = Journal::default();
    let k = journal.make_call("a", Some(key("custom")));
    assert!(matches!(
        journal.decide(call(&k, "a", &Value::Null)),
        Decision::Execute { .. }
    ));
    assert_eq!(
        journal.decide(call(&k, "a", &Value::Null)),
        Decision::NonDeterminism(NonDeterminism::DuplicateKey { key: k.clone() })
    );
    assert_eq!(journal.calls_made(), 1);
}

#[test]
fn applied_events_update_later_decisions() {
    let mut journal = Journal::default();
    journal.apply(&completed("b#0", "b", json!(true)));
    let k = key("b#0");
    assert_eq!(
        journal.decide(call(&k, "b", &Value::Null)),
        Decision::Replay {
            output: json!(true),
            input_changed: false
        }
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
    };
    let call = Call {
        key: &k,
        kind: StepKind::Hook,
        slug: crate::HOOK_SLUG,
        input: &Value::Null,
    };
    let mut pending = Journal::new([&created], false);
    assert_eq!(
        pending.decide(call),
        Decision::Execute {
            attempt: 2,
            not_before_ms: None
        }
    );
    assert_eq!(
        pending.started_input(&k),
        Some(&json!({"token": "hk_abc", "timeoutAtMs": 9}))
    );
    let resumed = Event::HookResumed {
        key: k.clone(),
        payload: json!({"ok": true}),
    };
    let mut done = Journal::new([&created, &resumed], false);
    assert_eq!(
        done.decide(call),
        Decision::Replay {
            output: json!({"ok": true}),
            input_changed: false
        }
    );
}
