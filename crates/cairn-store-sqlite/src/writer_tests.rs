//! Unit tests of group commit: one batch, many commands, each failing or succeeding alone.

use std::{
    sync::{Mutex, PoisonError},
    thread::{self, ThreadId},
    time::Duration,
};

use cairn_core::{Event, RunStatus, StepKey, StepKind};
use cairn_store::{NewRun, RunId, StoreError, WorkerId, watch::ChangeHub};
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use serde_json::json;
use tokio::sync::oneshot;

use super::{Command, WriteConnection};
use crate::{
    batch::Batch,
    codec::{PreparedEvents, PreparedRun},
    read,
    run_cache::RunCache,
    schema,
};

pub(crate) const NOW: i64 = 1_700_000_000_000;

/// Runs `batch` in one transaction and answers at once, without syncing: for tests of the
/// batch logic.
pub(crate) fn execute_batch(
    conn: &rusqlite::Connection,
    runs: &mut RunCache,
    batch: impl IntoIterator<Item = Command>,
) {
    let mut db = WriteConnection::new(conn);
    db.runs = std::mem::take(runs);
    let mut open = Batch::begin(&mut db, false);
    for command in batch {
        open.execute(&mut db, command);
    }
    open.commit(&mut db, false).answer(None, &ChangeHub::new());
    *runs = db.runs;
}

pub(crate) fn writer_connection(dir: &tempfile::TempDir) -> rusqlite::Connection {
    schema::open_writer(&dir.path().join("cairn.db"), Duration::from_secs(1))
        .expect("open the writer connection")
}

pub(crate) fn leased_run(holder: &WorkerId) -> PreparedRun {
    let run = NewRun {
        id: RunId::new(),
        workflow: "batch".into(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: Some(cairn_store::Lease {
            worker: holder.clone(),
            expires_at_ms: NOW + 60_000,
        }),
        now_ms: NOW,
    };
    PreparedRun::new(run).expect("encode the run")
}

pub(crate) fn completed(n: u32) -> Event {
    let slug = "step".to_owned();
    Event::StepCompleted {
        call: None,
        key: StepKey::numbered(&slug, n),
        kind: StepKind::Action,
        slug,
        output: json!(n),
    }
}

pub(crate) fn append(
    id: RunId,
    worker: &WorkerId,
    events: &[Event],
) -> (Command, oneshot::Receiver<cairn_store::StoreResult<()>>) {
    let (reply, answer) = oneshot::channel();
    let events = PreparedEvents::new(events).expect("encode the events");
    (
        Command::Append {
            id,
            worker: worker.clone(),
            events,
            now_ms: NOW + 1,
            reply,
        },
        answer,
    )
}

#[test]
fn a_failing_command_fails_alone_and_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let (holder, stranger) = (WorkerId("holder".into()), WorkerId("stranger".into()));
    let run = leased_run(&holder);
    let id = run.id;
    let (create_reply, created) = oneshot::channel();

    let (first, first_answer) = append(id, &holder, &[completed(0)]);
    let (fenced, fenced_answer) = append(id, &stranger, &[completed(1)]);
    let (missing, missing_answer) = append(RunId::new(), &holder, &[completed(1)]);
    // Writes its first event and ends the run, then fails on the event after the end: the
    // savepoint must undo both the insert and the status change.
    let (half, half_answer) = append(
        id,
        &holder,
        &[Event::RunCompleted { output: json!(1) }, completed(1)],
    );
    let (last, last_answer) = append(id, &holder, &[completed(1)]);
    let batch = vec![
        Command::CreateRun {
            run,
            reply: create_reply,
        },
        first,
        fenced,
        missing,
        half,
        last,
    ];
    execute_batch(&conn, &mut runs, batch);

    assert!(
        created
            .blocking_recv()
            .expect("answered")
            .expect("created")
            .created
    );
    first_answer
        .blocking_recv()
        .expect("answered")
        .expect("the holder's append commits");
    let fenced = fenced_answer.blocking_recv().expect("answered");
    assert!(
        matches!(fenced, Err(StoreError::LeaseLost { .. })),
        "{fenced:?}"
    );
    let missing = missing_answer.blocking_recv().expect("answered");
    assert!(
        matches!(missing, Err(StoreError::RunNotFound(_))),
        "{missing:?}"
    );
    let half = half_answer.blocking_recv().expect("answered");
    assert!(
        matches!(
            half,
            Err(StoreError::RunEnded {
                status: RunStatus::Succeeded,
                ..
            })
        ),
        "{half:?}"
    );
    last_answer
        .blocking_recv()
        .expect("answered")
        .expect("commands after a failed one still commit");

    let events = read::events(&conn, id).expect("read the log");
    let logged: Vec<(u64, Event)> = events
        .into_iter()
        .map(|record| (record.seq, record.event))
        .collect();
    let expected = vec![
        (
            1,
            Event::RunCreated {
                workflow: "batch".into(),
                input: json!({}),
            },
        ),
        (2, completed(0)),
        (3, completed(1)),
    ];
    assert_eq!(
        logged, expected,
        "only the successful commands' events, numbered without gaps"
    );
    let record = read::get_run(&conn, id)
        .expect("read")
        .expect("the run exists");
    assert_eq!(
        (record.status, record.finished_at_ms),
        (RunStatus::Running, None),
        "the failed end was undone"
    );
}

