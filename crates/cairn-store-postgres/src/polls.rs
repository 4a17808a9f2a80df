//! Poll sources in PostgreSQL (schema v6). Their writes go through the write queue like
//! every run write (a commit creates runs, and its wake-ups go out with its commit); reads
//! run on the pool.
//!
//! **A claim** takes the source's row `FOR UPDATE SKIP LOCKED`: a row another transaction
//! holds is being claimed or committed elsewhere, so this worker does not poll it now (and
//! its queue does not wait on another process). **A commit** takes the row `FOR UPDATE`
//! (waiting: a commit under a valid lease must not be dropped for a moment's lock), compares
//! the lease owner and fencing token, records the item keys (expired ones forgotten first),
//! inserts the new items' runs as `create_run` inserts them (`ON CONFLICT DO NOTHING`: a key
//! used before is no error and no new run), and advances the cursor, all in the batch's
//! transaction.

use cairn_store::{
    ITEM_KEYS_KEPT_MS, Lease, PollClaim, PollCommit, PollCommitOutcome, PollControl, PollLease,
    PollResult, PollSourceRecord, PollState, StoreError, StoreResult, WorkerId, holds_poll_lease,
    state_after,
};
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, Row, postgres::PgRow};

use crate::{
    codec::{PreparedRun, from_json, to_json},
    error::Result,
    ops,
    writer::Notes,
};

/// A [`PollCommit`] with its runs and cursor encoded on the caller's task.
pub(crate) struct PreparedCommit {
    commit: PollCommit,
    /// The runs of the items, by the items' positions.
    runs: Vec<Option<PreparedRun>>,
    cursor: Option<String>,
}

impl PreparedCommit {
    pub(crate) fn new(mut commit: PollCommit) -> StoreResult<PreparedCommit> {
        let (runs, cursor) = commit.take_runs();
        let cursor = cursor
            .map(|cursor| to_json(cursor, "a poll cursor"))
            .transpose()?;
        let runs = runs
            .into_iter()
            .map(|run| run.map(PreparedRun::new).transpose())
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(PreparedCommit {
            commit,
            runs,
            cursor,
        })
    }
}

/// The columns [`decode`] reads, in its order.
const COLUMNS: &str = "name, workflow, state, cursor, seeded, next_poll_at, consecutive_errors, \
     last_error, last_polled_at, lease_owner, lease_expires_at, fencing_token, created_at, updated_at";

/// Inserts a declared source, or sets the stored one's workflow.
pub(crate) async fn declare(
    conn: &mut PgConnection,
    asked: &PollSourceRecord,
) -> Result<PollSourceRecord> {
    sqlx::query(
        "INSERT INTO poll_sources (name, workflow, state, seeded, next_poll_at, consecutive_errors, \
         fencing_token, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, \
         updated_at = excluded.updated_at WHERE poll_sources.workflow <> excluded.workflow",
    )
    .bind(&asked.name)
    .bind(&asked.workflow)
    .bind(asked.state.as_str())
    .bind(asked.seeded)
    .bind(asked.next_poll_at_ms)
    .bind(i32::try_from(asked.consecutive_errors).unwrap_or(i32::MAX))
    .bind(asked.fencing_token)
    .bind(asked.created_at_ms)
    .bind(asked.updated_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(get(&mut *conn, &asked.name)
        .await?
        .ok_or_else(|| StoreError::PollSourceNotFound(asked.name.clone()))?)
}

/// Takes the lease of a due source (see the module docs).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    name: &str,
    lease: &Lease,
    now_ms: i64,
) -> Result<Option<PollClaim>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE poll_sources SET lease_owner = $2, lease_expires_at = $3, \
         fencing_token = fencing_token + 1, updated_at = $4 \
         WHERE name = (SELECT name FROM poll_sources WHERE name = $1 AND state <> 'paused' \
         AND next_poll_at <= $4 AND (lease_expires_at IS NULL OR lease_expires_at <= $4) \
         FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(lease.worker.as_str())
    .bind(lease.expires_at_ms)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let source = decode(&row)?;
    Ok(Some(PollClaim {
        lease: PollLease {
            source: name.to_owned(),
            worker: lease.worker.clone(),
            token: source.fencing_token,
            expires_at_ms: lease.expires_at_ms,
        },
        source,
    }))
}

