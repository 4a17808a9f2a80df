//! Tests of schema version 13: a file of every older version upgrades to poll sources, on
//! which a source is declared, claimed and committed (its item's run created in the commit's
//! savepoint), and a run a version 12 file holds under an item's key is the one a commit
//! answers.

use cairn_store::{
    Lease, NewRun, PollClaim, PollCommit, PollCommitOutcome, PollItem, PollResult,
    PollSourceRecord, WorkerId,
};
use serde_json::json;
use tokio::sync::oneshot;

use super::{open_writer, tests::file_at_version, tests::upgraded_from_every_version};
use crate::{
    polls::{self, PollWrite, PreparedCommit},
    read,
    run_cache::RunCache,
    writer::{
        Command,
        tests::{NOW, execute_batch},
    },
};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const KEY: &str = "poll:issues:42";

/// Runs one poll write through the writer and returns its answer.
fn write<T: Send + 'static>(
    conn: &rusqlite::Connection,
    make: impl FnOnce(oneshot::Sender<cairn_store::StoreResult<T>>) -> PollWrite,
) -> T {
    let (reply, answered) = oneshot::channel();
    execute_batch(conn, &mut RunCache::default(), [Command::Poll(make(reply))]);
    answered.blocking_recv().expect("answered").expect("write")
}

/// Declares `issues`, claims it and commits item 42 with its run.
fn poll_once(conn: &rusqlite::Connection) -> PollCommitOutcome {
    let source = Box::new(PollSourceRecord::new("issues", "w", NOW));
    write(conn, |reply| PollWrite::Declare { source, reply });
    let lease = Lease {
        worker: WorkerId("w1".into()),
        expires_at_ms: NOW + 30_000,
    };
    let claim: Option<PollClaim> = write(conn, |reply| PollWrite::Claim {
        name: "issues".into(),
        lease,
        now_ms: NOW,
        reply,
    });
    let claim = claim.expect("due at once");
    let run = NewRun {
        id: cairn_store::RunId::new(),
        workflow: "w".into(),
        input: json!({}),
        idempotency_key: Some(KEY.into()),
        parent_run_id: None,
        forked_from: None,
        trigger: KEY.into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: NOW,
    };
    let commit = PollCommit {
        lease: claim.lease,
        result: PollResult::Items {
            items: vec![PollItem {
                key: "42".into(),
                run: Some(run),
            }],
            cursor: Some(json!({"since": 42})),
        },
        next_poll_at_ms: NOW + 60_000,
        now_ms: NOW,
    };
    let commit = Box::new(PreparedCommit::new(commit).expect("encode"));
    write(conn, |reply| PollWrite::Commit { commit, reply })
}

#[test]
fn a_file_of_every_older_version_upgrades_to_poll_sources() {
    upgraded_from_every_version(|conn, version| {
        let PollCommitOutcome::Committed { runs, seen_before } = poll_once(conn) else {
            panic!("the commit lands, from version {version}");
        };
        assert_eq!((runs.len(), seen_before), (1, 0), "from version {version}");
        assert!(runs[0].created, "from version {version}");
        let stored = polls::get(conn, "issues").expect("get").expect("row");
        assert_eq!(stored.cursor, Some(json!({"since": 42})));
        assert!(stored.seeded && stored.lease_owner.is_none());
        assert_eq!(stored.next_poll_at_ms, NOW + 60_000);
    });
}

#[test]
fn a_version_12_run_under_an_item_key_is_the_one_a_commit_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = file_at_version(&path, 12);
    let id = "01a21a74-415a-7499-bb4b-a136a9293b9c";
    old.execute(
        "INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, \
         created_at, updated_at) VALUES (?1, 'w', 'queued', '{}', ?2, 'test', 0, 1, 1)",
        [id, KEY],
    )
    .expect("a version 12 run");
    drop(old);
    let conn = open_writer(&path, TIMEOUT).expect("upgrade");
    let PollCommitOutcome::Committed { runs, .. } = poll_once(&conn) else {
        panic!("the commit lands");
    };
    assert_eq!(runs[0].run_id.to_string(), id);
    assert!(!runs[0].created, "the key's run exists: nothing new");
    let all = read::list_runs(&conn, &Default::default()).expect("list");
    assert_eq!(all.len(), 1);
}
