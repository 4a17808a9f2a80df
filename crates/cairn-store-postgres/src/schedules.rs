//! Schedules in PostgreSQL (schema v4). Their writes go through the write queue like every
//! run write (a fire creates runs, and its wake-ups go out with its commit); reads run on
//! the pool.
//!
//! **A fire** takes the schedule's row with `FOR UPDATE SKIP LOCKED`: a row another worker's
//! transaction holds is that worker's fire under way, so this one is `Superseded` without
//! waiting (its queue is not held up by another process's transaction). With the row held,
//! the next fire time read is compared (compare-and-set), the runs are inserted as
//! `create_run` inserts them (`ON CONFLICT DO NOTHING`: a key used before is no error and
//! no new run), and the schedule advances, all in the batch's transaction.

use cairn_store::{
    CreateOutcome, FireOutcome, MISSES_KEPT, ScheduleFire, ScheduleMiss, SchedulePut,
    ScheduleRecord, StoreError, StoreResult, put_decision,
};
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, Row, postgres::PgRow};

use crate::{
    codec::{PreparedRun, from_json, to_json},
    error::Result,
    ops,
    writer::Notes,
};

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

/// The columns [`decode`] reads, in its order.
const COLUMNS: &str = "id, spec, paused, next_fire_at, last_fire_at, created_at, updated_at";

/// Inserts a new schedule, or, holding the stored row, applies [`put_decision`].
pub(crate) async fn put(
    conn: &mut PgConnection,
    asked: &ScheduleRecord,
) -> Result<(SchedulePut, ScheduleRecord)> {
    let spec = to_json(&asked.spec, "a schedule's spec")?;
    let inserted = sqlx::query(
        "INSERT INTO schedules (id, spec, paused, next_fire_at, last_fire_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&asked.id)
    .bind(&spec)
    .bind(asked.paused)
    .bind(asked.next_fire_at_ms)
    .bind(asked.last_fire_at_ms)
    .bind(asked.created_at_ms)
    .bind(asked.updated_at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok((SchedulePut::Created, asked.clone()));
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE id = $1 FOR UPDATE"
    )))
    .bind(&asked.id)
    .fetch_one(&mut *conn)
    .await?;
    let stored = decode(&row)?;
    let (done, row) = put_decision(Some(&stored), asked.clone());
    if done == SchedulePut::Updated {
        sqlx::query(
            "UPDATE schedules SET spec = $2, next_fire_at = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(&row.id)
        .bind(&spec)
        .bind(row.next_fire_at_ms)
        .bind(row.updated_at_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok((done, row))
}

/// Pauses or resumes (setting the next fire time) a schedule.
pub(crate) async fn set_paused(
    conn: &mut PgConnection,
    id: &str,
    paused: bool,
    next_fire_at_ms: i64,
    now_ms: i64,
) -> Result<ScheduleRecord> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE schedules SET paused = $2, updated_at = $4, \
         next_fire_at = CASE WHEN $2 THEN next_fire_at ELSE $3 END WHERE id = $1 \
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(paused)
    .bind(next_fire_at_ms)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::ScheduleNotFound(id.to_owned()))?;
    Ok(decode(&row)?)
}

/// The fire commit (see the module docs).
pub(crate) async fn fire(
    conn: &mut PgConnection,
    prepared: &PreparedFire,
    notes: &mut Notes,
) -> Result<FireOutcome> {
    let fire = &prepared.fire;
    let held: Option<(i64, bool)> = sqlx::query_as(
        "SELECT next_fire_at, paused FROM schedules WHERE id = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(&fire.schedule_id)
    .fetch_optional(&mut *conn)
    .await?;
    if held != Some((fire.expected_next_fire_at_ms, false)) {
        return Ok(FireOutcome::Superseded);
    }
    let mut outcomes: Vec<CreateOutcome> = Vec::with_capacity(prepared.runs.len());
    for run in &prepared.runs {
        outcomes.push(ops::create_run(conn, run, notes, None).await?);
    }
    sqlx::query(
        "UPDATE schedules SET next_fire_at = $2, last_fire_at = coalesce($3, last_fire_at), \
         updated_at = $4 WHERE id = $1",
    )
    .bind(&fire.schedule_id)
    .bind(fire.next_fire_at_ms)
    .bind(fire.last_fire_at_ms)
    .bind(fire.now_ms)
    .execute(&mut *conn)
    .await?;
    if !fire.misses.is_empty() {
        for miss in &fire.misses {
            sqlx::query(
                "INSERT INTO schedule_misses (schedule_id, first_at, last_at, reason, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&fire.schedule_id)
            .bind(miss.first_ms)
            .bind(miss.last_ms)
            .bind(&miss.reason)
            .bind(miss.recorded_at_ms)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "DELETE FROM schedule_misses WHERE schedule_id = $1 AND n <= ( \
             SELECT n FROM schedule_misses WHERE schedule_id = $1 ORDER BY n DESC LIMIT 1 OFFSET $2)",
        )
        .bind(&fire.schedule_id)
        .bind(MISSES_KEPT as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(FireOutcome::Fired(outcomes))
}

/// Deletes a schedule and its misses in one statement (outside the write queue, like a
/// credential's delete: it creates no run); whether there was one. A fire holding the row
/// is waited for.
pub(crate) async fn delete<'c>(conn: impl PgExecutor<'c>, id: &str) -> Result<bool> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM schedules WHERE id = $1 RETURNING id), \
         misses AS (DELETE FROM schedule_misses WHERE schedule_id = $1) \
         SELECT count(*) FROM gone",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(deleted > 0)
}

/// One schedule by id.
pub(crate) async fn get<'c>(conn: impl PgExecutor<'c>, id: &str) -> Result<Option<ScheduleRecord>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(decode).transpose()?)
}

/// Every schedule, by id.
pub(crate) async fn list<'c>(conn: impl PgExecutor<'c>) -> Result<Vec<ScheduleRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules ORDER BY id"
    )))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(decode).collect::<StoreResult<_>>()?)
}

/// Unpaused schedules due at `now_ms`, earliest first.
pub(crate) async fn due<'c>(
    conn: impl PgExecutor<'c>,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<ScheduleRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE NOT paused AND next_fire_at <= $1 \
         ORDER BY next_fire_at, id LIMIT $2"
    )))
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(decode).collect::<StoreResult<_>>()?)
}

/// A schedule's misses, newest first.
pub(crate) async fn misses<'c>(conn: impl PgExecutor<'c>, id: &str) -> Result<Vec<ScheduleMiss>> {
    let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT first_at, last_at, reason, recorded_at FROM schedule_misses \
         WHERE schedule_id = $1 ORDER BY n DESC",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(first_ms, last_ms, reason, recorded_at_ms)| ScheduleMiss {
            first_ms,
            last_ms,
            reason,
            recorded_at_ms,
        })
        .collect())
}

/// A row of [`COLUMNS`].
fn decode(row: &PgRow) -> StoreResult<ScheduleRecord> {
    let read = || -> std::result::Result<ScheduleRecord, sqlx::Error> {
        let spec: String = row.try_get(1)?;
        Ok(ScheduleRecord {
            id: row.try_get(0)?,
            spec: from_json(&spec, "schedule spec")
                .map_err(|error| sqlx::Error::Decode(error.into()))?,
            paused: row.try_get(2)?,
            next_fire_at_ms: row.try_get(3)?,
            last_fire_at_ms: row.try_get(4)?,
            created_at_ms: row.try_get(5)?,
            updated_at_ms: row.try_get(6)?,
        })
    };
    read().map_err(|error| StoreError::Corrupt(format!("a stored schedule is unreadable: {error}")))
}
