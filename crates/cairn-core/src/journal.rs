//! The journal: given a run's recorded history and the step call being made now, decide
//! whether to replay a recorded result, execute the step, or stop on non-determinism.
//!
//! One `Journal` lives for one execution of a workflow body. It is built from the run's
//! history as the execution found it; the engine asks [`Journal::make_call`] for a key and a
//! position when a call is *made*, then [`Journal::decide`] for what to do. A key is decided
//! once per execution, so what the execution appends for it is never needed here: the next
//! execution's journal reads it from the history.
//!
//! Two checks keep a replay honest. By position: the n-th call the body makes must be the
//! call recorded n-th (kind, slug and key), so reordered, inserted or removed calls are found
//! before anything runs again. By key: what is recorded at a key must be of the kind and slug
//! called, and with the same input unless the workflow allows a changed input.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{Event, StepKey, StepKind};

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
    /// Its position in the order the body makes calls (from [`Journal::make_call`]).
    pub position: u32,
}

/// What a workflow does when a replayed step's recorded input differs from the input it
/// passes now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangedInput {
    /// Fail the run with a non-determinism error (the default): the recorded output belongs
    /// to another call. `runs rerun <id> --from <step>` re-executes from the step.
    #[default]
    Fail,
    /// Use the recorded output anyway, and record a visible warning on the step.
    UseRecorded,
}

/// What to do with a step call.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The step completed before: hand back its recorded output without running it.
    Replay {
        /// The recorded output.
        output: Value,
        /// A warning to record on the step (its input changed and the workflow allows it),
        /// the first time only.
        warning: Option<String>,
    },
    /// The step failed for good before: hand back its recorded error without running it.
    ReplayError {
        /// The recorded error.
        error: crate::ErrorInfo,
    },
    /// Run the step now.
    Execute {
        /// The attempt number to run (earlier attempts are counted, across restarts).
        attempt: u32,
        /// Do not start before this time (unix ms): the backoff of a failed attempt.
        not_before_ms: Option<i64>,
        /// Attempts that failed (interrupted ones excluded): what the retry policy counts.
        failures: u32,
        /// Attempts interrupted before (their worker stopped mid-attempt), this one's
        /// predecessor included if `interrupted` is set.
        recoveries: u32,
        /// The attempt that was started but never finished (its worker stopped), if the
        /// last one was: the engine records it as interrupted before going on.
        interrupted: Option<u32>,
    },
    /// The call contradicts the history: the run must fail.
    NonDeterminism(NonDeterminism),
}

/// A call as named in messages: `step-a#0 (action step-a)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallName {
    /// Its key.
    pub key: StepKey,
    /// Its kind.
    pub kind: StepKind,
    /// Its slug.
    pub slug: String,
}

impl std::fmt::Display for CallName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.key, self.kind, self.slug)
    }
}

/// Why a call contradicts the recorded history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonDeterminism {
    /// The n-th call is not the call recorded n-th.
    #[error(
        "non-determinism at call {position}: the history has {recorded} but the workflow now calls {called}; the workflow's code changed under this run: deploy the change behind `ctx.patched(..)`, or re-execute from the first changed step with `runs rerun <run-id> --from {recorded_key}`",
        recorded_key = recorded.key
    )]
    OutOfOrder {
        /// The position, from 0.
        position: u32,
        /// What the history has there.
        recorded: CallName,
        /// What the workflow calls now.
        called: CallName,
    },
    /// The history has a call the workflow, which ended, no longer makes.
    #[error(
        "non-determinism at call {position}: the history has {recorded}, which the workflow no longer makes; re-execute from it with `runs rerun <run-id> --from {recorded_key}`",
        recorded_key = recorded.key
    )]
    Removed {
        /// The position, from 0.
        position: u32,
        /// What the history has there.
        recorded: CallName,
    },
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
    /// The recorded input differs from the input given now.
    #[error(
        "non-determinism at step {key}: it was recorded with input {recorded} but the workflow now passes {called}; re-execute from this step with the new code: `runs rerun <run-id> --from {key}` (or let the workflow use recorded outputs with .on_changed_input(ChangedInput::UseRecorded))",
        recorded = shorten(recorded),
        called = shorten(called)
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

/// A JSON value on one line, cut to a readable length.
pub(crate) fn shorten(value: &Value) -> String {
    const MAX: usize = 120;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX - 1).collect();
    format!("{cut}…")
}

/// What the history says about one step.
#[derive(Clone, Debug, Default)]
struct Recorded {
    kind_slug: Option<(StepKind, String)>,
    input: Option<Value>,
    outcome: Option<Result<Value, crate::ErrorInfo>>,
    /// The highest attempt started or failed in the current generation (since the last
    /// `RunRetried`).
    attempts: u32,
    /// Attempts that failed (not interrupted) in the current generation.
    failures: u32,
    /// Attempts interrupted in the current generation.
    recoveries: u32,
    /// The highest attempt with an outcome (failed, interrupted) in the current generation.
    settled: u32,
    retry_at_ms: Option<i64>,
    /// Whether a changed-input warning was recorded.
    warned: bool,
    /// Its position, when recorded with one.
    position: Option<u32>,
}

