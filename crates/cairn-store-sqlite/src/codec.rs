//! Between Cairn's types and SQLite rows: runs and events encoded for the writer (on the
//! caller's task, so the single writer thread only runs SQL), rows decoded back, and the
//! crate's internal error type with its mapping onto [`StoreError`].

use std::borrow::Cow;

use cairn_core::{Event, EventRecord, Owner, RunStatus, StepKey};
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
/// v7). `owner` is NULL for the default owner (schema v10).
macro_rules! run_columns {
    () => {
        "id, workflow, status, input, output, error, idempotency_key, parent_run_id, forked_from_run, \
         forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at, created_at, \
         max(updated_at, coalesce((SELECT at FROM events WHERE run_id = runs.id ORDER BY seq DESC LIMIT 1), \
         updated_at)), finished_at, owner"
    };
}
pub(crate) use run_columns;

/// The `seq` of the last event of the run whose id is the SQL expression `$run_id`: the last
/// `events` row's `seq + count - 1`, at the end of the `(run_id, seq)` key, or 1 with no
/// row (every run has its `RunCreated`, seq 1, made from its row since schema v8).
macro_rules! last_seq_of {
    ($run_id:literal) => {
        concat!(
            "coalesce((SELECT seq + count - 1 FROM events WHERE run_id = ",
            $run_id,
            " ORDER BY seq DESC LIMIT 1), 1)"
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

/// The rows `sql` selects with `values`, each read by `from_row` and then decoded by
/// `decode` (a table's raw row type and its decoding).
pub(crate) fn read_decoded<R, T>(
    conn: &rusqlite::Connection,
    sql: &str,
    values: impl rusqlite::Params,
    from_row: fn(&Row<'_>) -> rusqlite::Result<R>,
    decode: fn(R) -> StoreResult<T>,
) -> Result<Vec<T>> {
    let raw = conn
        .prepare_cached(sql)?
        .query_map(values, from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(raw
        .into_iter()
        .map(decode)
        .collect::<StoreResult<Vec<_>>>()?)
}

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

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|error| encoding(what, error))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("stored {what} is not valid: {error}")))
}

/// What an event does to its run's row besides growing the log, as [`rules::run_effect`]
/// decides it, with its payloads (output, error, hook schema) encoded as JSON text.
pub(crate) type Effect = RunEffect<String, String, String>;

/// The events of one write, encoded on the caller's task as the one `events` row that holds
/// them (schema v3), with what they do to their run: the writer thread only runs SQL.
pub(crate) struct PreparedEvents {
    /// How many events: the `seq` numbers they take.
    pub(crate) count: i64,
    /// Their types, comma-separated (for people reading the table).
    pub(crate) types: Cow<'static, str>,
    /// The first step key among them (for people reading the table).
    pub(crate) step_key: Option<String>,
    /// One event's JSON, or a JSON array of several.
    pub(crate) payload: String,
    /// Their effects other than [`RunEffect::None`], in order.
    pub(crate) effects: Vec<Effect>,
    /// The status of an end some event follows: the write is refused (`RunEnded`).
    pub(crate) event_after_end: Option<RunStatus>,
}

impl PreparedEvents {
    /// Encodes `events`, in order, in one buffer.
    pub(crate) fn new<'a>(events: impl IntoIterator<Item = &'a Event>) -> StoreResult<Self> {
        let events = events.into_iter();
        let mut payload = Vec::with_capacity(ENCODED_EVENT_GUESS * events.size_hint().0.max(1));
        let mut prepared = PreparedEvents {
            count: 0,
            types: Cow::Borrowed(""),
            step_key: None,
            payload: String::new(),
            effects: Vec::new(),
            event_after_end: None,
        };
        let mut ended = None;
        for event in events {
            if prepared.count == 0 {
                prepared.types = Cow::Borrowed(event.type_name());
            } else {
                payload.push(b',');
                let types = prepared.types.to_mut();
                types.push(',');
                types.push_str(event.type_name());
            }
            serde_json::to_writer(&mut payload, event)
                .map_err(|error| encoding("an event", error))?;
            if prepared.step_key.is_none() {
                prepared.step_key = event.step_key().map(|key| key.as_str().to_owned());
            }
            if let Some(status) = ended {
                prepared.event_after_end.get_or_insert(status);
            }
            match rules::run_effect(event).try_map(
                |output| to_json(&output, "a run output"),
                |error| to_json(&error, "a run error"),
                |schema| to_json(&schema, "a hook schema"),
            )? {
                RunEffect::None => {}
                effect => {
                    if let RunEffect::End { status, .. } = &effect {
                        ended = Some(*status);
                    }
                    prepared.effects.push(effect);
                }
            }
            prepared.count += 1;
        }
        if prepared.count > 1 {
            payload.insert(0, b'[');
            payload.push(b']');
        }
        prepared.payload =
            String::from_utf8(payload).map_err(|error| encoding("an event", error))?;
        Ok(prepared)
    }

    /// Encodes one event.
    pub(crate) fn one(event: &Event) -> StoreResult<Self> {
        PreparedEvents::new([event])
    }
}

