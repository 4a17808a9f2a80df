//! Durable waits in PostgreSQL: parking runs, and hooks (registered when their `HookCreated`
//! event is appended, resumed by token, timed out by the executing worker). Writes run inside
//! the writer's transaction, like `ops`; reads on any pooled connection.
//!
//! Lock order is always the run's row, then the hook's: an operation that starts from a
//! token reads the hook unlocked to learn its run, locks the run, then locks and re-reads the
//! hook. Appends that end a run (and close its hooks) take the same order, so the two never
//! deadlock.

use cairn_core::{Event, StepKey};
use cairn_store::{HookFilter, HookRecord, HookState, Park, RunId, StoreError, WorkerId, rules};
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    codec::{PreparedEvent, from_json},
    error::Result,
    lock::{ends, fenced, state_of, status_of},
    ops::write_events,
    read::where_clause,
    writer::Notes,
};

/// The columns a [`HookRecord`] is read from, by [`decode_hook`].
const HOOK_COLUMNS: &str =
    "token, run_id, step_key, state, schema, created_at, timeout_at, closed_at";

/// Registers a pending hook (the effect of appending `HookCreated`).
pub(crate) async fn register_hook(
    conn: &mut PgConnection,
    run: RunId,
    step_key: &str,
    token: &str,
    schema: &str,
    timeout_at: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO hooks (token, run_id, step_key, state, schema, created_at, timeout_at) \
         VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
    )
    .bind(token)
    .bind(run.0)
    .bind(step_key)
    .bind(schema)
    .bind(now)
    .bind(timeout_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Closes a run's pending hooks when the run ends.
pub(crate) async fn close_hooks(conn: &mut PgConnection, run: RunId, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE hooks SET state = 'closed', closed_at = $2 WHERE run_id = $1 AND state = 'pending'",
    )
    .bind(run.0)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Parks a run, unless its log grew past what the parking worker knows or the child it waits
/// for has ended (then it is made ready at once). Returns whether it was parked.
pub(crate) async fn park_run(
    conn: &mut PgConnection,
    id: RunId,
    worker: &WorkerId,
    park: &Park,
    now: i64,
    notes: &mut Notes,
) -> Result<bool> {
    let state = fenced(conn, id, worker, false).await?;
    // Read after the run's own row is locked: see `lock` for why that orders it with the
    // child's end.
    let child_status = match park.child {
        Some(child) => Some(status_of(conn, child).await?),
        None => None,
    };
    // The run's last `seq` (1, its made `RunCreated`, before any event is stored), read
    // after its row was locked, so no append can follow unseen.
    let last_seq: i64 =
        sqlx::query_scalar("SELECT coalesce(max(seq), 1) FROM events WHERE run_id = $1")
            .bind(id.0)
            .fetch_one(&mut *conn)
            .await?;
    let last_seq = u64::try_from(last_seq).unwrap_or(0);
    let target = rules::park_target(park, last_seq, child_status, now);
    sqlx::query(
        "UPDATE runs SET status = $2, ready_at = $3, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = $4 WHERE id = $1",
    )
    .bind(id.0)
    .bind(target.status.as_str())
    .bind(target.ready_at_ms)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if target.ready_at_ms != cairn_store::NEVER {
        notes.ready(&state.workflow);
    }
    notes.changed(id);
    Ok(target.parked)
}

/// The hook `token`, read without a lock (to learn its run), or `HookNotFound`.
async fn find_hook(conn: &mut PgConnection, token: &str) -> Result<HookRecord> {
    load_hook(&mut *conn, token)
        .await?
        .ok_or_else(|| StoreError::HookNotFound.into())
}

/// Locks the hook's row (after its run's) and reads it again.
async fn lock_hook(conn: &mut PgConnection, token: &str) -> Result<HookRecord> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE token = $1 FOR UPDATE");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(token)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => decode_hook(&row),
        None => Err(StoreError::HookNotFound.into()),
    }
}

