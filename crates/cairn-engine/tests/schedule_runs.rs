//! A schedule's runs on a virtual clock and a real SQLite file: the overlap policies `Skip`
//! and `BufferOne` while a run it started has not ended, `schedules trigger` (a run now,
//! the next fire time untouched), `schedules backfill` (the live fires' keys: twice gives
//! the same runs), the recent runs `schedules get` shows, and `ctx.trigger()` in the runs.

mod support;

use std::sync::Arc;

use cairn_engine::{
    CatchUp, Clock, Engine, EngineError, ManualClock, Overlap, Registry, Schedule, ScheduleStart,
    Trigger, Workflow, WorkflowCtx,
};
use cairn_store::{RunFilter, RunId, RunRecord};
use cairn_store_sqlite::SqliteStore;
use chrono::{DateTime, Utc};
use support::Empty;
use tempfile::TempDir;

/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A workflow that answers what started it.
fn report() -> Workflow<Empty, Trigger> {
    Workflow::new("report").run(|_input: Empty, ctx: WorkflowCtx| async move { Ok(ctx.trigger()) })
}

/// An engine whose registry declares `hourly` (at minute 0) with `overlap`, on a fresh
/// SQLite file, its clock at `T0 + 1 min`, the schedule saved.
async fn hourly(overlap: Overlap) -> (Engine, Arc<ManualClock>, TempDir) {
    hourly_catching_up(overlap, CatchUp::Latest).await
}

/// [`hourly`] with the catch-up policy `catch_up`.
async fn hourly_catching_up(
    overlap: Overlap,
    catch_up: CatchUp,
) -> (Engine, Arc<ManualClock>, TempDir) {
    let schedule = Schedule::cron("hourly", "0 * * * *")
        .expect("a valid expression")
        .timezone("Europe/Berlin")
        .expect("a zone")
        .catch_up(catch_up)
        .overlap(overlap);
    let registry = Registry::new().schedule(schedule, &report(), Empty {});
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let clock = Arc::new(ManualClock::new(T0 + MINUTE));
    let engine_clock: Arc<dyn Clock> = clock.clone();
    let engine = Engine::builder(store, registry)
        .clock(engine_clock)
        .build()
        .expect("a valid registry");
    engine.declare_schedules().await.expect("declare");
    (engine, clock, dir)
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("a time")
}

fn key_at(hours: i64) -> String {
    format!("sched:hourly:2026-03-02T{hours:02}:00:00Z")
}

/// Every run, oldest first.
async fn runs(engine: &Engine) -> Vec<RunRecord> {
    let mut runs = engine
        .list_runs(&RunFilter::default())
        .await
        .expect("list runs");
    runs.reverse();
    runs
}

async fn keys(engine: &Engine) -> Vec<String> {
    runs(engine)
        .await
        .into_iter()
        .filter_map(|run| run.idempotency_key)
        .collect()
}

/// Executes run `id` to its end and returns the trigger its workflow saw.
async fn trigger_seen(engine: &Engine, id: RunId) -> Trigger {
    let run = engine.execute(id).await.expect("execute");
    serde_json::from_value(run.output.expect("an output")).expect("a trigger")
}

async fn next_fire(engine: &Engine) -> i64 {
    let detail = engine.get_schedule("hourly").await.expect("get");
    detail.schedule.next_fire_at_ms
}

