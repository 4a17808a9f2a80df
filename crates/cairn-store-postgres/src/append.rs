//! The hot path: appending events for any number of runs in one statement: events that
//! change nothing but their runs' logs (step starts, attempts, completions) and, inside a
//! batch, a run's common end (its last step's result, then the event that ends it; see
//! `end`) of a run without a parent.
//!
//! The statement locks the runs' rows (`FOR UPDATE`, in id order, so two processes never wait
//! for each other in a cycle), keeps the appends whose worker holds its run's lease on a run
//! that has not ended (the fence), inserts their events after each run's last `seq`, ends the
//! runs whose append ends them (closing their pending hooks), and returns every run's status
//! and owner, from which each refused append learns why. A refused append inserts nothing, so
//! the others stand and the batch needs no rollback.
//!
//! **A child's end is deferred.** Ending a child run locks its parent first and may wake it
//! (see `lock`). The statement leaves such a run's row alone (not even locked: its
//! `parent_run_id` never changes, so the filter decides before the lock) and answers it
//! `deferred`; the batch ends it with `end::end_run` right after, in the same transaction.
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
    end,
    error::Result,
    notify::announce_changed,
    writer::{Notes, Op},
};

/// One append of [`append_steps`]: an [`Op::Append`] whose events change nothing but the
/// log, or (gathered in a batch) that are a run's common end (`end::is_end`).
pub(crate) struct StepAppend<'a> {
    pub(crate) id: RunId,
    worker: &'a WorkerId,
    events: &'a [PreparedEvent],
    now_ms: i64,
    /// The run's end, when the events end it.
    end: Option<Ending<'a>>,
}

/// How an append ends its run: the columns `end::END_RUN` sets.
struct Ending<'a> {
    status: &'static str,
    output: Option<&'a str>,
    error: Option<&'a str>,
}

/// What [`append_steps`] answers for one append.
pub(crate) enum Appended {
    /// Appended, or refused (`LeaseLost`, `RunEnded`, `RunNotFound`: nothing written).
    Done(StoreResult<()>),
    /// A child's end, left for `end::end_run` (see the module docs).
    Deferred,
}

