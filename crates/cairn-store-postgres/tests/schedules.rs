//! Schedules fired by several stores at once (eight pools, as eight worker processes) on one
//! schema: one fire time gets one run, however the fires interleave, and a schema of the
//! previous version upgrades with its runs' keys still deciding.

mod common;

use std::sync::Arc;

use cairn_store::{
    CatchUpPolicy, FireOutcome, NewRun, OverlapPolicy, RunFilter, RunId, ScheduleFire,
    ScheduleRecord, ScheduleSpec, Store,
};
use common::TestSchema;
use serde_json::json;
use tokio::sync::Barrier;

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn every_minute() -> ScheduleRecord {
    ScheduleRecord {
        id: "digest".into(),
        spec: ScheduleSpec {
            workflow: "w".into(),
            input: json!({}),
            expression: "* * * * *".into(),
            timezone: "UTC".into(),
            catch_up: CatchUpPolicy::Latest,
            overlap: OverlapPolicy::AllowAll,
        },
        paused: false,
        next_fire_at_ms: T0,
        last_fire_at_ms: None,
        created_at_ms: T0,
        updated_at_ms: T0,
    }
}

fn fire_at(at: i64) -> ScheduleFire {
    ScheduleFire {
        schedule_id: "digest".into(),
        expected_next_fire_at_ms: at,
        runs: vec![NewRun {
            id: RunId::new(),
            workflow: "w".into(),
            input: json!({}),
            idempotency_key: Some(format!("sched:digest:{at}")),
            parent_run_id: None,
            forked_from: None,
            trigger: format!("schedule:digest@{at}"),
            owner: Default::default(),
            history: Vec::new(),
            lease: None,
            now_ms: at,
        }],
        next_fire_at_ms: at + MINUTE,
        last_fire_at_ms: Some(at),
        misses: Vec::new(),
        now_ms: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_stores_racing_each_fire_time_start_one_run_each() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(Arc::new(schema.store().await));
    }
    stores[0].put_schedule(every_minute()).await.expect("put");
    for minute in 0..5 {
        let at = T0 + minute * MINUTE;
        let start = Arc::new(Barrier::new(stores.len()));
        let racers: Vec<_> = stores
            .iter()
            .map(|store| {
                let (store, start) = (Arc::clone(store), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    store.fire_schedule(fire_at(at)).await.expect("fire")
                })
            })
            .collect();
        let mut fired = 0;
        for racer in racers {
            if matches!(racer.await.expect("a racer"), FireOutcome::Fired(_)) {
                fired += 1;
            }
        }
        assert_eq!(fired, 1, "one of eight stores fires minute {minute}");
    }
    let runs = stores[0]
        .list_runs(&RunFilter::default())
        .await
        .expect("list");
    let mut keys: Vec<String> = runs
        .into_iter()
        .filter_map(|run| run.idempotency_key)
        .collect();
    keys.sort();
    let expected: Vec<String> = (0..5)
        .map(|minute| format!("sched:digest:{}", T0 + minute * MINUTE))
        .collect();
    assert_eq!(keys, expected, "exactly one run per fire time");
}