#[tokio::test]
async fn skip_records_a_fire_time_that_comes_while_the_run_is_going() {
    let (engine, clock, _dir) = hourly(Overlap::Skip).await;
    clock.advance_to(T0 + HOUR);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 1);
    let first = runs(&engine).await[0].run_id;
    clock.advance_to(T0 + 2 * HOUR);
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        0,
        "the first run has not ended: 02:00 is skipped"
    );
    assert_eq!(
        next_fire(&engine).await,
        T0 + 3 * HOUR,
        "the schedule moved on"
    );
    let detail = engine.get_schedule("hourly").await.expect("get");
    let miss = &detail.missed[0];
    assert_eq!(
        (miss.first_ms, miss.last_ms),
        (T0 + 2 * HOUR, T0 + 2 * HOUR)
    );
    assert_eq!(
        miss.reason,
        format!("overlap: previous run {first} still running")
    );
    assert_eq!(detail.buffered_ms, None, "Skip keeps nothing waiting");

    trigger_seen(&engine, first).await;
    clock.advance_to(T0 + 3 * HOUR);
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        1,
        "once the run ended, the next fire time starts"
    );
    assert_eq!(keys(&engine).await, [key_at(1), key_at(3)]);
}

#[tokio::test]
async fn skip_catches_up_one_run_at_a_time() {
    let window = std::time::Duration::from_secs(86_400);
    let (engine, clock, _dir) = hourly_catching_up(Overlap::Skip, CatchUp::All { window }).await;
    clock.advance_to(T0 + 3 * HOUR + 10 * MINUTE);
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        1,
        "of 01:00, 02:00 and 03:00 caught up, only the newest starts"
    );
    assert_eq!(keys(&engine).await, [key_at(3)]);
    let detail = engine.get_schedule("hourly").await.expect("get");
    let miss = &detail.missed[0];
    assert_eq!((miss.first_ms, miss.last_ms), (T0 + HOUR, T0 + 2 * HOUR));
    assert!(
        miss.reason.starts_with("overlap: one run at a time"),
        "{}",
        miss.reason
    );
}

#[tokio::test]
async fn buffer_one_starts_the_waiting_fire_time_once_the_run_ends() {
    let (engine, clock, _dir) = hourly(Overlap::BufferOne).await;
    clock.advance_to(T0 + HOUR);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 1);
    let first = runs(&engine).await[0].run_id;
    clock.advance_to(T0 + 2 * HOUR);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 0);
    let detail = engine.get_schedule("hourly").await.expect("get");
    assert_eq!(detail.buffered_ms, Some(T0 + 2 * HOUR), "02:00 waits");
    assert_eq!(
        detail.upcoming_ms.first(),
        Some(&(T0 + 3 * HOUR)),
        "the upcoming fire times come after now"
    );
    clock.advance_to(T0 + 4 * HOUR + 30 * MINUTE);
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        0,
        "still going: 03:00 and 04:00 start nothing"
    );

    trigger_seen(&engine, first).await;
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        1,
        "the run ended: the waiting fire time starts"
    );
    assert_eq!(keys(&engine).await, [key_at(1), key_at(2)]);
    assert_eq!(next_fire(&engine).await, T0 + 5 * HOUR);
    let detail = engine.get_schedule("hourly").await.expect("get");
    let miss = &detail.missed[0];
    assert_eq!(
        (miss.first_ms, miss.last_ms),
        (T0 + 3 * HOUR, T0 + 4 * HOUR),
        "the fire times that came while one waited"
    );
    assert_eq!(
        miss.reason,
        format!(
            "overlap: the fire time 2026-03-02T02:00:00Z was already waiting for run {first} to end"
        )
    );
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        0,
        "released once"
    );

    let buffered = runs(&engine).await[1].run_id;
    assert_eq!(
        trigger_seen(&engine, buffered).await,
        Trigger::Schedule {
            id: "hourly".into(),
            scheduled_at: at(T0 + 2 * HOUR),
            timezone: Some("Europe/Berlin".into()),
            previous: Some(at(T0 + HOUR)),
            by: ScheduleStart::Fire,
        },
        "the buffered run keeps its own fire time"
    );
}