#[test]
fn a_batch_that_cannot_start_answers_every_command_with_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let conn =
        schema::open_writer(&path, Duration::from_millis(50)).expect("open the writer connection");
    let mut runs = RunCache::default();
    let other_process = rusqlite::Connection::open(&path).expect("open a second connection");
    other_process
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let holder = WorkerId("holder".into());
    let (create_reply, created) = oneshot::channel();
    let (flush_reply, flushed) = oneshot::channel();
    execute_batch(
        &conn,
        &mut runs,
        vec![
            Command::CreateRun {
                run: leased_run(&holder),
                reply: create_reply,
            },
            Command::Flush { reply: flush_reply },
        ],
    );
    for answer in [
        created.blocking_recv().expect("answered").map(drop),
        flushed.blocking_recv().expect("answered"),
    ] {
        let error = answer.expect_err("the write lock is held elsewhere");
        assert!(
            error.is_transient(),
            "a busy database is a transient failure: {error}"
        );
    }

    other_process
        .execute_batch("COMMIT")
        .expect("release the write lock");
    let (create_reply, created) = oneshot::channel();
    execute_batch(
        &conn,
        &mut runs,
        vec![Command::CreateRun {
            run: leased_run(&holder),
            reply: create_reply,
        }],
    );
    assert!(
        created
            .blocking_recv()
            .expect("answered")
            .expect("created once the lock is free")
            .created
    );
}

#[test]
fn an_sql_failure_part_way_through_an_append_rolls_the_whole_batch_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let id = create_and_append(&conn, &mut runs, &[]);
    // Fails the events insert at seq 3: after the append ending the run updated its row.
    conn.execute_batch(
        "CREATE TEMP TRIGGER fail_seq_3 BEFORE INSERT ON events WHEN NEW.seq = 3 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .expect("inject a failure");
    let holder = WorkerId("holder".into());
    let end = Event::RunCompleted { output: json!(1) };
    let (before, before_answer) = append(id, &holder, &[completed(0)]);
    let (ending, ending_answer) = append(id, &holder, std::slice::from_ref(&end));
    let (after, after_answer) = append(id, &holder, &[completed(1)]);
    execute_batch(&conn, &mut runs, vec![before, ending, after]);

    let failed = ending_answer.blocking_recv().expect("answered");
    assert!(
        matches!(&failed, Err(error) if error.to_string().contains("injected failure")),
        "the failing append gets its own error: {failed:?}"
    );
    for answer in [before_answer, after_answer] {
        let error = answer
            .blocking_recv()
            .expect("answered")
            .expect_err("the batch failed");
        assert!(error.is_transient(), "writers retry it: {error}");
    }
    assert_eq!(event_rows(&conn, id), vec![], "no event of the batch");
    let record = read::get_run(&conn, id).expect("read").expect("the run");
    assert_eq!(
        (record.status, record.finished_at_ms),
        (RunStatus::Running, None),
        "the end written before the failure was undone"
    );

    conn.execute_batch("DROP TRIGGER fail_seq_3")
        .expect("end the failure");
    let (retried, retried_answer) = append(id, &holder, &[completed(0), end]);
    execute_batch(&conn, &mut runs, vec![retried]);
    retried_answer
        .blocking_recv()
        .expect("answered")
        .expect("the retry commits");
    let record = read::get_run(&conn, id).expect("read").expect("the run");
    assert_eq!(record.status, RunStatus::Succeeded);
}

