//! Schedules in SQLite (schema v11): the writes, which the writer thread runs like every
//! other write, each in its own savepoint of the batch's transaction, and the reads, on the
//! read pool.
//!
//! A fire is one savepoint: the compare-and-set of the schedule's next fire time, the runs
//! (inserted as `create_run` inserts them: an idempotency key used before is no error and
//! no new run), the misses. Only the writer thread writes and it holds SQLite's write lock
//! for the whole transaction, so of two processes firing one fire time, the second sees the
//! first's advance and writes nothing.

use cairn_store::{
    CreateOutcome, FireOutcome, MISSES_KEPT, ScheduleFire, ScheduleMiss, SchedulePut,
    ScheduleRecord, ScheduleSpec, StoreResult, put_decision,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    codec::{PreparedRun, Result, from_json, read_decoded, to_json},
    held::Sql,
    ops::{self, Changed},
    run_cache::RunCache,
    writer::{Answer, Reply, answer, in_savepoint},
};

/// A schedule write for the writer thread, one variant per `Store` method.
pub(crate) enum ScheduleWrite {
    Put {
        /// Boxed: the other writes are a few words.
        schedule: Box<ScheduleRecord>,
        reply: Reply<(SchedulePut, ScheduleRecord)>,
    },
    SetPaused {
        id: String,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
        reply: Reply<ScheduleRecord>,
    },
    Fire {
        fire: Box<PreparedFire>,
        reply: Reply<FireOutcome>,
    },
    Delete {
        id: String,
        reply: Reply<bool>,
    },
}

/// A [`ScheduleFire`] with its runs encoded on the caller's task.
pub(crate) struct PreparedFire {
    fire: ScheduleFire,
    runs: Vec<PreparedRun>,
}

impl PreparedFire {
    pub(crate) fn new(mut fire: ScheduleFire) -> StoreResult<PreparedFire> {
        let runs = std::mem::take(&mut fire.runs)
            .into_iter()
            .map(PreparedRun::new)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(PreparedFire { fire, runs })
    }
}

impl ScheduleWrite {
    /// Runs the write in its own savepoint of the open transaction. A fire's runs are not
    /// remembered by the writer's run cache (they are read from the table when next
    /// written), so a savepoint rolled back leaves nothing behind in it.
    pub(crate) fn execute(
        self,
        conn: &Sql<'_>,
        broken: &mut Option<String>,
        changed: &mut Changed,
    ) -> Answer {
        match self {
            ScheduleWrite::Put { schedule, reply } => {
                answer(reply, in_savepoint(conn, broken, |c| put(c, *schedule)))
            }
            ScheduleWrite::SetPaused {
                id,
                paused,
                next_fire_at_ms,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| {
                    set_paused(c, &id, paused, next_fire_at_ms, now_ms)
                }),
            ),
            ScheduleWrite::Fire { fire, reply } => answer(
                reply,
                in_savepoint(conn, broken, |c| fire_schedule(c, &fire, changed)),
            ),
            ScheduleWrite::Delete { id, reply } => {
                answer(reply, in_savepoint(conn, broken, |c| delete(c, &id)))
            }
        }
    }
}

/// The columns [`decode`] reads, in its order.
const COLUMNS: &str = "id, spec, paused, next_fire_at, last_fire_at, created_at, updated_at";

fn put(conn: &Connection, asked: ScheduleRecord) -> Result<(SchedulePut, ScheduleRecord)> {
    let stored = get(conn, &asked.id)?;
    let (done, row) = put_decision(stored.as_ref(), asked);
    if done != SchedulePut::Unchanged {
        conn.prepare_cached(
            "INSERT INTO schedules (id, spec, paused, next_fire_at, last_fire_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, \
             paused = excluded.paused, next_fire_at = excluded.next_fire_at, \
             last_fire_at = excluded.last_fire_at, created_at = excluded.created_at, \
             updated_at = excluded.updated_at",
        )?
        .execute(params![
            row.id,
            to_json(&row.spec, "a schedule's spec")?,
            row.paused,
            row.next_fire_at_ms,
            row.last_fire_at_ms,
            row.created_at_ms,
            row.updated_at_ms,
        ])?;
    }
    Ok((done, row))
}

fn set_paused(
    conn: &Connection,
    id: &str,
    paused: bool,
    next_fire_at_ms: i64,
    now_ms: i64,
) -> Result<ScheduleRecord> {
    conn.prepare_cached(
        "UPDATE schedules SET paused = ?2, updated_at = ?4, \
         next_fire_at = CASE WHEN ?2 THEN next_fire_at ELSE ?3 END WHERE id = ?1",
    )?
    .execute(params![id, paused, next_fire_at_ms, now_ms])?;
    get(conn, id)?.ok_or_else(|| cairn_store::StoreError::ScheduleNotFound(id.to_owned()).into())
}

