//! Unit tests of the writer thread's loop: where a batch is synced, and the transaction kept
//! open while a sync is under way.

use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use cairn_store::{StoreError, StoreResult, WorkerId, watch::ChangeHub};
use tokio::sync::oneshot;

use super::{Message, Pipeline, PipelineLimits, Polled, Syncer, WalFile, poll_for};
use crate::{
    batch::Committed,
    read, schema,
    sync::Std,
    writer::{
        Command, WriteConnection,
        tests::{append, completed, leased_run, writer_connection},
    },
};

/// The store's pipeline: over SQLite, its WAL and `std`'s queues.
type SqlitePipeline<'c> = Pipeline<WriteConnection<'c>, Std>;

/// A syncer of the WAL of `dir`'s database.
fn syncer(dir: &tempfile::TempDir) -> Syncer<WalFile, Std> {
    Syncer::new(
        WalFile::new(dir.path().join("cairn.db-wal")),
        ChangeHub::new(),
    )
}

/// How long the tests' idle writer polls its queue.
const IDLE_SPIN: Duration = Duration::from_millis(20);

fn limits(max_batch: usize) -> PipelineLimits {
    PipelineLimits {
        max_batch,
        idle_spin: IDLE_SPIN,
    }
}

/// A writer thread's state over `conn`, the writer connection of a fresh file in `dir`, and
/// the sync thread's end of the hand-over.
fn pipeline<'c>(
    dir: &tempfile::TempDir,
    conn: &'c rusqlite::Connection,
    max_batch: usize,
) -> (SqlitePipeline<'c>, mpsc::Receiver<Committed>) {
    let (to_syncer, committed) = mpsc::channel();
    let db = WriteConnection::new(conn);
    let pipeline = Pipeline::new(db, limits(max_batch), syncer(dir), to_syncer);
    (pipeline, committed)
}

/// A `Flush` command, and the receiver of its answer.
fn flush() -> (Message<Command>, oneshot::Receiver<StoreResult<()>>) {
    let (reply, answer) = oneshot::channel();
    (Message::Command(Command::Flush { reply }), answer)
}

/// Runs a sync thread over everything handed over so far, as `Writer::spawn` wires one.
fn sync_handed(
    dir: &tempfile::TempDir,
    committed: mpsc::Receiver<Committed>,
) -> Vec<Message<Command>> {
    let (free, synced) = mpsc::channel();
    let (to_syncer, for_syncer) = mpsc::channel();
    for batch in committed.try_iter() {
        to_syncer.send(batch).expect("queued");
    }
    drop(to_syncer);
    syncer(dir).run(&for_syncer, &free);
    synced.try_iter().collect()
}

#[test]
fn an_idle_writer_syncs_and_answers_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, committed) = pipeline(&dir, &conn, 512);
    let (message, mut answer) = flush();

    pipeline.take(message);
    assert!(pipeline.settle_if_free(|| None).is_none());

    assert!(
        matches!(answer.try_recv(), Ok(Ok(()))),
        "answered before returning"
    );
    assert!(
        committed.try_recv().is_err(),
        "nothing went to the sync thread"
    );
}

#[test]
fn a_batch_with_work_behind_it_goes_to_the_sync_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, committed) = pipeline(&dir, &conn, 512);
    let (first, mut first_answer) = flush();
    let (behind, _) = flush();

    pipeline.take(first);
    let next = pipeline.settle_if_free(|| Some(behind));

    assert!(
        matches!(next, Some(Message::Command(Command::Flush { .. }))),
        "the work behind comes back to the loop"
    );
    assert!(
        first_answer.try_recv().is_err(),
        "not answered before a sync"
    );
    let synced = sync_handed(&dir, committed);
    assert!(matches!(first_answer.try_recv(), Ok(Ok(()))), "answered");
    assert!(
        matches!(synced[..], [Message::Synced(1)]),
        "the sync thread says it is free"
    );
}