#[tokio::test]
async fn trigger_starts_a_run_now_and_leaves_the_next_fire_time() {
    let (engine, clock, _dir) = hourly(Overlap::AllowAll).await;
    clock.advance_to(T0 + 10 * MINUTE);
    let started = engine.trigger_schedule("hourly").await.expect("trigger");
    assert!(started.created);
    let again = engine.trigger_schedule("hourly").await.expect("trigger");
    assert_eq!(
        (again.run_id, again.created),
        (started.run_id, false),
        "a trigger repeated within the second answers the same run"
    );
    assert_eq!(
        next_fire(&engine).await,
        T0 + HOUR,
        "the next fire time stays"
    );
    assert_eq!(
        keys(&engine).await,
        ["sched:hourly:manual:2026-03-02T00:10:00Z"]
    );
    let detail = engine.get_schedule("hourly").await.expect("get");
    assert_eq!(detail.recent_runs.len(), 1);
    assert_eq!(detail.recent_runs[0].run_id, started.run_id);
    assert_eq!(
        trigger_seen(&engine, started.run_id).await,
        Trigger::Schedule {
            id: "hourly".into(),
            scheduled_at: at(T0 + 10 * MINUTE),
            timezone: Some("Europe/Berlin".into()),
            previous: Some(at(T0)),
            by: ScheduleStart::Manual,
        }
    );
    assert!(matches!(
        engine.trigger_schedule("nope").await,
        Err(EngineError::Store(
            cairn_store::StoreError::ScheduleNotFound(_)
        ))
    ));
}

#[tokio::test]
async fn backfill_uses_the_live_keys_so_twice_starts_nothing_new() {
    let (engine, clock, _dir) = hourly(Overlap::AllowAll).await;
    clock.advance_to(T0 + 2 * HOUR + 5 * MINUTE);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 1);
    let live = runs(&engine).await[0].clone();
    assert_eq!(live.idempotency_key.as_deref(), Some(&*key_at(2)));

    let first = engine
        .backfill_schedule("hourly", T0, T0 + 2 * HOUR)
        .await
        .expect("backfill");
    let times: Vec<i64> = first.iter().map(|run| run.scheduled_at_ms).collect();
    assert_eq!(times, [T0, T0 + HOUR, T0 + 2 * HOUR], "both ends included");
    let created: Vec<bool> = first.iter().map(|run| run.created).collect();
    assert_eq!(created, [true, true, false], "02:00 had its live run");
    assert_eq!(first[2].run_id, live.run_id);
    let second = engine
        .backfill_schedule("hourly", T0, T0 + 2 * HOUR)
        .await
        .expect("backfill");
    assert!(
        second.iter().all(|run| !run.created),
        "a covered range starts nothing"
    );
    let ids =
        |runs: &[cairn_engine::BackfillRun]| runs.iter().map(|run| run.run_id).collect::<Vec<_>>();
    assert_eq!(ids(&second), ids(&first), "twice: the same runs");
    assert_eq!(keys(&engine).await, [key_at(2), key_at(0), key_at(1)]);
    assert!(matches!(
        trigger_seen(&engine, first[0].run_id).await,
        Trigger::Schedule {
            by: ScheduleStart::Backfill,
            ..
        }
    ));

    let detail = engine.get_schedule("hourly").await.expect("get");
    let recent: Vec<RunId> = detail.recent_runs.iter().map(|run| run.run_id).collect();
    assert_eq!(
        recent,
        [first[1].run_id, first[0].run_id, live.run_id],
        "recent runs: newest first"
    );

    let refusals = [
        (T0, T0 + 3 * HOUR, "after now"),
        (T0 + HOUR, T0, "after it ends"),
        (T0 - 1_001 * HOUR, T0, "more than 1000 fire times"),
    ];
    for (from, to, said) in refusals {
        let error = engine
            .backfill_schedule("hourly", from, to)
            .await
            .expect_err("refused");
        assert!(
            matches!(error, EngineError::BadRequest(_)) && error.to_string().contains(said),
            "{error}"
        );
    }
    assert_eq!(
        runs(&engine).await.len(),
        3,
        "a refused backfill starts nothing"
    );
}
