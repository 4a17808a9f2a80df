//! The hot path: appending events that change nothing but their runs' logs (step starts,
//! attempts, completions), for any number of runs in one statement.
//!
//! The statement locks the runs' rows (`FOR UPDATE`, in id order, so two processes never wait
//! for each other in a cycle), keeps the appends whose worker holds its run's lease on a run
//! that has not ended (the fence), inserts their events after each run's last `seq`, and
//! returns every run's status and owner, from which each refused append learns why. A refused
//! append inserts nothing, so the others stand and the batch needs no rollback.
//!
//! **The next `seq`** is the run's highest stored one (`1`, its made `RunCreated`, when it has
//! none), read in the statement. A statement's snapshot is taken before it waits for a lock:
//! if another process appended to the run (a hook resumed, a cancel refused nothing yet) and
//! committed while this statement waited for the row, the snapshot misses that event, and the
//! insert fails on the `events` key. That is a race, not a conflict: the writer runs the
//! command again in a savepoint (or, alone, as a new statement), whose new statement sees the
//! event (see `Error::is_seq_race`).

use cairn_store::{RunId, StoreError, StoreResult, WorkerId, rules};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{
    alone::{Announce, fetch_rows},
    codec::{Effect, PreparedEvent, parse_status},
    error::Result,
    notify::announce_changed,
    writer::{Notes, Op},
};

/// One step append: an [`Op::Append`] whose events change nothing but the log.
pub(crate) struct StepAppend<'a> {
    pub(crate) id: RunId,
    worker: &'a WorkerId,
    events: &'a [PreparedEvent],
    now_ms: i64,
}

impl<'a> StepAppend<'a> {
    /// `op` as a step append, if it is one.
    pub(crate) fn of(op: &'a Op) -> Option<StepAppend<'a>> {
        match op {
            Op::Append {
                id,
                worker,
                events,
                now_ms,
            } if events
                .iter()
                .all(|event| matches!(event.effect, Effect::None)) =>
            {
                Some(StepAppend {
                    id: *id,
                    worker,
                    events,
                    now_ms: *now_ms,
                })
            }
            _ => None,
        }
    }
}

pub(crate) const APPEND_STEPS: &str = concat!(
    "\
WITH op AS ( \
    SELECT * FROM UNNEST($1::uuid[], $2::text[]) WITH ORDINALITY AS o(run_id, worker, op) \
), run AS ( \
    SELECT id, status, lease_owner FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE \
), holder AS ( \
    SELECT op.op, run.id FROM op JOIN run ON run.id = op.run_id \
    WHERE run.lease_owner = op.worker AND run.status NOT IN ('succeeded', 'failed', 'canceled') \
), base AS ( \
    SELECT holder.op, holder.id, \
        coalesce((SELECT max(seq) FROM events WHERE events.run_id = holder.id), 1) AS last_seq \
    FROM holder \
), appended AS ( \
    INSERT INTO events (run_id, seq, at, type, step_key, payload) \
    SELECT base.id, base.last_seq + e.ord, e.at, e.type, e.step_key, e.payload \
    FROM UNNEST($3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[]) \
        AS e(op, ord, at, type, step_key, payload) \
    JOIN base ON base.op = e.op \
), notified AS ( ",
    announce_changed!("holder", "$9", "$10"),
    " ) \
SELECT op.op, run.status, run.lease_owner, (SELECT count(*) FROM notified) AS notified \
FROM op LEFT JOIN run ON run.id = op.run_id ORDER BY op.op"
);

/// Appends each of `steps` (runs all different) if its worker holds the lease, in one
/// statement, which also sends the change notifications when it runs `alone`. The outer
/// error is the statement's; the inner results are each step's (`LeaseLost`, `RunEnded`,
/// `RunNotFound` for the refused, who wrote nothing and announce nothing).
pub(crate) async fn append_steps(
    conn: &mut PgConnection,
    steps: &[StepAppend<'_>],
    notes: &mut Notes,
    alone: Option<&Announce<'_>>,
) -> Result<Vec<StoreResult<()>>> {
    let ids: Vec<Uuid> = steps.iter().map(|step| step.id.0).collect();
    let workers: Vec<&str> = steps.iter().map(|step| &*step.worker.0).collect();
    let count = steps.iter().map(|step| step.events.len()).sum();
    let mut ops = Vec::with_capacity(count);
    let mut ords = Vec::with_capacity(count);
    let mut ats = Vec::with_capacity(count);
    let mut types = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    for (op, step) in (1_i64..).zip(steps) {
        for (ord, event) in (1_i64..).zip(step.events) {
            ops.push(op);
            ords.push(ord);
            ats.push(step.now_ms);
            types.push(event.type_name);
            keys.push(event.step_key.as_deref());
            payloads.push(event.payload.as_str());
        }
    }
    let query = sqlx::query(APPEND_STEPS)
        .bind(&ids)
        .bind(&workers)
        .bind(&ops)
        .bind(&ords)
        .bind(&ats)
        .bind(&types)
        .bind(&keys)
        .bind(&payloads)
        .bind(alone.map(|alone| alone.schema))
        .bind(alone.map(|alone| alone.instance));
    let rows = fetch_rows(conn, query).await?;
    let mut outcomes = Vec::with_capacity(steps.len());
    for (step, row) in steps.iter().zip(&rows) {
        let status: Option<&str> = row.try_get("status")?;
        let outcome = match status {
            None => Err(StoreError::RunNotFound(step.id)),
            Some(status) => {
                let owner: Option<&str> = row.try_get("lease_owner")?;
                rules::check_fence(step.id, parse_status(status)?, owner, step.worker)
            }
        };
        if outcome.is_ok() {
            notes.changed(step.id);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