/// The heart of the pipeline: while a sync is under way, writes go into one open
/// transaction, invisible and unanswered, committed as one when the sync thread is free.
#[test]
fn while_a_sync_is_under_way_writes_share_one_open_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, committed) = pipeline(&dir, &conn, 512);
    let holder = WorkerId("holder".into());
    let run = leased_run(&holder);
    let id = run.id;
    let (reply, mut created) = oneshot::channel();
    pipeline.take(Message::Command(Command::CreateRun { run, reply }));
    let (behind, mut behind_answer) = flush();
    let behind = pipeline
        .settle_if_free(|| Some(behind))
        .expect("handed over");
    pipeline.take(behind);

    let (first, mut first_answer) = append(id, &holder, &[completed(0)]);
    pipeline.take(Message::Command(first));
    assert!(pipeline.settle_if_free(|| None).is_none());
    let (second, mut second_answer) = append(id, &holder, &[completed(1)]);
    pipeline.take(Message::Command(second));
    assert!(pipeline.settle_if_free(|| None).is_none());

    assert!(
        !pipeline.db.sql.is_autocommit(),
        "the transaction stays open while the sync thread is busy"
    );
    let reader = schema::open_reader(&dir.path().join("cairn.db"), Duration::from_secs(1))
        .expect("open a reader");
    assert_eq!(
        read::events(&reader, id).expect("read the log").len(),
        1,
        "nothing of the open transaction is visible"
    );
    for answer in [&mut first_answer, &mut second_answer, &mut behind_answer] {
        assert!(answer.try_recv().is_err(), "not answered before a sync");
    }

    let synced = sync_handed(&dir, committed);
    assert!(
        matches!(created.try_recv(), Ok(Ok(_))),
        "the create is answered"
    );
    assert!(
        second_answer.try_recv().is_err(),
        "still not answered: its commit has not been synced"
    );
    for message in synced {
        pipeline.take(message);
    }
    assert!(pipeline.settle_if_free(|| None).is_none());

    assert!(
        pipeline.db.sql.is_autocommit(),
        "committed once the sync thread is free"
    );
    for answer in [first_answer, second_answer, behind_answer] {
        assert!(matches!(answer.blocking_recv(), Ok(Ok(()))), "answered");
    }
    assert_eq!(read::events(&reader, id).expect("read the log").len(), 3);
}

#[test]
fn a_full_transaction_is_handed_over_even_while_a_sync_is_under_way() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, committed) = pipeline(&dir, &conn, 2);
    let (first, _) = flush();
    let (behind, _) = flush();
    pipeline.take(first);
    let behind = pipeline
        .settle_if_free(|| Some(behind))
        .expect("handed over");
    pipeline.take(behind);
    let (second, _) = flush();
    let (third, _) = flush();

    pipeline.take(second);
    pipeline.take(third);

    let handed: Vec<usize> = committed.try_iter().map(|batch| batch.len()).collect();
    assert_eq!(
        handed,
        [1, 2],
        "the full batch of two went to the sync thread"
    );
    assert_eq!(pipeline.open.as_ref().map(|open| open.len()), Some(1));
}

