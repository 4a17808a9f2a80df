//! The write operations on runs, as SQL inside the writer's open transaction (see `writer`).
//!
//! **Fencing:** every operation that needs the lease locks the run's row with
//! `SELECT … FOR UPDATE` before it writes, in the same transaction (for the common append,
//! in the same statement), and checks owner and status on that locked row. No other
//! transaction, in this process or another, can change the lease between the check and the
//! commit, so a worker that lost its lease cannot commit. Every refusal (`LeaseLost`,
//! `RunEnded`, …) is decided before anything is written.

use std::collections::HashMap;

use cairn_core::{EventRecord, RunStatus};
use cairn_store::{
    ClaimOutcome, ClaimedRun, CreateOutcome, Lease, RunId, StoreError, WorkerId, rules,
};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use crate::{
    alone::{Announce, fetch_rows},
    codec::{
        Effect, LOG_COLUMNS, PreparedEvent, PreparedRun, decode_event, decode_run,
        made_run_created, run_columns,
    },
    end::{self, End},
    error::Result,
    lock::{RunState, ends, fenced, lock_parent, lock_run, state_of, wake_parent},
    notify::{announce_changed, announce_ready},
    waits,
    writer::Notes,
};

/// Appends `events` after the run's last `seq` and applies their effects to the run's row.
/// The run's row must be locked already, by an earlier statement: this statement's snapshot
/// then holds every event committed before (see `append` for why that matters).
pub(crate) async fn write_events(
    conn: &mut PgConnection,
    run: &RunState,
    events: &[PreparedEvent],
    now: i64,
    notes: &mut Notes,
) -> Result<()> {
    if let Some(at) = events
        .iter()
        .position(|event| event.effect.ends().is_some())
        && let Some(status) = events[at].effect.ends()
        && at + 1 < events.len()
    {
        return Err(StoreError::RunEnded {
            run: run.id,
            status,
        }
        .into());
    }
    if end::is_end(events) {
        let end = End {
            id: run.id,
            worker: None,
            events,
            now_ms: now,
        };
        return end::end_run(conn, &end, notes, None).await;
    }
    let (types, keys, payloads) = columns(events);
    sqlx::query(
        "INSERT INTO events (run_id, seq, at, type, step_key, payload) \
         SELECT $1, coalesce((SELECT max(seq) FROM events WHERE run_id = $1), 1) + e.ord, $2, \
             e.type, e.step_key, e.payload \
         FROM UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(type, step_key, payload, ord)",
    )
    .bind(run.id.0)
    .bind(now)
    .bind(&types)
    .bind(&keys)
    .bind(&payloads)
    .execute(&mut *conn)
    .await?;
    for event in events {
        apply_effect(conn, run, event, now, notes).await?;
    }
    notes.changed(run.id);
    Ok(())
}

