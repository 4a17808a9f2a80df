//! Reads: a small pool of `query_only` connections used from `spawn_blocking`, so reads
//! never wait for the writer thread (WAL lets them see the last commit while it writes), and
//! the read queries themselves.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use cairn_core::EventRecord;
use cairn_store::{RunFilter, RunId, RunRecord, RunSummary, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use crate::{
    codec::{RawEvent, RawRun, Result, decode_events, parse_id, parse_status, run_columns},
    listing,
    ops::placeholders,
    schema,
};

/// Read-only connections to one database file, opened on demand, kept up to `max_idle`.
pub(crate) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize) -> Arc<ReadPool> {
        Arc::new(ReadPool {
            path,
            busy_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `query` on a pooled connection on tokio's blocking pool.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = query(&conn);
            pool.give_back(conn);
            result.map_err(StoreError::from)
        });
        task.await.map_err(|error| {
            StoreError::Unavailable(format!("a SQLite read did not finish: {error}"))
        })?
    }

    fn take(&self) -> StoreResult<Connection> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path, self.busy_timeout),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// [`load_events`]' query: the made `RunCreated` merged with the `events` rows, both read
/// in `seq` order off their keys.
pub(crate) const LOAD_EVENTS: &str = "\
    SELECT 1, created_at, 1, \
        json_object('type', 'run_created', 'workflow', workflow, 'input', json(input)) \
    FROM runs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = ?1 AND seq = 1) \
    UNION ALL \
    SELECT seq, at, count, payload FROM events WHERE run_id = ?1 \
    ORDER BY 1";

/// A run's whole log, in order, in one query (rows of one or more events each). Its
/// `RunCreated` is made from its `runs` row unless an `events` row holds seq 1 (runs created
/// before schema v8).
pub(crate) fn load_events(conn: &Connection, key: &str) -> Result<Vec<RawEvent>> {
    let mut statement = conn.prepare_cached(LOAD_EVENTS)?;
    let events = statement
        .query_map([key], RawEvent::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(events)
}

pub(crate) fn get_run(conn: &Connection, id: RunId) -> Result<Option<RunRecord>> {
    let raw = raw_run(conn, &id.to_string()).optional()?;
    Ok(raw.map(RawRun::decode).transpose()?)
}

/// The `runs` row of the run whose id is `key`, undecoded.
pub(crate) fn raw_run(conn: &Connection, key: &str) -> rusqlite::Result<RawRun> {
    conn.prepare_cached(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE id = ?1"
    ))?
    .query_row([key], RawRun::from_row)
}

pub(crate) fn events(conn: &Connection, id: RunId) -> Result<Vec<EventRecord>> {
    Ok(decode_events(load_events(conn, &id.to_string())?)?)
}

/// [`events_after`]' query (`?1` the run, `?2` the seq): the `events` rows from the one
/// holding `?2` on (one row may hold several events), read off their key, with the made
/// `RunCreated` first when `?2` is 0.
pub(crate) const LOAD_EVENTS_AFTER: &str = "\
    SELECT 1, created_at, 1, \
        json_object('type', 'run_created', 'workflow', workflow, 'input', json(input)) \
    FROM runs WHERE ?2 < 1 AND id = ?1 \
        AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = ?1 AND seq = 1) \
    UNION ALL \
    SELECT seq, at, count, payload FROM events WHERE run_id = ?1 AND seq >= coalesce( \
        (SELECT seq FROM events WHERE run_id = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1), 0) \
    ORDER BY 1";

/// The run's events with `seq > after`, in order, in one query.
pub(crate) fn events_after(conn: &Connection, id: RunId, after: u64) -> Result<Vec<EventRecord>> {
    let Ok(after_sql) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let rows = conn
        .prepare_cached(LOAD_EVENTS_AFTER)?
        .query_map(params![id.to_string(), after_sql], RawEvent::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut log = decode_events(rows)?;
    // The first row may hold events up to `after` too.
    let first_new = log.partition_point(|record| record.seq <= after);
    log.drain(..first_new);
    Ok(log)
}

/// Runs matching `filter`, newest first (see [`listing`](crate::listing) for the order and
/// the indexes each filter reads).
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    let raw = listing::list(conn, filter, run_columns!(), RawRun::from_row)?;
    Ok(raw
        .into_iter()
        .map(RawRun::decode)
        .collect::<StoreResult<_>>()?)
}

/// The columns of a [`RunSummary`], in [`summary_from_row`]'s order: no payload, and
/// `updated_at` as [`run_columns!`] reads it.
pub(crate) const SUMMARY_COLUMNS: &str = "id, workflow, status, idempotency_key, parent_run_id, \
    trigger, executions, created_at, \
    max(updated_at, coalesce((SELECT at FROM events WHERE run_id = runs.id ORDER BY seq DESC LIMIT 1), \
    updated_at)), finished_at";

/// The runs [`list_runs`] lists, as summaries: no payload column is read.
pub(crate) fn list_run_summaries(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunSummary>> {
    let raw = listing::list(conn, filter, SUMMARY_COLUMNS, summary_from_row)?;
    Ok(raw.into_iter().collect::<StoreResult<_>>()?)
}

/// A row of [`SUMMARY_COLUMNS`], decoded (a stored value that does not decode is corrupt).
fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<RunSummary>> {
    let id: String = row.get(0)?;
    let status: String = row.get(2)?;
    let parent: Option<String> = row.get(4)?;
    let executions: i64 = row.get(6)?;
    let (workflow, idempotency_key, trigger) = (row.get(1)?, row.get(3)?, row.get(5)?);
    let (created_at_ms, updated_at_ms, finished_at_ms) = (row.get(7)?, row.get(8)?, row.get(9)?);
    Ok((|| {
        Ok(RunSummary {
            run_id: parse_id(&id)?,
            workflow,
            status: parse_status(&status)?,
            idempotency_key,
            parent_run_id: parent.as_deref().map(parse_id).transpose()?,
            trigger,
            executions: u32::try_from(executions).map_err(|_| {
                StoreError::Corrupt(format!("run {id} has {executions} executions"))
            })?,
            created_at_ms,
            updated_at_ms,
            finished_at_ms,
        })
    })())
}

/// The earliest `ready_at` among unended runs of `workflows` (a leased run's `ready_at` is
/// its lease's expiry), read off the front of the `runs_claimable` index.
pub(crate) fn next_ready_at(conn: &Connection, workflows: &[String]) -> Result<Option<i64>> {
    if workflows.is_empty() {
        return Ok(None);
    }
    let sql = next_ready_sql(workflows.len());
    let values: Vec<&dyn ToSql> = workflows
        .iter()
        .map(|workflow| workflow as &dyn ToSql)
        .collect();
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(values.as_slice(), |row| row.get(0))
        .optional()?)
}

/// The `next_ready_at` query for `workflows` workflows (parameters `?1…`).
pub(crate) fn next_ready_sql(workflows: usize) -> String {
    format!(
        "SELECT ready_at FROM runs INDEXED BY runs_claimable WHERE finished_at IS NULL AND workflow IN ({}) \
         ORDER BY ready_at LIMIT 1",
        placeholders(1, workflows)
    )
}
