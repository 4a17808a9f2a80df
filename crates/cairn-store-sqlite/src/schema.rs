//! Opening connections (pragmas for durability and sharing) and the versioned schema
//! migrations applied on open.
//!
//! The schema version lives in `PRAGMA user_version`; [`MIGRATIONS`] is the ordered list of
//! scripts, script `n` taking the schema from version `n` to `n + 1`. They run inside one
//! `BEGIN IMMEDIATE` transaction, so two processes opening one file at once cannot both
//! migrate it, and a failed migration leaves the file as it was.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cairn_store::{StoreError, StoreResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::codec::{Error, Result, sql_error};

/// Version 1: runs and their logs.
///
/// `finished_at IS NULL` exactly while a run has not ended (checked), so the partial index
/// `runs_claimable` holds only unended runs, ordered by when they may next be claimed: claims
/// and `next_ready_at` never scan ended runs. A leased run's `ready_at` is its lease's expiry,
/// so "ready by now" alone finds queued runs, woken runs and lapsed leases.
const V1: &str = "
CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('queued', 'running', 'sleeping', 'waiting', 'succeeded', 'failed', 'canceled')),
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    parent_run_id    TEXT,
    forked_from_run  TEXT,
    forked_from_step TEXT,
    trigger          TEXT NOT NULL,
    executions       INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    ready_at         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workflow, idempotency_key),
    CHECK ((finished_at IS NULL) = (status NOT IN ('succeeded', 'failed', 'canceled'))),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX runs_claimable ON runs (ready_at, workflow) WHERE finished_at IS NULL;
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL;

CREATE TABLE events (
    run_id   TEXT NOT NULL REFERENCES runs (id),
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    type     TEXT NOT NULL,
    step_key TEXT,
    payload  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
";

/// Version 2: hooks, by token. A pending hook's run is waiting (or about to be); the token
/// is the credential that resumes it, so it is the primary key.
const V2: &str = "
CREATE TABLE hooks (
    token      TEXT PRIMARY KEY NOT NULL,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    step_key   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'resumed', 'timed_out', 'closed')),
    schema     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    timeout_at INTEGER,
    closed_at  INTEGER,
    CHECK ((closed_at IS NULL) = (state = 'pending'))
);
CREATE INDEX hooks_by_run ON hooks (run_id, created_at);
CREATE INDEX hooks_pending ON hooks (created_at) WHERE state = 'pending';
";

/// Version 3: one `events` row per write. A row holds the `count` consecutive events from
/// `seq` on that one append (or one create) wrote: `payload` is the event's JSON when
/// `count` is 1, else a JSON array of them. Fewer rows per workflow is fewer B-tree inserts
/// on the writer thread, the store's bottleneck. Older rows all hold one event.
const V3: &str = "
ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
";

/// Version 4: the same `CHECK` constraints on `runs.status` and `hooks.state`, written as
/// `=`…`OR` chains. SQLite evaluates a constant `IN` list of more than two values by
/// building a temporary B-tree, at every insert and every update of the column: the run's
/// creation and end did that three times each, on the writer thread. A `CHECK` changes
/// nothing on disk, so the stored `CREATE TABLE` text is edited in place as SQLite's
/// documentation describes (`writable_schema`); the throwaway table bumps the schema cookie
/// so other connections reload the schema, and `RESET` reloads this one's.
const V4: &str = "
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(replace(sql,
    'CHECK (status IN
                         (''queued'', ''running'', ''sleeping'', ''waiting'', ''succeeded'', ''failed'', ''canceled''))',
    'CHECK (status = ''queued'' OR status = ''running'' OR status = ''sleeping'' OR status = ''waiting''
                         OR status = ''succeeded'' OR status = ''failed'' OR status = ''canceled'')'),
    'CHECK ((finished_at IS NULL) = (status NOT IN (''succeeded'', ''failed'', ''canceled'')))',
    'CHECK ((finished_at IS NULL) = NOT (status = ''succeeded'' OR status = ''failed'' OR status = ''canceled''))')
WHERE type = 'table' AND name = 'runs';
UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (state IN (''pending'', ''resumed'', ''timed_out'', ''closed''))',
    'CHECK (state = ''pending'' OR state = ''resumed'' OR state = ''timed_out'' OR state = ''closed'')')
WHERE type = 'table' AND name = 'hooks';
CREATE TABLE cairn_schema_changed (x);
DROP TABLE cairn_schema_changed;
PRAGMA writable_schema = RESET;
";