async fn set_hook_state(
    conn: &mut PgConnection,
    token: &str,
    state: HookState,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE hooks SET state = $2, closed_at = $3 WHERE token = $1")
        .bind(token)
        .bind(state.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Resumes a pending hook: records `HookResumed` in its run's log (whoever holds the lease)
/// and wakes a parked run.
pub(crate) async fn resume_hook(
    conn: &mut PgConnection,
    token: &str,
    payload: &serde_json::Value,
    now: i64,
    notes: &mut Notes,
) -> Result<HookRecord> {
    let run_id = find_hook(conn, token).await?.run_id;
    let run = state_of(conn, run_id, false).await?;
    let mut hook = lock_hook(conn, token).await?;
    rules::check_resumable(&hook, run.status)?;
    let resumed = PreparedEvent::new(&Event::HookResumed {
        key: hook.step_key.clone(),
        payload: payload.clone(),
    })?;
    write_events(conn, &run, std::slice::from_ref(&resumed), now, notes).await?;
    set_hook_state(conn, token, HookState::Resumed, now).await?;
    if run.lease_owner.is_none() {
        sqlx::query("UPDATE runs SET status = 'queued', ready_at = $2 WHERE id = $1")
            .bind(run_id.0)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        notes.ready(&run.workflow);
    }
    hook.state = HookState::Resumed;
    hook.closed_at_ms = Some(now);
    Ok(hook)
}

/// Times a pending hook out (fenced by its run's lease) with `timed_out` appended. `false`
/// if it was resumed first.
pub(crate) async fn time_out_hook(
    conn: &mut PgConnection,
    token: &str,
    worker: &WorkerId,
    timed_out: &PreparedEvent,
    now: i64,
    notes: &mut Notes,
) -> Result<bool> {
    let run_id = find_hook(conn, token).await?.run_id;
    let ending = ends(std::slice::from_ref(timed_out));
    let run = fenced(conn, run_id, worker, ending).await?;
    let hook = lock_hook(conn, token).await?;
    if !rules::check_time_out(&hook)? {
        return Ok(false);
    }
    write_events(conn, &run, std::slice::from_ref(timed_out), now, notes).await?;
    set_hook_state(conn, token, HookState::TimedOut, now).await?;
    Ok(true)
}

/// One hook by token.
pub(crate) async fn load_hook<'c>(
    conn: impl PgExecutor<'c>,
    token: &str,
) -> Result<Option<HookRecord>> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks WHERE token = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(token)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_hook).transpose()
}

/// Hooks matching `filter`, newest first (by run through `hooks_by_run`, pending ones
/// through `hooks_pending`).
pub(crate) async fn list_hooks<'c>(
    conn: impl PgExecutor<'c>,
    filter: &HookFilter,
) -> Result<Vec<HookRecord>> {
    let sql = format!(
        "SELECT {HOOK_COLUMNS} FROM hooks {} ORDER BY created_at DESC, token LIMIT $1",
        where_clause(&[
            ("run_id", filter.run_id.is_some()),
            ("state", filter.state.is_some()),
        ])
    );
    let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(limit);
    if let Some(run) = filter.run_id {
        query = query.bind(run.0);
    }
    if let Some(state) = filter.state {
        query = query.bind(state.as_str());
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(decode_hook).collect()
}

fn decode_hook(row: &PgRow) -> Result<HookRecord> {
    let state: String = row.try_get("state")?;
    let schema: String = row.try_get("schema")?;
    let run_id: Uuid = row.try_get("run_id")?;
    Ok(HookRecord {
        token: row.try_get("token")?,
        run_id: RunId(run_id),
        step_key: StepKey::custom(row.try_get::<String, _>("step_key")?),
        state: state.parse().map_err(StoreError::Corrupt)?,
        schema: from_json(&schema, "hook schema")?,
        created_at_ms: row.try_get("created_at")?,
        timeout_at_ms: row.try_get("timeout_at")?,
        closed_at_ms: row.try_get("closed_at")?,
    })
}
