//! A run's common end (its last step's result, then the event that ends it) in one
//! statement: lock the run's row and its parent's (parent first, see `lock`), keep the run
//! if it has not ended and, for a worker's append, if the worker holds its lease (the fence),
//! insert the events, close its pending hooks, end its row, and wake its parent if the parent
//! is parked (`rules::wakes_parent`: sleeping or waiting, no lease). It returns the run's
//! status and owner as locked, from which a refusal learns why, and the woken parent.
//!
//! The rows' state is read from the locking read, never from the statement's snapshot: the
//! snapshot is taken before the statement waits for the locks, so a parent parked meanwhile
//! by another process (see `lock`) is parked in the locked row only. The updates find their
//! rows by id, and PostgreSQL updates the latest version of a row changed since the snapshot.
//!
//! A refused end writes nothing. As with step appends (see `append`), the statement's
//! snapshot may miss an event another process committed while it waited for the run's row:
//! the `events` key refuses the insert and the writer runs the statement again.

use cairn_core::RunStatus;
use cairn_store::{RunId, StoreError, WorkerId, rules};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{
    alone::{Announce, fetch_rows},
    codec::{Effect, PreparedEvent, parse_status},
    error::Result,
    notify::{announce_changed, announce_ready},
    ops::columns,
    writer::Notes,
};

pub(crate) const END_RUN: &str = concat!(
    "\
WITH locked AS ( \
    SELECT id, status, lease_owner FROM runs \
    WHERE id = $1 OR id = (SELECT parent_run_id FROM runs WHERE id = $1) \
    ORDER BY id = $1 FOR UPDATE \
), run AS ( \
    SELECT id, status, lease_owner FROM locked WHERE id = $1 \
), ok AS ( \
    SELECT id FROM run WHERE status NOT IN ('succeeded', 'failed', 'canceled') \
        AND ($9::text IS NULL OR lease_owner = $9) \
), appended AS ( \
    INSERT INTO events (run_id, seq, at, type, step_key, payload) \
    SELECT ok.id, coalesce((SELECT max(seq) FROM events WHERE run_id = $1), 1) + e.ord, $2, \
        e.type, e.step_key, e.payload \
    FROM ok, UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(type, step_key, payload, ord) \
), closed AS ( \
    UPDATE hooks SET state = 'closed', closed_at = $2 \
    WHERE run_id = $1 AND state = 'pending' AND EXISTS (SELECT 1 FROM ok) \
), ended AS ( \
    UPDATE runs SET status = $6, output = $7, error = $8, finished_at = $2, \
        lease_owner = NULL, lease_expires_at = NULL \
    WHERE id = $1 AND EXISTS (SELECT 1 FROM ok) \
), woken AS ( \
    UPDATE runs SET status = 'queued', ready_at = $2, updated_at = $2 \
    WHERE id = ( \
        SELECT locked.id FROM locked, ok WHERE locked.id <> $1 \
            AND locked.status IN ('sleeping', 'waiting') AND locked.lease_owner IS NULL \
    ) \
    RETURNING id, workflow \
), notified AS ( ",
    announce_changed!("ok", "$10", "$11"),
    " UNION ALL ",
    announce_changed!("woken", "$10", "$11"),
    " UNION ALL ",
    announce_ready!("woken", "$10"),
    " ) \
SELECT run.status, run.lease_owner, woken.id AS woken, woken.workflow AS woken_workflow, \
    (SELECT count(*) FROM notified) AS notified \
FROM (SELECT 1) AS one LEFT JOIN run ON true LEFT JOIN woken ON true"
);

/// Whether `events` are a run's common end: events that change nothing but the log, then
/// one that ends the run.
pub(crate) fn is_end(events: &[PreparedEvent]) -> bool {
    events.split_last().is_some_and(|(last, rest)| {
        matches!(last.effect, Effect::End { .. })
            && rest
                .iter()
                .all(|event| matches!(event.effect, Effect::None))
    })
}

/// A run's end as [`end_run`] writes it.
pub(crate) struct End<'a> {
    pub(crate) id: RunId,
    /// The appending worker, who must hold the lease; `None` for a write that needs no lease
    /// (a cancel, which locked and checked the run in an earlier statement).
    pub(crate) worker: Option<&'a WorkerId>,
    /// Events as [`is_end`] accepts them.
    pub(crate) events: &'a [PreparedEvent],
    pub(crate) now_ms: i64,
}

/// Ends the run as the module docs say, announcing it (and the woken parent) itself when it
/// runs `alone`. `RunNotFound`, `RunEnded` or `LeaseLost` when refused (nothing written).
pub(crate) async fn end_run(
    conn: &mut PgConnection,
    end: &End<'_>,
    notes: &mut Notes,
    alone: Option<&Announce<'_>>,
) -> Result<()> {
    let Some(Effect::End {
        status,
        output,
        error,
    }) = end.events.last().map(|event| &event.effect)
    else {
        return Err(
            StoreError::Corrupt("a run's end without an ending event (a bug)".into()).into(),
        );
    };
    let (types, keys, payloads) = columns(end.events);
    let query = sqlx::query(END_RUN)
        .bind(end.id.0)
        .bind(end.now_ms)
        .bind(&types)
        .bind(&keys)
        .bind(&payloads)
        .bind(status.as_str())
        .bind(output)
        .bind(error)
        .bind(end.worker.map(|worker| worker.as_str()))
        .bind(alone.map(|alone| alone.schema))
        .bind(alone.map(|alone| alone.instance));
    let rows = fetch_rows(conn, query).await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("ending a run answered no row (a bug)".into()))?;
    let Some(locked) = row.try_get::<Option<&str>, _>("status")? else {
        return Err(StoreError::RunNotFound(end.id).into());
    };
    let locked: RunStatus = parse_status(locked)?;
    let owner: Option<&str> = row.try_get("lease_owner")?;
    match end.worker {
        Some(worker) => rules::check_fence(end.id, locked, owner, worker)?,
        None => rules::check_not_ended(end.id, locked)?,
    }
    notes.changed(end.id);
    let woken: Option<Uuid> = row.try_get("woken")?;
    if let Some(parent) = woken {
        notes.ready(row.try_get("woken_workflow")?);
        notes.changed(RunId(parent));
    }
    Ok(())
}
