//! The journal: given a run's recorded history and the step call being made now, decide
//! whether to replay a recorded result, execute the step, or stop on non-determinism.
//!
//! One `Journal` lives for one execution of a workflow body. It is built from the run's
//! history as the execution found it; the engine asks [`Journal::make_call`] for a key when a
//! call is *made*, then [`Journal::decide`] for what to do. A key is decided once per
//! execution, so what the execution appends for it is never needed here: the next
//! execution's journal reads it from the history.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{ErrorInfo, Event, StepKey, StepKind};

/// A step call as the workflow body makes it, as the journal needs it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The key assigned to the call.
    pub key: &'a StepKey,
    /// What kind of step it is.
    pub kind: StepKind,
    /// The slug it calls.
    pub slug: &'a str,
    /// Its input (`Value::Null` for recorded values such as `now`).
    pub input: &'a Value,
}

/// What to do with a step call.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The step completed before: hand back its recorded output without running it.
    Replay {
        /// The recorded output.
        output: Value,
        /// The recorded input differs from the input given now (only reported when the
        /// journal is not strict; a strict journal turns this into [`NonDeterminism`]).
        input_changed: bool,
    },
    /// The step failed for good before: hand back its recorded error without running it.
    ReplayError {
        /// The recorded error.
        error: ErrorInfo,
    },
    /// Run the step now.
    Execute {
        /// The attempt number to run (earlier failed attempts are counted, across restarts).
        attempt: u32,
        /// Do not start before this time (unix ms): the backoff of a failed attempt.
        not_before_ms: Option<i64>,
    },
    /// The call contradicts the history: the run must fail.
    NonDeterminism(NonDeterminism),
}

/// Why a call contradicts the recorded history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonDeterminism {
    /// The history has a different kind or slug at this key.
    #[error(
        "non-determinism at step {key}: the history recorded {recorded_kind} `{recorded_slug}` but the workflow now calls {called_kind} `{called_slug}`; workflow code changed under a running execution — finish old runs on the old code, or give the new call its own .key()"
    )]
    Mismatch {
        /// The step key.
        key: StepKey,
        /// Recorded kind.
        recorded_kind: StepKind,
        /// Recorded slug.
        recorded_slug: String,
        /// Kind of the call made now.
        called_kind: StepKind,
        /// Slug of the call made now.
        called_slug: String,
    },
    /// The recorded input differs from the input given now (strict journals only).
    #[error(
        "non-determinism at step {key}: the history recorded input {recorded} but the workflow now passes {called}"
    )]
    InputChanged {
        /// The step key.
        key: StepKey,
        /// The recorded input.
        recorded: Value,
        /// The input given now.
        called: Value,
    },
    /// Two calls in one execution used the same key.
    #[error("step key {key} was used twice in one run; give each call its own .key()")]
    DuplicateKey {
        /// The reused key.
        key: StepKey,
    },
}

/// What the history says about one step.
#[derive(Clone, Debug, Default)]
struct Recorded {
    kind_slug: Option<(StepKind, String)>,
    input: Option<Value>,
    outcome: Option<Result<Value, ErrorInfo>>,
    /// Attempts started or failed in the current generation (since the last `RunRetried`).
    attempts: u32,
    retry_at_ms: Option<i64>,
}

/// The replay state of one execution of a workflow body.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    recorded: HashMap<StepKey, Recorded>,
    counters: HashMap<String, u32>,
    made: usize,
    called: HashSet<StepKey>,
    strict_inputs: bool,
}

