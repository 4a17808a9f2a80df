//! Durable waits in SQLite: parking runs, and hooks (registered when their `HookCreated`
//! event is appended, resumed by token, timed out by the executing worker). Writes run on the
//! writer's connection inside its transaction, like `ops`; reads on a pooled reader.

use cairn_core::{Event, StepKey};
use cairn_store::{HookFilter, HookRecord, HookState, Park, RunId, StoreError, WorkerId, rules};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    codec::parse_status,
    codec::{PreparedEvents, Result, parse_id},
    held::Sql,
    ops::{Changed, fenced, state_of, write_events},
};

/// The columns a [`HookRecord`] is read from, in [`RawHook::from_row`]'s order.
const HOOK_COLUMNS: &str =
    "token, run_id, step_key, state, schema, created_at, timeout_at, closed_at";

/// Registers a pending hook (the effect of appending `HookCreated`).
pub(crate) fn register_hook(
    conn: &Connection,
    run_key: &str,
    step_key: &str,
    token: &str,
    schema: &str,
    timeout_at: Option<i64>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO hooks (token, run_id, step_key, state, schema, created_at, timeout_at) \
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
    )?
    .execute(params![token, run_key, step_key, schema, now, timeout_at])?;
    Ok(())
}

/// Closes a run's pending hooks when the run ends.
pub(crate) fn close_hooks(conn: &Connection, run_key: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE hooks SET state = 'closed', closed_at = ?2 WHERE run_id = ?1 AND state = 'pending'",
    )?
    .execute(params![run_key, now])?;
    Ok(())
}

/// Parks a run, unless its log grew past what the parking worker knows or the child it waits
/// for has ended (then it is made ready at once). Returns whether it was parked. (The
/// writer's transaction is `BEGIN IMMEDIATE`: the child cannot end between the look at it
/// and the park.)
pub(crate) fn park_run(
    conn: &Connection,
    id: RunId,
    worker: &WorkerId,
    park: &Park,
    now: i64,
    changed: &mut Changed,
) -> Result<bool> {
    let key = id.to_string();
    let state = fenced(conn, id, &key, worker)?;
    let child_status = park.child.map(|child| status_of(conn, child)).transpose()?;
    let last_seq = u64::try_from(state.last_seq).unwrap_or(0);
    let target = rules::park_target(park, last_seq, child_status, now);
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, ready_at = ?3, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ?4 WHERE rowid = ?1",
    )?
    .execute(params![
        state.rowid,
        target.status.as_str(),
        target.ready_at_ms,
        now
    ])?;
    changed.run(id);
    Ok(target.parked)
}

/// The status of run `id`, or `RunNotFound`.
fn status_of(conn: &Connection, id: RunId) -> Result<cairn_core::RunStatus> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
        .query_row([id.to_string()], |row| row.get(0))
        .optional()?;
    let status = status.ok_or(StoreError::RunNotFound(id))?;
    Ok(parse_status(&status)?)
}

/// Resumes a pending hook: records `HookResumed` in its run's log and wakes a parked run.
pub(crate) fn resume_hook(
    conn: &Sql<'_>,
    token: &str,
    payload: &serde_json::Value,
    now: i64,
    changed: &mut Changed,
) -> Result<HookRecord> {
    let mut hook = load_hook(conn, token)?.ok_or(StoreError::HookNotFound)?;
    let key = hook.run_id.to_string();
    let run = state_of(conn, hook.run_id, &key)?;
    rules::check_resumable(&hook, run.status)?;
    let resumed = PreparedEvents::one(&Event::HookResumed {
        key: hook.step_key.clone(),
        payload: payload.clone(),
    })?;
    write_events(
        conn,
        hook.run_id,
        run.row(&key),
        run.last_seq,
        &resumed,
        now,
        changed,
    )?;
    conn.prepare_cached("UPDATE hooks SET state = 'resumed', closed_at = ?2 WHERE token = ?1")?
        .execute(params![token, now])?;
    if run.lease_owner.is_none() {
        conn.prepare_cached("UPDATE runs SET status = 'queued', ready_at = ?2 WHERE rowid = ?1")?
            .execute(params![run.rowid, now])?;
    }
    hook.state = HookState::Resumed;
    hook.closed_at_ms = Some(now);
    Ok(hook)
}

/// Times a pending hook out (fenced by its run's lease) with `timed_out` appended. `false`
/// if it was resumed first.
pub(crate) fn time_out_hook(
    conn: &Sql<'_>,
    token: &str,
    worker: &WorkerId,
    timed_out: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<bool> {
    let hook = load_hook(conn, token)?.ok_or(StoreError::HookNotFound)?;
    let key = hook.run_id.to_string();
    let run = fenced(conn, hook.run_id, &key, worker)?;
    if !rules::check_time_out(&hook)? {
        return Ok(false);
    }
    write_events(
        conn,
        hook.run_id,
        run.row(&key),
        run.last_seq,
        timed_out,
        now,
        changed,
    )?;
    conn.prepare_cached("UPDATE hooks SET state = 'timed_out', closed_at = ?2 WHERE token = ?1")?
        .execute(params![token, now])?;
    Ok(true)
}

/// One hook by token.
pub(crate) fn load_hook(conn: &Connection, token: &str) -> Result<Option<HookRecord>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE token = ?1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row([token], RawHook::from_row)
        .optional()?;
    raw.map(RawHook::decode).transpose()
}

/// Hooks matching `filter`, newest first.
pub(crate) fn list_hooks(conn: &Connection, filter: &HookFilter) -> Result<Vec<HookRecord>> {
    let sql = format!(
        "SELECT {HOOK_COLUMNS} FROM hooks WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR state = ?2) \
         ORDER BY created_at DESC, token LIMIT ?3"
    );
    let run = filter.run_id.map(|id| id.to_string());
    let state = filter.state.map(HookState::as_str);
    let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
    let raws = conn
        .prepare_cached(&sql)?
        .query_map(params![run, state, limit], RawHook::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(RawHook::decode).collect()
}

/// A `hooks` row as read, before decoding.
struct RawHook {
    token: String,
    run_id: String,
    step_key: String,
    state: String,
    schema: String,
    created_at: i64,
    timeout_at: Option<i64>,
    closed_at: Option<i64>,
}

impl RawHook {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawHook> {
        Ok(RawHook {
            token: row.get(0)?,
            run_id: row.get(1)?,
            step_key: row.get(2)?,
            state: row.get(3)?,
            schema: row.get(4)?,
            created_at: row.get(5)?,
            timeout_at: row.get(6)?,
            closed_at: row.get(7)?,
        })
    }

    fn decode(self) -> Result<HookRecord> {
        let state = self.state.parse().map_err(StoreError::Corrupt)?;
        let schema = serde_json::from_str(&self.schema).map_err(|error| {
            StoreError::Corrupt(format!("stored hook schema is not valid JSON: {error}"))
        })?;
        Ok(HookRecord {
            token: self.token,
            run_id: parse_id(&self.run_id)?,
            step_key: StepKey::custom(self.step_key),
            state,
            schema,
            created_at_ms: self.created_at,
            timeout_at_ms: self.timeout_at,
            closed_at_ms: self.closed_at,
        })
    }
}
