//! The write operations, as SQL on the writer's connection inside its open transaction
//! (each in its own savepoint, or refusing only before it writes: see `writer`). Every
//! check-then-write here is safe because the transaction is `BEGIN IMMEDIATE`: no other
//! connection, in this process or another, writes between the check and the write.

use cairn_core::RunStatus;
use cairn_store::{CreateOutcome, Lease, RunId, StoreError, WorkerId, rules};
use rusqlite::{Connection, OptionalExtension, ToSql, params};

use crate::{
    codec::{
        Effect, PreparedEvents, PreparedRun, RawClaimOutcome, RawClaimed, Result, last_seq_of,
        parse_id, parse_status,
    },
    held::{Hot, Sql},
    read::{load_events, raw_run},
    run_cache::RunCache,
};

/// The seq of a run's `RunCreated`, which its row stands for (schema v8).
pub(crate) const CREATED_SEQ: i64 = 1;

/// What a write changed beyond its answer: the runs (for the change watches, collected only
/// while someone watches) and the parents its ends woke (which the run cache forgets).
#[derive(Debug, Default)]
pub(crate) struct Changed {
    /// Whether to collect `runs`: someone watches the store's changes.
    pub(crate) watching: bool,
    /// The runs changed, in the order written (a run may repeat).
    pub(crate) runs: Vec<RunId>,
    /// The parents woken by their child's end, not yet forgotten by the run cache.
    pub(crate) woken: Vec<RunId>,
}

impl Changed {
    /// A collector of changed runs if `watching`, else of woken parents only.
    pub(crate) fn new(watching: bool) -> Changed {
        Changed {
            watching,
            ..Changed::default()
        }
    }

    /// Run `id` changed.
    pub(crate) fn run(&mut self, id: RunId) {
        if self.watching {
            self.runs.push(id);
        }
    }

    /// Makes `runs` forget the parents woken since the last call (their rows changed).
    pub(crate) fn forget_woken(&mut self, runs: &mut RunCache) {
        for parent in self.woken.drain(..) {
            runs.forget(parent);
        }
    }
}

/// What the fencing checks need to know about a run, and where its row is.
pub(crate) struct RunState {
    /// The row's `rowid`: updates find the row by it, with no seek in the `id` index.
    pub(crate) rowid: i64,
    pub(crate) status: RunStatus,
    pub(crate) lease_owner: Option<WorkerId>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) last_seq: i64,
    /// Whether the run may have pending hooks: false only when the writer knows it
    /// registered none (it created the run and saw every event since), so its end need not
    /// look for hooks to close.
    pub(crate) may_have_hooks: bool,
    /// The run that started this one as a child step: its end may wake it.
    pub(crate) parent: Option<RunId>,
}

fn load_state(conn: &Connection, key: &str) -> Result<Option<RunState>> {
    let mut statement = conn.prepare_cached(concat!(
        "SELECT rowid, status, lease_owner, lease_expires_at, parent_run_id, ",
        last_seq_of!("runs.id"),
        " FROM runs WHERE id = ?1"
    ))?;
    let row = statement
        .query_row([key], |row| {
            Ok((
                row.get(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get(5)?,
            ))
        })
        .optional()?;
    let Some((rowid, status, lease_owner, lease_expires_at, parent, last_seq)) = row else {
        return Ok(None);
    };
    Ok(Some(RunState {
        rowid,
        status: parse_status(&status)?,
        lease_owner: lease_owner.map(|owner| WorkerId(owner.into())),
        lease_expires_at,
        last_seq,
        may_have_hooks: true,
        parent: parent.as_deref().map(parse_id).transpose()?,
    }))
}

impl RunState {
    /// The run's row, `key` being its id as text.
    pub(crate) fn row<'a>(&self, key: &'a str) -> RunRow<'a> {
        RunRow {
            key,
            rowid: self.rowid,
            may_have_hooks: self.may_have_hooks,
            parent: self.parent,
        }
    }
}

/// A run's row: its id as text (what `events` and `hooks` rows name) and its `rowid`.
#[derive(Clone, Copy)]
pub(crate) struct RunRow<'a> {
    pub(crate) key: &'a str,
    pub(crate) rowid: i64,
    /// See [`RunState::may_have_hooks`].
    pub(crate) may_have_hooks: bool,
    /// See [`RunState::parent`].
    pub(crate) parent: Option<RunId>,
}

pub(crate) fn state_of(conn: &Connection, id: RunId, key: &str) -> Result<RunState> {
    load_state(conn, key)?.ok_or_else(|| StoreError::RunNotFound(id).into())
}