#[test]
fn a_failed_sync_in_place_answers_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, _committed) = pipeline(&dir, &conn, 512);
    pipeline.in_place = Syncer::new(
        WalFile::new(dir.path().join("missing").join("cairn.db-wal")),
        ChangeHub::new(),
    );
    let (message, mut answer) = flush();

    pipeline.take(message);
    pipeline.settle_if_free(|| None);

    match answer.try_recv().expect("answered") {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("to sync it"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A file whose `fdatasync` fails (a pipe: `EINVAL`), as a disk's failed writeback would.
fn unsyncable() -> std::fs::File {
    let (_reader, writer) = std::io::pipe().expect("a pipe");
    std::fs::File::from(std::os::fd::OwnedFd::from(writer))
}

/// Takes a flush and settles it in place; its answer.
fn flushed(pipeline: &mut SqlitePipeline<'_>) -> StoreResult<()> {
    let (message, mut answer) = flush();
    pipeline.take(message);
    pipeline.settle_if_free(|| None);
    answer.try_recv().expect("answered")
}

#[test]
fn after_a_failed_sync_nothing_is_acknowledged_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, _committed) = pipeline(&dir, &conn, 512);
    assert!(
        flushed(&mut pipeline).is_ok(),
        "a sync that works acknowledges"
    );
    let sync_thread = pipeline.in_place.twin();

    pipeline.in_place.wal.file = Some(unsyncable());
    match flushed(&mut pipeline) {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("syncing"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The WAL could be synced again, but nothing since the failure is known to be durable.
    pipeline.in_place.wal.file = None;
    for syncer in [&mut pipeline.in_place, &mut sync_thread.twin()] {
        match syncer.sync() {
            Err(why) => assert!(why.contains("restart the process"), "{why}"),
            Ok(()) => panic!("a sync after a failed one acknowledged"),
        }
    }
    match flushed(&mut pipeline) {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("an earlier sync"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A write answered `Unavailable` is retried by its caller: had the writer committed it
/// after a failed sync, the retry would write it again (decision 0045).
#[test]
fn after_a_failed_sync_nothing_is_committed_either() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, _committed) = pipeline(&dir, &conn, 512);
    let holder = WorkerId("holder".into());
    let run = leased_run(&holder);
    let id = run.id;
    let (reply, mut created) = oneshot::channel();
    pipeline.take(Message::Command(Command::CreateRun { run, reply }));
    pipeline.settle_if_free(|| None);
    assert!(matches!(created.try_recv(), Ok(Ok(_))), "created");
    pipeline.in_place.wal.file = Some(unsyncable());
    assert!(flushed(&mut pipeline).is_err(), "the sync failed");
    pipeline.in_place.wal.file = None;

    let reader = schema::open_reader(&dir.path().join("cairn.db"), Duration::from_secs(1))
        .expect("open a reader");
    let logged = read::events(&reader, id).expect("read the log").len();
    for retry in 0..2 {
        let (write, mut answer) = append(id, &holder, &[completed(0)]);
        pipeline.take(Message::Command(write));
        pipeline.settle_if_free(|| None);
        match answer.try_recv() {
            Ok(Err(StoreError::Unavailable(why))) => {
                assert!(why.contains("restart the process"), "{why}");
            }
            other => panic!("write {retry}: expected Unavailable, got {other:?}"),
        }
        assert_eq!(
            read::events(&reader, id).expect("read the log").len(),
            logged,
            "write {retry} after the failed sync was committed"
        );
    }
}

#[test]
fn stopping_commits_and_answers_what_is_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (pipeline, _committed) = pipeline(&dir, &conn, 512);
    let (queue, messages) = mpsc::channel();
    let (first, first_answer) = flush();
    queue.send(first).expect("queued");
    queue.send(Message::Stop).expect("queued");

    pipeline.run(&messages);

    assert!(
        matches!(first_answer.blocking_recv(), Ok(Ok(()))),
        "answered"
    );
}

#[test]
fn a_transaction_that_could_not_begin_is_answered_at_once_and_not_joined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let conn = schema::open_writer(&path, Duration::from_millis(50)).expect("open the writer");
    let (to_syncer, _committed) = mpsc::channel();
    let db = WriteConnection::new(&conn);
    let mut pipeline: SqlitePipeline<'_> = Pipeline::new(db, limits(512), syncer(&dir), to_syncer);
    let (first, _) = flush();
    let (behind, _) = flush();
    pipeline.take(first);
    pipeline
        .settle_if_free(|| Some(behind))
        .expect("handed over");
    let other_process = rusqlite::Connection::open(&path).expect("open a second connection");
    other_process
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let (refused, mut refused_answer) = flush();
    pipeline.take(refused);
    match refused_answer
        .try_recv()
        .expect("answered at once, without waiting for a sync or the next command")
    {
        Err(error) => assert!(error.is_transient(), "{error}"),
        Ok(()) => panic!("the transaction could not begin"),
    }
    other_process
        .execute_batch("COMMIT")
        .expect("release the write lock");
    let (next, mut next_answer) = flush();
    pipeline.take(next);

    assert!(
        next_answer.try_recv().is_err(),
        "the next command is in a fresh transaction, waiting for its sync"
    );
    assert!(
        !pipeline.db.sql.is_autocommit(),
        "the fresh transaction began"
    );
}

#[test]
fn only_an_idle_writer_polls_its_queue_before_blocking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let (mut pipeline, committed) = pipeline(&dir, &conn, 512);
    assert_eq!(pipeline.spin_window(), IDLE_SPIN, "idle");

    let (first, _) = flush();
    pipeline.take(first);
    assert_eq!(
        pipeline.spin_window(),
        Duration::ZERO,
        "a transaction is open"
    );

    let (behind, _) = flush();
    let behind = pipeline
        .settle_if_free(|| Some(behind))
        .expect("handed over");
    assert!(pipeline.open.is_none());
    assert_eq!(
        pipeline.spin_window(),
        Duration::ZERO,
        "a batch is being synced"
    );

    pipeline.take(behind);
    pipeline.settle_if_free(|| None);
    assert!(
        pipeline.open.is_some(),
        "kept open while the sync is under way"
    );
    for message in sync_handed(&dir, committed) {
        pipeline.take(message);
    }
    pipeline.settle_if_free(|| None);
    assert_eq!(
        pipeline.spin_window(),
        IDLE_SPIN,
        "idle again once the last batch was synced in place"
    );
}

#[test]
fn polling_finds_a_message_sent_within_the_window_and_gives_up_after_it() {
    let (queue, messages) = mpsc::channel();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        queue.send(7).expect("queued");
        queue
    });
    match poll_for(&messages, Duration::from_secs(30)) {
        Polled::Message(7) => {}
        other => panic!("expected the message, got {other:?}"),
    }
    let queue = sender.join().expect("sender");

    let start = Instant::now();
    assert!(matches!(poll_for(&messages, IDLE_SPIN), Polled::Nothing));
    assert!(start.elapsed() >= IDLE_SPIN, "polled for the whole window");
    assert!(
        matches!(poll_for(&messages, Duration::ZERO), Polled::Nothing),
        "a zero window still looks once"
    );
    queue.send(8).expect("queued");
    assert!(matches!(
        poll_for(&messages, Duration::ZERO),
        Polled::Message(8)
    ));

    drop(queue);
    assert!(matches!(
        poll_for(&messages, Duration::from_secs(30)),
        Polled::Closed
    ));
}
