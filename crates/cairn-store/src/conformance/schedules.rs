//! Schedules: the upsert by id, pause and resume, what is due, and the fire commit that
//! creates an occurrence's runs and advances its schedule at once, exactly once however many
//! workers race for it.

use std::sync::Arc;

use serde_json::json;

use super::support::{T0, create, get, new_run};
use crate::{
    CatchUpPolicy, FireOutcome, NewRun, OverlapPolicy, ScheduleFire, ScheduleMiss, SchedulePut,
    ScheduleRecord, ScheduleSpec, Store, StoreError,
};

const MINUTE: i64 = 60_000;

/// A schedule `id` every minute of workflow `w`, next due at `next`, saved at `T0`.
fn schedule(id: &str, next: i64) -> ScheduleRecord {
    ScheduleRecord {
        id: id.to_owned(),
        spec: ScheduleSpec {
            workflow: "w".to_owned(),
            input: json!({"report": id}),
            expression: "* * * * *".to_owned(),
            timezone: "UTC".to_owned(),
            catch_up: CatchUpPolicy::All {
                window_ms: 3_600_000,
            },
            overlap: OverlapPolicy::AllowAll,
        },
        paused: false,
        next_fire_at_ms: next,
        last_fire_at_ms: None,
        created_at_ms: T0,
        updated_at_ms: T0,
    }
}

/// The run of schedule `id`'s occurrence at `at`, keyed as the engine keys it.
fn occurrence(id: &str, at: i64) -> NewRun {
    NewRun {
        idempotency_key: Some(format!("sched:{id}:{at}")),
        trigger: format!("schedule:{id}@{at}"),
        now_ms: at,
        ..new_run("w", json!({"report": id}))
    }
}

/// A fire of schedule `id` read at `expected`, starting the occurrence at `expected`.
fn fire(id: &str, expected: i64, next: i64) -> ScheduleFire {
    ScheduleFire {
        schedule_id: id.to_owned(),
        expected_next_fire_at_ms: expected,
        runs: vec![occurrence(id, expected)],
        next_fire_at_ms: next,
        last_fire_at_ms: Some(expected),
        misses: Vec::new(),
        now_ms: expected,
    }
}

async fn put(store: &dyn Store, record: ScheduleRecord) -> (SchedulePut, ScheduleRecord) {
    store
        .put_schedule(record)
        .await
        .expect("put_schedule must succeed")
}

async fn stored(store: &dyn Store, id: &str) -> ScheduleRecord {
    store
        .get_schedule(id)
        .await
        .expect("get_schedule must succeed")
        .expect("the schedule must exist")
}

async fn runs_of(store: &dyn Store) -> usize {
    store
        .list_runs(&Default::default())
        .await
        .expect("list_runs must succeed")
        .len()
}

/// `put_schedule` inserts, repeats without writing, and updates an edited spec (new next
/// fire time; paused flag, last fire and creation time kept); `get`/`list` read them back.
pub async fn put_schedule_upserts_by_id(store: Arc<dyn Store>) {
    let store = &*store;
    let first = schedule("digest", T0 + MINUTE);
    assert_eq!(
        put(store, first.clone()).await,
        (SchedulePut::Created, first.clone()),
        "a new id must be inserted as given"
    );
    put(store, schedule("alpha", T0 + 5 * MINUTE)).await;
    let again = ScheduleRecord {
        next_fire_at_ms: T0 + 9 * MINUTE,
        updated_at_ms: T0 + 9 * MINUTE,
        ..first.clone()
    };
    assert_eq!(
        put(store, again).await,
        (SchedulePut::Unchanged, first.clone()),
        "the same spec again must change nothing, not even the next fire time"
    );
    store
        .set_schedule_paused("digest", true, 0, T0 + MINUTE)
        .await
        .expect("pause");
    let mut edited = schedule("digest", T0 + 7 * MINUTE);
    edited.spec.expression = "*/7 * * * *".to_owned();
    edited.created_at_ms = T0 + 2 * MINUTE;
    edited.updated_at_ms = T0 + 2 * MINUTE;
    let (done, row) = put(store, edited.clone()).await;
    assert_eq!(done, SchedulePut::Updated, "an edited spec must update");
    assert_eq!(
        row,
        ScheduleRecord {
            paused: true,
            created_at_ms: T0,
            ..edited
        },
        "an edit takes the new spec and next fire time, keeping paused and created_at"
    );
    assert_eq!(stored(store, "digest").await, row, "get must read the edit");
    let ids: Vec<String> = store
        .list_schedules()
        .await
        .expect("list_schedules")
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(ids, ["alpha", "digest"], "list_schedules must order by id");
    assert!(
        store.get_schedule("none").await.expect("get").is_none(),
        "an unknown id must read as None"
    );
}

