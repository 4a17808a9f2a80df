//! Between Cairn's types and SQLite rows: runs and events encoded for the writer (on the
//! caller's task, so the single writer thread only runs SQL), rows decoded back, and the
//! crate's internal error type with its mapping onto [`StoreError`].

use cairn_core::{Event, EventRecord, RunStatus, StepKey};
use cairn_store::{
    ClaimOutcome, ClaimedRun, ForkOrigin, Lease, NewRun, RunId, RunRecord, StoreError, StoreResult,
    WorkerId,
    rules::{self, ClaimRefusal, RunEffect},
};
use rusqlite::{ErrorCode, Row};
use serde::{Serialize, de::DeserializeOwned};

/// The columns of `runs` a [`RawRun`] is read from, in [`RawRun::from_row`]'s order. A run's
/// `updated_at` is the later of its row's (rewritten when the run's state changes) and its
/// last event row's `at` (an append that changes nothing else leaves the row alone: schema
/// v7).
macro_rules! run_columns {
    () => {
        "id, workflow, status, input, output, error, idempotency_key, parent_run_id, forked_from_run, \
         forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at, created_at, \
         max(updated_at, coalesce((SELECT at FROM events WHERE run_id = runs.id ORDER BY seq DESC LIMIT 1), \
         updated_at)), finished_at"
    };
}
pub(crate) use run_columns;

/// The `seq` of the last event of the run whose id is the SQL expression `$run_id` (0 for
/// none): the last `events` row's `seq + count - 1`, at the end of the `(run_id, seq)` key.
macro_rules! last_seq_of {
    ($run_id:literal) => {
        concat!(
            "coalesce((SELECT seq + count - 1 FROM events WHERE run_id = ",
            $run_id,
            " ORDER BY seq DESC LIMIT 1), 0)"
        )
    };
}
pub(crate) use last_seq_of;

/// An operation's failure inside this crate: a contract outcome or a SQLite error, so `?`
/// works on both. Converted to [`StoreError`] at the crate's edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A contract outcome (`LeaseLost`, `RunEnded`, …) or an already mapped failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// SQLite refused or failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// Results inside this crate.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<Error> for StoreError {
    fn from(error: Error) -> StoreError {
        match error {
            Error::Store(error) => error,
            Error::Sql(error) => sql_error(error),
        }
    }
}

/// Maps a SQLite error: locks held too long and I/O trouble are `Unavailable` (retrying may
/// help); damaged files and values that do not read back are `Corrupt`.
pub(crate) fn sql_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(format!(
                    "the SQLite database stayed locked by another connection for longer than the busy timeout \
                 ({error}); retry, or raise SqliteOptions::busy_timeout"
                ))
            }
            ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::ConstraintViolation => StoreError::Corrupt(format!("SQLite: {error}")),
            _ => StoreError::Unavailable(format!("SQLite: {error}")),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => {
            StoreError::Corrupt(format!("a stored value does not read back: {error}"))
        }
        _ => StoreError::Unavailable(format!("SQLite: {error}")),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Corrupt(format!("cannot encode {what} as JSON: {error}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("stored {what} is not valid: {error}")))
}

/// What an event does to its run's row besides growing the log, as [`rules::run_effect`]
/// decides it, with its payloads (output, error, hook schema) encoded as JSON text.
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
        let effect = rules::run_effect(event).try_map(
            |output| to_json(&output, "a run output"),
            |error| to_json(&error, "a run error"),
            |schema| to_json(&schema, "a hook schema"),
        )?;
        Ok(PreparedEvent {
            type_name: event.type_name(),
            step_key: event.step_key().map(|key| key.as_str().to_owned()),
            payload: to_json(event, "an event")?,
            effect,
        })
    }

    pub(crate) fn all(events: &[Event]) -> StoreResult<Vec<PreparedEvent>> {
        events.iter().map(PreparedEvent::new).collect()
    }
}

/// A run to create, encoded: its row's values and its first events (`RunCreated`, history).
pub(crate) struct PreparedRun {
    pub(crate) id: RunId,
    pub(crate) workflow: String,
    pub(crate) input: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) parent_run_id: Option<String>,
    pub(crate) forked_from: Option<(String, String)>,
    pub(crate) trigger: String,
    pub(crate) lease: Option<Lease>,
    pub(crate) now_ms: i64,
    pub(crate) events: Vec<PreparedEvent>,
}

impl PreparedRun {
    pub(crate) fn new(run: NewRun) -> StoreResult<PreparedRun> {
        let input = to_json(&run.input, "a run input")?;
        let mut events = Vec::with_capacity(run.history.len() + 1);
        events.push(PreparedEvent::new(&Event::RunCreated {
            workflow: run.workflow.clone(),
            input: run.input,
        })?);
        for event in &run.history {
            events.push(PreparedEvent::new(event)?);
        }
        Ok(PreparedRun {
            id: run.id,
            input,
            workflow: run.workflow,
            idempotency_key: run.idempotency_key,
            parent_run_id: run.parent_run_id.map(|id| id.to_string()),
            forked_from: run
                .forked_from
                .map(|origin| (origin.run_id.to_string(), origin.step.as_str().to_owned())),
            trigger: run.trigger,
            lease: run.lease,
            now_ms: run.now_ms,
            events,
        })
    }
}