/// The replay state of one execution of a workflow body.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    recorded: HashMap<StepKey, Recorded>,
    counters: HashMap<String, u32>,
    made: u32,
    called: HashSet<StepKey>,
    /// The recorded call at each position.
    order: Vec<Option<CallName>>,
    /// Steps recorded without a position (runs from before positions were kept), not yet
    /// decided in this execution.
    unplaced: HashSet<StepKey>,
    changed_input: ChangedInput,
}

impl Journal {
    /// A journal over `history` (events in log order); `changed_input` says what a replayed
    /// step whose input changed does.
    pub fn new<'a>(
        history: impl IntoIterator<Item = &'a Event>,
        changed_input: ChangedInput,
    ) -> Journal {
        let mut journal = Journal {
            changed_input,
            ..Journal::default()
        };
        for event in history {
            journal.apply(event);
        }
        journal
    }

    /// Makes a call of `slug` and assigns its key and position: the key is `custom` if
    /// given, else `<slug>#<n>` where `n` counts the earlier calls of `slug` in this
    /// execution that took no custom key; the position counts all calls made before.
    pub fn make_call(&mut self, slug: &str, custom: Option<StepKey>) -> (StepKey, u32) {
        let position = self.made;
        self.made += 1;
        if let Some(key) = custom {
            return (key, position);
        }
        let n = self.counters.entry(slug.to_owned()).or_insert(0);
        let key = StepKey::numbered(slug, *n);
        *n += 1;
        (key, position)
    }

    /// The next key of `family` in this execution, `<family>#<n>`: `n` counts the earlier
    /// keys drawn from the family, as a slug's calls are counted, so the same body draws the
    /// same keys in every execution. For a series of steps an integration names itself (an
    /// agent's model turns: `agent:researcher/model#2`).
    pub fn number(&mut self, family: &str) -> StepKey {
        let n = self.counters.entry(family.to_owned()).or_insert(0);
        let key = StepKey::numbered(family, *n);
        *n += 1;
        key
    }

    /// How many calls this execution has made.
    pub fn calls_made(&self) -> usize {
        self.made as usize
    }

    /// Decides what to do with `call`. Each key may be decided once per execution.
    pub fn decide(&mut self, call: Call<'_>) -> Decision {
        if !self.called.insert(call.key.clone()) {
            return Decision::NonDeterminism(NonDeterminism::DuplicateKey {
                key: call.key.clone(),
            });
        }
        if !self.unplaced.is_empty() {
            self.unplaced.remove(call.key);
        }
        if let Some(Some(recorded)) = self.order.get(call.position as usize)
            && (recorded.key != *call.key
                || recorded.kind != call.kind
                || recorded.slug != call.slug)
        {
            return Decision::NonDeterminism(NonDeterminism::OutOfOrder {
                position: call.position,
                recorded: recorded.clone(),
                called: CallName {
                    key: call.key.clone(),
                    kind: call.kind,
                    slug: call.slug.to_owned(),
                },
            });
        }
        let Some(recorded) = self.recorded.get_mut(call.key) else {
            return Decision::Execute {
                attempt: 1,
                not_before_ms: None,
                failures: 0,
                recoveries: 0,
                interrupted: None,
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
            Some(Ok(_)) | Some(Err(_))
                if input_changed && self.changed_input == ChangedInput::Fail =>
            {
                Decision::NonDeterminism(NonDeterminism::InputChanged {
                    key: call.key.clone(),
                    recorded: recorded.input.clone().unwrap_or(Value::Null),
                    called: call.input.clone(),
                })
            }
            Some(Ok(output)) => {
                let warning = (input_changed && !recorded.warned).then(|| {
                    recorded.warned = true;
                    format!(
                        "recorded with input {} but the workflow now passes {}; the recorded output was used",
                        shorten(recorded.input.as_ref().unwrap_or(&Value::Null)),
                        shorten(call.input)
                    )
                });
                Decision::Replay {
                    output: output.clone(),
                    warning,
                }
            }
            Some(Err(error)) => Decision::ReplayError {
                error: error.clone(),
            },
            None => {
                let interrupted = (matches!(call.kind, StepKind::Action | StepKind::Llm)
                    && recorded.attempts > recorded.settled)
                    .then_some(recorded.attempts);
                Decision::Execute {
                    attempt: recorded.attempts + 1,
                    not_before_ms: recorded.retry_at_ms,
                    failures: recorded.failures,
                    recoveries: recorded.recoveries + u32::from(interrupted.is_some()),
                    interrupted,
                }
            }
        }
    }

    /// Decides a `ctx.patched(id)` call: `true` if the new code path is to be taken. A new
    /// execution (past the recorded calls) makes the call (which the engine records as a
    /// marker); a replay takes the new path only where its history has the marker at this
    /// position, and otherwise makes no call at all, as the old code did not.
    pub fn patched(&mut self, id: &str) -> Patched {
        let position = self.made;
        let key = StepKey::custom(crate::patch::patch_key(id));
        let at_position = self.order.get(position as usize).cloned().flatten();
        match at_position {
            Some(recorded) if recorded.kind == StepKind::Patch && recorded.key == key => {
                self.made += 1;
                self.called.insert(key);
                Patched::Replayed
            }
            _ if self.replaying(position) => Patched::Old,
            _ => {
                self.made += 1;
                self.called.insert(key.clone());
                Patched::New { key, position }
            }
        }
    }

    /// Whether the history has calls at or after `position` not made yet: the execution is
    /// still replaying.
    fn replaying(&self, position: u32) -> bool {
        self.order
            .get(position as usize..)
            .is_some_and(|rest| rest.iter().any(Option::is_some))
            || !self.unplaced.is_empty()
    }

    /// The first recorded call the execution has not made, if its body ended with some left:
    /// a call the new code no longer makes.
    pub fn unmade(&self) -> Option<NonDeterminism> {
        let first = self.order.iter().enumerate().skip(self.made as usize);
        first
            .filter_map(|(position, recorded)| Some((position, recorded.clone()?)))
            .find(|(_, recorded)| !self.called.contains(&recorded.key))
            .map(|(position, recorded)| NonDeterminism::Removed {
                position: u32::try_from(position).unwrap_or(u32::MAX),
                recorded,
            })
    }

    /// The input recorded when the step at `key` started (a sleep's wake-up time, a hook's
    /// token), if it started.
    pub fn started_input(&self, key: &StepKey) -> Option<&Value> {
        self.recorded.get(key).and_then(|step| step.input.as_ref())
    }

    fn place(&mut self, key: &StepKey, kind: StepKind, slug: &str, position: Option<u32>) {
        let Some(position) = position else {
            if self.recorded.get(key).is_none_or(|s| s.position.is_none()) {
                self.unplaced.insert(key.clone());
            }
            return;
        };
        let index = position as usize;
        if self.order.len() <= index {
            self.order.resize(index + 1, None);
        }
        if self.order[index].is_none() {
            self.order[index] = Some(CallName {
                key: key.clone(),
                kind,
                slug: slug.to_owned(),
            });
        }
        self.unplaced.remove(key);
        self.recorded.entry(key.clone()).or_default().position = Some(position);
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
                call,
                credentials: _,
            } => {
                self.place(key, *kind, slug, *call);
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((*kind, slug.clone()));
                step.input = Some(input.clone());
                step.attempts = step.attempts.max(*attempt);
            }
            Event::StepAttemptFailed {
                key,
                attempt,
                retry_at_ms,
                error,
            } => {
                let step = self.recorded.entry(key.clone()).or_default();
                step.attempts = step.attempts.max(*attempt);
                step.settled = step.settled.max(*attempt);
                if error.kind == crate::ErrorKind::Interrupted {
                    step.recoveries += 1;
                } else {
                    step.failures += 1;
                }
                step.retry_at_ms = Some(*retry_at_ms);
            }
            Event::StepCompleted {
                key,
                kind,
                slug,
                output,
                call,
            } => {
                self.place(key, *kind, slug, *call);
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
                call,
            } => {
                self.place(key, *kind, slug, *call);
                let step = self.recorded.entry(key.clone()).or_default();
                step.kind_slug = Some((*kind, slug.clone()));
                step.attempts = step.attempts.max(*attempts);
                step.outcome = Some(Err(error.clone()));
            }
            Event::HookCreated {
                key,
                token,
                timeout_at_ms,
                call,
                ..
            } => {
                self.place(key, StepKind::Hook, crate::HOOK_SLUG, *call);
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
            Event::StepWarning { key, .. } => {
                self.recorded.entry(key.clone()).or_default().warned = true;
            }
            Event::RunRetried => self.retried(),
            Event::RunCreated { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCanceled { .. } => {}
        }
    }

    /// A retry: completed steps stay; everything else starts afresh, and the calls after the
    /// first step that runs again are no longer bound to their recorded order (that step's
    /// new result may take the body elsewhere).
    fn retried(&mut self) {
        let again = self
            .recorded
            .iter()
            .filter(|(_, step)| !matches!(step.outcome, Some(Ok(_))))
            .filter_map(|(_, step)| step.position)
            .min();
        if let Some(first) = again {
            self.order.truncate(first as usize);
        }
        self.recorded
            .retain(|_, step| matches!(step.outcome, Some(Ok(_))));
        for step in self.recorded.values_mut() {
            if step
                .position
                .is_some_and(|p| again.is_some_and(|first| p >= first))
            {
                step.position = None;
            }
        }
    }
}

/// What `ctx.patched(id)` does (see [`Journal::patched`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Patched {
    /// The history has the marker here: take the new path.
    Replayed,
    /// A replay of a run recorded before the patch: take the old path; no call is made.
    Old,
    /// A new execution: take the new path and record the marker with this key and position.
    New {
        /// The marker's key.
        key: StepKey,
        /// Its position.
        position: u32,
    },
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
