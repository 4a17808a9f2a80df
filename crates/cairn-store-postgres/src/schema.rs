//! The versioned schema, migrated on connect, and the check of schema names.
//!
//! The version lives in a one-row table `cairn_schema_version`. [`MIGRATIONS`] is the ordered
//! list of scripts, script `n` taking the schema from version `n` to `n + 1`. They run in one
//! transaction holding a transaction-scoped advisory lock keyed by the schema's name, so
//! several workers starting at once migrate it exactly once (the others wait, then find it up
//! to date), and a failed migration leaves the database as it was.

use cairn_store::{StoreError, StoreResult};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::error::{Result, sql_error};

/// Version 1: runs, their logs and their hooks; the same tables and meaning as SQLite's.
///
/// `finished_at IS NULL` exactly while a run has not ended (checked), so the partial index
/// `runs_claimable` holds only unended runs, ordered by when they may next be claimed. A
/// leased run's `ready_at` is its lease's expiry, so "ready by now" alone finds queued runs,
/// woken runs and lapsed leases. `n` numbers runs in insertion order (listings break ties of
/// `created_at` with it, newest first). Payloads are `TEXT`: see `codec`.
const V1: &str = "
CREATE TABLE runs (
    id               UUID PRIMARY KEY,
    n                BIGINT GENERATED ALWAYS AS IDENTITY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('queued', 'running', 'sleeping', 'waiting', 'succeeded', 'failed', 'canceled')),
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    parent_run_id    UUID,
    forked_from_run  UUID,
    forked_from_step TEXT,
    trigger          TEXT NOT NULL,
    executions       BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    ready_at         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    UNIQUE (workflow, idempotency_key),
    CHECK ((finished_at IS NULL) = (status NOT IN ('succeeded', 'failed', 'canceled'))),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX runs_claimable ON runs (ready_at, workflow) WHERE finished_at IS NULL;
CREATE INDEX runs_by_created ON runs (created_at, n);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at, n);
CREATE INDEX runs_by_status ON runs (status, created_at, n);
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at, n) WHERE parent_run_id IS NOT NULL;

CREATE TABLE events (
    run_id   UUID NOT NULL REFERENCES runs (id),
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    type     TEXT NOT NULL,
    step_key TEXT,
    payload  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE hooks (
    token      TEXT PRIMARY KEY,
    run_id     UUID NOT NULL REFERENCES runs (id),
    step_key   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'resumed', 'timed_out', 'closed')),
    schema     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    timeout_at BIGINT,
    closed_at  BIGINT,
    CHECK ((closed_at IS NULL) = (state = 'pending'))
);
CREATE INDEX hooks_by_run ON hooks (run_id, created_at);
CREATE INDEX hooks_pending ON hooks (created_at) WHERE state = 'pending';
";

/// Version 2: a step's append writes only its `events` rows. `runs.last_seq` goes (a run's
/// last `seq` is its highest `events` row's, and its `updated_at` as read is the later of the
/// row's and its last event's `at`), runs created from now on store no `RunCreated` (reads
/// make it from the row when no `events` row has seq 1; older runs keep theirs), and
/// `events` loses its foreign key (the store inserts events only for a run whose row it
/// holds locked). Decision record 0032.
const V2: &str = "
ALTER TABLE events DROP CONSTRAINT events_run_id_fkey;
ALTER TABLE runs DROP COLUMN last_seq;
";

/// Version 3: on whose behalf a run executes, and credentials (decision record 0033), as in
/// SQLite's version 10.
/// - `runs.owner` is the owner's JSON, NULL for the default owner: a run started without
///   one binds a NULL, and runs created before this version read back with the default
///   owner. (A column without a default: adding it rewrites no row.)
/// - `credentials` holds one row per credential: its holder (scope, organization, and the
///   project or user of that scope; `user_name`, as `user` is reserved), the names of its
///   fields (JSON text) and the fields, sealed by the engine. Lookups are by key and
///   organization. Its writes serialise on a table lock (see `credentials`).
const V3: &str = "
ALTER TABLE runs ADD COLUMN owner TEXT;
CREATE TABLE credentials (
    id         TEXT PRIMARY KEY,
    key        TEXT NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('user', 'project', 'organization')),
    org        TEXT NOT NULL,
    project    TEXT,
    user_name  TEXT,
    is_default BOOLEAN NOT NULL,
    fields     TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX credentials_by_key ON credentials (key, org);
";

