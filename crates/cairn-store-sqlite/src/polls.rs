//! Poll sources in SQLite (schema v13): the writes, which the writer thread runs like every
//! other write, each in its own savepoint of the batch's transaction, and the reads, on the
//! read pool.
//!
//! A poll's commit is one savepoint: the fence (the source's lease owner and fencing token
//! compared with the poll's), the item keys (an expired key forgotten first, a key seen
//! before refreshed and skipped), the new items' runs (inserted as `create_run` inserts
//! them: an idempotency key used before is no error and no new run), the cursor. Only the
//! writer thread writes and it holds SQLite's write lock for the whole transaction, so of
//! two processes committing polls of one source, the second sees the first's and is fenced.

use cairn_store::{
    CreateOutcome, ITEM_KEYS_KEPT_MS, Lease, PollClaim, PollCommit, PollCommitOutcome, PollControl,
    PollLease, PollResult, PollSourceRecord, PollState, StoreError, StoreResult, WorkerId,
    holds_poll_lease, state_after,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    codec::{PreparedRun, Result, from_json, read_decoded, to_json},
    held::Sql,
    ops::{self, Changed},
    run_cache::RunCache,
    writer::{Answer, Reply, answer, in_savepoint},
};

/// A poll source write for the writer thread, one variant per `Store` method.
pub(crate) enum PollWrite {
    Declare {
        /// Boxed: the other writes are a few words.
        source: Box<PollSourceRecord>,
        reply: Reply<PollSourceRecord>,
    },
    Claim {
        name: String,
        lease: Lease,
        now_ms: i64,
        reply: Reply<Option<PollClaim>>,
    },
    Control {
        name: String,
        control: PollControl,
        now_ms: i64,
        reply: Reply<PollSourceRecord>,
    },
    Commit {
        commit: Box<PreparedCommit>,
        reply: Reply<PollCommitOutcome>,
    },
}

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

impl crate::SqliteStore {
    /// Sends a poll source write to the writer thread and waits for its answer.
    pub(crate) async fn poll_write<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> PollWrite,
    ) -> StoreResult<T> {
        self.writer
            .call(|reply| crate::writer::Command::Poll(make(reply)))
            .await
    }
}

impl PollWrite {
    /// The write of `Store::declare_poll_source`.
    pub(crate) fn declare(source: PollSourceRecord, reply: Reply<PollSourceRecord>) -> PollWrite {
        PollWrite::Declare {
            source: Box::new(source),
            reply,
        }
    }

    /// The write of `Store::claim_poll_source`.
    pub(crate) fn claim(
        name: &str,
        lease: &Lease,
        now_ms: i64,
        reply: Reply<Option<PollClaim>>,
    ) -> PollWrite {
        PollWrite::Claim {
            name: name.to_owned(),
            lease: lease.clone(),
            now_ms,
            reply,
        }
    }

    /// The write of `Store::control_poll_source`.
    pub(crate) fn control(
        name: &str,
        control: PollControl,
        now_ms: i64,
        reply: Reply<PollSourceRecord>,
    ) -> PollWrite {
        PollWrite::Control {
            name: name.to_owned(),
            control,
            now_ms,
            reply,
        }
    }

    /// The write of `Store::commit_poll`.
    pub(crate) fn commit(commit: PreparedCommit, reply: Reply<PollCommitOutcome>) -> PollWrite {
        PollWrite::Commit {
            commit: Box::new(commit),
            reply,
        }
    }

    /// Runs the write in its own savepoint of the open transaction. A commit's runs are
    /// not remembered by the writer's run cache (as a schedule fire's are not).
    pub(crate) fn execute(
        self,
        conn: &Sql<'_>,
        broken: &mut Option<String>,
        changed: &mut Changed,
    ) -> Answer {
        match self {
            PollWrite::Declare { source, reply } => {
                answer(reply, in_savepoint(conn, broken, |c| declare(c, &source)))
            }
            PollWrite::Claim {
                name,
                lease,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| claim(c, &name, &lease, now_ms)),
            ),
            PollWrite::Control {
                name,
                control,
                now_ms,
                reply,
            } => answer(
                reply,
                in_savepoint(conn, broken, |c| control_source(c, &name, control, now_ms)),
            ),
            PollWrite::Commit { commit, reply } => answer(
                reply,
                in_savepoint(conn, broken, |c| commit_poll(c, &commit, changed)),
            ),
        }
    }
}

