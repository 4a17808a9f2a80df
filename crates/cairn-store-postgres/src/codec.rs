//! Between Cairn's types and PostgreSQL rows: runs and events encoded before they enter the
//! write queue (on the caller's task), and rows decoded back.
//!
//! Payloads are stored as `TEXT` holding serde_json's output, not `JSONB`: JSONB reorders
//! object keys, normalises numbers and cannot hold `\u0000`, and the contract wants payloads
//! back exactly as given.

use cairn_core::{Event, EventRecord, Owner, RunStatus, StepKey};
use cairn_store::{
    ForkOrigin, Lease, NewRun, RunId, RunRecord, RunSummary, StoreError, StoreResult, WorkerId,
    rules::{self, RunEffect},
};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Row, postgres::PgRow};
use uuid::Uuid;

/// The columns of `runs` a [`RunRecord`] is read from, in [`decode_run`]'s order. A run's
/// `updated_at` is the later of its row's and its last event's `at`: a step's append writes
/// no `runs` row (schema v2). `owner` is NULL for the default owner (schema v3).
macro_rules! run_columns {
    () => {
        "id, workflow, status, input, output, error, idempotency_key, parent_run_id, \
         forked_from_run, forked_from_step, trigger, owner, executions, lease_owner, lease_expires_at, \
         ready_at, created_at, finished_at, greatest(updated_at, (SELECT events.at FROM events \
         WHERE events.run_id = runs.id ORDER BY events.seq DESC LIMIT 1)) AS updated_at"
    };
}
pub(crate) use run_columns;

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Corrupt(format!("cannot encode {what} as JSON: {error}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("stored {what} is not valid: {error}")))
}

/// What appending an event does to its run's row besides growing the log, as
/// [`rules::run_effect`] decides it, with its payloads (output, error, hook schema) encoded as
/// JSON text.
pub(crate) type Effect = RunEffect<String, String, String>;

/// An event encoded for the `events` table.
pub(crate) struct PreparedEvent {
    pub(crate) type_name: &'static str,
    pub(crate) step_key: Option<String>,
    pub(crate) payload: String,
    pub(crate) effect: Effect,
}

impl PreparedEvent {
    pub(crate) fn new(event: &Event) -> StoreResult<PreparedEvent> {
        Ok(PreparedEvent {
            type_name: event.type_name(),
            step_key: event.step_key().map(|key| key.as_str().to_owned()),
            payload: to_json(event, "an event")?,
            effect: rules::run_effect(event).try_map(
                |output| to_json(&output, "a run output"),
                |error| to_json(&error, "a run error"),
                |schema| to_json(&schema, "a hook schema"),
            )?,
        })
    }

    pub(crate) fn all(events: &[Event]) -> StoreResult<Vec<PreparedEvent>> {
        events.iter().map(PreparedEvent::new).collect()
    }
}

/// A run to create, encoded: its row's values and the history it starts with (its
/// `RunCreated` is not stored: reads make it from the row, see [`decode_event`]).
pub(crate) struct PreparedRun {
    pub(crate) id: RunId,
    pub(crate) workflow: String,
    pub(crate) input: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) parent_run_id: Option<Uuid>,
    pub(crate) forked_from: Option<(Uuid, String)>,
    pub(crate) trigger: String,
    /// The owner's JSON, `None` for the default owner (schema v3: a NULL to bind).
    pub(crate) owner: Option<String>,
    pub(crate) lease: Option<Lease>,
    pub(crate) now_ms: i64,
    pub(crate) events: Vec<PreparedEvent>,
}

impl PreparedRun {
    pub(crate) fn new(run: NewRun) -> StoreResult<PreparedRun> {
        let input = to_json(&run.input, "a run input")?;
        let events = PreparedEvent::all(&run.history)?;
        let owner = if run.owner.is_default() {
            None
        } else {
            Some(to_json(&run.owner, "a run owner")?)
        };
        Ok(PreparedRun {
            id: run.id,
            workflow: run.workflow,
            input,
            idempotency_key: run.idempotency_key,
            parent_run_id: run.parent_run_id.map(|id| id.0),
            forked_from: run
                .forked_from
                .map(|origin| (origin.run_id.0, origin.step.as_str().to_owned())),
            trigger: run.trigger,
            owner,
            lease: run.lease,
            now_ms: run.now_ms,
            events,
        })
    }
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|error| StoreError::Corrupt(format!("runs.{column} does not read back: {error}")))
}

pub(crate) fn parse_status(text: &str) -> StoreResult<RunStatus> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("stored run status: {error}")))
}

/// The columns of `runs` a [`RunSummary`] is read from ([`decode_summary`]): no payload,
/// and `updated_at` as [`run_columns!`] reads it.
pub(crate) const SUMMARY_COLUMNS: &str = "id, workflow, status, idempotency_key, parent_run_id, \
    trigger, executions, created_at, finished_at, greatest(updated_at, (SELECT events.at FROM events \
    WHERE events.run_id = runs.id ORDER BY events.seq DESC LIMIT 1)) AS updated_at";