/// Version 5: the idempotency key's uniqueness as a partial index, over keyed runs only.
/// The table constraint `UNIQUE (workflow, idempotency_key)` indexed every run, keyed or
/// not: one more B-tree insert, and one more page in the WAL, for every run created without
/// a key. A constraint cannot be dropped in place, so `runs` is rebuilt (with foreign keys
/// off, see [`open_writer`]), keeping every `rowid`, and its indexes are made again.
const V5: &str = "
CREATE TABLE runs_v5 (
    id               TEXT PRIMARY KEY NOT NULL,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status = 'queued' OR status = 'running' OR status = 'sleeping'
                         OR status = 'waiting' OR status = 'succeeded' OR status = 'failed' OR status = 'canceled'),
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    parent_run_id    TEXT,
    forked_from_run  TEXT,
    forked_from_step TEXT,
    trigger          TEXT NOT NULL,
    executions       INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    ready_at         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    CHECK ((finished_at IS NULL) = NOT (status = 'succeeded' OR status = 'failed' OR status = 'canceled')),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
INSERT INTO runs_v5 (rowid, id, workflow, status, input, output, error, idempotency_key, parent_run_id,
    forked_from_run, forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at,
    created_at, updated_at, finished_at, last_seq)
SELECT rowid, id, workflow, status, input, output, error, idempotency_key, parent_run_id,
    forked_from_run, forked_from_step, trigger, executions, lease_owner, lease_expires_at, ready_at,
    created_at, updated_at, finished_at, last_seq
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_claimable ON runs (ready_at, workflow) WHERE finished_at IS NULL;
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL;
";

/// Version 6: `events` without its foreign key to `runs`. SQLite checked it with a seek in
/// the runs' text `id` index at every event row inserted, four per 3-step workflow, on the
/// writer thread; every write already reads or inserts its run's row first, in the same
/// transaction, and runs are never deleted, so the key only repeated that check. The table
/// is rebuilt (a key cannot be dropped in place) with the same columns, in the same order,
/// and the same `rowid`s.
const V6: &str = "
CREATE TABLE events_v6 (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    type     TEXT NOT NULL,
    step_key TEXT,
    payload  TEXT NOT NULL,
    count    INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    PRIMARY KEY (run_id, seq)
);
INSERT INTO events_v6 (rowid, run_id, seq, at, type, step_key, payload, count)
SELECT rowid, run_id, seq, at, type, step_key, payload, count FROM events;
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;
";

/// Version 7: `runs` without `last_seq`. Keeping it current cost every append an `UPDATE` of
/// the run's row (7.5% of the instructions of a 3-step workflow) to store what `events`
/// already holds: the last row's `seq + count - 1`. A run's `updated_at` as read is the later
/// of the row's and its last event row's `at` (see `codec::run_columns!`).
const V7: &str = "
ALTER TABLE runs DROP COLUMN last_seq;
";

/// Version 8: a run's `RunCreated` (its seq 1) is no longer stored as an `events` row; reads
/// make it from the run's own row, which holds all it says (workflow, input, `created_at`),
/// when no row has seq 1 (see `read::load_events`). That row, and its `(run_id, seq)` key,
/// were about a ninth of the writer's instructions per 3-step workflow. Nothing on disk
/// changes; the version moves so that an older build, which would read such a run's log
/// without its first event, refuses the file.
const V8: &str = "
-- RunCreated is read from the run's row: see read::load_events.
";

/// Version 9: the listing indexes cost a run's creation and end less. Every run's insert
/// wrote three B-trees for listings alone (`runs_by_created`, `runs_by_workflow`,
/// `runs_by_status`), and its end moved its `runs_by_status` entry from `running`, in the
/// middle of the index, to its final status: about a tenth of the writer thread's
/// instructions per 3-step workflow, and their pages in every commit.
/// - Listings are newest first by `rowid`, the order the store created the runs in (runs
///   are never deleted, so each new row takes the largest `rowid`): `runs_by_created` goes,
///   and the filter indexes key on the filter alone, their entries already in `rowid`
///   order within a value. (`created_at` follows the same order, but for runs created in the
///   same millisecond by concurrent callers, whose order the writer decides.)
/// - `runs_by_status` holds ended runs only: a run enters it once, at its end, at the right
///   edge of its status. Unended runs (queued, running, sleeping, waiting: the work in flight)
///   are listed by status through `runs_claimable`, which holds exactly them.
const V9: &str = "
DROP INDEX runs_by_created;
DROP INDEX runs_by_workflow;
DROP INDEX runs_by_status;
DROP INDEX runs_by_parent;
CREATE INDEX runs_by_workflow ON runs (workflow);
CREATE INDEX runs_by_status ON runs (status) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
";