/// A fire creates the occurrence's run under its key and advances the schedule in one
/// commit; the schedule is due before it and not after; misses are recorded, newest first.
pub async fn fire_schedule_creates_runs_and_advances(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, schedule("digest", T0 + MINUTE)).await;
    put(store, schedule("later", T0 + 10 * MINUTE)).await;
    assert!(
        store.due_schedules(T0, 10).await.expect("due").is_empty(),
        "nothing is due before its fire time"
    );
    let due = store.due_schedules(T0 + MINUTE, 10).await.expect("due");
    assert_eq!(due.len(), 1, "only the schedule whose time came is due");
    assert_eq!(due[0].id, "digest");
    let mut first = fire("digest", T0 + MINUTE, T0 + 2 * MINUTE);
    first.misses = vec![ScheduleMiss {
        first_ms: T0 - 5 * MINUTE,
        last_ms: T0 - MINUTE,
        reason: "downtime".to_owned(),
        recorded_at_ms: T0 + MINUTE,
    }];
    let run_id = first.runs[0].id;
    let outcome = store.fire_schedule(first).await.expect("fire");
    let FireOutcome::Fired(created) = outcome else {
        panic!("a fire with the stored next fire time must commit, got {outcome:?}");
    };
    assert_eq!(created.len(), 1);
    assert!(created[0].created && created[0].run_id == run_id);
    let run = get(store, run_id).await;
    assert_eq!(
        run.idempotency_key.as_deref(),
        Some(&*format!("sched:digest:{}", T0 + MINUTE))
    );
    let row = stored(store, "digest").await;
    assert_eq!(
        row.next_fire_at_ms,
        T0 + 2 * MINUTE,
        "the fire must advance the schedule"
    );
    assert_eq!(row.last_fire_at_ms, Some(T0 + MINUTE));
    assert!(
        store
            .due_schedules(T0 + MINUTE, 10)
            .await
            .expect("due")
            .is_empty(),
        "a fired schedule is not due again until its next time"
    );
    let mut second = fire("digest", T0 + 2 * MINUTE, T0 + 3 * MINUTE);
    second.misses = vec![ScheduleMiss {
        first_ms: T0,
        last_ms: T0,
        reason: "overlap".to_owned(),
        recorded_at_ms: T0 + 2 * MINUTE,
    }];
    store.fire_schedule(second).await.expect("fire");
    let misses = store.schedule_misses("digest").await.expect("misses");
    let reasons: Vec<&str> = misses.iter().map(|miss| miss.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["overlap", "downtime"],
        "misses must read newest first"
    );
    assert_eq!(misses[1].first_ms, T0 - 5 * MINUTE);
    assert!(
        store
            .schedule_misses("later")
            .await
            .expect("misses")
            .is_empty()
    );
}

/// A fire whose expected next fire time is stale, or of a paused or unknown schedule,
/// writes nothing.
pub async fn a_stale_fire_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, schedule("digest", T0 + MINUTE)).await;
    let mut stale = fire("digest", T0, T0 + MINUTE);
    stale.misses = vec![ScheduleMiss {
        first_ms: T0,
        last_ms: T0,
        reason: "x".to_owned(),
        recorded_at_ms: T0,
    }];
    assert_eq!(
        store.fire_schedule(stale).await.expect("fire"),
        FireOutcome::Superseded,
        "a fire read at another next fire time must be refused"
    );
    assert_eq!(runs_of(store).await, 0, "a refused fire must create no run");
    assert!(
        store
            .schedule_misses("digest")
            .await
            .expect("misses")
            .is_empty()
    );
    assert_eq!(
        stored(store, "digest").await,
        schedule("digest", T0 + MINUTE)
    );
    store
        .set_schedule_paused("digest", true, 0, T0)
        .await
        .expect("pause");
    assert!(
        store
            .due_schedules(T0 + MINUTE, 10)
            .await
            .expect("due")
            .is_empty(),
        "a paused schedule is never due"
    );
    assert_eq!(
        store
            .fire_schedule(fire("digest", T0 + MINUTE, T0 + 2 * MINUTE))
            .await
            .expect("fire"),
        FireOutcome::Superseded,
        "a paused schedule must not fire"
    );
    assert_eq!(
        store
            .fire_schedule(fire("none", T0 + MINUTE, T0 + 2 * MINUTE))
            .await
            .expect("fire"),
        FireOutcome::Superseded,
        "an unknown schedule must not fire"
    );
    assert_eq!(runs_of(store).await, 0);
    let resumed = store
        .set_schedule_paused("digest", false, T0 + 60 * MINUTE, T0 + 30 * MINUTE)
        .await
        .expect("resume");
    assert!(!resumed.paused);
    assert_eq!(
        resumed.next_fire_at_ms,
        T0 + 60 * MINUTE,
        "a resume sets the next fire time"
    );
    assert!(matches!(
        store.set_schedule_paused("none", true, 0, T0).await,
        Err(StoreError::ScheduleNotFound(id)) if id == "none"
    ));
}