/// Version 4: cron schedules (decision record 0034), as in SQLite's version 11: one row per
/// schedule (its spec as JSON, compared whole to tell an edit from a repeat; the paused flag;
/// the next fire time, which a fire advances holding the row, in the transaction that
/// inserts the occurrence's runs), the partial index that finds the due ones, and the fire
/// times that started no run, with the reason (`n` orders them; the newest 100 are kept).
const V4: &str = "
CREATE TABLE schedules (
    id           TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    paused       BOOLEAN NOT NULL,
    next_fire_at BIGINT NOT NULL,
    last_fire_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
CREATE TABLE schedule_misses (
    n           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX schedule_misses_by_schedule ON schedule_misses (schedule_id, n);
";

/// Version 5: the webhook deliveries log (decision record 0037), as in SQLite's version 12:
/// one row per delivery to a known endpoint (status, outcome, reason, delivery id, run;
/// never the body), `n` ordering them, the newest 1,000 per endpoint kept.
const V5: &str = "
CREATE TABLE webhook_deliveries (
    n           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint    TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    delivery_id TEXT,
    run_id      UUID
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint, n);
";

/// Version 6: poll sources (decision record 0038), as in SQLite's version 13: one row per
/// source (its cursor as JSON text, when it is polled next, its error streak and state, the
/// lease of the poll under way with the fencing token every claim grows), the partial index
/// that finds the due ones, and the item keys each source saw in the last seven days.
const V6: &str = "
CREATE TABLE poll_sources (
    name               TEXT PRIMARY KEY,
    workflow           TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('active', 'paused', 'failing')),
    cursor             TEXT,
    seeded             BOOLEAN NOT NULL,
    next_poll_at       BIGINT NOT NULL,
    consecutive_errors INTEGER NOT NULL,
    last_error         TEXT,
    last_polled_at     BIGINT,
    lease_owner        TEXT,
    lease_expires_at   BIGINT,
    fencing_token      BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX poll_sources_due ON poll_sources (next_poll_at) WHERE state <> 'paused';
CREATE TABLE poll_items (
    source   TEXT NOT NULL,
    item_key TEXT NOT NULL,
    seen_at  BIGINT NOT NULL,
    PRIMARY KEY (source, item_key)
);
CREATE INDEX poll_items_by_age ON poll_items (source, seen_at);
";

/// Version 7: the uniqueness of a key per workflow is kept by an index keyed by the key
/// first (`UNIQUE (idempotency_key, workflow)`, the same constraint, inferred alike by
/// `ON CONFLICT`), so the web UI's search by key alone reads it rather than the whole index
/// (decision record 0041). Nothing more is written per run.
const V7: &str = "
ALTER TABLE runs DROP CONSTRAINT runs_workflow_idempotency_key_key;
ALTER TABLE runs ADD CONSTRAINT runs_idempotency UNIQUE (idempotency_key, workflow);
";

/// Version 8: the front of the queue is read by two functions whose own settings price
/// sorts and sequential scans out, so that their plans read `runs_claimable` in order however
/// few ready runs the planner expected when it made them (decision record 0052): a plan that
/// collects every ready run and sorts them reads the whole queue at each claim. A claim locks
/// what `cairn_ready_front` returns and leases it in the same statement; `ROWS 64` (a claim's
/// usual size) is the row count that statement's join is planned for.
const V8: &str = "
CREATE FUNCTION cairn_ready_front(now_ms BIGINT, workflows TEXT[], max_runs BIGINT)
RETURNS TABLE (picked_id UUID, was_ready_at BIGINT, picked_n BIGINT)
LANGUAGE plpgsql VOLATILE ROWS 64
SET enable_sort = off SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN QUERY
        SELECT runs.id, runs.ready_at, runs.n FROM runs
        WHERE runs.finished_at IS NULL AND runs.ready_at <= now_ms
            AND (runs.lease_owner IS NULL OR runs.lease_expires_at <= now_ms)
            AND runs.workflow = ANY(workflows)
        ORDER BY runs.ready_at LIMIT max_runs
        FOR UPDATE SKIP LOCKED;
END
$fn$;
CREATE FUNCTION cairn_next_ready_at(workflows TEXT[])
RETURNS BIGINT
LANGUAGE plpgsql STABLE
SET enable_sort = off SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN (SELECT runs.ready_at FROM runs
        WHERE runs.finished_at IS NULL AND runs.workflow = ANY(workflows)
        ORDER BY runs.ready_at LIMIT 1);
END
$fn$;
";

/// The migrations, oldest first. Append new ones; never edit a released one.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8];

/// The first key of the advisory lock taken while migrating (`'cair'`); the second is a hash
/// of the schema's name, so migrations of different schemas do not wait for each other.
const MIGRATION_LOCK: i32 = 0x6361_6972;

/// Longest identifier PostgreSQL keeps whole (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER: usize = 63;

/// Checks a schema name given in the options: lowercase ASCII letters, digits and `_`, not
/// starting with a digit, at most 63 bytes. Such a name needs no quoting anywhere (SQL, the
/// `search_path` startup option), which is why nothing else is accepted.
pub(crate) fn check_schema_name(name: &str) -> StoreResult<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "{name:?} cannot be a Cairn schema name: use 1 to {MAX_IDENTIFIER} lowercase letters, digits \
             and underscores, not starting with a digit"
        )))
    }
}