/// The columns [`RawSource`] reads, in its order.
const COLUMNS: &str = "name, workflow, state, cursor, seeded, next_poll_at, consecutive_errors, \
     last_error, last_polled_at, lease_owner, lease_expires_at, fencing_token, created_at, updated_at";

fn declare(conn: &Connection, asked: &PollSourceRecord) -> Result<PollSourceRecord> {
    conn.prepare_cached(
        "INSERT INTO poll_sources (name, workflow, state, seeded, next_poll_at, consecutive_errors, \
         fencing_token, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, \
         updated_at = excluded.updated_at WHERE workflow <> excluded.workflow",
    )?
    .execute(params![
        asked.name,
        asked.workflow,
        asked.state.as_str(),
        asked.seeded,
        asked.next_poll_at_ms,
        asked.consecutive_errors,
        asked.fencing_token,
        asked.created_at_ms,
        asked.updated_at_ms,
    ])?;
    get(conn, &asked.name)?.ok_or_else(|| StoreError::PollSourceNotFound(asked.name.clone()).into())
}

fn claim(conn: &Connection, name: &str, lease: &Lease, now_ms: i64) -> Result<Option<PollClaim>> {
    let claimed = conn
        .prepare_cached(
            "UPDATE poll_sources SET lease_owner = ?2, lease_expires_at = ?3, \
             fencing_token = fencing_token + 1, updated_at = ?4 \
             WHERE name = ?1 AND state <> 'paused' AND next_poll_at <= ?4 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= ?4)",
        )?
        .execute(params![
            name,
            lease.worker.as_str(),
            lease.expires_at_ms,
            now_ms
        ])?;
    if claimed == 0 {
        return Ok(None);
    }
    let source = get(conn, name)?.ok_or_else(|| StoreError::PollSourceNotFound(name.to_owned()))?;
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

fn control_source(
    conn: &Connection,
    name: &str,
    control: PollControl,
    now_ms: i64,
) -> Result<PollSourceRecord> {
    match control {
        PollControl::Pause => conn
            .prepare_cached(
                "UPDATE poll_sources SET state = 'paused', updated_at = ?2 WHERE name = ?1",
            )?
            .execute(params![name, now_ms])?,
        PollControl::Resume { next_poll_at_ms } => conn
            .prepare_cached(
                "UPDATE poll_sources SET state = 'active', consecutive_errors = 0, \
                 next_poll_at = ?3, updated_at = ?2 WHERE name = ?1",
            )?
            .execute(params![name, now_ms, next_poll_at_ms])?,
        PollControl::PollNow => conn
            .prepare_cached(
                "UPDATE poll_sources SET next_poll_at = ?2, updated_at = ?2 WHERE name = ?1",
            )?
            .execute(params![name, now_ms])?,
    };
    get(conn, name)?.ok_or_else(|| StoreError::PollSourceNotFound(name.to_owned()).into())
}

/// The poll commit (see the module docs).
fn commit_poll(
    conn: &Sql<'_>,
    prepared: &PreparedCommit,
    changed: &mut Changed,
) -> Result<PollCommitOutcome> {
    let commit = &prepared.commit;
    let lease = &commit.lease;
    let Some(stored) = get(conn, &lease.source)? else {
        return Ok(PollCommitOutcome::LeaseLost);
    };
    if !holds_poll_lease(&stored, lease) {
        return Ok(PollCommitOutcome::LeaseLost);
    }
    let state = state_after(stored.state, &commit.result);
    let mut runs = Vec::new();
    let mut seen_before = 0;
    match &commit.result {
        PollResult::Items { items, .. } => {
            conn.prepare_cached("DELETE FROM poll_items WHERE source = ?1 AND seen_at <= ?2")?
                .execute(params![lease.source, commit.now_ms - ITEM_KEYS_KEPT_MS])?;
            // Not the writer's cache: see `PollWrite::execute`.
            let mut unremembered = RunCache::default();
            for (item, run) in items.iter().zip(&prepared.runs) {
                if !record_item(conn, &lease.source, &item.key, commit.now_ms)? {
                    seen_before += 1;
                    continue;
                }
                if let Some(run) = run {
                    let outcome: CreateOutcome =
                        ops::create_run(conn, &mut unremembered, run, changed)?;
                    runs.push(outcome);
                }
            }
            conn.prepare_cached(
                "UPDATE poll_sources SET cursor = ?2, seeded = 1, consecutive_errors = 0, \
                 last_error = NULL WHERE name = ?1",
            )?
            .execute(params![lease.source, prepared.cursor])?;
        }
        PollResult::Failed {
            error,
            consecutive_errors,
            ..
        } => {
            conn.prepare_cached(
                "UPDATE poll_sources SET consecutive_errors = ?2, last_error = ?3 WHERE name = ?1",
            )?
            .execute(params![lease.source, consecutive_errors, error])?;
        }
    }
    conn.prepare_cached(
        "UPDATE poll_sources SET state = ?2, next_poll_at = ?3, last_polled_at = ?4, \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 WHERE name = ?1",
    )?
    .execute(params![
        lease.source,
        state.as_str(),
        commit.next_poll_at_ms,
        commit.now_ms
    ])?;
    Ok(PollCommitOutcome::Committed { runs, seen_before })
}

/// Records item `key` of `source` as seen at `now_ms`; `true` if it was not recorded.
fn record_item(conn: &Connection, source: &str, key: &str, now_ms: i64) -> Result<bool> {
    let refreshed = conn
        .prepare_cached("UPDATE poll_items SET seen_at = ?3 WHERE source = ?1 AND item_key = ?2")?
        .execute(params![source, key, now_ms])?;
    if refreshed > 0 {
        return Ok(false);
    }
    conn.prepare_cached("INSERT INTO poll_items (source, item_key, seen_at) VALUES (?1, ?2, ?3)")?
        .execute(params![source, key, now_ms])?;
    Ok(true)
}

/// One poll source by name.
pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<PollSourceRecord>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM poll_sources WHERE name = ?1"
        ))?
        .query_row([name], RawSource::from_row)
        .optional()?;
    Ok(raw.map(RawSource::decode).transpose()?)
}