/// Eight concurrent fires of one fire time: one commits, the others are superseded, and
/// the fire time has one run.
pub async fn concurrent_fires_create_one_run(store: Arc<dyn Store>) {
    put(&*store, schedule("digest", T0 + MINUTE)).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .fire_schedule(fire("digest", T0 + MINUTE, T0 + 2 * MINUTE))
                    .await
                    .expect("fire")
            })
        })
        .collect();
    let mut fired = 0;
    for task in tasks {
        if matches!(task.await.expect("the task"), FireOutcome::Fired(_)) {
            fired += 1;
        }
    }
    assert_eq!(fired, 1, "exactly one of eight racing fires must commit");
    assert_eq!(
        runs_of(&*store).await,
        1,
        "a fire time must have exactly one run"
    );
}

/// A fire whose occurrence key was used already creates nothing new for it and returns the
/// existing run, while still advancing the schedule.
pub async fn a_fire_returns_the_run_an_existing_key_has(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, schedule("digest", T0 + MINUTE)).await;
    let existing = create(store, occurrence("digest", T0 + MINUTE)).await;
    let mut both = fire("digest", T0 + MINUTE, T0 + 3 * MINUTE);
    both.runs.push(occurrence("digest", T0 + 2 * MINUTE));
    let new_id = both.runs[1].id;
    let outcome = store.fire_schedule(both).await.expect("fire");
    let FireOutcome::Fired(created) = outcome else {
        panic!("the fire must commit, got {outcome:?}");
    };
    assert_eq!(
        created[0].run_id, existing,
        "an existing key must answer its run"
    );
    assert!(!created[0].created, "an existing key must create nothing");
    assert_eq!((created[1].run_id, created[1].created), (new_id, true));
    assert_eq!(runs_of(store).await, 2);
    assert_eq!(
        stored(store, "digest").await.next_fire_at_ms,
        T0 + 3 * MINUTE
    );
}

/// `delete_schedule` removes the schedule and its misses (the runs it started stay), a fire
/// read before it is superseded, and an unknown id answers `false`.
pub async fn delete_schedule_removes_it_and_its_misses(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, schedule("digest", T0 + MINUTE)).await;
    put(store, schedule("other", T0 + MINUTE)).await;
    let mut first = fire("digest", T0 + MINUTE, T0 + 2 * MINUTE);
    first.misses = vec![ScheduleMiss {
        first_ms: T0,
        last_ms: T0,
        reason: "downtime".to_owned(),
        recorded_at_ms: T0 + MINUTE,
    }];
    let run_id = first.runs[0].id;
    store.fire_schedule(first).await.expect("fire");
    assert!(
        store.delete_schedule("digest").await.expect("delete"),
        "deleting a stored schedule must answer true"
    );
    assert!(store.get_schedule("digest").await.expect("get").is_none());
    assert!(
        store
            .schedule_misses("digest")
            .await
            .expect("misses")
            .is_empty(),
        "its misses must go with it"
    );
    assert_eq!(get(store, run_id).await.run_id, run_id, "its runs stay");
    assert_eq!(
        store
            .fire_schedule(fire("digest", T0 + 2 * MINUTE, T0 + 3 * MINUTE))
            .await
            .expect("fire"),
        FireOutcome::Superseded,
        "a deleted schedule must not fire"
    );
    assert!(
        !store.delete_schedule("digest").await.expect("delete"),
        "deleting it again must answer false"
    );
    assert_eq!(stored(store, "other").await.id, "other", "others stay");
}

/// `list_runs` with a trigger prefix keeps the runs whose trigger starts with it (not a
/// longer id's), combined with `unended`, a workflow and a page cursor.
pub async fn list_runs_filters_by_trigger_prefix(store: Arc<dyn Store>) {
    let store = &*store;
    let older = create(store, occurrence("digest", T0)).await;
    let longer_id = create(store, occurrence("digest2", T0)).await;
    let newer = create(store, occurrence("digest", T0 + MINUTE)).await;
    let ended = create(store, occurrence("digest", T0 + 2 * MINUTE)).await;
    store
        .cancel_run(ended, "test", T0 + 2 * MINUTE)
        .await
        .expect("cancel");
    let api = create(store, new_run("w", json!({}))).await;
    let list = async |unended: bool, before: Option<crate::RunId>| {
        let filter = crate::RunFilter {
            workflow: Some("w".to_owned()),
            trigger_prefix: Some("schedule:digest@".to_owned()),
            unended,
            before,
            ..crate::RunFilter::default()
        };
        let runs = store.list_runs(&filter).await.expect("list_runs");
        runs.into_iter().map(|run| run.run_id).collect::<Vec<_>>()
    };
    assert_eq!(
        list(false, None).await,
        vec![ended, newer, older],
        "the schedule's runs, newest first; not another schedule's, not the API's ({longer_id}, {api})"
    );
    assert_eq!(list(true, None).await, vec![newer, older], "unended ones");
    assert_eq!(
        list(false, Some(newer)).await,
        vec![older],
        "a page after a run"
    );
}
