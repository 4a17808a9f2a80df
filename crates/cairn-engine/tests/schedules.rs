//! Cron schedules on a virtual clock and a real SQLite file (and PostgreSQL): each catch-up
//! policy after a five-hour jump, pause and resume (no catch-up), an edit that does not fire
//! at once, and eight engines racing for the same due schedule: one run per fire instant.

mod support;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use cairn_engine::{
    CatchUp, Clock, Engine, ManualClock, Registry, Schedule, Workflow, WorkflowCtx,
};
use cairn_store::{RunFilter, SchedulePut, Store};
use cairn_store_postgres::{PostgresOptions, PostgresStore};
use cairn_store_sqlite::SqliteStore;
use support::Empty;
use tempfile::TempDir;

/// 2026-03-02T00:00:00Z, a Monday.
const T0: i64 = 1_772_409_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn report() -> Workflow<Empty, Empty> {
    Workflow::new("report").run(|_input: Empty, _ctx: WorkflowCtx| async move { Ok(Empty {}) })
}

fn hourly(catch_up: CatchUp) -> Schedule {
    Schedule::cron("hourly", "0 * * * *")
        .expect("a valid expression")
        .catch_up(catch_up)
}

fn registry(schedule: Schedule) -> Registry {
    Registry::new().schedule(schedule, &report(), Empty {})
}

fn engine_on(store: Arc<dyn Store>, registry: Registry, clock: &Arc<ManualClock>) -> Engine {
    let clock: Arc<dyn Clock> = clock.clone();
    Engine::builder(store, registry)
        .clock(clock)
        .build()
        .expect("a valid registry")
}

/// An engine on a fresh SQLite file, its clock at `start_ms`.
fn engine_at(registry: Registry, start_ms: i64) -> (Engine, Arc<ManualClock>, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let clock = Arc::new(ManualClock::new(start_ms));
    (engine_on(store, registry, &clock), clock, dir)
}

/// The idempotency keys of every run, sorted.
async fn keys(engine: &Engine) -> Vec<String> {
    let filter = RunFilter {
        limit: 1_000,
        ..RunFilter::default()
    };
    let mut keys: Vec<String> = engine
        .list_runs(&filter)
        .await
        .expect("list runs")
        .into_iter()
        .map(|run| run.idempotency_key.expect("a scheduled run has a key"))
        .collect();
    keys.sort();
    keys
}

fn key_at(hours: i64) -> String {
    format!("sched:hourly:2026-03-02T{hours:02}:00:00Z")
}

#[tokio::test]
async fn each_catch_up_policy_after_a_five_hour_jump() {
    let day = Duration::from_secs(86_400);
    let cases = [
        (CatchUp::Latest, vec![key_at(5)], Some((1, 4))),
        (
            CatchUp::All { window: day },
            (1..=5).map(key_at).collect(),
            None,
        ),
        (CatchUp::None, vec![], Some((1, 5))),
    ];
    for (policy, expected, missed) in cases {
        let (engine, clock, _dir) = engine_at(registry(hourly(policy)), T0 + MINUTE);
        let saved = engine.declare_schedules().await.expect("declare");
        assert_eq!(saved[0].0, SchedulePut::Created);
        assert_eq!(saved[0].1.next_fire_at_ms, T0 + HOUR, "the next hour");
        assert_eq!(engine.fire_due_schedules().await.expect("fire"), 0);

        clock.advance_to(T0 + 5 * HOUR + 30 * MINUTE);
        let created = engine.fire_due_schedules().await.expect("fire");
        assert_eq!(created, expected.len(), "{policy:?}");
        assert_eq!(keys(&engine).await, expected, "{policy:?}");
        let detail = engine.get_schedule("hourly").await.expect("get");
        assert_eq!(detail.schedule.next_fire_at_ms, T0 + 6 * HOUR, "{policy:?}");
        let spans: Vec<(i64, i64)> = detail
            .missed
            .iter()
            .map(|miss| (miss.first_ms, miss.last_ms))
            .collect();
        let expected_spans: Vec<(i64, i64)> = missed
            .map(|(first, last)| (T0 + first * HOUR, T0 + last * HOUR))
            .into_iter()
            .collect();
        assert_eq!(spans, expected_spans, "{policy:?}: the missed fire times");
        assert_eq!(
            detail.upcoming_ms,
            (6..11).map(|hour| T0 + hour * HOUR).collect::<Vec<_>>()
        );
        assert_eq!(
            engine.fire_due_schedules().await.expect("fire"),
            0,
            "{policy:?}: nothing is due twice"
        );
    }
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_and_a_resume_does_not_catch_up() {
    let (engine, clock, _dir) = engine_at(registry(hourly(CatchUp::Latest)), T0 + MINUTE);
    engine.declare_schedules().await.expect("declare");
    assert!(engine.pause_schedule("hourly").await.expect("pause").paused);
    clock.advance_to(T0 + 3 * HOUR + 10 * MINUTE);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 0);
    let resumed = engine.resume_schedule("hourly").await.expect("resume");
    assert!(!resumed.paused);
    assert_eq!(
        resumed.next_fire_at_ms,
        T0 + 4 * HOUR,
        "the next hour after now"
    );
    assert_eq!(
        engine.fire_due_schedules().await.expect("fire"),
        0,
        "the hours passed while paused are not caught up"
    );
    clock.advance_to(T0 + 4 * HOUR);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 1);
    assert_eq!(keys(&engine).await, [key_at(4)]);
    assert!(
        engine
            .get_schedule("hourly")
            .await
            .expect("get")
            .missed
            .is_empty(),
        "a pause is not downtime"
    );
    assert!(engine.pause_schedule("none").await.is_err());
}

