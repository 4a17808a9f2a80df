//! Tests of schema version 11: a file of every older version upgrades to schedules, on which
//! a schedule is saved and fired (its run created in the fire's savepoint), and a run a
//! version 10 file holds under an occurrence's key is the one a fire answers.

use cairn_store::{
    CatchUpPolicy, FireOutcome, NewRun, OverlapPolicy, ScheduleFire, ScheduleMiss, SchedulePut,
    ScheduleRecord, ScheduleSpec,
};
use serde_json::json;
use tokio::sync::oneshot;

use super::{open_writer, tests::file_at_version, tests::upgraded_from_every_version};
use crate::{
    read,
    run_cache::RunCache,
    schedules::{self, PreparedFire, ScheduleWrite},
    writer::{
        Command,
        tests::{NOW, execute_batch},
    },
};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const KEY: &str = "sched:nightly:2026-03-29T01:30:00Z";

fn nightly() -> ScheduleRecord {
    ScheduleRecord {
        id: "nightly".into(),
        spec: ScheduleSpec {
            workflow: "w".into(),
            input: json!({}),
            expression: "30 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            catch_up: CatchUpPolicy::Latest,
            overlap: OverlapPolicy::AllowAll,
        },
        paused: false,
        next_fire_at_ms: NOW,
        last_fire_at_ms: None,
        created_at_ms: NOW,
        updated_at_ms: NOW,
    }
}

/// Fires `nightly` at `NOW` through the writer, starting the occurrence under [`KEY`].
fn fire(conn: &rusqlite::Connection) -> FireOutcome {
    let run = NewRun {
        id: cairn_store::RunId::new(),
        workflow: "w".into(),
        input: json!({}),
        idempotency_key: Some(KEY.into()),
        parent_run_id: None,
        forked_from: None,
        trigger: "schedule:nightly@2026-03-29T01:30:00Z".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: NOW,
    };
    let fire = ScheduleFire {
        schedule_id: "nightly".into(),
        expected_next_fire_at_ms: NOW,
        runs: vec![run],
        next_fire_at_ms: NOW + 86_400_000,
        last_fire_at_ms: Some(NOW),
        misses: vec![ScheduleMiss {
            first_ms: NOW - 86_400_000,
            last_ms: NOW - 86_400_000,
            reason: "downtime".into(),
            recorded_at_ms: NOW,
        }],
        now_ms: NOW,
    };
    let (reply, fired) = oneshot::channel();
    let fire = Box::new(PreparedFire::new(fire).expect("encode"));
    execute_batch(
        conn,
        &mut RunCache::default(),
        [Command::Schedule(ScheduleWrite::Fire { fire, reply })],
    );
    fired.blocking_recv().expect("answered").expect("fire")
}

#[test]
fn a_file_of_every_older_version_upgrades_to_schedules() {
    upgraded_from_every_version(|conn, version| {
        let (reply, put) = oneshot::channel();
        let write = ScheduleWrite::Put {
            schedule: Box::new(nightly()),
            reply,
        };
        execute_batch(conn, &mut RunCache::default(), [Command::Schedule(write)]);
        let (done, _) = put.blocking_recv().expect("answered").expect("put");
        assert_eq!(done, SchedulePut::Created, "from version {version}");
        let FireOutcome::Fired(created) = fire(conn) else {
            panic!("the fire commits, from version {version}");
        };
        assert!(created[0].created, "from version {version}");
        let stored = schedules::get(conn, "nightly").expect("get").expect("row");
        assert_eq!(stored.next_fire_at_ms, NOW + 86_400_000);
        assert_eq!(schedules::misses(conn, "nightly").expect("misses").len(), 1);
        assert_eq!(
            fire(conn),
            FireOutcome::Superseded,
            "the fire time is taken"
        );
    });
}

#[test]
fn a_version_10_run_under_an_occurrence_key_is_the_one_a_fire_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.db");
    let old = file_at_version(&path, 10);
    let id = "01a21a74-415a-7499-bb4b-a136a9293b9c";
    old.execute(
        "INSERT INTO runs (id, workflow, status, input, idempotency_key, trigger, ready_at, \
         created_at, updated_at) VALUES (?1, 'w', 'queued', '{}', ?2, 'test', 0, 1, 1)",
        [id, KEY],
    )
    .expect("a version 10 run");
    drop(old);
    let conn = open_writer(&path, TIMEOUT).expect("upgrade");
    let (reply, put) = oneshot::channel();
    execute_batch(
        &conn,
        &mut RunCache::default(),
        [Command::Schedule(ScheduleWrite::Put {
            schedule: Box::new(nightly()),
            reply,
        })],
    );
    put.blocking_recv().expect("answered").expect("put");
    let FireOutcome::Fired(created) = fire(&conn) else {
        panic!("the fire commits");
    };
    assert_eq!(created[0].run_id.to_string(), id);
    assert!(!created[0].created, "the key's run exists: nothing new");
    let runs = read::list_runs(&conn, &Default::default()).expect("list");
    assert_eq!(runs.len(), 1);
}
