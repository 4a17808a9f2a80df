//! Tests of opening and migrating the SQLite file: versions, upgrades of populated files,
//! and the plans of the hot statements.

use cairn_core::RunStatus;
use cairn_store::{PatchFilter, RunFilter, RunId};

use super::*;
use crate::{listing, ops::claimable_sql, read};

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
pub(crate) fn file_at_version(path: &Path, version: usize) -> Connection {
    let old = Connection::open(path).expect("create");
    for script in &MIGRATIONS[..version] {
        old.execute_batch(script).expect("an older migration");
    }
    old.pragma_update(None, "user_version", version as i64)
        .expect("version");
    old
}

/// For each older schema version: a file at that version, opened (so upgraded) by this
/// build's writer, checked to be at the newest version, then given to `check` with the
/// version it was at.
pub(crate) fn upgraded_from_every_version(mut check: impl FnMut(&Connection, usize)) {
    let dir = tempfile::tempdir().expect("temp dir");
    for version in 0..MIGRATIONS.len() {
        let path = dir.path().join(format!("v{version}.db"));
        drop(file_at_version(&path, version));
        let conn = open_writer(&path, std::time::Duration::from_secs(1)).expect("upgrade");
        assert_eq!(
            schema_version(&conn).expect("version"),
            MIGRATIONS.len() as i64
        );
        check(&conn, version);
    }
}

/// Column `column` of every row `{explain} {sql}` returns, parameters bound to NULL.
pub(crate) fn explained(conn: &Connection, explain: &str, sql: &str, column: usize) -> Vec<String> {
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
    // Its stored `RunCreated` is read once, not merged with a made one.
    let log = read::events(&conn, id).expect("read the old log");
    for after in 0..=3 {
        let tail = read::events_after(&conn, id, after).expect("read after");
        assert_eq!(tail, log[(after as usize).min(2)..], "after {after}");
    }
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
/// `EXPLAIN QUERY PLAN` of `sql`, one step per line.
pub(crate) fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    explained(conn, "EXPLAIN QUERY PLAN", sql, 3)
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

/// A listing's filter (workflow, status, whether a parent is named), the index its plan
/// reads, and whether it sorts.
type Listing<'a> = (Option<&'a str>, Option<RunStatus>, bool, &'a str, bool);

#[test]
fn claims_and_listings_go_through_indexes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = open_writer(&dir.path().join("cairn.db"), TIMEOUT).expect("create");
    let claim = plan(&conn, &claimable_sql(2));
    assert!(
        claim.iter().any(|step| step.contains("runs_claimable")),
        "{claim:?}"
    );
    assert_indexed(&claim, "claim_ready");
    assert_indexed(&plan(&conn, &read::next_ready_sql(3)), "next_ready_at");
    for (sql, what) in [
        (read::LOAD_EVENTS, "a run's log"),
        (read::LOAD_EVENTS_AFTER, "a run's log after a seq"),
    ] {
        let log = plan(&conn, sql);
        assert_indexed(&log, what);
        assert!(
            !log.iter().any(|step| step.starts_with("SCAN")),
            "{what} scans: {log:?}"
        );
    }
    // Each listing reads its runs newest first off one index (or, unfiltered, the table
    // itself, from its end), stopping at the limit; an unended status reads the unended
    // runs only, and sorts those.
    #[rustfmt::skip]
    let listings: [Listing<'_>; 8] = [
        (None, None, false, "SCAN runs", false),
        (Some("w"), None, false, "runs_by_workflow", false),
        (None, Some(RunStatus::Failed), false, "runs_by_status", false),
        (Some("w"), Some(RunStatus::Succeeded), false, "runs_by_", false),
        (None, Some(RunStatus::Running), false, "runs_claimable", true),
        (Some("w"), Some(RunStatus::Sleeping), false, "runs_claimable", true),
        (None, None, true, "runs_by_parent", false),
        (None, Some(RunStatus::Queued), true, "runs_by_parent", false),
    ];
    for (workflow, status, parent, reads, sorts) in listings {
        let filter = RunFilter {
            workflow: workflow.map(str::to_owned),
            status,
            parent_run_id: parent.then(RunId::new),
            ..RunFilter::default()
        };
        let (sql, _) = listing::list_query(&filter);
        let steps = plan(&conn, &sql);
        let runs_step = steps
            .iter()
            .find(|step| step.contains(" runs"))
            .expect("reads runs");
        assert!(
            runs_step.contains(reads),
            "{filter:?} reads {reads}: {steps:?}"
        );
        let unfiltered = filter.status.is_none() && filter.workflow.is_none();
        assert!(
            runs_step.contains("USING") || unfiltered && filter.parent_run_id.is_none(),
            "{filter:?} goes through an index: {steps:?}"
        );
        assert_eq!(
            steps.iter().any(|step| step.contains("TEMP B-TREE")),
            sorts,
            "{filter:?} sorts: {steps:?}"
        );
        // A page after a given run reads the same index (a scan becomes a `rowid` range),
        // and sorts only if the first page did.
        let page = RunFilter {
            before: Some(RunId::new()),
            ..filter
        };
        let page_steps = plan(&conn, &listing::list_query(&page).0);
        let page_reads = if reads == "SCAN runs" {
            "INTEGER PRIMARY KEY (rowid<?)"
        } else {
            reads
        };
        assert!(
            page_steps
                .iter()
                .any(|step| step.contains(" runs") && step.contains(page_reads)),
            "{page:?} reads {page_reads}: {page_steps:?}"
        );
        assert_eq!(
            page_steps.iter().any(|step| step.contains("TEMP B-TREE")),
            sorts,
            "{page:?} sorts: {page_steps:?}"
        );
    }
    // A patch filter reads the unended runs (as an unended status does), and each one's log
    // through the log's key, never the whole log table.
    let filter = RunFilter {
        workflow: Some("w".into()),
        unended: true,
        patch: Some(PatchFilter::Without("p".into())),
        ..RunFilter::default()
    };
    let steps = plan(&conn, &listing::list_query(&filter).0);
    assert!(
        steps.iter().any(|step| step.contains("runs_claimable")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|step| step.contains("SEARCH events USING") && step.contains("run_id=?")),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|step| step.contains("SCAN events")),
        "{steps:?}"
    );
}