/// Creates a leased run and makes each of `appends` one append to it, in one batch.
fn create_and_append(
    conn: &rusqlite::Connection,
    runs: &mut RunCache,
    appends: &[&[Event]],
) -> RunId {
    let holder = WorkerId("holder".into());
    let run = leased_run(&holder);
    let id = run.id;
    let (reply, _created) = oneshot::channel();
    let mut batch = vec![Command::CreateRun { run, reply }];
    batch.extend(appends.iter().map(|events| append(id, &holder, events).0));
    execute_batch(conn, runs, batch);
    id
}

/// `(seq, count)` of each `events` row of run `id`, in order.
pub(crate) fn event_rows(conn: &rusqlite::Connection, id: RunId) -> Vec<(i64, i64)> {
    let mut rows = conn
        .prepare("SELECT seq, count FROM events WHERE run_id = ?1 ORDER BY seq")
        .expect("prepare");
    rows.query_map([id.to_string()], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

#[test]
fn each_write_is_one_row_and_the_log_reads_back_event_by_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let id = create_and_append(
        &conn,
        &mut runs,
        &[&[completed(0)], &[completed(1), completed(2), completed(3)]],
    );

    assert_eq!(
        event_rows(&conn, id),
        vec![(2, 1), (3, 3)],
        "a row per append, numbered by its first event; the create's RunCreated is its run's row"
    );
    let log: Vec<(u64, i64, Event)> = read::events(&conn, id)
        .expect("read the log")
        .into_iter()
        .map(|record| (record.seq, record.at_ms, record.event))
        .collect();
    let created = Event::RunCreated {
        workflow: "batch".into(),
        input: json!({}),
    };
    assert_eq!(log[0], (1, NOW, created), "made from the run's row");
    assert_eq!(
        log[1..]
            .iter()
            .map(|(seq, _, event)| (*seq, event.clone()))
            .collect::<Vec<_>>(),
        (0..4)
            .map(|n| (u64::from(n) + 2, completed(n)))
            .collect::<Vec<_>>()
    );
    let record = read::get_run(&conn, id).expect("read").expect("the run");
    assert_eq!(
        record.updated_at_ms,
        NOW + 1,
        "the run row follows its last write"
    );
}

#[test]
fn a_row_whose_count_disagrees_with_its_events_is_reported_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let id = create_and_append(&conn, &mut runs, &[&[completed(0), completed(1)]]);
    conn.execute(
        "UPDATE events SET count = 3 WHERE run_id = ?1 AND seq = 2",
        [id.to_string()],
    )
    .expect("tamper");

    let read = read::events(&conn, id).map_err(StoreError::from);
    assert!(
        matches!(&read, Err(StoreError::Corrupt(why)) if why.contains("should hold 3 events but holds 2")),
        "{read:?}"
    );
}

/// The SQL of every statement run on a connection traced with [`note_statement`], with the
/// thread that ran it (tests run side by side; each takes its own thread's).
static EXECUTED: Mutex<Vec<(ThreadId, String)>> = Mutex::new(Vec::new());

fn note_statement(event: TraceEvent<'_>) {
    if let TraceEvent::Stmt(statement, _) = event {
        EXECUTED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((thread::current().id(), statement.sql().into_owned()));
    }
}

/// Runs `writes` with every statement on `conn` traced; returns what `writes` returned and
/// the distinct statements.
fn statements_of<T>(conn: &rusqlite::Connection, writes: impl FnOnce() -> T) -> (T, Vec<String>) {
    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(note_statement));
    let written = writes();
    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, None);
    let me = thread::current().id();
    let mut executed: Vec<String> = EXECUTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extract_if(.., |(thread, _)| *thread == me)
        .map(|(_, sql)| sql)
        .collect();
    executed.sort();
    executed.dedup();
    (written, executed)
}