/// Every poll source, by name.
pub(crate) fn list(conn: &Connection) -> Result<Vec<PollSourceRecord>> {
    read_many(
        conn,
        &format!("SELECT {COLUMNS} FROM poll_sources ORDER BY name"),
        params![],
    )
}

/// Sources due at `now_ms`, earliest first.
pub(crate) fn due(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<PollSourceRecord>> {
    read_many(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM poll_sources WHERE state <> 'paused' AND next_poll_at <= ?1 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= ?1) \
             ORDER BY next_poll_at, name LIMIT ?2"
        ),
        params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

/// The poll sources `sql` selects with `values`.
fn read_many(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> Result<Vec<PollSourceRecord>> {
    read_decoded(conn, sql, values, RawSource::from_row, RawSource::decode)
}

/// A `poll_sources` row as read.
struct RawSource {
    name: String,
    workflow: String,
    state: String,
    cursor: Option<String>,
    seeded: bool,
    next_poll_at: i64,
    consecutive_errors: u32,
    last_error: Option<String>,
    last_polled_at: Option<i64>,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    fencing_token: i64,
    created_at: i64,
    updated_at: i64,
}

impl RawSource {
    /// Reads the columns of [`COLUMNS`] in order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawSource> {
        Ok(RawSource {
            name: row.get(0)?,
            workflow: row.get(1)?,
            state: row.get(2)?,
            cursor: row.get(3)?,
            seeded: row.get(4)?,
            next_poll_at: row.get(5)?,
            consecutive_errors: row.get(6)?,
            last_error: row.get(7)?,
            last_polled_at: row.get(8)?,
            lease_owner: row.get(9)?,
            lease_expires_at: row.get(10)?,
            fencing_token: row.get(11)?,
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
        })
    }

    fn decode(self) -> StoreResult<PollSourceRecord> {
        let state = PollState::parse(&self.state).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "poll source {:?} has the unknown state {:?}",
                self.name, self.state
            ))
        })?;
        Ok(PollSourceRecord {
            cursor: self
                .cursor
                .map(|cursor| from_json(&cursor, "poll cursor"))
                .transpose()?,
            name: self.name,
            workflow: self.workflow,
            state,
            seeded: self.seeded,
            next_poll_at_ms: self.next_poll_at,
            consecutive_errors: self.consecutive_errors,
            last_error: self.last_error,
            last_polled_at_ms: self.last_polled_at,
            lease_owner: self.lease_owner.map(|owner| WorkerId(owner.into())),
            lease_expires_at_ms: self.lease_expires_at,
            fencing_token: self.fencing_token,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
        })
    }
}