/// `(rowid, id, workflow, status, idempotency_key, last_seq)` of every run, by `rowid`.
type RunRow = (i64, String, String, String, Option<String>, i64);

/// Every run, its `last_seq` read by the SQL expression `last_seq` (the column until schema
/// v7, derived from `events` since).
fn all_runs(conn: &Connection, last_seq: &str) -> Vec<RunRow> {
    let mut statement = conn
        .prepare(&format!(
            "SELECT rowid, id, workflow, status, idempotency_key, {last_seq} FROM runs ORDER BY rowid"
        ))
        .expect("prepare");
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("runs")
}

/// A version 4 file with keyed and unkeyed runs (one of them ended, one deleted and so
/// leaving a gap in the `rowid`s), their logs and a hook.
fn populated_version_4(path: &Path) -> Connection {
    let old = file_at_version(path, 4);
    old.execute_batch(
        "INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, created_at, updated_at, last_seq) VALUES \
         ('01a21a74-415a-7499-bb4b-a136a9293b90', 'w', 'running', '{}', 'order-1', 'test', 0, 1, 1, 1), \
         ('01a21a74-415a-7499-bb4b-a136a9293b91', 'w', 'queued', '{}', NULL, 'test', 0, 2, 2, 1), \
         ('01a21a74-415a-7499-bb4b-a136a9293b92', 'w', 'queued', '{}', NULL, 'test', 0, 3, 3, 0), \
         ('01a21a74-415a-7499-bb4b-a136a9293b93', 'w', 'queued', '{}', NULL, 'test', 0, 4, 4, 1); \
         DELETE FROM runs WHERE id = '01a21a74-415a-7499-bb4b-a136a9293b92'; \
         UPDATE runs SET status = 'succeeded', finished_at = 5 WHERE id = '01a21a74-415a-7499-bb4b-a136a9293b93'; \
         INSERT INTO events (run_id, seq, at, type, payload) VALUES \
         ('01a21a74-415a-7499-bb4b-a136a9293b90', 1, 1, 'run_created', '{\"type\":\"run_created\",\"workflow\":\"w\",\"input\":{}}'), \
         ('01a21a74-415a-7499-bb4b-a136a9293b91', 1, 2, 'run_created', '{\"type\":\"run_created\",\"workflow\":\"w\",\"input\":{}}'), \
         ('01a21a74-415a-7499-bb4b-a136a9293b93', 1, 4, 'run_created', '{\"type\":\"run_created\",\"workflow\":\"w\",\"input\":{}}'); \
         INSERT INTO hooks (token, run_id, step_key, state, schema, created_at) VALUES \
         ('token', '01a21a74-415a-7499-bb4b-a136a9293b90', 'hook#0', 'pending', '{}', 1);",
    )
    .expect("a version 4 file");
    old
}

#[test]
fn a_populated_version_4_file_upgrades_with_every_run_row_and_reference_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = populated_version_4(&path);
    let before = all_runs(&old, "last_seq");
    drop(old);

    let conn = open_writer(&path, TIMEOUT).expect("upgrade");

    assert_eq!(
        schema_version(&conn).expect("version"),
        MIGRATIONS.len() as i64
    );
    assert_eq!(
        all_runs(&conn, crate::codec::last_seq_of!("runs.id")),
        before,
        "the same runs, with the same rowids and last seq"
    );
    let id: RunId = "01a21a74-415a-7499-bb4b-a136a9293b90".parse().expect("id");
    assert_eq!(read::events(&conn, id).expect("read the log").len(), 1);
    let foreign_keys: bool = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .expect("pragma");
    assert!(foreign_keys, "foreign keys are on again after the upgrade");
    let orphan = conn.execute(
        "INSERT INTO hooks (token, run_id, step_key, state, schema, created_at) \
         VALUES ('orphan', 'missing', 'k', 'pending', '{}', 1)",
        [],
    );
    assert!(orphan.is_err(), "hooks still reference runs");
    assert_cheap_checks(&conn);
}

