//! Tests of the writer's run cache: what it remembers is never staler than the table, so
//! the fencing check and the numbering of events stay right.

use cairn_core::{Event, StepKey};
use cairn_store::{HookState, Lease, RunId, StoreError, WorkerId};
use serde_json::json;
use tokio::sync::oneshot;

use super::{RUN_CACHE_CAPACITY, RunCache};
use crate::{
    codec::RawClaimOutcome,
    ops::RunState,
    waits,
    writer::{
        Command,
        tests::{NOW, append, completed, event_rows, execute_batch, leased_run, writer_connection},
    },
};

/// A writer connection in a fresh directory, and a run leased by "holder" it remembers.
fn remembered_run() -> (tempfile::TempDir, rusqlite::Connection, RunCache, RunId) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = writer_connection(&dir);
    let mut runs = RunCache::default();
    let id = create(&conn, &mut runs);
    (dir, conn, runs, id)
}

/// Creates a run leased by "holder" in its own batch, so `runs` remembers it.
fn create(conn: &rusqlite::Connection, runs: &mut RunCache) -> RunId {
    let run = leased_run(&WorkerId("holder".into()));
    let id = run.id;
    let (reply, created) = oneshot::channel();
    let remembered = runs.len();
    execute_batch(conn, runs, [Command::CreateRun { run, reply }]);
    created.blocking_recv().expect("answered").expect("created");
    assert_eq!(
        runs.len(),
        remembered + 1,
        "the writer remembers the run it created"
    );
    id
}

/// Appends `events` as "holder" in a batch of its own and returns the answer.
fn append_alone(
    conn: &rusqlite::Connection,
    runs: &mut RunCache,
    id: RunId,
    events: &[Event],
) -> cairn_store::StoreResult<()> {
    let (command, answer) = append(id, &WorkerId("holder".into()), events);
    execute_batch(conn, runs, [command]);
    answer.blocking_recv().expect("answered")
}

#[test]
fn a_commit_by_another_connection_makes_the_writer_forget_its_runs() {
    let (dir, conn, mut runs, id) = remembered_run();
    // Another process takes the lease over (as its claim of a lapsed lease would).
    let other_process =
        rusqlite::Connection::open(dir.path().join("cairn.db")).expect("open a second connection");
    other_process
        .execute(
            "UPDATE runs SET lease_owner = 'thief' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("steal the lease");

    let refused = append_alone(&conn, &mut runs, id, &[completed(0)]);
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "the old holder is fenced off: {refused:?}"
    );
    assert_eq!(event_rows(&conn, id), vec![], "nothing was appended");
}

#[test]
fn a_claim_by_another_worker_makes_the_writer_forget_the_run() {
    let (_dir, conn, mut runs, id) = remembered_run();
    let (reply, claimed) = oneshot::channel();
    let lapsed = NOW + 120_000;
    let claim = Command::ClaimRun {
        id,
        lease: Lease {
            worker: WorkerId("thief".into()),
            expires_at_ms: lapsed + 60_000,
        },
        now_ms: lapsed,
        reply,
    };
    execute_batch(&conn, &mut runs, [claim]);
    let claimed = claimed.blocking_recv().expect("answered").expect("claim");
    assert!(
        matches!(claimed, RawClaimOutcome::Claimed(_)),
        "the lease had lapsed"
    );

    let refused = append_alone(&conn, &mut runs, id, &[completed(0)]);
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "the old holder is fenced off: {refused:?}"
    );
}

#[test]
fn a_rolled_back_batch_makes_the_writer_forget_what_it_learned() {
    let (_dir, conn, mut runs, id) = remembered_run();
    let other = create(&conn, &mut runs);
    conn.execute(
        &format!(
            "CREATE TEMP TRIGGER fail_other BEFORE INSERT ON events WHEN NEW.run_id = '{other}' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ),
        [],
    )
    .expect("inject a failure");
    let holder = WorkerId("holder".into());
    // The first append succeeds and is remembered; the other run's breaks the batch, which
    // rolls both back.
    let (written, _) = append(id, &holder, &[completed(0)]);
    let (failing, failed) = append(other, &holder, &[completed(0)]);
    execute_batch(&conn, &mut runs, [written, failing]);
    assert!(failed.blocking_recv().expect("answered").is_err());
    conn.execute_batch("DROP TRIGGER fail_other")
        .expect("end the failure");

    append_alone(&conn, &mut runs, id, &[completed(0)]).expect("the retry commits");
    assert_eq!(
        event_rows(&conn, id),
        vec![(2, 1)],
        "the retry follows the last committed event (RunCreated, made from the run's row)"
    );
}

#[test]
fn an_end_closes_a_hook_a_remembered_run_registered_after_its_creation() {
    let (_dir, conn, mut runs, id) = remembered_run();
    let hook = Event::HookCreated {
        call: None,
        key: StepKey::numbered("approval", 0),
        token: "tok-remembered".into(),
        schema: json!({}),
        timeout_at_ms: None,
    };
    append_alone(&conn, &mut runs, id, &[hook]).expect("register the hook");
    let end = Event::RunCompleted { output: json!(1) };
    append_alone(&conn, &mut runs, id, &[end]).expect("end the run");

    let hook = waits::load_hook(&conn, "tok-remembered")
        .expect("read the hook")
        .expect("the hook");
    assert_eq!(hook.state, HookState::Closed, "the run's end closed it");
    assert_eq!(runs.len(), 0, "an ended run is forgotten");
}

#[test]
fn a_full_cache_starts_over_instead_of_growing() {
    let mut runs = RunCache::default();
    let state = |rowid| RunState {
        rowid,
        status: cairn_core::RunStatus::Running,
        lease_owner: Some(WorkerId("holder".into())),
        lease_expires_at: None,
        last_seq: 1,
        may_have_hooks: false,
        parent: None,
    };
    for rowid in 0..RUN_CACHE_CAPACITY {
        runs.keep(RunId::new(), state(i64::try_from(rowid).expect("small")));
    }
    assert_eq!(runs.len(), RUN_CACHE_CAPACITY);
    let last = RunId::new();
    runs.keep(last, state(-1));
    assert_eq!(runs.len(), 1, "full: started over");
    assert_eq!(runs.take(last).map(|kept| kept.rowid), Some(-1));
}