/// Version 10: on whose behalf a run executes, and credentials (decision record 0033).
/// - `runs.owner` is the owner's JSON, NULL for the default owner (organization and project
///   `default`, no user): a run started without one, the common case, binds a NULL and
///   stores nothing new, and every run created before this version reads back with the
///   default owner.
/// - `credentials` holds one row per credential: its holder (scope, organization, and the
///   project or user of that scope: `user_name`, as PostgreSQL reserves `user`), the names
///   of its fields (a JSON array) and the fields themselves, sealed by the engine (the store
///   cannot read them). Lookups are by key and organization. Credential writes go through
///   the writer thread like every other write, each in its own savepoint.
const V10: &str = "
ALTER TABLE runs ADD COLUMN owner TEXT;
CREATE TABLE credentials (
    id         TEXT PRIMARY KEY NOT NULL,
    key        TEXT NOT NULL,
    scope      TEXT NOT NULL CHECK (scope = 'user' OR scope = 'project' OR scope = 'organization'),
    org        TEXT NOT NULL,
    project    TEXT,
    user_name  TEXT,
    is_default INTEGER NOT NULL CHECK (is_default = 0 OR is_default = 1),
    fields     TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX credentials_by_key ON credentials (key, org);
";

/// Version 11: cron schedules (decision record 0034).
/// - `schedules` holds one row per schedule: its spec as JSON (workflow, input, expression,
///   time zone, policies: compared whole to tell an edit from a repeat), the paused flag and
///   the next fire time, which a fire advances with a compare-and-set in the transaction
///   that inserts the occurrence's runs. The partial index finds the due ones.
/// - `schedule_misses` holds the fire times that started no run, with the reason, the
///   newest 100 per schedule.
const V11: &str = "
CREATE TABLE schedules (
    id           TEXT PRIMARY KEY NOT NULL,
    spec         TEXT NOT NULL,
    paused       INTEGER NOT NULL CHECK (paused = 0 OR paused = 1),
    next_fire_at INTEGER NOT NULL,
    last_fire_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
CREATE TABLE schedule_misses (
    schedule_id TEXT NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX schedule_misses_by_schedule ON schedule_misses (schedule_id);
";

/// Version 12: the webhook deliveries log (decision record 0037): one row per delivery to a
/// known endpoint (status, outcome, reason, delivery id, run; never the body), the newest
/// 1,000 per endpoint, read newest first by `seq`.
const V12: &str = "
CREATE TABLE webhook_deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    delivery_id TEXT,
    run_id      TEXT
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint, seq);
";

/// Version 13: poll sources (decision record 0038).
/// - `poll_sources` holds one row per source: its cursor (the poll function's JSON), when
///   it is polled next (the partial index finds the due ones), its error streak and state,
///   and the lease of the poll under way with its fencing token, which every claim grows
///   and a poll's commit must still name.
/// - `poll_items` holds the item keys each source saw in the last seven days (pruned as
///   polls commit): an item polled again within them starts nothing.
const V13: &str = "
CREATE TABLE poll_sources (
    name               TEXT PRIMARY KEY NOT NULL,
    workflow           TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state = 'active' OR state = 'paused' OR state = 'failing'),
    cursor             TEXT,
    seeded             INTEGER NOT NULL CHECK (seeded = 0 OR seeded = 1),
    next_poll_at       INTEGER NOT NULL,
    consecutive_errors INTEGER NOT NULL,
    last_error         TEXT,
    last_polled_at     INTEGER,
    lease_owner        TEXT,
    lease_expires_at   INTEGER,
    fencing_token      INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX poll_sources_due ON poll_sources (next_poll_at) WHERE state <> 'paused';
CREATE TABLE poll_items (
    source   TEXT NOT NULL,
    item_key TEXT NOT NULL,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (source, item_key)
) WITHOUT ROWID;
CREATE INDEX poll_items_by_age ON poll_items (source, seen_at);
";

/// Version 14: the web UI's listings read an index each (decision record 0041).
/// - `runs_idempotency` is keyed by the key first, then the workflow: the same uniqueness
///   (one run per workflow and key), and a search by key alone (the runs list's `q`) reads
///   it. Nothing more is written per run.
/// - `runs_by_created` (dropped in version 9) is back for a creation time range, listed by
///   `created_at`: one entry per run, at the right edge of the index, written with the run.
const V14: &str = "
DROP INDEX runs_idempotency;
CREATE UNIQUE INDEX runs_idempotency ON runs (idempotency_key, workflow) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_created ON runs (created_at);
";

/// The migrations, oldest first. Append new ones; never edit a released one.
pub(crate) const MIGRATIONS: &[&str] =
    &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14];

/// How many statements each connection keeps prepared.
const STATEMENT_CACHE: usize = 64;

/// Opens the connection the writer thread owns: WAL, `synchronous=NORMAL` with the WAL synced
/// by the writer's sync thread before any commit is acknowledged (durable like FULL, with the
/// fsync off the SQL thread), foreign keys, the busy timeout, and the schema brought up to date.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|error| cannot_open(path, error))?;
    configure(&conn, busy_timeout)?;
    let wal = while_locked(busy_timeout, || {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
        Ok(mode.eq_ignore_ascii_case("wal").then_some(()))
    })?;
    if wal.is_none() {
        return Err(StoreError::Unavailable(format!(
            "SQLite could not put {} in WAL mode; keep the database on a local disk",
            path.display()
        )));
    }
    // NORMAL: SQLite does not sync the WAL at COMMIT (it still does before checkpoints); the
    // writer's sync thread does, before any caller is answered (see `pipeline::Syncer`).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_error)?;
    // Off while migrating (a migration may rebuild a table others reference: SQLite's own
    // recipe), checked at the end of it, and on from then on.
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(sql_error)?;
    while_locked(busy_timeout, || migrate_once(&conn).map(Some))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sql_error)?;
    Ok(conn)
}