/// SQLite builds a temporary B-tree for a `RETURNING` clause and for a constant `IN` list
/// of more than two values, at every execution: on the writer thread, the store's
/// bottleneck, no statement of a run's life may.
#[test]
fn no_write_of_a_runs_life_builds_a_temporary_btree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let ((finished, claimed), executed) = statements_of(&conn, || {
        let holder = WorkerId("holder".into());
        let ended = Event::RunCompleted { output: json!(2) };
        let finished =
            create_and_append(&conn, &mut runs, &[&[completed(0)], &[completed(1), ended]]);
        let mut queued = leased_run(&holder);
        queued.lease = None;
        let queued_id = queued.id;
        let (create_reply, _created) = oneshot::channel();
        let (claim_reply, claimed) = oneshot::channel();
        let lease = cairn_store::Lease {
            worker: holder,
            expires_at_ms: NOW + 60_000,
        };
        execute_batch(
            &conn,
            &mut runs,
            vec![
                Command::CreateRun {
                    run: queued,
                    reply: create_reply,
                },
                Command::ClaimRun {
                    id: queued_id,
                    lease,
                    now_ms: NOW + 1,
                    reply: claim_reply,
                },
            ],
        );
        (finished, claimed)
    });

    let finished = read::get_run(&conn, finished).expect("read").expect("run");
    assert_eq!(finished.status, RunStatus::Succeeded);
    let claimed = claimed.blocking_recv().expect("answered").expect("claimed");
    assert!(matches!(claimed, crate::codec::RawClaimOutcome::Claimed(_)));
    assert!(executed.len() > 5, "the trace saw the writes: {executed:?}");
    for sql in executed {
        assert!(
            !crate::schema::tests::builds_temporary_btrees(&conn, &sql),
            "builds a temporary B-tree every time it runs: {sql}"
        );
    }
}

/// `EXPLAIN QUERY PLAN` of `sql`, its steps joined by newlines.
fn query_plan(conn: &rusqlite::Connection, sql: &str) -> String {
    crate::schema::tests::plan(conn, sql).join("\n")
}

/// An append to a run the writer does not remember finds it once, by id, in the fencing
/// read; one to a run it remembers (it created it, or wrote it last) does not read it at
/// all. Either way the run's row is updated only when the run's state changes (its end),
/// by `rowid`, without a seek in the `id` index (a text key: the costliest seek).
#[test]
fn an_append_seeks_its_run_by_id_at_most_once_and_updates_it_by_rowid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut remembering = RunCache::default();
    for (forget, expected_seeks) in [(true, 1), (false, 0)] {
        let id = create_and_append(&conn, &mut remembering, &[]);
        let mut runs = if forget {
            RunCache::default()
        } else {
            std::mem::take(&mut remembering)
        };
        let executed = step_and_end(&conn, &mut runs, id);

        let updates: Vec<&String> = executed
            .iter()
            .filter(|sql| sql.starts_with("UPDATE runs"))
            .collect();
        assert_eq!(
            updates.len(),
            1,
            "the end's only: a step leaves the run's row alone: {executed:?}"
        );
        for sql in updates {
            let plan = query_plan(&conn, sql);
            assert!(plan.contains("INTEGER PRIMARY KEY"), "{sql}: {plan}");
        }
        let seeks_by_id: Vec<&String> = executed
            .iter()
            .filter(|sql| query_plan(&conn, sql).contains("(id=?)"))
            .collect();
        assert_eq!(
            seeks_by_id.len(),
            expected_seeks,
            "remembered: {}; {seeks_by_id:?}",
            !forget
        );
    }
}

/// Appends a step and then the end to run `id` (leased by "holder") in one batch, checks
/// they were written, and returns the distinct statements the batch ran.
fn step_and_end(conn: &rusqlite::Connection, runs: &mut RunCache, id: RunId) -> Vec<String> {
    let holder = WorkerId("holder".into());
    let ended = Event::RunCompleted { output: json!(1) };
    let ((), executed) = statements_of(conn, || {
        let (step, _) = append(id, &holder, &[completed(0)]);
        let (end, _) = append(id, &holder, &[completed(1), ended]);
        execute_batch(conn, runs, [step, end]);
    });
    let record = read::get_run(conn, id).expect("read").expect("run");
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(read::events(conn, id).expect("read the log").len(), 4);
    executed
}
