//! Following a run from another process: the test process follows a run that a `worker`
//! process executes, through its own store instance (a SQLite file both open, or one
//! PostgreSQL schema), and sees every committed event once, in order, as it is committed.

mod support;

use std::time::Duration;

use cairn::{Engine, EventRecord};
use futures::StreamExt;
use serde_json::Value;
use support::Sandbox;

fn follow_a_run_executed_by_another_process(sandbox: &Sandbox) {
    let out = sandbox.output(&[
        "run",
        "sleeper",
        "--detach",
        "--json",
        "--input",
        r#"{"tag":"followed"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let run_id = started["runId"]
        .as_str()
        .expect("run id")
        .parse()
        .expect("uuid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (seen, stored) = runtime.block_on(async {
        let store = sandbox.store().await;
        let engine = Engine::new(store.clone(), cairn_e2e::registry()).expect("engine");
        let follower = tokio::spawn(engine.follow(run_id, 0).collect::<Vec<_>>());
        // The run executes in another process while this one follows it.
        let mut worker = sandbox.spawn(&["worker"]);
        let seen = tokio::time::timeout(Duration::from_secs(60), follower).await;
        worker.kill().ok();
        worker.wait().ok();
        let seen: Vec<EventRecord> = seen
            .expect("the follower saw the run end in time")
            .expect("follower task")
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("no error");
        let stored = store.events(run_id).await.expect("events");
        (seen, stored)
    });
    assert!(
        stored.len() >= 6,
        "created, two steps, a sleep, the end: {stored:?}"
    );
    assert_eq!(
        seen,
        stored,
        "each committed event once, in order\n{}",
        sandbox.process_log()
    );
}

#[test]
fn a_follower_in_another_process_sees_every_event_of_a_sqlite_run() {
    follow_a_run_executed_by_another_process(&Sandbox::new());
}

#[test]
fn a_follower_in_another_process_sees_every_event_of_a_postgres_run() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    follow_a_run_executed_by_another_process(&sandbox);
}