/// About how many bytes an event's JSON takes: the payload buffer's first size, per event.
const ENCODED_EVENT_GUESS: usize = 192;

fn encoding(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("cannot encode {what} as JSON: {error}"))
}

/// A run to create, encoded: its row's values (which are its `RunCreated`) and the history
/// it starts with.
pub(crate) struct PreparedRun {
    pub(crate) id: RunId,
    pub(crate) workflow: String,
    pub(crate) input: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) parent_run_id: Option<String>,
    /// The parent as an id, which the writer remembers (see `ops::RunState::parent`).
    pub(crate) parent: Option<RunId>,
    pub(crate) forked_from: Option<(String, String)>,
    pub(crate) trigger: String,
    /// The owner's JSON, `None` for the default owner (schema v10: a NULL to bind).
    pub(crate) owner: Option<String>,
    pub(crate) lease: Option<Lease>,
    pub(crate) now_ms: i64,
    pub(crate) events: PreparedEvents,
}

impl PreparedRun {
    pub(crate) fn new(run: NewRun) -> StoreResult<PreparedRun> {
        let input = to_json(&run.input, "a run input")?;
        // Its `RunCreated` (seq 1) is the row itself (schema v8): the history follows it.
        let events = PreparedEvents::new(&run.history)?;
        let owner = if run.owner.is_default() {
            None
        } else {
            Some(to_json(&run.owner, "a run owner")?)
        };
        Ok(PreparedRun {
            id: run.id,
            input,
            workflow: run.workflow,
            idempotency_key: run.idempotency_key,
            parent_run_id: run.parent_run_id.map(|id| id.to_string()),
            parent: run.parent_run_id,
            forked_from: run
                .forked_from
                .map(|origin| (origin.run_id.to_string(), origin.step.as_str().to_owned())),
            trigger: run.trigger,
            owner,
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
    owner: Option<String>,
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
            owner: row.get(18)?,
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
            owner: match self.owner.as_deref() {
                None => Owner::default(),
                Some(text) => from_json(text, "run owner")?,
            },
            executions: u32::try_from(self.executions).map_err(|_| {
                StoreError::Corrupt(format!(
                    "run {} has {} executions",
                    self.id, self.executions
                ))
            })?,
            lease_owner: self.lease_owner.map(|owner| WorkerId(owner.into())),
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

#[cfg(test)]
mod tests {
    use cairn_core::Event;
    use cairn_store::rules::RunEffect;
    use serde_json::{Value, json};

    use super::PreparedEvents;
    use crate::writer::tests::completed;

    #[test]
    fn one_write_is_one_row_whose_payload_reads_back_as_its_events() {
        let events = [
            completed(0),
            completed(1),
            Event::RunCompleted {
                output: json!({ "n": 2 }),
            },
        ];

        let prepared = PreparedEvents::new(&events).expect("encode");

        assert_eq!(prepared.count, 3);
        assert_eq!(
            prepared.types,
            "step_completed,step_completed,run_completed"
        );
        assert_eq!(
            prepared.step_key.as_deref(),
            Some("step#0"),
            "the first key"
        );
        let payload: Value = serde_json::from_str(&prepared.payload).expect("JSON");
        let expected: Vec<Value> = events
            .iter()
            .map(|event| serde_json::to_value(event).expect("encode"))
            .collect();
        assert_eq!(
            payload,
            Value::Array(expected),
            "an array of the three events"
        );
        assert!(
            matches!(prepared.effects.as_slice(), [RunEffect::End { .. }]),
            "only the effect that does something is kept"
        );
        assert_eq!(prepared.event_after_end, None);

        let single = PreparedEvents::one(&events[0]).expect("encode one");
        let alone: Value = serde_json::from_str(&single.payload).expect("JSON");
        assert_eq!(
            alone,
            serde_json::to_value(&events[0]).expect("encode"),
            "not an array"
        );
        assert_eq!((single.count, single.types.as_ref()), (1, "step_completed"));
    }

    #[test]
    fn an_event_after_an_end_is_noted_for_the_refusal() {
        let ended = Event::RunCompleted { output: json!(1) };
        let prepared = PreparedEvents::new(&[ended, completed(0)]).expect("encode");
        assert_eq!(
            prepared.event_after_end,
            Some(cairn_core::RunStatus::Succeeded)
        );
    }
}
