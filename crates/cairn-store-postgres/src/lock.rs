//! Locking runs' rows for a write, and the child-run rule that depends on the lock order.
//!
//! **Lock order: a parent before its child.** A write that may end a run (an append whose
//! events end it, a cancel, a create whose history ends it) locks the run's parent first, in
//! the same statement, and wakes it if it is parked. A parent parking with a child locks
//! itself (the fence) and only then reads the child. So the child's end and the parent's park
//! (two transactions, maybe two processes) are ordered by the parent's row lock:
//! - the end locked the parent first: the park waits for its commit, and then reads the
//!   child ended, and makes the parent ready instead of parking it;
//! - the park locked the parent first: the end waits for its commit, then reads the parent
//!   parked (a locking read sees the latest version), and wakes it.
//!
//! Neither can miss the other, and as both take the parent before the child, neither waits
//! for the other in a cycle.

use cairn_core::RunStatus;
use cairn_store::{RunId, StoreError, WorkerId, rules};
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    codec::{PreparedEvent, parse_status},
    error::Result,
    writer::Notes,
};

/// What the fencing checks need to know about a run, read from its locked row.
pub(crate) struct RunState {
    pub(crate) id: RunId,
    pub(crate) workflow: String,
    pub(crate) status: RunStatus,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    /// The run's parent, locked before it, when the write may end the run (see the module
    /// docs); `None` otherwise and for a run without a parent.
    pub(crate) parent: Option<Box<RunState>>,
}

/// The columns [`decode_state`] reads.
macro_rules! state_columns {
    () => {
        "id, workflow, status, lease_owner, lease_expires_at"
    };
}

fn decode_state(row: &PgRow) -> Result<RunState> {
    Ok(RunState {
        id: RunId(row.try_get("id")?),
        workflow: row.try_get("workflow")?,
        status: parse_status(row.try_get("status")?)?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        parent: None,
    })
}

/// Whether writing `events` ends their run.
pub(crate) fn ends(events: &[PreparedEvent]) -> bool {
    events.iter().any(|event| event.effect.ends().is_some())
}

/// Locks the run's row (`FOR UPDATE`) until the transaction ends and reads its state; with
/// `ending`, locks and reads its parent's first (see the module docs).
pub(crate) async fn lock_run(
    conn: &mut PgConnection,
    id: RunId,
    ending: bool,
) -> Result<Option<RunState>> {
    if !ending {
        let row = sqlx::query(concat!(
            "SELECT ",
            state_columns!(),
            " FROM runs WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
        return row.as_ref().map(decode_state).transpose();
    }
    // Rows are locked in the order they are sorted: the parent (`id = $1` false) first.
    let rows = sqlx::query(concat!(
        "SELECT ",
        state_columns!(),
        " FROM runs WHERE id = $1 OR id = (SELECT parent_run_id FROM runs WHERE id = $1) \
         ORDER BY id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut states = rows.iter().map(decode_state).collect::<Result<Vec<_>>>()?;
    let Some(mut run) = states.pop().filter(|state| state.id == id) else {
        return Ok(None);
    };
    run.parent = states.pop().map(Box::new);
    Ok(Some(run))
}

/// Locks the parent `parent` of a run being created with a history that ends it.
pub(crate) async fn lock_parent(
    conn: &mut PgConnection,
    parent: Option<Uuid>,
) -> Result<Option<Box<RunState>>> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    Ok(lock_run(conn, RunId(parent), false).await?.map(Box::new))
}

/// The locked state of a run that must exist (and its parent's, if `ending`).
pub(crate) async fn state_of(conn: &mut PgConnection, id: RunId, ending: bool) -> Result<RunState> {
    lock_run(conn, id, ending)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(id).into())
}

/// The fencing rule: `worker` holds the lease of a run that has not ended.
pub(crate) async fn fenced(
    conn: &mut PgConnection,
    id: RunId,
    worker: &WorkerId,
    ending: bool,
) -> Result<RunState> {
    let state = state_of(conn, id, ending).await?;
    rules::check_fence(id, state.status, state.lease_owner.as_deref(), worker)?;
    Ok(state)
}

/// The child-run rule: `run` has just ended at `now`; its parent (locked with it) becomes
/// queued and ready now if it is parked.
pub(crate) async fn wake_parent(
    conn: &mut PgConnection,
    run: &RunState,
    now: i64,
    notes: &mut Notes,
) -> Result<()> {
    let Some(parent) = &run.parent else {
        return Ok(());
    };
    if !rules::wakes_parent(parent.status, parent.lease_owner.as_deref()) {
        return Ok(());
    }
    sqlx::query("UPDATE runs SET status = 'queued', ready_at = $2, updated_at = $2 WHERE id = $1")
        .bind(parent.id.0)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    notes.ready(&parent.workflow);
    notes.changed(parent.id);
    Ok(())
}

/// The status of run `id` (not locked: see the module docs), or `RunNotFound`.
pub(crate) async fn status_of(conn: &mut PgConnection, id: RunId) -> Result<RunStatus> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    let status = status.ok_or(StoreError::RunNotFound(id))?;
    Ok(parse_status(&status)?)
}