impl Journal {
    /// A journal over `history` (events in log order).
    ///
    /// `strict_inputs` makes a changed input on replay a [`NonDeterminism`] error instead of
    /// a warning.
    pub fn new<'a>(history: impl IntoIterator<Item = &'a Event>, strict_inputs: bool) -> Journal {
        let mut journal = Journal {
            strict_inputs,
            ..Journal::default()
        };
        for event in history {
            journal.apply(event);
        }
        journal
    }

    /// Makes a call of `slug` and assigns its key: `custom` if given, else `<slug>#<n>` where
    /// `n` counts the earlier calls of `slug` in this execution that took no custom key.
    pub fn make_call(&mut self, slug: &str, custom: Option<StepKey>) -> StepKey {
        self.made += 1;
        if let Some(key) = custom {
            return key;
        }
        let n = self.counters.entry(slug.to_owned()).or_insert(0);
        let key = StepKey::numbered(slug, *n);
        *n += 1;
        key
    }

    /// How many calls this execution has made.
    pub fn calls_made(&self) -> usize {
        self.made
    }

    /// Decides what to do with `call`. Each key may be decided once per execution.
    pub fn decide(&mut self, call: Call<'_>) -> Decision {
        if !self.called.insert(call.key.clone()) {
            return Decision::NonDeterminism(NonDeterminism::DuplicateKey {
                key: call.key.clone(),
            });
        }
        let Some(recorded) = self.recorded.get(call.key) else {
            return Decision::Execute {
                attempt: 1,
                not_before_ms: None,
            };
        };
        if let Some((kind, slug)) = &recorded.kind_slug
            && (*kind != call.kind || slug != call.slug)
        {
            return Decision::NonDeterminism(NonDeterminism::Mismatch {
                key: call.key.clone(),
                recorded_kind: *kind,
                recorded_slug: slug.clone(),
                called_kind: call.kind,
                called_slug: call.slug.to_owned(),
            });
        }
        let input_changed = call.kind.compares_input()
            && recorded
                .input
                .as_ref()
                .is_some_and(|input| input != call.input);
        match &recorded.outcome {
            Some(outcome) if input_changed && self.strict_inputs => {
                let _ = outcome;
                Decision::NonDeterminism(NonDeterminism::InputChanged {
                    key: call.key.clone(),
                    recorded: recorded.input.clone().unwrap_or(Value::Null),
                    called: call.input.clone(),
                })
            }
            Some(Ok(output)) => Decision::Replay {
                output: output.clone(),
                input_changed,
            },
            Some(Err(error)) => Decision::ReplayError {
                error: error.clone(),
            },
            None => Decision::Execute {
                attempt: recorded.attempts + 1,
                not_before_ms: recorded.retry_at_ms,
            },
        }
    }

    /// The input recorded when the step at `key` started (a sleep's wake-up time, a hook's
    /// token), if it started.
    pub fn started_input(&self, key: &StepKey) -> Option<&Value> {
        self.recorded.get(key).and_then(|step| step.input.as_ref())
    }

    /// Folds one event of the run's history into the journal, as [`Journal::new`] does for
    /// each.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::StepStarted {
                key,
                kind,
                slug,
                input,
                attempt,
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((*kind, slug.clone()));
                step.input = Some(input.clone());
                step.attempts = step.attempts.max(*attempt);
            }
            Event::StepAttemptFailed {
                key,
                attempt,
                retry_at_ms,
                ..
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.attempts = step.attempts.max(*attempt);
                step.retry_at_ms = Some(*retry_at_ms);
            }
            Event::StepCompleted {
                key,
                kind,
                slug,
                output,
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((*kind, slug.clone()));
                step.outcome = Some(Ok(output.clone()));
            }
            Event::StepFailed {
                key,
                kind,
                slug,
                error,
                attempts,
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((*kind, slug.clone()));
                step.attempts = step.attempts.max(*attempts);
                step.outcome = Some(Err(error.clone()));
            }
            Event::HookCreated {
                key,
                token,
                timeout_at_ms,
                ..
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((StepKind::Hook, crate::HOOK_SLUG.to_owned()));
                step.input = Some(
                    crate::HookInput {
                        token: token.clone(),
                        timeout_at_ms: *timeout_at_ms,
                    }
                    .to_value(),
                );
                step.attempts = step.attempts.max(1);
            }
            Event::HookResumed { key, payload } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.outcome = Some(Ok(payload.clone()));
            }
            Event::RunRetried => {
                // Completed steps stay; everything else starts afresh.
                self.recorded
                    .retain(|_, step| matches!(step.outcome, Some(Ok(_))));
            }
            Event::RunCreated { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCanceled { .. } => {}
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