/// Pauses, resumes or makes due now.
pub(crate) async fn control(
    conn: &mut PgConnection,
    name: &str,
    control: PollControl,
    now_ms: i64,
) -> Result<PollSourceRecord> {
    let query = match control {
        PollControl::Pause => sqlx::query(AssertSqlSafe(format!(
            "UPDATE poll_sources SET state = 'paused', updated_at = $2 WHERE name = $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(now_ms),
        PollControl::Resume { next_poll_at_ms } => sqlx::query(AssertSqlSafe(format!(
            "UPDATE poll_sources SET state = 'active', consecutive_errors = 0, next_poll_at = $3, \
             updated_at = $2 WHERE name = $1 RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(now_ms)
        .bind(next_poll_at_ms),
        PollControl::PollNow => sqlx::query(AssertSqlSafe(format!(
            "UPDATE poll_sources SET next_poll_at = $2, updated_at = $2 WHERE name = $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(now_ms),
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::PollSourceNotFound(name.to_owned()))?;
    Ok(decode(&row)?)
}

/// The poll commit (see the module docs).
pub(crate) async fn commit(
    conn: &mut PgConnection,
    prepared: &PreparedCommit,
    notes: &mut Notes,
) -> Result<PollCommitOutcome> {
    let commit = &prepared.commit;
    let lease = &commit.lease;
    let held = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM poll_sources WHERE name = $1 FOR UPDATE"
    )))
    .bind(&lease.source)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(held) = held else {
        return Ok(PollCommitOutcome::LeaseLost);
    };
    let stored = decode(&held)?;
    if !holds_poll_lease(&stored, lease) {
        return Ok(PollCommitOutcome::LeaseLost);
    }
    let state = state_after(stored.state, &commit.result);
    let mut runs = Vec::new();
    let mut seen_before = 0;
    match &commit.result {
        PollResult::Items { items, .. } => {
            sqlx::query("DELETE FROM poll_items WHERE source = $1 AND seen_at <= $2")
                .bind(&lease.source)
                .bind(commit.now_ms - ITEM_KEYS_KEPT_MS)
                .execute(&mut *conn)
                .await?;
            for (item, run) in items.iter().zip(&prepared.runs) {
                if !record_item(conn, &lease.source, &item.key, commit.now_ms).await? {
                    seen_before += 1;
                    continue;
                }
                if let Some(run) = run {
                    runs.push(ops::create_run(conn, run, notes, None).await?);
                }
            }
            sqlx::query(
                "UPDATE poll_sources SET cursor = $2, seeded = TRUE, consecutive_errors = 0, \
                 last_error = NULL WHERE name = $1",
            )
            .bind(&lease.source)
            .bind(&prepared.cursor)
            .execute(&mut *conn)
            .await?;
        }
        PollResult::Failed {
            error,
            consecutive_errors,
            ..
        } => {
            sqlx::query(
                "UPDATE poll_sources SET consecutive_errors = $2, last_error = $3 WHERE name = $1",
            )
            .bind(&lease.source)
            .bind(i32::try_from(*consecutive_errors).unwrap_or(i32::MAX))
            .bind(error)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE poll_sources SET state = $2, next_poll_at = $3, last_polled_at = $4, \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 WHERE name = $1",
    )
    .bind(&lease.source)
    .bind(state.as_str())
    .bind(commit.next_poll_at_ms)
    .bind(commit.now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(PollCommitOutcome::Committed { runs, seen_before })
}

/// Records item `key` of `source` as seen at `now_ms`; `true` if it was not recorded.
async fn record_item(
    conn: &mut PgConnection,
    source: &str,
    key: &str,
    now_ms: i64,
) -> Result<bool> {
    let refreshed =
        sqlx::query("UPDATE poll_items SET seen_at = $3 WHERE source = $1 AND item_key = $2")
            .bind(source)
            .bind(key)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if refreshed > 0 {
        return Ok(false);
    }
    sqlx::query("INSERT INTO poll_items (source, item_key, seen_at) VALUES ($1, $2, $3)")
        .bind(source)
        .bind(key)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// One poll source by name.
pub(crate) async fn get<'c>(
    conn: impl PgExecutor<'c>,
    name: &str,
) -> Result<Option<PollSourceRecord>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM poll_sources WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(decode).transpose()?)
}

/// Every poll source, by name.
pub(crate) async fn list<'c>(conn: impl PgExecutor<'c>) -> Result<Vec<PollSourceRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM poll_sources ORDER BY name"
    )))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(decode).collect::<StoreResult<_>>()?)
}

/// Sources due at `now_ms`, earliest first.
pub(crate) async fn due<'c>(
    conn: impl PgExecutor<'c>,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<PollSourceRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM poll_sources WHERE state <> 'paused' AND next_poll_at <= $1 \
         AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
         ORDER BY next_poll_at, name LIMIT $2"
    )))
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(decode).collect::<StoreResult<_>>()?)
}

/// A row of [`COLUMNS`].
fn decode(row: &PgRow) -> StoreResult<PollSourceRecord> {
    let read = || -> std::result::Result<PollSourceRecord, sqlx::Error> {
        let name: String = row.try_get(0)?;
        let state: String = row.try_get(2)?;
        let cursor: Option<String> = row.try_get(3)?;
        let errors: i32 = row.try_get(6)?;
        let owner: Option<String> = row.try_get(9)?;
        let bad = |error: StoreError| sqlx::Error::Decode(error.into());
        Ok(PollSourceRecord {
            workflow: row.try_get(1)?,
            state: PollState::parse(&state)
                .ok_or_else(|| bad(StoreError::Corrupt(format!("unknown poll state {state:?}"))))?,
            cursor: cursor
                .map(|cursor| from_json(&cursor, "poll cursor"))
                .transpose()
                .map_err(bad)?,
            seeded: row.try_get(4)?,
            next_poll_at_ms: row.try_get(5)?,
            consecutive_errors: u32::try_from(errors).unwrap_or(0),
            last_error: row.try_get(7)?,
            last_polled_at_ms: row.try_get(8)?,
            lease_owner: owner.map(|owner| WorkerId(owner.into())),
            lease_expires_at_ms: row.try_get(10)?,
            fencing_token: row.try_get(11)?,
            created_at_ms: row.try_get(12)?,
            updated_at_ms: row.try_get(13)?,
            name,
        })
    };
    read().map_err(|error| {
        StoreError::Corrupt(format!("a stored poll source is unreadable: {error}"))
    })
}