/// A `runs` row as read, decoded off the writer thread.
pub(crate) struct RawRun {
    id: String,
    workflow: String,
    status: String,
    input: String,
    output: Option<String>,
    error: Option<String>,
    idempotency_key: Option<String>,
    parent_run_id: Option<String>,
    forked_from: (Option<String>, Option<String>),
    trigger: String,
    executions: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    ready_at: i64,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

impl RawRun {
    /// Reads the columns of [`run_columns!`] in order.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<RawRun> {
        Ok(RawRun {
            id: row.get(0)?,
            workflow: row.get(1)?,
            status: row.get(2)?,
            input: row.get(3)?,
            output: row.get(4)?,
            error: row.get(5)?,
            idempotency_key: row.get(6)?,
            parent_run_id: row.get(7)?,
            forked_from: (row.get(8)?, row.get(9)?),
            trigger: row.get(10)?,
            executions: row.get(11)?,
            lease_owner: row.get(12)?,
            lease_expires_at: row.get(13)?,
            ready_at: row.get(14)?,
            created_at: row.get(15)?,
            updated_at: row.get(16)?,
            finished_at: row.get(17)?,
        })
    }

    pub(crate) fn decode(self) -> StoreResult<RunRecord> {
        let forked_from = match self.forked_from {
            (Some(run), Some(step)) => Some(ForkOrigin {
                run_id: parse_id(&run)?,
                step: StepKey::custom(step),
            }),
            _ => None,
        };
        Ok(RunRecord {
            run_id: parse_id(&self.id)?,
            workflow: self.workflow,
            status: parse_status(&self.status)?,
            input: from_json(&self.input, "run input")?,
            output: self
                .output
                .as_deref()
                .map(|text| from_json(text, "run output"))
                .transpose()?,
            error: self
                .error
                .as_deref()
                .map(|text| from_json(text, "run error"))
                .transpose()?,
            idempotency_key: self.idempotency_key,
            parent_run_id: self.parent_run_id.as_deref().map(parse_id).transpose()?,
            forked_from,
            trigger: self.trigger,
            executions: u32::try_from(self.executions).map_err(|_| {
                StoreError::Corrupt(format!(
                    "run {} has {} executions",
                    self.id, self.executions
                ))
            })?,
            lease_owner: self.lease_owner.map(WorkerId),
            lease_expires_at_ms: self.lease_expires_at,
            ready_at_ms: self.ready_at,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
            finished_at_ms: self.finished_at,
        })
    }
}

/// An `events` row as read: `count` events from `seq` on (see the schema's version 3).
pub(crate) struct RawEvent {
    seq: i64,
    at: i64,
    count: i64,
    payload: String,
}

impl RawEvent {
    /// Reads `seq, at, count, payload`.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
        Ok(RawEvent {
            seq: row.get(0)?,
            at: row.get(1)?,
            count: row.get(2)?,
            payload: row.get(3)?,
        })
    }

    /// Appends the row's events to `log`.
    fn decode_into(self, log: &mut Vec<EventRecord>) -> StoreResult<()> {
        let seq = u64::try_from(self.seq)
            .map_err(|_| StoreError::Corrupt(format!("event seq {} is negative", self.seq)))?;
        let record = |(event, seq)| EventRecord {
            seq,
            at_ms: self.at,
            event,
        };
        if self.count == 1 {
            log.push(record((from_json(&self.payload, "event")?, seq)));
            return Ok(());
        }
        let events: Vec<Event> = from_json(&self.payload, "events")?;
        if i64::try_from(events.len()).ok() != Some(self.count) {
            return Err(StoreError::Corrupt(format!(
                "the events row at seq {seq} should hold {} events but holds {}",
                self.count,
                events.len()
            )));
        }
        log.extend(events.into_iter().zip(seq..).map(record));
        Ok(())
    }
}

pub(crate) fn decode_events(rows: Vec<RawEvent>) -> StoreResult<Vec<EventRecord>> {
    let mut log = Vec::with_capacity(rows.len() * 2);
    for row in rows {
        row.decode_into(&mut log)?;
    }
    Ok(log)
}

/// A run the writer claimed, with its log as read in the claiming transaction.
pub(crate) struct RawClaimed {
    pub(crate) run: RawRun,
    pub(crate) events: Vec<RawEvent>,
}

impl RawClaimed {
    pub(crate) fn decode(self) -> StoreResult<ClaimedRun> {
        Ok(ClaimedRun {
            run: self.run.decode()?,
            events: decode_events(self.events)?,
        })
    }
}

/// [`ClaimOutcome`] before decoding.
pub(crate) enum RawClaimOutcome {
    Claimed(Box<RawClaimed>),
    Refused(ClaimRefusal),
    NotFound,
}

impl RawClaimOutcome {
    pub(crate) fn decode(self) -> StoreResult<ClaimOutcome> {
        Ok(match self {
            RawClaimOutcome::Claimed(claimed) => {
                ClaimOutcome::Claimed(Box::new((*claimed).decode()?))
            }
            RawClaimOutcome::Refused(refusal) => refusal.into(),
            RawClaimOutcome::NotFound => ClaimOutcome::NotFound,
        })
    }
}

pub(crate) fn parse_id(text: &str) -> StoreResult<RunId> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("stored run id: {error}")))
}

pub(crate) fn parse_status(text: &str) -> StoreResult<RunStatus> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("stored run status: {error}")))
}