/// Decodes a row of [`SUMMARY_COLUMNS`].
pub(crate) fn decode_summary(row: &PgRow) -> StoreResult<RunSummary> {
    let id: Uuid = get(row, "id")?;
    let executions: i64 = get(row, "executions")?;
    Ok(RunSummary {
        run_id: RunId(id),
        workflow: get(row, "workflow")?,
        status: parse_status(&get::<String>(row, "status")?)?,
        idempotency_key: get(row, "idempotency_key")?,
        parent_run_id: get::<Option<Uuid>>(row, "parent_run_id")?.map(RunId),
        trigger: get(row, "trigger")?,
        executions: u32::try_from(executions)
            .map_err(|_| StoreError::Corrupt(format!("run {id} has {executions} executions")))?,
        created_at_ms: get(row, "created_at")?,
        updated_at_ms: get(row, "updated_at")?,
        finished_at_ms: get(row, "finished_at")?,
    })
}

/// Decodes a row of [`run_columns!`].
pub(crate) fn decode_run(row: &PgRow) -> StoreResult<RunRecord> {
    let id: Uuid = get(row, "id")?;
    let forked_run: Option<Uuid> = get(row, "forked_from_run")?;
    let forked_step: Option<String> = get(row, "forked_from_step")?;
    let forked_from = match (forked_run, forked_step) {
        (Some(run), Some(step)) => Some(ForkOrigin {
            run_id: RunId(run),
            step: StepKey::custom(step),
        }),
        _ => None,
    };
    let output: Option<String> = get(row, "output")?;
    let error: Option<String> = get(row, "error")?;
    let executions: i64 = get(row, "executions")?;
    let owner = match get::<Option<String>>(row, "owner")? {
        None => Owner::default(),
        Some(text) => from_json(&text, "run owner")?,
    };
    Ok(RunRecord {
        run_id: RunId(id),
        workflow: get(row, "workflow")?,
        status: parse_status(&get::<String>(row, "status")?)?,
        input: from_json(&get::<String>(row, "input")?, "run input")?,
        output: output
            .map(|text| from_json(&text, "run output"))
            .transpose()?,
        error: error
            .map(|text| from_json(&text, "run error"))
            .transpose()?,
        idempotency_key: get(row, "idempotency_key")?,
        parent_run_id: get::<Option<Uuid>>(row, "parent_run_id")?.map(RunId),
        forked_from,
        trigger: get(row, "trigger")?,
        owner,
        executions: u32::try_from(executions)
            .map_err(|_| StoreError::Corrupt(format!("run {id} has {executions} executions")))?,
        lease_owner: get::<Option<String>>(row, "lease_owner")?.map(|owner| WorkerId(owner.into())),
        lease_expires_at_ms: get(row, "lease_expires_at")?,
        ready_at_ms: get(row, "ready_at")?,
        created_at_ms: get(row, "created_at")?,
        updated_at_ms: get(row, "updated_at")?,
        finished_at_ms: get(row, "finished_at")?,
    })
}

/// The `UNION ALL` branch of a log query that makes each run's `RunCreated` (seq 1) from its
/// row, for runs `runs.id = ANY($1)` without a stored one (runs created before schema v2
/// have it in `events`). Its columns are those of [`LOG_COLUMNS`].
macro_rules! made_run_created {
    () => {
        "SELECT id AS run_id, 1::bigint AS seq, created_at AS at, input AS payload, workflow \
         FROM runs WHERE id = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM events WHERE events.run_id = runs.id AND events.seq = 1)"
    };
}
pub(crate) use made_run_created;

/// The columns of a log query's stored events, as [`decode_event`] reads them.
pub(crate) const LOG_COLUMNS: &str = "run_id, seq, at, payload, NULL::text AS workflow";

/// Decodes a row of a log query: `seq, at, payload, workflow`, where `workflow` is set only
/// for a `RunCreated` made from the run's row (whose `payload` is then the run's input).
pub(crate) fn decode_event(row: &PgRow) -> StoreResult<EventRecord> {
    let seq: i64 = get(row, "seq")?;
    let payload: String = get(row, "payload")?;
    let event = match get::<Option<String>>(row, "workflow")? {
        Some(workflow) => Event::RunCreated {
            workflow,
            input: from_json(&payload, "run input")?,
        },
        None => from_json(&payload, "event")?,
    };
    Ok(EventRecord {
        seq: u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("event seq {seq} is negative")))?,
        at_ms: get(row, "at")?,
        event,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn terminal_events_end_the_run_and_retries_requeue_it() {
        let done = PreparedEvent::new(&Event::RunCompleted { output: json!(1) }).expect("encode");
        assert_eq!(done.effect.ends(), Some(RunStatus::Succeeded));
        let canceled = PreparedEvent::new(&Event::RunCanceled {
            reason: "  ".into(),
        })
        .expect("encode");
        match canceled.effect {
            Effect::End {
                error: Some(error), ..
            } => {
                assert!(error.contains("\"run canceled\""), "{error}")
            }
            _ => panic!("RunCanceled must end the run with an error"),
        }
        let retried = PreparedEvent::new(&Event::RunRetried).expect("encode");
        assert!(matches!(retried.effect, Effect::Requeue));
        assert_eq!(retried.type_name, "run_retried");
    }

    #[test]
    fn payloads_are_kept_as_serde_json_text() {
        let event = Event::RunCompleted {
            output: json!({"z": 1, "a": "\u{0000}"}),
        };
        let prepared = PreparedEvent::new(&event).expect("encode");
        let back: Event = from_json(&prepared.payload, "event").expect("decode");
        assert_eq!(back, event);
        assert!(prepared.payload.contains("\\u0000"), "{}", prepared.payload);
    }
}
