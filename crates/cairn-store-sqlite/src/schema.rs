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

/// The migrations, oldest first. Append new ones; never edit a released one.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

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
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sql_error)?;
    while_locked(busy_timeout, || migrate_once(&conn).map(Some))?;
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
        conn.pragma_update(None, "user_version", known as i64)?;
    }
    Ok(())
}

/// The schema version stored in the file.
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use cairn_core::RunStatus;
    use cairn_store::{RunFilter, RunId};

    use super::*;
    use crate::{ops::claimable_sql, read};

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn migrations_apply_once_and_reopening_is_idempotent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cairn.db");
        let first = open_writer(&path, TIMEOUT).expect("create");
        first.execute("INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at) \
                       VALUES ('r', 'w', 'queued', '{}', 'test', 0, 0, 0)", []).expect("insert a run");
        let second = open_writer(&path, TIMEOUT).expect("reopen while the first is open");
        migrate_once(&second).expect("migrating an up-to-date file is a no-op");
        assert_eq!(
            schema_version(&second).expect("version"),
            MIGRATIONS.len() as i64
        );
        let runs: i64 = second
            .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
            .expect("count");
        assert_eq!(runs, 1, "reopening keeps the data");
        let mode: String = second
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = second
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!(
            sync, 1,
            "synchronous=NORMAL: the sync thread syncs the WAL before acks"
        );
    }

    /// A new file at schema `version`, as an older Cairn left it.
    fn file_at_version(path: &Path, version: usize) -> Connection {
        let old = Connection::open(path).expect("create");
        for script in &MIGRATIONS[..version] {
            old.execute_batch(script).expect("an older migration");
        }
        old.pragma_update(None, "user_version", version as i64)
            .expect("version");
        old
    }

    /// Column `column` of every row `{explain} {sql}` returns, parameters bound to NULL.
    pub(crate) fn explained(
        conn: &Connection,
        explain: &str,
        sql: &str,
        column: usize,
    ) -> Vec<String> {
        let mut statement = conn.prepare(&format!("{explain} {sql}")).expect("explain");
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        statement
            .query_map(rusqlite::params_from_iter(nulls), |row| row.get(column))
            .expect("explain")
            .collect::<rusqlite::Result<_>>()
            .expect("explained")
    }

    /// Whether `sql` makes SQLite build a temporary B-tree each time it runs.
    pub(crate) fn builds_temporary_btrees(conn: &Connection, sql: &str) -> bool {
        explained(conn, "EXPLAIN", sql, 1)
            .iter()
            .any(|opcode| opcode == "OpenEphemeral")
    }

    /// The checks on statuses hold, and the hot writes don't build temporary B-trees for them.
    fn assert_cheap_checks(conn: &Connection) {
        let ending = "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1";
        let creating = "INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at) \
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT DO NOTHING";
        let closing = "UPDATE hooks SET state = 'closed', closed_at = ?2 WHERE run_id = ?1";
        for sql in [ending, creating, closing] {
            assert!(!builds_temporary_btrees(conn, sql), "{sql}");
        }
        let insert = |status: &str, finished_at: Option<i64>| {
            conn.execute(
                "INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at, finished_at) \
                 VALUES (?1, 'w', ?2, '{}', 'test', 0, 0, 0, ?3)",
                rusqlite::params![format!("{status}-{finished_at:?}"), status, finished_at],
            )
        };
        insert("running", None).expect("a running run");
        insert("canceled", Some(1)).expect("a canceled run");
        for (status, finished_at) in [("bogus", None), ("failed", None), ("queued", Some(1))] {
            let refused = insert(status, finished_at).expect_err("the checks hold");
            assert!(refused.to_string().contains("CHECK"), "{refused}");
        }
        let bad_hook = conn.execute(
            "INSERT INTO hooks (token, run_id, step_key, state, schema, created_at) \
             VALUES ('t', 'running-None', 'k', 'bogus', '{}', 0)",
            [],
        );
        assert!(
            bad_hook.is_err(),
            "a hook state outside the list is refused"
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
    }

    #[test]
    fn status_checks_hold_without_temporary_btrees_new_or_upgraded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = open_writer(&dir.path().join("fresh.db"), TIMEOUT).expect("create");
        assert_cheap_checks(&fresh);

        let path = dir.path().join("upgraded.db");
        let elsewhere = file_at_version(&path, 3);
        assert!(
            builds_temporary_btrees(&elsewhere, "UPDATE runs SET status = ?2 WHERE id = ?1"),
            "version 3 checks statuses with a temporary B-tree"
        );
        let upgraded = open_writer(&path, TIMEOUT).expect("upgrade");
        assert_cheap_checks(&upgraded);
        drop(upgraded);
        // A connection opened before the upgrade sees the new schema too.
        elsewhere.execute("DELETE FROM runs", []).expect("clear");
        assert_cheap_checks(&elsewhere);
    }

    #[test]
    fn a_version_2_log_reads_the_same_after_the_upgrade() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cairn.db");
        let old = file_at_version(&path, 2);
        old.execute_batch(
            "INSERT INTO runs (id, workflow, status, input, trigger, ready_at, created_at, updated_at, last_seq) \
             VALUES ('01a21a74-415a-7499-bb4b-a136a9293b9c', 'w', 'queued', '{}', 'test', 0, 0, 0, 2); \
             INSERT INTO events (run_id, seq, at, type, payload) VALUES \
             ('01a21a74-415a-7499-bb4b-a136a9293b9c', 1, 5, 'run_created', \
              '{\"type\":\"run_created\",\"workflow\":\"w\",\"input\":{}}'), \
             ('01a21a74-415a-7499-bb4b-a136a9293b9c', 2, 6, 'run_canceled', \
              '{\"type\":\"run_canceled\",\"reason\":\"test\"}');",
        )
        .expect("a version 2 log");
        drop(old);

        let conn = open_writer(&path, TIMEOUT).expect("upgrade");
        assert_eq!(
            schema_version(&conn).expect("version"),
            MIGRATIONS.len() as i64
        );
        let id: RunId = "01a21a74-415a-7499-bb4b-a136a9293b9c".parse().expect("id");
        let seqs: Vec<(u64, i64, &str)> = read::events(&conn, id)
            .expect("read the old log")
            .iter()
            .map(|record| (record.seq, record.at_ms, record.event.type_name()))
            .collect();
        assert_eq!(seqs, vec![(1, 5, "run_created"), (2, 6, "run_canceled")]);
    }

    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cairn.db");
        drop(open_writer(&path, TIMEOUT).expect("create"));
        let raw = Connection::open(&path).expect("open");
        raw.pragma_update(None, "user_version", 99)
            .expect("pretend a newer Cairn wrote it");
        let error = open_writer(&path, TIMEOUT).expect_err("a newer schema must be refused");
        assert!(error.to_string().contains("upgrade Cairn"), "{error}");
        assert_eq!(
            schema_version(&raw).expect("version"),
            99,
            "the file is left as it was"
        );
    }

    #[test]
    fn concurrent_opens_of_a_new_file_all_succeed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cairn.db");
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || open_writer(&path, Duration::from_secs(5)).map(drop))
            })
            .collect();
        for open in opened {
            open.join()
                .expect("an opener panicked")
                .expect("every concurrent open succeeds");
        }
        let conn = open_reader(&path, TIMEOUT).expect("open");
        assert_eq!(
            schema_version(&conn).expect("version"),
            MIGRATIONS.len() as i64
        );
    }

    /// The query plan of `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str, params: usize) -> Vec<String> {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let nulls = vec![rusqlite::types::Null; params];
        let rows = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan");
        rows.collect::<rusqlite::Result<_>>().expect("plan rows")
    }

    fn assert_indexed(plan: &[String], what: &str) {
        assert!(
            plan.iter()
                .all(|step| !step.starts_with("SCAN runs") || step.contains("USING")),
            "{what} scans the runs table: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{what} sorts: {plan:?}"
        );
    }

    #[test]
    fn claims_and_listings_go_through_indexes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_writer(&dir.path().join("cairn.db"), TIMEOUT).expect("create");
        let claim = plan(&conn, &claimable_sql(2), 4);
        assert!(
            claim.iter().any(|step| step.contains("runs_claimable")),
            "{claim:?}"
        );
        assert_indexed(&claim, "claim_ready");
        assert_indexed(&plan(&conn, &read::next_ready_sql(3), 3), "next_ready_at");
        let filters = [
            RunFilter::default(),
            RunFilter {
                workflow: Some("w".into()),
                ..RunFilter::default()
            },
            RunFilter {
                status: Some(RunStatus::Failed),
                ..RunFilter::default()
            },
            RunFilter {
                parent_run_id: Some(RunId::new()),
                ..RunFilter::default()
            },
        ];
        for filter in filters {
            let (sql, values) = read::list_query(&filter);
            assert_indexed(
                &plan(&conn, &sql, values.len()),
                &format!("list_runs {filter:?}"),
            );
        }
    }
}
