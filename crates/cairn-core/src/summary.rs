//! Folds a run's log into one summary per step, in the order the steps first appeared: what
//! `runs get`, the API and the UI show.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ErrorInfo, Event, EventRecord, StepKey, StepKind};

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// An attempt is in flight (or was, when its worker died).
    Running,
    /// A durable sleep that has not woken yet.
    Sleeping,
    /// A hook that has not been resumed yet.
    Waiting,
    /// An attempt failed; the next one is scheduled.
    Retrying,
    /// Finished with an output.
    Completed,
    /// Failed for good.
    Failed,
}

/// One failed attempt of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptError {
    /// The attempt's number.
    pub attempt: u32,
    /// Why it failed.
    pub error: ErrorInfo,
    /// When it failed (unix ms).
    pub at_ms: i64,
}

/// Everything known about one step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// The step key.
    pub key: StepKey,
    /// Its kind.
    pub kind: StepKind,
    /// The slug it called.
    pub slug: String,
    /// Where it is.
    pub status: StepStatus,
    /// Attempts made so far (across retries of the run).
    pub attempts: u32,
    /// Its input, when an attempt was recorded.
    pub input: Option<Value>,
    /// Its output, when it completed.
    pub output: Option<Value>,
    /// The final error, when it failed; else the last attempt's error while retrying.
    pub error: Option<ErrorInfo>,
    /// Every failed (or interrupted) attempt, in order.
    pub attempt_errors: Vec<AttemptError>,
    /// Warnings recorded on replay (a changed input the workflow allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The credentials its latest attempt used (ids and scopes, never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<crate::UsedCredential>,
    /// When its first attempt began (unix ms).
    pub started_at_ms: i64,
    /// When it completed or failed for good (unix ms).
    pub finished_at_ms: Option<i64>,
}

impl StepSummary {
    fn new(key: &StepKey, kind: StepKind, slug: &str, at_ms: i64) -> Self {
        StepSummary {
            key: key.clone(),
            kind,
            slug: slug.to_owned(),
            status: StepStatus::Running,
            attempts: 0,
            input: None,
            output: None,
            error: None,
            attempt_errors: Vec::new(),
            warnings: Vec::new(),
            credentials: Vec::new(),
            started_at_ms: at_ms,
            finished_at_ms: None,
        }
    }

    /// When a sleep step wakes, as it recorded it.
    pub fn sleep_input(&self) -> Option<crate::SleepInput> {
        (self.kind == StepKind::Sleep)
            .then(|| self.input.as_ref().and_then(crate::SleepInput::from_value))
            .flatten()
    }

    /// A hook step's token and timeout, as it recorded them.
    pub fn hook_input(&self) -> Option<crate::HookInput> {
        (self.kind == StepKind::Hook)
            .then(|| self.input.as_ref().and_then(crate::HookInput::from_value))
            .flatten()
    }

    /// How long the step took, from its first attempt to its end (ms), once it has ended.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at_ms.map(|end| end - self.started_at_ms)
    }
}