/// Creates `schema` if given (else uses the connection's current schema) and brings it up to
/// [`MIGRATIONS`]`.len()`, all or nothing. Returns the schema the tables are in.
pub(crate) async fn migrate(conn: &mut PgConnection, schema: Option<&str>) -> StoreResult<String> {
    if let Some(current) = up_to_date(conn, schema).await {
        return Ok(current);
    }
    let mut tx = sqlx::Connection::begin(conn).await.map_err(sql_error)?;
    let migrated = apply_missing(&mut tx, schema).await;
    match migrated {
        Ok(schema) => {
            tx.commit().await.map_err(sql_error)?;
            Ok(schema)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, "rolling back a failed migration failed");
            }
            Err(error.into())
        }
    }
}

/// The current schema and the version of its tables: every store's first statement.
pub(crate) const UP_TO_DATE_SQL: &str =
    "SELECT current_schema(), (SELECT version FROM cairn_schema_version)";

/// The schema the tables are in, if they are there and at this build's version: one round
/// trip, no transaction, no lock, which is what a connection of a one-shot command needs.
/// `None` means "migrate" (also when the schema or its version table does not exist yet, and
/// PostgreSQL refused the query).
async fn up_to_date(conn: &mut PgConnection, schema: Option<&str>) -> Option<String> {
    let row = sqlx::query(UP_TO_DATE_SQL)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
    let current: String = row.try_get::<Option<String>, _>(0).ok()??;
    let version: Option<i64> = row.try_get(1).ok()?;
    let known = i64::try_from(MIGRATIONS.len()).ok()?;
    (version == Some(known) && schema.is_none_or(|schema| schema == current)).then_some(current)
}

async fn apply_missing(conn: &mut PgConnection, schema: Option<&str>) -> Result<String> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2, current_schema(), '')))")
        .bind(MIGRATION_LOCK)
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    if let Some(schema) = schema {
        check_schema_name(schema)?;
        let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut *conn)
            .await?;
    }
    let current: Option<String> = sqlx::query("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let Some(current) = current else {
        return Err(StoreError::Unavailable(
            "PostgreSQL has no schema to create Cairn's tables in (the search_path names none that exists); \
             set PostgresOptions::schema or fix the search_path"
                .into(),
        )
        .into());
    };
    if schema.is_some_and(|schema| schema != current) {
        return Err(StoreError::Unavailable(format!(
            "the connection's search_path does not start with schema {schema:?} (it resolves to {current:?}); \
             do not override search_path when PostgresOptions::schema is set"
        ))
        .into());
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS cairn_schema_version (
             singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
             version   BIGINT NOT NULL
         )",
    )
    .execute(&mut *conn)
    .await?;
    let applied = schema_version(conn).await?;
    let known = MIGRATIONS.len();
    let Ok(applied) = usize::try_from(applied) else {
        return Err(StoreError::Corrupt(format!(
            "schema {current} has a negative Cairn schema version ({applied})"
        ))
        .into());
    };
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "schema {current} has Cairn schema version {applied}, newer than this build of Cairn understands \
             ({known}); upgrade Cairn to use it"
        ))
        .into());
    }
    for script in &MIGRATIONS[applied..] {
        sqlx::raw_sql(*script).execute(&mut *conn).await?;
    }
    if applied < known {
        sqlx::query(
            "INSERT INTO cairn_schema_version (version) VALUES ($1) \
             ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(known as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(current)
}

/// The schema version recorded in the current schema (0 before the first migration).
pub(crate) async fn schema_version(conn: &mut PgConnection) -> Result<i64> {
    let row = sqlx::query("SELECT version FROM cairn_schema_version")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => 0,
    })
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plans_tests.rs"]
mod plans_tests;

#[cfg(test)]
#[path = "schema_v5_tests.rs"]
mod v5_tests;

#[cfg(test)]
#[path = "schema_v6_tests.rs"]
mod v6_tests;

#[cfg(test)]
#[path = "schema_v7_tests.rs"]
mod v7_tests;

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn schema_names_need_no_quoting() {
        for good in ["cairn", "cairn_test_0193abc", "_x", &"a".repeat(63)] {
            check_schema_name(good).expect(good);
        }
        for bad in [
            "",
            "1abc",
            "Cairn",
            "a-b",
            "a b",
            "x;drop",
            "ü",
            &"a".repeat(64),
        ] {
            let error = check_schema_name(bad).expect_err(bad);
            assert!(error.to_string().contains("lowercase"), "{error}");
        }
    }
}
