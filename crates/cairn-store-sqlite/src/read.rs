//! Reads: a small pool of `query_only` connections used from `spawn_blocking`, so reads
//! never wait for the writer thread (WAL lets them see the last commit while it writes), and
//! the read queries themselves.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use cairn_core::{EventRecord, RunStatus};
use cairn_store::{RunFilter, RunId, RunRecord, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter, types::Value};

use crate::{
    codec::{RawEvent, RawRun, Result, decode_events, run_columns},
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

/// Runs matching `filter`, newest first: by `rowid`, the order the store created them in
/// (schema v9). Each filter narrows through an index whose entries are in that order, but
/// for an unended status (see [`list_query`]).
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    let (sql, values) = list_query(filter);
    let raw = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(values), RawRun::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(raw
        .into_iter()
        .map(RawRun::decode)
        .collect::<StoreResult<_>>()?)
}

/// The `list_runs` query for `filter`, and its parameters.
///
/// `runs_by_status` holds ended runs only, so a status filter says which side of
/// `finished_at` it is on (what the table's `CHECK` makes true anyway), letting SQLite use the
/// partial index that matches: `runs_by_status` for an ended status, `runs_claimable`, the
/// unended runs, for another. The latter is named (unless a parent narrows further): the
/// unended runs are the work in flight, few beside all runs, and they are sorted by
/// `rowid` there, where a scan of the whole table newest first would find no end when fewer
/// than `limit` runs match.
pub(crate) fn list_query(filter: &RunFilter) -> (String, Vec<Value>) {
    let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
    let mut values = vec![Value::Integer(limit)];
    let mut clauses = Vec::new();
    let conditions = [
        ("workflow", filter.workflow.clone()),
        (
            "status",
            filter.status.map(|status| status.as_str().to_owned()),
        ),
        (
            "parent_run_id",
            filter.parent_run_id.map(|id| id.to_string()),
        ),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            values.push(Value::Text(value));
            clauses.push(format!("{column} = ?{}", values.len()));
        }
    }
    if let Some(before) = filter.before {
        // A run that does not exist compares as NULL: nothing is listed.
        values.push(Value::Text(before.to_string()));
        clauses.push(format!(
            "rowid < (SELECT rowid FROM runs WHERE id = ?{})",
            values.len()
        ));
    }
    if !filter.statuses.is_empty() {
        let mut listed = Vec::new();
        for status in &filter.statuses {
            values.push(Value::Text(status.as_str().to_owned()));
            listed.push(format!("?{}", values.len()));
        }
        clauses.push(format!("status IN ({})", listed.join(", ")));
    }
    for (bound, comparison) in [
        (filter.created_after_ms, ">="),
        (filter.created_before_ms, "<"),
    ] {
        if let Some(ms) = bound {
            values.push(Value::Integer(ms));
            clauses.push(format!("created_at {comparison} ?{}", values.len()));
        }
    }
    if let Some(search) = &filter.search {
        // `instr` has no wildcards to escape; the first occurrence at 1 is a prefix.
        values.push(Value::Text(search.clone()));
        let at = values.len();
        clauses.push(format!("(instr(id, ?{at}) = 1 OR idempotency_key = ?{at})"));
    }
    let mut index = "";
    // Every status asked for ended, or none did: say which side of `finished_at` it is on.
    let asked: Vec<RunStatus> = filter
        .status
        .into_iter()
        .chain(filter.statuses.iter().copied())
        .collect();
    let unended_status = !asked.is_empty() && asked.iter().all(|status| !status.is_terminal());
    if !asked.is_empty() && asked.iter().all(|status| status.is_terminal()) {
        clauses.push("finished_at IS NOT NULL".into());
    }
    if unended_status || filter.unended {
        clauses.push("finished_at IS NULL".into());
        if filter.parent_run_id.is_none() {
            index = " INDEXED BY runs_claimable";
        }
    }
    if let Some(prefix) = &filter.trigger_prefix {
        // `instr` has no wildcards to escape; the first occurrence at 1 is a prefix.
        values.push(Value::Text(prefix.clone()));
        clauses.push(format!("instr(trigger, ?{}) = 1", values.len()));
    }
    if let Some(patch) = &filter.patch {
        // A marker may share its events row with other events (schema v3), so the row's
        // JSON is searched; `instr` has no wildcards to escape.
        values.push(Value::Text(patch.marker_json()));
        let exists = if patch.wants_marker() { "" } else { "NOT " };
        clauses.push(format!(
            "{exists}EXISTS (SELECT 1 FROM events WHERE events.run_id = runs.id \
             AND instr(events.payload, ?{}) > 0)",
            values.len()
        ));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs{}{} ORDER BY rowid DESC LIMIT ?1"
        ),
        index, filter_sql
    );
    (sql, values)
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