/// Folds `events` (in log order) into step summaries, in order of each step's first event.
pub fn summarize_steps(events: &[EventRecord]) -> Vec<StepSummary> {
    let mut fold = Fold::default();
    for record in events {
        let at = record.at_ms;
        match &record.event {
            Event::StepStarted {
                key,
                kind,
                slug,
                input,
                attempt,
                credentials,
                ..
            } => {
                debug_assert!(*attempt >= 1);
                let step = fold.step(key, *kind, slug, at);
                step.status = match kind {
                    StepKind::Sleep => StepStatus::Sleeping,
                    _ => StepStatus::Running,
                };
                step.attempts += 1;
                step.input = Some(input.clone());
                step.credentials.clone_from(credentials);
                step.finished_at_ms = None;
            }
            Event::StepAttemptFailed {
                key,
                attempt,
                error,
                ..
            } => {
                if let Some(step) = fold.existing(key) {
                    step.status = StepStatus::Retrying;
                    step.error = Some(error.clone());
                    step.attempt_errors.push(AttemptError {
                        attempt: *attempt,
                        error: error.clone(),
                        at_ms: at,
                    });
                }
            }
            Event::StepCompleted {
                key,
                kind,
                slug,
                output,
                ..
            } => {
                let step = fold.step(key, *kind, slug, at);
                step.status = StepStatus::Completed;
                step.attempts = step.attempts.max(1);
                step.output = Some(output.clone());
                step.error = None;
                step.finished_at_ms = Some(at);
            }
            Event::StepFailed {
                key,
                kind,
                slug,
                error,
                ..
            } => {
                let step = fold.step(key, *kind, slug, at);
                step.status = StepStatus::Failed;
                step.error = Some(error.clone());
                step.finished_at_ms = Some(at);
            }
            Event::HookCreated {
                key,
                token,
                timeout_at_ms,
                ..
            } => {
                let step = fold.step(key, StepKind::Hook, crate::HOOK_SLUG, at);
                step.status = StepStatus::Waiting;
                step.attempts = 1;
                step.input = Some(
                    crate::HookInput {
                        token: token.clone(),
                        timeout_at_ms: *timeout_at_ms,
                    }
                    .to_value(),
                );
            }
            Event::StepWarning { key, message } => {
                if let Some(step) = fold.existing(key) {
                    step.warnings.push(message.clone());
                }
            }
            Event::HookResumed { key, payload } => {
                let step = fold.step(key, StepKind::Hook, crate::HOOK_SLUG, at);
                step.status = StepStatus::Completed;
                step.output = Some(payload.clone());
                step.finished_at_ms = Some(at);
            }
            Event::RunCreated { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCanceled { .. }
            | Event::RunRetried => {}
        }
    }
    fold.steps
}

/// Summaries in first-seen order, with an index by key.
#[derive(Default)]
struct Fold {
    steps: Vec<StepSummary>,
    index: HashMap<StepKey, usize>,
}

impl Fold {
    fn step(&mut self, key: &StepKey, kind: StepKind, slug: &str, at_ms: i64) -> &mut StepSummary {
        let steps = &mut self.steps;
        let i = *self.index.entry(key.clone()).or_insert_with(|| {
            steps.push(StepSummary::new(key, kind, slug, at_ms));
            steps.len() - 1
        });
        &mut self.steps[i]
    }

    fn existing(&mut self, key: &StepKey) -> Option<&mut StepSummary> {
        self.index.get(key).map(|&i| &mut self.steps[i])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    fn at(seq: u64, at_ms: i64, event: Event) -> EventRecord {
        EventRecord { seq, at_ms, event }
    }

    #[test]
    fn steps_fold_in_first_seen_order_with_attempts_and_timings() {
        let a = StepKey::from("a#0");
        let b = StepKey::from("b#0");
        let started = |key: &StepKey, slug: &str, attempt| Event::StepStarted {
            call: None,
            key: key.clone(),
            kind: StepKind::Action,
            slug: slug.into(),
            input: json!({"k": slug}),
            attempt,
            credentials: Vec::new(),
        };
        let events = vec![
            at(1, 100, started(&a, "a", 1)),
            at(
                2,
                110,
                Event::StepAttemptFailed {
                    key: a.clone(),
                    attempt: 1,
                    error: ErrorInfo::new(ErrorKind::Action, "flaky"),
                    retry_at_ms: 200,
                },
            ),
            at(3, 200, started(&a, "a", 2)),
            at(
                4,
                250,
                Event::StepCompleted {
                    call: None,
                    key: a.clone(),
                    kind: StepKind::Action,
                    slug: "a".into(),
                    output: json!(1),
                },
            ),
            at(5, 260, started(&b, "b", 1)),
        ];
        let steps = summarize_steps(&events);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].key, a);
        assert_eq!(steps[0].status, StepStatus::Completed);
        assert_eq!(steps[0].attempts, 2);
        assert_eq!(steps[0].attempt_errors.len(), 1);
        assert_eq!(steps[0].duration_ms(), Some(150));
        assert_eq!(steps[0].output, Some(json!(1)));
        assert_eq!(steps[1].status, StepStatus::Running);
        assert_eq!(steps[1].input, Some(json!({"k": "b"})));
        assert_eq!(steps[1].duration_ms(), None);
    }
}