#[test]
fn an_event_row_is_inserted_without_a_lookup_of_its_run_and_old_rows_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = populated_version_4(&path);
    let rows = |conn: &Connection| -> Vec<(i64, String, i64, i64)> {
        conn.prepare("SELECT rowid, run_id, seq, count FROM events ORDER BY rowid")
            .expect("prepare")
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    let before = rows(&old);
    drop(old);

    let conn = open_writer(&path, TIMEOUT).expect("upgrade");

    assert_eq!(rows(&conn), before, "the same rows, with the same rowids");
    let opcodes = explained(
        &conn,
        "EXPLAIN",
        "INSERT INTO events (run_id, seq, at, type, step_key, count, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        1,
    );
    // A foreign key's check opens the parent's index for reading; the insert itself only
    // opens `events` and its key for writing.
    assert!(
        !opcodes.iter().any(|opcode| opcode == "OpenRead"),
        "no lookup of the run: {opcodes:?}"
    );
    let duplicate = conn.execute(
        "INSERT INTO events (run_id, seq, at, type, payload) \
         VALUES ('01a21a74-415a-7499-bb4b-a136a9293b90', 1, 1, 't', '{}')",
        [],
    );
    assert!(duplicate.is_err(), "(run_id, seq) is still the key");
}

/// [`populated_version_4`], upgraded by opening it (keep the directory while using it).
fn upgraded_version_4() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    drop(populated_version_4(&path));
    let conn = open_writer(&path, TIMEOUT).expect("upgrade");
    (dir, conn)
}

#[test]
fn idempotency_keys_stay_unique_and_only_keyed_runs_are_indexed() {
    let (_dir, conn) = upgraded_version_4();
    let insert = |id: &str, key: Option<&str>| {
        conn.execute(
            "INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, created_at, updated_at) \
             VALUES (?1, 'w', 'queued', '{}', ?2, 'test', 0, 9, 9) ON CONFLICT DO NOTHING",
            rusqlite::params![id, key],
        )
        .expect("insert")
    };

    assert_eq!(insert("a", Some("order-1")), 0, "the key is taken");
    assert_eq!(insert("b", Some("order-2")), 1);
    assert_eq!(insert("c", None), 1);
    assert_eq!(insert("d", None), 1, "any number of runs without a key");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).expect(sql) };
    assert_eq!(
        count(
            "SELECT count(*) FROM runs INDEXED BY runs_idempotency WHERE idempotency_key IS NOT NULL"
        ),
        2,
        "order-1 and order-2"
    );
    let lookup = plan(
        &conn,
        "SELECT id FROM runs WHERE workflow = ?1 AND idempotency_key = ?2",
    );
    assert_indexed(&lookup, "finding a run by its key");
    assert!(
        lookup.iter().any(|step| step.contains("runs_idempotency")),
        "{lookup:?}"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM pragma_index_list('runs') WHERE name LIKE 'sqlite_autoindex_%'"
        ),
        1,
        "only the id's: no index over every run's key"
    );
}

#[test]
fn an_upgrade_that_would_leave_dangling_references_is_refused_and_rolled_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = populated_version_4(&path);
    old.pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off");
    old.execute(
        "INSERT INTO hooks (token, run_id, step_key, state, schema, created_at) \
         VALUES ('dangling', 'missing', 'k', 'pending', '{}', 1)",
        [],
    )
    .expect("a dangling hook, written with foreign keys off");
    drop(old);

    let error = open_writer(&path, TIMEOUT).expect_err("refused");

    assert!(
        matches!(&error, StoreError::Corrupt(why) if why.contains("reference runs that do not exist")),
        "{error}"
    );
    let raw = Connection::open(&path).expect("open");
    assert_eq!(schema_version(&raw).expect("version"), 4, "left as it was");
}

#[test]
fn runs_created_before_v9_list_by_status_and_newest_first_after_it() {
    let (_dir, conn) = upgraded_version_4();
    let list = |status: Option<RunStatus>| -> Vec<String> {
        let filter = RunFilter {
            status,
            ..RunFilter::default()
        };
        read::list_runs(&conn, &filter)
            .expect("list")
            .into_iter()
            .map(|run| run.run_id.to_string()[34..].to_owned())
            .collect()
    };

    assert_eq!(list(None), ["93", "91", "90"], "newest first");
    assert_eq!(
        list(Some(RunStatus::Succeeded)),
        ["93"],
        "the ended run, indexed by the upgrade"
    );
    assert_eq!(list(Some(RunStatus::Queued)), ["91"]);
    assert_eq!(list(Some(RunStatus::Running)), ["90"]);
    let status_index: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'runs_by_status'",
            [],
            |row| row.get(0),
        )
        .expect("runs_by_status");
    assert!(
        status_index.ends_with("WHERE finished_at IS NOT NULL"),
        "only ended runs: an unended one costs it nothing: {status_index}"
    );
}