async fn apply_effect(
    conn: &mut PgConnection,
    run: &RunState,
    event: &PreparedEvent,
    now: i64,
    notes: &mut Notes,
) -> Result<()> {
    match &event.effect {
        Effect::None => {}
        Effect::End {
            status,
            output,
            error,
        } => {
            sqlx::query(
                "UPDATE runs SET status = $2, output = $3, error = $4, finished_at = $5, \
                 lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
            )
            .bind(run.id.0)
            .bind(status.as_str())
            .bind(output)
            .bind(error)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            waits::close_hooks(conn, run.id, now).await?;
            wake_parent(conn, run, now, notes).await?;
        }
        Effect::Requeue => {
            sqlx::query(
                "UPDATE runs SET status = 'queued', output = NULL, error = NULL, finished_at = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL, ready_at = $2 WHERE id = $1",
            )
            .bind(run.id.0)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            notes.ready(&run.workflow);
        }
        Effect::RegisterHook {
            key,
            token,
            schema,
            timeout_at_ms,
        } => {
            let step_key = key.as_str();
            waits::register_hook(conn, run.id, step_key, token, schema, *timeout_at_ms, now)
                .await?;
        }
        Effect::Status(status) => {
            sqlx::query("UPDATE runs SET status = $2 WHERE id = $1")
                .bind(run.id.0)
                .bind(status.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Inserts the run and its first events, unless its id or its idempotency key is taken
/// (`ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the same key to commit
/// or roll back, so a race of two creates with one key yields one run). A create whose
/// history changes nothing but the log is one statement, which announces the new run itself
/// when it runs `alone` (only a plain create may).
pub(crate) async fn create_run(
    conn: &mut PgConnection,
    run: &PreparedRun,
    notes: &mut Notes,
    alone: Option<&Announce<'_>>,
) -> Result<CreateOutcome> {
    // A child created ended wakes its parent: lock that first (see `lock`).
    let parent = if ends(&run.events) {
        lock_parent(conn, run.parent_run_id).await?
    } else {
        None
    };
    let start = rules::new_run_state(run.lease.as_ref(), run.now_ms);
    let owner = start.lease_owner.map(|owner| owner.as_str());
    let (forked_run, forked_step) = run
        .forked_from
        .as_ref()
        .map(|(run, step)| (*run, step.as_str()))
        .unzip();
    // A history that changes nothing but the log (the first step's start) is inserted in the
    // same statement as the run; one with effects after it, by `write_events`.
    let plain = is_plain(run);
    let alone = alone.filter(|_| plain);
    let (types, keys, payloads) = columns(if plain { &run.events } else { &[] });
    let query = sqlx::query(concat!(
        "WITH run AS ( \
             INSERT INTO runs (id, workflow, status, input, idempotency_key, parent_run_id, forked_from_run, \
             forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at, created_at, updated_at, \
             owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $18) ON CONFLICT DO NOTHING \
             RETURNING id, workflow \
         ), history AS ( \
             INSERT INTO events (run_id, seq, at, type, step_key, payload) \
             SELECT run.id, 1 + e.ord, $14, e.type, e.step_key, e.payload \
             FROM run, UNNEST($15::text[], $16::text[], $17::text[]) \
                 WITH ORDINALITY AS e(type, step_key, payload, ord) \
         ), ready AS ( \
             SELECT id, workflow FROM run WHERE $11::text IS NULL \
         ), notified AS ( ",
        announce_changed!("run", "$19", "$20"),
        " UNION ALL ",
        announce_ready!("ready", "$19"),
        " ) SELECT (SELECT count(*) FROM run) AS inserted, (SELECT count(*) FROM notified) AS notified"
    ))
    .bind(run.id.0)
    .bind(&run.workflow)
    .bind(start.status.as_str())
    .bind(&run.input)
    .bind(&run.idempotency_key)
    .bind(run.parent_run_id)
    .bind(forked_run)
    .bind(forked_step)
    .bind(&run.trigger)
    .bind(i64::from(start.executions))
    .bind(owner)
    .bind(start.lease_expires_at_ms)
    .bind(start.ready_at_ms)
    .bind(run.now_ms)
    .bind(&types)
    .bind(&keys)
    .bind(&payloads)
    .bind(&run.owner)
    .bind(alone.map(|alone| alone.schema))
    .bind(alone.map(|alone| alone.instance));
    let rows = fetch_rows(conn, query).await?;
    let inserted: i64 = match rows.first() {
        Some(row) => row.try_get("inserted")?,
        None => 0,
    };
    if inserted == 0 {
        return Ok(CreateOutcome {
            run_id: existing_run(conn, run).await?,
            created: false,
        });
    }
    let state = RunState {
        id: run.id,
        workflow: run.workflow.clone(),
        status: start.status,
        lease_owner: owner.map(str::to_owned),
        lease_expires_at: start.lease_expires_at_ms,
        parent,
    };
    if plain {
        notes.changed(run.id);
    } else {
        write_events(conn, &state, &run.events, run.now_ms, notes).await?;
    }
    if run.lease.is_none() {
        notes.ready(&run.workflow);
    }
    Ok(CreateOutcome {
        run_id: run.id,
        created: true,
    })
}

/// Whether `run`'s history changes nothing but the log (the first step's start): its create
/// is then one statement.
pub(crate) fn is_plain(run: &PreparedRun) -> bool {
    run.events
        .iter()
        .all(|event| matches!(event.effect, Effect::None))
}

/// The run a conflicting create collided with: the idempotency key's, else the same id.
async fn existing_run(conn: &mut PgConnection, run: &PreparedRun) -> Result<RunId> {
    if let Some(key) = &run.idempotency_key {
        let found: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM runs WHERE workflow = $1 AND idempotency_key = $2")
                .bind(&run.workflow)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(found) = found {
            return Ok(RunId(found));
        }
    }
    Ok(run.id)
}

/// Runs' whole logs, by run, in order (one query; `RunCreated` made from the row where it
/// is not stored).
async fn logs_of(conn: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<EventRecord>>> {
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM events WHERE run_id = ANY($1) UNION ALL {} ORDER BY run_id, seq",
        made_run_created!()
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut logs: HashMap<Uuid, Vec<EventRecord>> = HashMap::new();
    for row in &rows {
        let run: Uuid = row.try_get("run_id")?;
        logs.entry(run).or_default().push(decode_event(row)?);
    }
    Ok(logs)
}

/// Makes `lease` the (locked) run's lease and returns the run with its log.
async fn take_lease(
    conn: &mut PgConnection,
    id: RunId,
    lease: &Lease,
    now: i64,
) -> Result<ClaimedRun> {
    let row = sqlx::query(concat!(
        "UPDATE runs SET status = 'running', lease_owner = $2, lease_expires_at = $3, ready_at = $3, \
         executions = executions + 1, updated_at = $4 WHERE id = $1 RETURNING ",
        run_columns!()
    ))
    .bind(id.0)
    .bind(&lease.worker.0)
    .bind(lease.expires_at_ms)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let run = decode_run(&row)?;
    let events = logs_of(conn, &[id.0])
        .await?
        .remove(&id.0)
        .unwrap_or_default();
    Ok(ClaimedRun { run, events })
}

pub(crate) async fn claim_run(
    conn: &mut PgConnection,
    id: RunId,
    lease: &Lease,
    now: i64,
    notes: &mut Notes,
) -> Result<ClaimOutcome> {
    let Some(state) = lock_run(conn, id, false).await? else {
        return Ok(ClaimOutcome::NotFound);
    };
    let owner = state.lease_owner.as_deref();
    if let Err(refusal) =
        rules::check_claim(state.status, owner, state.lease_expires_at, lease, now)
    {
        return Ok(refusal.into());
    }
    let claimed = take_lease(conn, id, lease, now).await?;
    notes.changed(id);
    Ok(ClaimOutcome::Claimed(Box::new(claimed)))
}

/// The `claim_ready` statement: leases to `$4` until `$5` the runs `cairn_ready_front` locked,
/// up to `$3` ready runs of workflows `$2` at `$1` in `ready_at` order (schema v8). The
/// function reads with a snapshot of its own, taken after the statement's: a run created in
/// between, which it may lock, is not seen by the `UPDATE`, so it stays queued for the next
/// claim (unleased, and unlocked once this transaction ends).
pub(crate) const CLAIM_READY_SQL: &str = concat!(
    "WITH picked AS (SELECT * FROM cairn_ready_front($1, $2, $3)) \
     UPDATE runs SET status = 'running', lease_owner = $4, lease_expires_at = $5, ready_at = $5, \
         executions = executions + 1, updated_at = $1 \
     FROM picked WHERE id = picked_id \
     RETURNING was_ready_at, picked_n, ",
    run_columns!()
);

/// Claims up to `limit` ready runs of `workflows`, oldest `ready_at` first, in one statement:
/// the selection locks its rows `FOR UPDATE SKIP LOCKED`, so concurrent claimers (in any
/// process) pass over each other's picks instead of waiting or sharing them.
pub(crate) async fn claim_ready(
    conn: &mut PgConnection,
    workflows: &[String],
    lease: &Lease,
    now: i64,
    limit: usize,
    notes: &mut Notes,
) -> Result<Vec<ClaimedRun>> {
    if workflows.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = sqlx::query(CLAIM_READY_SQL)
        .bind(now)
        .bind(workflows)
        .bind(limit)
        .bind(&lease.worker.0)
        .bind(lease.expires_at_ms)
        .fetch_all(&mut *conn)
        .await?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        let order: (i64, i64) = (row.try_get("was_ready_at")?, row.try_get("picked_n")?);
        runs.push((order, decode_run(row)?));
    }
    runs.sort_by_key(|(order, _)| *order);
    let ids: Vec<Uuid> = runs.iter().map(|(_, run)| run.run_id.0).collect();
    for (_, run) in &runs {
        notes.changed(run.run_id);
    }
    let mut logs = logs_of(conn, &ids).await?;
    Ok(runs
        .into_iter()
        .map(|(_, run)| {
            let events = logs.remove(&run.run_id.0).unwrap_or_default();
            ClaimedRun { run, events }
        })
        .collect())
}

pub(crate) async fn renew_lease(conn: &mut PgConnection, id: RunId, lease: &Lease) -> Result<()> {
    fenced(conn, id, &lease.worker, false).await?;
    sqlx::query("UPDATE runs SET lease_expires_at = $2, ready_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(lease.expires_at_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn release_lease(
    conn: &mut PgConnection,
    id: RunId,
    worker: &WorkerId,
    ready_at: i64,
    notes: &mut Notes,
) -> Result<()> {
    let state = fenced(conn, id, worker, false).await?;
    sqlx::query(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, ready_at = $2, \
         status = CASE status WHEN 'running' THEN 'queued' ELSE status END WHERE id = $1",
    )
    .bind(id.0)
    .bind(ready_at)
    .execute(&mut *conn)
    .await?;
    notes.ready(&state.workflow);
    notes.changed(id);
    Ok(())
}

/// Appends `events`, some of which change the run (an end, a status, a hook), fenced; a
/// run's common end is one statement (see `end`), which announces itself when `alone`.
pub(crate) async fn append(
    conn: &mut PgConnection,
    id: RunId,
    worker: &WorkerId,
    events: &[PreparedEvent],
    now: i64,
    notes: &mut Notes,
    alone: Option<&Announce<'_>>,
) -> Result<()> {
    // Appends that change nothing but the log take `append::append_steps` (see `writer`).
    if end::is_end(events) {
        let end = End {
            id,
            worker: Some(worker),
            events,
            now_ms: now,
        };
        return end::end_run(conn, &end, notes, alone).await;
    }
    let state = fenced(conn, id, worker, ends(events)).await?;
    write_events(conn, &state, events, now, notes).await
}

/// The `events` columns of `events`, as arrays for `UNNEST`.
pub(crate) fn columns(events: &[PreparedEvent]) -> (Vec<&str>, Vec<Option<&str>>, Vec<&str>) {
    let types = events.iter().map(|event| event.type_name).collect();
    let keys = events.iter().map(|e| e.step_key.as_deref()).collect();
    let payloads = events.iter().map(|event| event.payload.as_str()).collect();
    (types, keys, payloads)
}

/// Appends `canceled` (a prepared `RunCanceled`) to a run that has not ended, whoever holds
/// its lease; returns the status it had.
pub(crate) async fn cancel_run(
    conn: &mut PgConnection,
    id: RunId,
    canceled: &PreparedEvent,
    now: i64,
    notes: &mut Notes,
) -> Result<RunStatus> {
    let state = state_of(conn, id, true).await?;
    rules::check_not_ended(id, state.status)?;
    write_events(conn, &state, std::slice::from_ref(canceled), now, notes).await?;
    Ok(state.status)
}

/// Appends `retried` (a prepared `RunRetried`) to a failed or canceled run.
pub(crate) async fn retry_run(
    conn: &mut PgConnection,
    id: RunId,
    retried: &PreparedEvent,
    now: i64,
    notes: &mut Notes,
) -> Result<()> {
    let state = state_of(conn, id, false).await?;
    rules::check_retryable(id, state.status)?;
    write_events(conn, &state, std::slice::from_ref(retried), now, notes).await
}