/// The fencing rule: `worker` holds the lease of a run that has not ended.
pub(crate) fn fenced(
    conn: &Connection,
    id: RunId,
    key: &str,
    worker: &WorkerId,
) -> Result<RunState> {
    let state = state_of(conn, id, key)?;
    rules::check_fence(
        id,
        state.status,
        state.lease_owner.as_ref().map(WorkerId::as_str),
        worker,
    )?;
    Ok(state)
}

/// Appends `events` after `last_seq`, as one row, and applies their effects to the run's row.
/// Refuses (an event after the run's end) before writing anything.
pub(crate) fn write_events(
    conn: &Sql<'_>,
    id: RunId,
    run: RunRow<'_>,
    last_seq: i64,
    events: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<()> {
    check_order(id, events)?;
    record_events(conn, id, run, last_seq, events, now, changed)
}

/// Inserts the row holding `events` (numbered after `last_seq`) and applies their effects;
/// the caller has checked their order. The run's row is rewritten only by an effect: its
/// `last_seq` and `updated_at` as read come from this row (see schema v7).
#[allow(
    clippy::too_many_arguments,
    reason = "the writer's hot path: a struct would be built and taken apart per write"
)]
fn record_events(
    conn: &Sql<'_>,
    id: RunId,
    run: RunRow<'_>,
    last_seq: i64,
    events: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<()> {
    let mut run = run;
    for effect in &events.effects {
        // A hook registered here is one an end further on must close.
        run.may_have_hooks |= matches!(effect, Effect::RegisterHook { .. });
        apply_effect(conn, run, effect, now, changed)?;
    }
    changed.run(id);
    if events.count > 0 {
        conn.execute(
            Hot::InsertEvents,
            params![
                run.key,
                last_seq + 1,
                now,
                events.types,
                events.step_key,
                events.count,
                events.payload
            ],
        )?;
    }
    Ok(())
}

/// Refuses `events` if any follows one that ends the run: checked before anything is
/// written, so the refusal needs no undo.
fn check_order(id: RunId, events: &PreparedEvents) -> Result<()> {
    match events.event_after_end {
        Some(status) => Err(StoreError::RunEnded { run: id, status }.into()),
        None => Ok(()),
    }
}

/// Whether writing `events` can fail only by refusing before it writes anything, or on an
/// SQL failure that breaks the whole write batch anyway (I/O, a full disk): true unless one
/// registers a hook, whose insert could meet a taken token. The writer runs such writes
/// without a savepoint (see `writer::unguarded`).
pub(crate) fn refuses_only_before_writing(events: &PreparedEvents) -> bool {
    !events
        .effects
        .iter()
        .any(|effect| matches!(effect, Effect::RegisterHook { .. }))
}

/// Applies one event's effect on its run (and the run's hooks, and its parked parent).
fn apply_effect(
    conn: &Sql<'_>,
    run: RunRow<'_>,
    effect: &Effect,
    now: i64,
    changed: &mut Changed,
) -> Result<()> {
    match effect {
        Effect::None => {}
        Effect::End {
            status,
            output,
            error,
        } => {
            conn.execute(
                Hot::EndRun,
                params![run.rowid, status.as_str(), output, error, now],
            )?;
            if run.may_have_hooks {
                crate::waits::close_hooks(conn, run.key, now)?;
            }
            if let Some(parent) = run.parent {
                wake_parent(conn, parent, now, changed)?;
            }
        }
        Effect::Requeue => {
            conn.prepare_cached(
                "UPDATE runs SET status = 'queued', output = NULL, error = NULL, finished_at = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL, ready_at = ?2, updated_at = ?2 WHERE rowid = ?1",
            )?
            .execute(params![run.rowid, now])?;
        }
        Effect::RegisterHook {
            key: step_key,
            token,
            schema,
            timeout_at_ms,
        } => {
            crate::waits::register_hook(
                conn,
                run.key,
                step_key.as_str(),
                token,
                schema,
                *timeout_at_ms,
                now,
            )?;
        }
        Effect::Status(status) => {
            conn.prepare_cached("UPDATE runs SET status = ?2, updated_at = ?3 WHERE rowid = ?1")?
                .execute(params![run.rowid, status.as_str(), now])?;
        }
    }
    Ok(())
}

/// The child-run rule: a child of `parent` ended at `now`, so `parent`, if parked, becomes
/// queued and ready now.
fn wake_parent(conn: &Connection, parent: RunId, now: i64, changed: &mut Changed) -> Result<()> {
    let found = conn
        .prepare_cached("SELECT rowid, status, lease_owner FROM runs WHERE id = ?1")?
        .query_row([parent.to_string()], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    let Some((rowid, status, lease_owner)) = found else {
        return Ok(());
    };
    if rules::wakes_parent(parse_status(&status)?, lease_owner.as_deref()) {
        conn.prepare_cached(
            "UPDATE runs SET status = 'queued', ready_at = ?2, updated_at = ?2 WHERE rowid = ?1",
        )?
        .execute(params![rowid, now])?;
        changed.woken.push(parent);
        changed.run(parent);
    }
    Ok(())
}

/// Inserts the run and its first events, unless its id or its idempotency key is taken.
/// Refuses (out-of-order history) before writing anything.
pub(crate) fn create_run(
    conn: &Sql<'_>,
    runs: &mut RunCache,
    run: &PreparedRun,
    changed: &mut Changed,
) -> Result<CreateOutcome> {
    check_order(run.id, &run.events)?;
    let key = run.id.to_string();
    let start = rules::new_run_state(run.lease.as_ref(), run.now_ms);
    let (forked_run, forked_step) = run
        .forked_from
        .as_ref()
        .map(|(run, step)| (run, step))
        .unzip();
    let inserted = conn.execute(
        Hot::InsertRun,
        params![
            key,
            run.workflow,
            start.status.as_str(),
            run.input,
            run.idempotency_key,
            run.parent_run_id,
            forked_run,
            forked_step,
            run.trigger,
            start.executions,
            start.lease_owner.map(WorkerId::as_str),
            start.lease_expires_at_ms,
            start.ready_at_ms,
            run.now_ms,
            run.owner,
        ],
    )?;
    if inserted == 0 {
        return Ok(CreateOutcome {
            run_id: existing_run(conn, run)?,
            created: false,
        });
    }
    let state = RunState {
        rowid: conn.last_insert_rowid(),
        status: start.status,
        lease_owner: start.lease_owner.cloned(),
        lease_expires_at: start.lease_expires_at_ms,
        // Its `RunCreated`, made from the row on reads (schema v8).
        last_seq: CREATED_SEQ,
        may_have_hooks: false,
        parent: run.parent,
    };
    record_events(
        conn,
        run.id,
        state.row(&key),
        CREATED_SEQ,
        &run.events,
        run.now_ms,
        changed,
    )?;
    runs.keep_after(run.id, state, &run.events);
    Ok(CreateOutcome {
        run_id: run.id,
        created: true,
    })
}

/// The run a conflicting create collided with: the idempotency key's, else the same id.
fn existing_run(conn: &Connection, run: &PreparedRun) -> Result<RunId> {
    if let Some(idempotency_key) = &run.idempotency_key {
        let found: Option<String> = conn
            .prepare_cached("SELECT id FROM runs WHERE workflow = ?1 AND idempotency_key = ?2")?
            .query_row(params![run.workflow, idempotency_key], |row| row.get(0))
            .optional()?;
        if let Some(found) = found {
            return Ok(parse_id(&found)?);
        }
    }
    Ok(run.id)
}

/// Makes `lease` the run's lease and returns the run with its log. (Read back rather than
/// `RETURNING`, which SQLite buffers in a temporary B-tree built for every execution.)
fn take_lease(conn: &Connection, key: &str, lease: &Lease, now: i64) -> Result<RawClaimed> {
    conn.prepare_cached(
        "UPDATE runs SET status = 'running', lease_owner = ?2, lease_expires_at = ?3, ready_at = ?3, \
         executions = executions + 1, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![key, lease.worker.0, lease.expires_at_ms, now])?;
    Ok(RawClaimed {
        run: raw_run(conn, key)?,
        events: load_events(conn, key)?,
    })
}

pub(crate) fn claim_run(
    conn: &Connection,
    id: RunId,
    lease: &Lease,
    now: i64,
    changed: &mut Changed,
) -> Result<RawClaimOutcome> {
    let key = id.to_string();
    let Some(state) = load_state(conn, &key)? else {
        return Ok(RawClaimOutcome::NotFound);
    };
    let owner = state.lease_owner.as_ref().map(WorkerId::as_str);
    if let Err(refusal) =
        rules::check_claim(state.status, owner, state.lease_expires_at, lease, now)
    {
        return Ok(RawClaimOutcome::Refused(refusal));
    }
    let claimed = take_lease(conn, &key, lease, now)?;
    changed.run(id);
    Ok(RawClaimOutcome::Claimed(Box::new(claimed)))
}

/// Claims up to `limit` ready runs of `workflows`, oldest `ready_at` first; `runs` forgets
/// each.
#[allow(
    clippy::too_many_arguments,
    reason = "one per input of the claim, plus the writer's cache and change collector"
)]
pub(crate) fn claim_ready(
    conn: &Connection,
    runs: &mut RunCache,
    workflows: &[String],
    lease: &Lease,
    now: i64,
    limit: usize,
    changed: &mut Changed,
) -> Result<Vec<RawClaimed>> {
    if workflows.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let sql = claimable_sql(workflows.len());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut values: Vec<&dyn ToSql> = vec![&now, &limit];
    values.extend(workflows.iter().map(|workflow| workflow as &dyn ToSql));
    let keys = conn
        .prepare_cached(&sql)?
        .query_map(values.as_slice(), |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for key in &keys {
        match parse_id(key) {
            Ok(id) => {
                runs.forget(id);
                changed.run(id);
            }
            Err(_) => runs.forget_all(),
        }
    }
    keys.iter()
        .map(|key| take_lease(conn, key, lease, now))
        .collect()
}

/// The `claim_ready` selection for `workflows` workflows: `?1` now, `?2` limit, `?3…` the
/// workflows. Forced through `runs_claimable`, so a planner change can never make it a scan.
pub(crate) fn claimable_sql(workflows: usize) -> String {
    format!(
        "SELECT id FROM runs INDEXED BY runs_claimable \
         WHERE finished_at IS NULL AND ready_at <= ?1 AND (lease_owner IS NULL OR lease_expires_at <= ?1) \
         AND workflow IN ({}) ORDER BY ready_at LIMIT ?2",
        placeholders(3, workflows)
    )
}

/// `?first, ?first+1, …` (`count` of them).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn renew_lease(conn: &Connection, id: RunId, lease: &Lease) -> Result<()> {
    let key = id.to_string();
    let state = fenced(conn, id, &key, &lease.worker)?;
    conn.prepare_cached("UPDATE runs SET lease_expires_at = ?2, ready_at = ?2 WHERE rowid = ?1")?
        .execute(params![state.rowid, lease.expires_at_ms])?;
    Ok(())
}

pub(crate) fn release_lease(
    conn: &Connection,
    id: RunId,
    worker: &WorkerId,
    ready_at: i64,
    changed: &mut Changed,
) -> Result<()> {
    let key = id.to_string();
    let state = fenced(conn, id, &key, worker)?;
    conn.prepare_cached(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, ready_at = ?2, \
         status = CASE status WHEN 'running' THEN 'queued' ELSE status END WHERE rowid = ?1",
    )?
    .execute(params![state.rowid, ready_at])?;
    changed.run(id);
    Ok(())
}

/// Appends `events` to a run `worker` holds. Refuses (fencing, order) before writing anything.
///
/// The fencing check reads the run's row and the write follows in the same `BEGIN IMMEDIATE`
/// transaction, so nothing can change the row in between. (One `UPDATE … RETURNING` would
/// fence and number in one statement, but SQLite buffers `RETURNING` rows in a temporary
/// B-tree it builds for every execution, which costs more than the point read.)
///
/// The run's row comes from `runs` when the writer remembers it (see [`RunCache`]), and
/// is remembered as the append leaves it.
#[allow(
    clippy::too_many_arguments,
    reason = "the writer's hot path: a struct would be built and taken apart per append"
)]
pub(crate) fn append(
    conn: &Sql<'_>,
    runs: &mut RunCache,
    id: RunId,
    worker: &WorkerId,
    events: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<()> {
    let key = id.to_string();
    let state = match runs.take(id) {
        Some(state) => state,
        None => state_of(conn, id, &key)?,
    };
    if let Err(refusal) = rules::check_fence(
        id,
        state.status,
        state.lease_owner.as_ref().map(WorkerId::as_str),
        worker,
    ) {
        runs.keep(id, state);
        return Err(refusal.into());
    }
    write_events(
        conn,
        id,
        state.row(&key),
        state.last_seq,
        events,
        now,
        changed,
    )?;
    runs.keep_after(id, state, events);
    Ok(())
}

/// Appends `canceled` (a prepared `RunCanceled`) to a run that has not ended.
pub(crate) fn cancel_run(
    conn: &Sql<'_>,
    id: RunId,
    canceled: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<RunStatus> {
    let key = id.to_string();
    let state = state_of(conn, id, &key)?;
    rules::check_not_ended(id, state.status)?;
    let (row, last_seq) = (state.row(&key), state.last_seq);
    write_events(conn, id, row, last_seq, canceled, now, changed)?;
    Ok(state.status)
}

/// Appends `retried` (a prepared `RunRetried`) to a failed or canceled run.
pub(crate) fn retry_run(
    conn: &Sql<'_>,
    id: RunId,
    retried: &PreparedEvents,
    now: i64,
    changed: &mut Changed,
) -> Result<()> {
    let key = id.to_string();
    let state = state_of(conn, id, &key)?;
    rules::check_retryable(id, state.status)?;
    let (row, last_seq) = (state.row(&key), state.last_seq);
    write_events(conn, id, row, last_seq, retried, now, changed)
}
