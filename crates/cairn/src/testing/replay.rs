//! Replaying a recorded history against the current workflow code, like Temporal's
//! replayer: run it in CI against histories exported with `runs get <id> --json` to catch a
//! code change that would break runs in flight.

use cairn_core::{ErrorInfo, ErrorKind, Event, EventRecord, RunStatus};
use cairn_engine::{EngineConfig, Payload, Workflow};
use cairn_store::{NewRun, RunId, WorkerId};
use serde_json::Value;

use super::TestEnv;

/// Why a recorded history does not replay against the current code.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The export is not a `runs get --json` object with `input` and `events`.
    #[error("not a run export ({0}); export one with `runs get <run-id> --json`")]
    BadExport(String),
    /// The code makes a different step than the history at some key, or a step the
    /// (finished) history never made.
    #[error("{0}")]
    NonDeterminism(ErrorInfo),
    /// Replaying the recorded steps ends differently than the recorded run did.
    #[error("the recorded run ended {recorded}, but replaying it now ends {now}: {detail}")]
    Diverged {
        /// How the recorded run ended.
        recorded: String,
        /// How the replay ended.
        now: String,
        /// What differs.
        detail: String,
    },
}

/// Replays `export` (the JSON of `runs get <id> --json`) against `workflow`'s current code.
/// No action runs: every step must come from the history. `Ok` when the code makes the same
/// steps and, for a finished run, ends the same way.
pub async fn replay<I: Payload, O: Payload>(
    workflow: &Workflow<I, O>,
    export: &Value,
) -> Result<(), ReplayError> {
    let events: Vec<EventRecord> = serde_json::from_value(export["events"].clone())
        .map_err(|err| ReplayError::BadExport(format!("`events`: {err}")))?;
    let input = export
        .get("input")
        .cloned()
        .ok_or_else(|| ReplayError::BadExport("no `input`".into()))?;
    let recorded_end = events.iter().rev().find_map(|record| match &record.event {
        Event::RunCompleted { output } => Some(Ok(output.clone())),
        Event::RunFailed { error } => Some(Err(error.clone())),
        _ => None,
    });
    let history: Vec<Event> = events
        .into_iter()
        .map(|record| record.event)
        .filter(|event| event.step_key().is_some() || matches!(event, Event::RunRetried))
        .collect();

    let env = TestEnv::with_config(EngineConfig {
        replay_only: true,
        ..TestEnv::new_config()
    })
    .register(workflow);
    let engine = env.engine();
    let run_id = RunId::new();
    let lease = cairn_store::Lease {
        worker: WorkerId("cairn-testing".into()),
        expires_at_ms: i64::MAX / 2,
    };
    let new = NewRun {
        id: run_id,
        workflow: workflow.slug().to_owned(),
        input,
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "replay".into(),
        owner: Default::default(),
        history,
        lease: Some(lease),
        now_ms: 0,
    };
    env.store()
        .create_run(new)
        .await
        .map_err(|err| ReplayError::BadExport(err.to_string()))?;
    let run = engine
        .execute(run_id)
        .await
        .map_err(|err| ReplayError::BadExport(err.to_string()))?;
    let describe = |status: RunStatus| status.to_string();
    match (run.status, run.error, recorded_end) {
        // The code went on past the end of an unfinished history: as far as it goes, it agrees.
        (RunStatus::Failed, Some(error), None) if error.kind == ErrorKind::Unrecorded => Ok(()),
        (RunStatus::Failed, Some(error), _)
            if matches!(
                error.kind,
                ErrorKind::NonDeterminism | ErrorKind::Unrecorded
            ) =>
        {
            Err(ReplayError::NonDeterminism(error))
        }
        (RunStatus::Succeeded, _, Some(Ok(recorded))) if run.output.as_ref() == Some(&recorded) => {
            Ok(())
        }
        (RunStatus::Failed, Some(_), Some(Err(_))) => Ok(()),
        (_, _, None) => Ok(()),
        (status, error, Some(recorded)) => Err(ReplayError::Diverged {
            recorded: if recorded.is_ok() {
                "succeeded".into()
            } else {
                "failed".into()
            },
            now: describe(status),
            detail: match (error, run.output) {
                (Some(error), _) => error.to_string(),
                (None, output) => format!("output {}", output.unwrap_or(Value::Null)),
            },
        }),
    }
}