impl<'a> StepAppend<'a> {
    /// `op` as a step append, if its events change nothing but the log.
    pub(crate) fn of(op: &'a Op) -> Option<StepAppend<'a>> {
        StepAppend::gathered(op).filter(|step| step.end.is_none())
    }

    /// `op` as an append a batch gathers: a step append or a run's common end.
    pub(crate) fn gathered(op: &'a Op) -> Option<StepAppend<'a>> {
        let Op::Append {
            id,
            worker,
            events,
            now_ms,
        } = op
        else {
            return None;
        };
        let end = if events
            .iter()
            .all(|event| matches!(event.effect, Effect::None))
        {
            None
        } else if end::is_end(events) {
            match &events.last()?.effect {
                Effect::End {
                    status,
                    output,
                    error,
                } => Some(Ending {
                    status: status.as_str(),
                    output: output.as_deref(),
                    error: error.as_deref(),
                }),
                _ => return None,
            }
        } else {
            return None;
        };
        Some(StepAppend {
            id: *id,
            worker,
            events,
            now_ms: *now_ms,
            end,
        })
    }
}

/// SQL: the append statement, from its `op` CTE's source and columns (`run_id`, `worker`,
/// `at`, …), the filter of the runs it locks, more columns of `op` its `holder` CTE keeps
/// (after a comma), the CTEs that end runs (after `appended`, starting with a comma) and the
/// expression of its `deferred` column. Parameters `$1`–`$10` are those of [`APPEND_STEPS`].
macro_rules! append_statement {
    ($op:literal, $runs:literal, $kept:literal, $ends:literal, $deferred:literal) => {
        concat!(
            "WITH op AS ( SELECT * FROM ",
            $op,
            " ), run AS ( \
                SELECT id, status, lease_owner FROM runs WHERE id = ANY($1) ",
            $runs,
            " ORDER BY id FOR UPDATE \
            ), holder AS ( \
                SELECT op.op, op.at, run.id",
            $kept,
            " FROM op JOIN run ON run.id = op.run_id \
                WHERE run.lease_owner = op.worker \
                    AND run.status NOT IN ('succeeded', 'failed', 'canceled') \
            ), base AS ( \
                SELECT holder.op, holder.at, holder.id, \
                    coalesce((SELECT max(seq) FROM events WHERE events.run_id = holder.id), 1) \
                        AS last_seq \
                FROM holder \
            ), appended AS ( \
                INSERT INTO events (run_id, seq, at, type, step_key, payload) \
                SELECT base.id, base.last_seq + e.ord, base.at, e.type, e.step_key, e.payload \
                FROM UNNEST($4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[]) \
                    AS e(op, ord, type, step_key, payload) \
                JOIN base ON base.op = e.op \
            )",
            $ends,
            ", notified AS ( ",
            announce_changed!("holder", "$9", "$10"),
            " ) \
            SELECT op.op, run.status, run.lease_owner, ",
            $deferred,
            " AS deferred, (SELECT count(*) FROM notified) AS notified \
            FROM op LEFT JOIN run ON run.id = op.run_id ORDER BY op.op"
        )
    };
}

/// Step appends: `$1` the runs, `$2` their workers, `$3` their times; `$4`–`$8` the events
/// (the append each belongs to, its place in it, type, step key, payload); `$9`, `$10` the
/// schema and instance announcing the changes when the statement runs alone.
pub(crate) const APPEND_STEPS: &str = append_statement!(
    "UNNEST($1::uuid[], $2::text[], $3::bigint[]) WITH ORDINALITY AS o(run_id, worker, at, op)",
    "",
    "",
    "",
    "false"
);

/// Step appends and runs' ends, in a batch: [`APPEND_STEPS`]'s parameters, then `$11`–`$13`
/// each append's end (status, output, error; NULL for a step) and `$14` the runs that end,
/// whose rows it leaves alone if they have a parent (see the module docs).
pub(crate) const APPEND_AND_END: &str = append_statement!(
    "UNNEST($1::uuid[], $2::text[], $3::bigint[], $11::text[], $12::text[], $13::text[]) \
        WITH ORDINALITY AS o(run_id, worker, at, end_status, output, error, op)",
    "AND (parent_run_id IS NULL OR NOT id = ANY($14))",
    ", op.end_status, op.output, op.error",
    ", closed AS ( \
        UPDATE hooks SET state = 'closed', closed_at = holder.at FROM holder \
        WHERE hooks.run_id = holder.id AND holder.end_status IS NOT NULL \
            AND hooks.state = 'pending' \
    ), ended AS ( \
        UPDATE runs SET status = holder.end_status, output = holder.output, \
            error = holder.error, finished_at = holder.at, lease_owner = NULL, \
            lease_expires_at = NULL \
        FROM holder WHERE runs.id = holder.id AND holder.end_status IS NOT NULL \
    )",
    "op.end_status IS NOT NULL AND run.id IS NULL"
);

/// Appends each of `steps` (runs all different) if its worker holds the lease, in one
/// statement, which also sends the change notifications when it runs `alone` (only step
/// appends may: a child's end would be deferred). The outer error is the statement's; the
/// inner answers are each append's, in order.
pub(crate) async fn append_steps(
    conn: &mut PgConnection,
    steps: &[StepAppend<'_>],
    notes: &mut Notes,
    alone: Option<&Announce<'_>>,
) -> Result<Vec<Appended>> {
    let ids: Vec<Uuid> = steps.iter().map(|step| step.id.0).collect();
    let workers: Vec<&str> = steps.iter().map(|step| &*step.worker.0).collect();
    let ats: Vec<i64> = steps.iter().map(|step| step.now_ms).collect();
    let count = steps.iter().map(|step| step.events.len()).sum();
    let mut ops = Vec::with_capacity(count);
    let mut ords = Vec::with_capacity(count);
    let mut types = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    for (op, step) in (1_i64..).zip(steps) {
        for (ord, event) in (1_i64..).zip(step.events) {
            ops.push(op);
            ords.push(ord);
            types.push(event.type_name);
            keys.push(event.step_key.as_deref());
            payloads.push(event.payload.as_str());
        }
    }
    let ends = steps.iter().any(|step| step.end.is_some());
    let query = sqlx::query(if ends { APPEND_AND_END } else { APPEND_STEPS })
        .bind(&ids)
        .bind(&workers)
        .bind(&ats)
        .bind(&ops)
        .bind(&ords)
        .bind(&types)
        .bind(&keys)
        .bind(&payloads)
        .bind(alone.map(|alone| alone.schema))
        .bind(alone.map(|alone| alone.instance));
    let query = if ends {
        let endings = steps.iter().map(|step| step.end.as_ref());
        let statuses: Vec<Option<&str>> = endings.clone().map(|end| Some(end?.status)).collect();
        let outputs: Vec<Option<&str>> = endings.clone().map(|end| end?.output).collect();
        let errors: Vec<Option<&str>> = endings.map(|end| end?.error).collect();
        let ending: Vec<Uuid> = steps
            .iter()
            .filter(|step| step.end.is_some())
            .map(|step| step.id.0)
            .collect();
        query.bind(statuses).bind(outputs).bind(errors).bind(ending)
    } else {
        query
    };
    let rows = fetch_rows(conn, query).await?;
    let mut outcomes = Vec::with_capacity(steps.len());
    for (step, row) in steps.iter().zip(&rows) {
        if row.try_get::<bool, _>("deferred")? {
            outcomes.push(Appended::Deferred);
            continue;
        }
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
        outcomes.push(Appended::Done(outcome));
    }
    Ok(outcomes)
}