#[tokio::test]
async fn an_edit_does_not_fire_at_once() {
    let (engine, clock, dir) = engine_at(registry(hourly(CatchUp::Latest)), T0 + MINUTE);
    engine.declare_schedules().await.expect("declare");
    // The same schedule, edited to every quarter hour, declared by a new build at 00:30: a
    // fire time of the new expression, which must not fire now.
    clock.advance_to(T0 + 30 * MINUTE);
    let edited = Schedule::cron("hourly", "*/15 * * * *").expect("valid");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let new_build = engine_on(store, registry(edited), &clock);
    let saved = new_build.declare_schedules().await.expect("declare");
    assert_eq!(saved[0].0, SchedulePut::Updated);
    assert_eq!(saved[0].1.next_fire_at_ms, T0 + 45 * MINUTE);
    assert_eq!(new_build.fire_due_schedules().await.expect("fire"), 0);
    assert_eq!(engine.fire_due_schedules().await.expect("fire"), 0);
    let again = new_build.declare_schedules().await.expect("declare");
    assert_eq!(
        again[0].0,
        SchedulePut::Unchanged,
        "a repeat changes nothing"
    );
    clock.advance_to(T0 + 45 * MINUTE);
    assert_eq!(new_build.fire_due_schedules().await.expect("fire"), 1);
    assert_eq!(
        keys(&new_build).await,
        ["sched:hourly:2026-03-02T00:45:00Z"]
    );
}

#[tokio::test]
async fn a_worker_saves_its_declared_schedules_and_runs_what_they_start() {
    let (engine, clock, _dir) = engine_at(registry(hourly(CatchUp::Latest)), T0 + MINUTE);
    let engine = Arc::new(engine);
    let shutdown = cairn_engine::CancellationToken::new();
    let worker = tokio::spawn({
        let (engine, shutdown) = (Arc::clone(&engine), shutdown.clone());
        async move { engine.run_worker(shutdown).await }
    });
    let saved = support::eventually(Duration::from_secs(10), async || {
        engine.list_schedules().await.expect("list").len() == 1
    })
    .await;
    assert!(
        saved,
        "the worker saves the declared schedule when it starts"
    );
    clock.advance_to(T0 + HOUR);
    let ran = support::eventually(Duration::from_secs(10), async || {
        // A second of virtual time per look: the worker may have gone to sleep on the
        // manual clock just before the jump, its deadline then counted from after it.
        clock.advance(Duration::from_secs(1));
        let runs = engine.list_runs(&RunFilter::default()).await.expect("list");
        runs.len() == 1 && runs[0].status == cairn_core::RunStatus::Succeeded
    })
    .await;
    shutdown.cancel();
    worker.await.expect("the worker task").expect("the worker");
    assert!(
        ran,
        "the worker fires the due schedule and executes its run"
    );
    let run = &engine.list_runs(&RunFilter::default()).await.expect("list")[0];
    assert_eq!(
        run.trigger,
        "schedule:hourly@2026-03-02T01:00:00Z;tz=UTC;prev=2026-03-02T00:00:00Z"
    );
}

/// Eight engines on `stores` (one each), one clock, a schedule every second: ten times the
/// clock moves a second on and all eight fire at once; every instant gets exactly one run.
async fn eight_engines_race(stores: Vec<Arc<dyn Store>>) {
    let clock = Arc::new(ManualClock::new(T0));
    let every_second = || {
        Schedule::cron("hourly", "* * * * * *")
            .expect("valid")
            .catch_up(CatchUp::All {
                window: Duration::from_secs(3_600),
            })
    };
    let engines: Vec<Arc<Engine>> = stores
        .into_iter()
        .map(|store| Arc::new(engine_on(store, registry(every_second()), &clock)))
        .collect();
    for engine in &engines {
        engine.declare_schedules().await.expect("declare");
    }
    let mut created = 0;
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1));
        let racers: Vec<_> = engines
            .iter()
            .map(|engine| {
                let engine = Arc::clone(engine);
                tokio::spawn(async move { engine.fire_due_schedules().await.expect("fire") })
            })
            .collect();
        for racer in racers {
            created += racer.await.expect("a racer");
        }
    }
    let keys = keys(&engines[0]).await;
    let unique: BTreeSet<&String> = keys.iter().collect();
    let expected: BTreeSet<String> = (1..=10)
        .map(|second| format!("sched:hourly:2026-03-02T00:00:{second:02}Z"))
        .collect();
    assert_eq!(unique.len(), keys.len(), "no fire instant has two runs");
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every fire instant has a run"
    );
    assert_eq!(
        created, 10,
        "the engines together created one run per instant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_engines_on_one_sqlite_file_start_each_fire_instant_once() {
    let dir = TempDir::new().expect("temp dir");
    let stores = (0..8)
        .map(|_| {
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
            store
        })
        .collect();
    eight_engines_race(stores).await;
}

/// Drops the test's PostgreSQL schema when the test ends (best effort).
struct DropSchema(String, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                self.0.as_str(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.1),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_engines_on_one_postgres_schema_start_each_fire_instant_once() {
    let Some(url) = cairn_test_support::postgres_url() else {
        return;
    };
    let schema = format!("cairn_test_sched_{}", uuid::Uuid::new_v4().simple());
    let _drop = DropSchema(url.clone(), schema.clone());
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..8 {
        let options = PostgresOptions {
            schema: Some(schema.clone()),
            max_connections: 2,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect_with(&url, options)
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    eight_engines_race(stores).await;
}