/// Runs `attempt` again, after a short pause, while another connection's lock keeps it from
/// finishing (an error of `SQLITE_BUSY`/`SQLITE_LOCKED`, or `Ok(None)`: "not yet"), for up
/// to `busy_timeout`. SQLite's busy handler covers most waits but not all: switching a new
/// file to WAL needs an exclusive lock and fails at once (or silently keeps the old mode)
/// while another process opens the same file, as does a lock upgrade that could deadlock.
fn while_locked<T>(
    busy_timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> StoreResult<Option<T>> {
    let deadline = Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let outcome = attempt();
        let locked = match &outcome {
            Ok(done) => done.is_none(),
            Err(Error::Sql(error)) => {
                matches!(
                    error.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                )
            }
            Err(Error::Store(_)) => false,
        };
        if !locked || Instant::now() >= deadline {
            return outcome.map_err(StoreError::from);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Opens a connection for reads only (`query_only`), on a file the writer has set up.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|error| cannot_open(path, error))?;
    configure(&conn, busy_timeout)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql_error)?;
    Ok(conn)
}

fn configure(conn: &Connection, busy_timeout: Duration) -> StoreResult<()> {
    conn.busy_timeout(busy_timeout).map_err(sql_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn cannot_open(path: &Path, error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot open the SQLite database {}: {error}",
        path.display()
    ))
}

/// Brings the schema up to [`MIGRATIONS`]`.len()`, all or nothing.
pub(crate) fn migrate_once(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match apply_missing(conn) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(error) => {
            if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(%rollback, "rolling back a failed migration failed");
            }
            Err(error)
        }
    }
}

fn apply_missing(conn: &Connection) -> Result<()> {
    let version = schema_version(conn)?;
    let known = MIGRATIONS.len();
    let Ok(applied) = usize::try_from(version) else {
        return Err(StoreError::Corrupt(format!(
            "the database has a negative schema version ({version})"
        ))
        .into());
    };
    if applied > known {
        return Err(Error::Store(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this build of Cairn understands ({known}); \
             upgrade Cairn to open it"
        ))));
    }
    for script in &MIGRATIONS[applied..] {
        conn.execute_batch(script)?;
    }
    if applied < known {
        let dangling: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })?;
        if dangling > 0 {
            return Err(StoreError::Corrupt(format!(
                "after upgrading the schema to version {known}, {dangling} rows reference runs that \
                 do not exist; the upgrade was rolled back"
            ))
            .into());
        }
        conn.pragma_update(None, "user_version", known as i64)?;
    }
    Ok(())
}

/// The schema version stored in the file.
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
#[path = "schema_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "schema_v10_tests.rs"]
mod v10_tests;

#[cfg(test)]
#[path = "schema_v11_tests.rs"]
mod v11_tests;

#[cfg(test)]
#[path = "schema_v12_tests.rs"]
mod v12_tests;

#[cfg(test)]
#[path = "schema_v13_tests.rs"]
mod v13_tests;

#[cfg(test)]
#[path = "schema_v14_tests.rs"]
mod v14_tests;