/// Deletes a schedule and its misses; whether there was one.
fn delete(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM schedule_misses WHERE schedule_id = ?1")?
        .execute([id])?;
    let deleted = conn
        .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
        .execute([id])?;
    Ok(deleted > 0)
}

/// The fire commit (see the module docs).
fn fire_schedule(
    conn: &Sql<'_>,
    prepared: &PreparedFire,
    changed: &mut Changed,
) -> Result<FireOutcome> {
    let fire = &prepared.fire;
    let advanced = conn
        .prepare_cached(
            "UPDATE schedules SET next_fire_at = ?3, last_fire_at = coalesce(?4, last_fire_at), \
             updated_at = ?5 WHERE id = ?1 AND next_fire_at = ?2 AND paused = 0",
        )?
        .execute(params![
            fire.schedule_id,
            fire.expected_next_fire_at_ms,
            fire.next_fire_at_ms,
            fire.last_fire_at_ms,
            fire.now_ms,
        ])?;
    if advanced == 0 {
        return Ok(FireOutcome::Superseded);
    }
    // Not the writer's cache: see `ScheduleWrite::execute`.
    let mut unremembered = RunCache::default();
    let outcomes = prepared
        .runs
        .iter()
        .map(|run| ops::create_run(conn, &mut unremembered, run, changed))
        .collect::<Result<Vec<CreateOutcome>>>()?;
    if !fire.misses.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO schedule_misses (schedule_id, first_at, last_at, reason, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for miss in &fire.misses {
            insert.execute(params![
                fire.schedule_id,
                miss.first_ms,
                miss.last_ms,
                miss.reason,
                miss.recorded_at_ms
            ])?;
        }
        conn.prepare_cached(
            "DELETE FROM schedule_misses WHERE schedule_id = ?1 AND rowid <= ( \
             SELECT rowid FROM schedule_misses WHERE schedule_id = ?1 \
             ORDER BY rowid DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![fire.schedule_id, MISSES_KEPT as i64])?;
    }
    Ok(FireOutcome::Fired(outcomes))
}

/// One schedule by id.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<ScheduleRecord>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1"))?
        .query_row([id], RawSchedule::from_row)
        .optional()?;
    Ok(raw.map(RawSchedule::decode).transpose()?)
}

/// Every schedule, by id.
pub(crate) fn list(conn: &Connection) -> Result<Vec<ScheduleRecord>> {
    read_many(
        conn,
        &format!("SELECT {COLUMNS} FROM schedules ORDER BY id"),
        params![],
    )
}

/// Unpaused schedules due at `now_ms`, earliest first.
pub(crate) fn due(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<ScheduleRecord>> {
    read_many(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_at <= ?1 \
             ORDER BY next_fire_at, id LIMIT ?2"
        ),
        params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

/// A schedule's misses, newest first.
pub(crate) fn misses(conn: &Connection, id: &str) -> Result<Vec<ScheduleMiss>> {
    let misses = conn
        .prepare_cached(
            "SELECT first_at, last_at, reason, recorded_at FROM schedule_misses \
             WHERE schedule_id = ?1 ORDER BY rowid DESC",
        )?
        .query_map([id], |row| {
            Ok(ScheduleMiss {
                first_ms: row.get(0)?,
                last_ms: row.get(1)?,
                reason: row.get(2)?,
                recorded_at_ms: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(misses)
}

/// The schedules `sql` selects with `values`.
fn read_many(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> Result<Vec<ScheduleRecord>> {
    read_decoded(
        conn,
        sql,
        values,
        RawSchedule::from_row,
        RawSchedule::decode,
    )
}

/// A `schedules` row as read.
struct RawSchedule {
    id: String,
    spec: String,
    paused: bool,
    next_fire_at: i64,
    last_fire_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl RawSchedule {
    /// Reads the columns of [`COLUMNS`] in order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawSchedule> {
        Ok(RawSchedule {
            id: row.get(0)?,
            spec: row.get(1)?,
            paused: row.get(2)?,
            next_fire_at: row.get(3)?,
            last_fire_at: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
        })
    }

    fn decode(self) -> StoreResult<ScheduleRecord> {
        let spec: ScheduleSpec = from_json(&self.spec, "schedule spec")?;
        Ok(ScheduleRecord {
            id: self.id,
            spec,
            paused: self.paused,
            next_fire_at_ms: self.next_fire_at,
            last_fire_at_ms: self.last_fire_at,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
        })
    }
}
