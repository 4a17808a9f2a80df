//! When an execution's events reach the store: each is durable before anything outside the
//! workflow body can depend on it (an action starts, the run waits, parks or ends), and a
//! step's result may share that write. `Engine::run` creates its run by its first write.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_core::{Event, RunStatus};
use cairn_engine::{
    Action, ActionCtx, Clock, Engine, EngineConfig, Registry, StartOptions, SystemClock, Workflow,
    WorkflowCtx,
};
use cairn_store::{RunId, RunRecord, Store};
use cairn_store_sqlite::SqliteStore;
use futures::future::BoxFuture;
use serde_json::json;
use support::{Num, eventually};
use tempfile::TempDir;

/// A store on a fresh SQLite file, and an engine over it.
fn engine_and_store(registry: Registry) -> (Engine, Arc<dyn Store>, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("store"));
    (
        Engine::new(store.clone(), registry).expect("valid registry"),
        store,
        dir,
    )
}

/// A clock that moves one millisecond every time it is read, so any two readings differ.
struct TickingClock(AtomicI64);

impl Clock for TickingClock {
    fn now_ms(&self) -> i64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let wait = u64::try_from(deadline_ms - self.now_ms()).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// Like [`engine_and_store`], on a [`TickingClock`]: the record `Engine::run` returns must
/// be the one its writes stored, not one built from an earlier reading of the clock.
fn ticking_engine(registry: Registry, config: EngineConfig) -> (Engine, Arc<dyn Store>, TempDir) {
    let (_, store, dir) = engine_and_store(Registry::new());
    let clock = Arc::new(TickingClock(AtomicI64::new(SystemClock.now_ms())));
    let engine = Engine::builder(store.clone(), registry)
        .config(config)
        .clock(clock)
        .build()
        .expect("valid registry");
    (engine, store, dir)
}

/// Runs `workflow` on `n` with `Engine::run` and checks it returned the run as stored.
async fn run_as_stored(
    engine: &Engine,
    store: &dyn Store,
    workflow: &Workflow<Num, Num>,
    n: i64,
) -> RunRecord {
    let run = engine
        .run(workflow, &Num { n }, StartOptions::default())
        .await
        .expect("run");
    let stored = store
        .get_run(run.run_id)
        .await
        .unwrap()
        .expect("stored run");
    assert_eq!(stored, run, "Engine::run returns the run as stored");
    run
}

/// The keys of the steps the store holds as completed for run `id` (none if it holds no run).
async fn completed_keys(store: &dyn Store, id: RunId) -> Vec<String> {
    let events = store.events(id).await.expect("events");
    events
        .into_iter()
        .filter_map(|record| match record.event {
            Event::StepCompleted { key, .. } => Some(key.to_string()),
            _ => None,
        })
        .collect()
}

/// What an action saw in the store when it ran: the run's status and its completed steps.
type Sightings = Arc<Mutex<Vec<(Option<RunStatus>, Vec<String>)>>>;

/// An action `probe` that notes what the store holds for its run, then doubles its input.
fn probe(store: Arc<dyn Store>, seen: Sightings) -> Action<Num, Num> {
    Action::new("probe").run(move |input: Num, ctx: ActionCtx| {
        let (store, seen) = (store.clone(), seen.clone());
        async move {
            let run = store.get_run(ctx.run_id()).await.expect("get run");
            let completed = completed_keys(&*store, ctx.run_id()).await;
            seen.lock()
                .unwrap()
                .push((run.map(|run| run.status), completed));
            Ok(Num { n: input.n * 2 })
        }
    })
}

#[tokio::test]
async fn a_run_exists_before_its_first_action_and_each_result_before_the_next_action() {
    let dir = TempDir::new().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("store"));
    let seen = Sightings::default();
    let probe = probe(store.clone(), seen.clone());
    let workflow = Workflow::new("three-probes").run(move |input: Num, _ctx: WorkflowCtx| {
        let probe = probe.clone();
        async move {
            let a = probe.run(input).await?;
            let b = probe.run(a).await?;
            Ok(probe.run(b).await?)
        }
    });
    let engine =
        Engine::new(store.clone(), Registry::new().workflow(&workflow)).expect("valid registry");

    let run = engine
        .run(&workflow, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("run");

    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({ "n": 8 })));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Some(RunStatus::Running), vec![]),
            (Some(RunStatus::Running), vec!["probe#0".to_owned()]),
            (
                Some(RunStatus::Running),
                vec!["probe#0".to_owned(), "probe#1".to_owned()]
            ),
        ],
        "the run is durable before its first action, and each step's result before the next \
         action starts"
    );
    let stored = store
        .get_run(run.run_id)
        .await
        .unwrap()
        .expect("stored run");
    assert_eq!(
        stored, run,
        "Engine::run returns the run as the store holds it"
    );
    assert_eq!(
        completed_keys(&*store, run.run_id).await,
        ["probe#0", "probe#1", "probe#2"]
    );
}

#[tokio::test]
async fn a_result_is_written_while_the_body_waits_on_something_else() {
    let dir = TempDir::new().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("store"));
    let probe = probe(store.clone(), Sightings::default());
    // A wait the engine knows nothing of: only the body's being pending says it waits.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let body_gate = gate.clone();
    let workflow = Workflow::new("probe-then-wait").run(move |input: Num, _ctx: WorkflowCtx| {
        let (probe, gate) = (probe.clone(), body_gate.clone());
        async move {
            let out = probe.run(input).await?;
            let _permit = gate.acquire().await.expect("gate");
            Ok(out)
        }
    });
    let engine =
        Engine::new(store.clone(), Registry::new().workflow(&workflow)).expect("valid registry");
    let runner = engine.clone();
    let body = workflow.clone();
    let running = tokio::spawn(async move {
        runner
            .run(&body, &Num { n: 5 }, StartOptions::default())
            .await
    });

    let found = eventually(Duration::from_secs(10), async || {
        let runs = store.list_runs(&Default::default()).await.expect("list");
        match runs.first() {
            Some(run) => completed_keys(&*store, run.run_id).await == ["probe#0"],
            None => false,
        }
    })
    .await;
    assert!(
        found,
        "the step's result reaches the store while the body waits, before the run ends"
    );
    gate.add_permits(1);
    let run = running.await.unwrap().expect("run");
    assert_eq!(run.output, Some(json!({ "n": 10 })));
}

#[tokio::test]
async fn a_run_without_steps_is_created_and_ended_by_one_write() {
    let workflow = Workflow::new("echo")
        .run(|input: Num, _ctx: WorkflowCtx| async move { Ok(Num { n: input.n + 1 }) });
    let (engine, store, _dir) =
        ticking_engine(Registry::new().workflow(&workflow), EngineConfig::default());

    let run = run_as_stored(&engine, &*store, &workflow, 41).await;

    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({ "n": 42 })));
    assert_eq!(run.lease_owner, None, "an ended run holds no lease");
    let events: Vec<Event> = store
        .events(run.run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.event)
        .collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::RunCreated { .. }, Event::RunCompleted { .. }]
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_hook_awaited_first_thing_is_registered_when_the_run_is_created() {
    let workflow = Workflow::new("wait-first").run(|_input: Num, ctx: WorkflowCtx| async move {
        let hook = ctx.hook::<Num>();
        Ok(hook.await?)
    });
    let (engine, store, _dir) = engine_and_store(Registry::new().workflow(&workflow));
    let runner = engine.clone();
    let body = workflow.clone();
    let running = tokio::spawn(async move {
        runner
            .run(&body, &Num { n: 0 }, StartOptions::default())
            .await
    });

    let mut token = None;
    let registered = eventually(Duration::from_secs(10), async || {
        let hooks = store.list_hooks(&Default::default()).await.expect("hooks");
        token = hooks.first().map(|hook| hook.token.clone());
        token.is_some()
    })
    .await;
    assert!(registered, "the hook is registered, so it can be resumed");
    engine
        .resume_hook(&token.unwrap(), json!({ "n": 7 }))
        .await
        .expect("resume");
    let run = running.await.unwrap().expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({ "n": 7 })));
}

#[tokio::test]
async fn run_with_an_idempotency_key_executes_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let count = Action::new("count").run(move |input: Num, _ctx: ActionCtx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(input) }
    });
    let workflow = Workflow::new("keyed").run(move |input: Num, _ctx: WorkflowCtx| {
        let count = count.clone();
        async move { Ok(count.run(input).await?) }
    });
    let (engine, _store, _dir) = engine_and_store(Registry::new().workflow(&workflow));
    let keyed = || StartOptions {
        idempotency_key: Some("order-7".into()),
        ..StartOptions::default()
    };

    let first = engine.run(&workflow, &Num { n: 7 }, keyed()).await.unwrap();
    let second = engine.run(&workflow, &Num { n: 8 }, keyed()).await.unwrap();

    assert_eq!(second.run_id, first.run_id, "one key, one run");
    assert_eq!(second.output, Some(json!({ "n": 7 })));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the step ran once");
}

/// When the lease of run `id` lapses, as stored.
async fn lease_expiry(store: &dyn Store, id: RunId) -> Option<i64> {
    let run = store.get_run(id).await.expect("get run");
    run.and_then(|run| run.lease_expires_at_ms)
}

/// A workflow `slug` of one `action` step, and a ticking engine with a 60 ms lease (renewed
/// every 20 ms) that executes it.
fn short_lease_engine(
    slug: &str,
    action: Action<Num, Num>,
) -> (Workflow<Num, Num>, Engine, Arc<dyn Store>, TempDir) {
    let workflow = Workflow::new(slug).run(move |input: Num, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move { Ok(action.run(input).await?) }
    });
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(60),
        ..EngineConfig::default()
    };
    let (engine, store, dir) = ticking_engine(Registry::new().workflow(&workflow), config);
    (workflow, engine, store, dir)
}

#[tokio::test]
async fn a_run_that_renewed_its_lease_is_returned_as_stored() {
    let store_slot: Arc<Mutex<Option<Arc<dyn Store>>>> = Arc::default();
    let seen_store = store_slot.clone();
    // Returns once the store shows the run's lease renewed by the heartbeat.
    let outlast = Action::new("outlast").run(move |input: Num, ctx: ActionCtx| {
        let store = seen_store.lock().unwrap().clone().expect("store");
        async move {
            let first = lease_expiry(&*store, ctx.run_id()).await;
            assert!(first.is_some(), "the run is leased while its action runs");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while lease_expiry(&*store, ctx.run_id()).await <= first {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the heartbeat renews the lease"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(input)
        }
    });
    let (workflow, engine, store, _dir) = short_lease_engine("long", outlast);
    *store_slot.lock().unwrap() = Some(store.clone());

    let run = run_as_stored(&engine, &*store, &workflow, 5).await;

    assert_eq!(run.status, RunStatus::Succeeded);
}

/// The engine's heartbeat renews a run's lease only while its execution is alive: an
/// execution that is dropped (its caller gave up) stops renewing, so the lease lapses and
/// another worker can take the run over, and it no longer counts as running here, so this
/// process can execute the run again.
#[tokio::test]
async fn a_dropped_execution_stops_renewing_its_lease_and_can_be_executed_again() {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<RunId>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    // Hangs on its first call (which sends the run's id), returns on later ones.
    let stuck = Action::new("stuck").run(move |input: Num, ctx: ActionCtx| {
        let first = started_tx.lock().unwrap().take();
        async move {
            if let Some(started) = first {
                let _ = started.send(ctx.run_id());
                std::future::pending::<()>().await;
            }
            Ok(input)
        }
    });
    let (workflow, engine, store, _dir) = short_lease_engine("stuck", stuck);
    let caller = {
        let engine = engine.clone();
        let workflow = workflow.clone();
        tokio::spawn(async move {
            let _ = engine
                .run(&workflow, &Num { n: 1 }, StartOptions::default())
                .await;
        })
    };
    let id = started_rx.await.expect("the action started");
    let first = lease_expiry(&*store, id).await.expect("leased");
    assert!(
        eventually(Duration::from_secs(10), async || {
            lease_expiry(&*store, id).await > Some(first)
        })
        .await,
        "the heartbeat renews the lease while the execution is alive"
    );

    caller.abort();
    let _ = caller.await;
    // Renewals come every 20 ms: once the lease stops moving for ten of those, it has
    // stopped for good (one already in flight may land first).
    let mut last = lease_expiry(&*store, id).await;
    let settled = eventually(Duration::from_secs(10), async || {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = lease_expiry(&*store, id).await;
        std::mem::replace(&mut last, now) == now
    })
    .await;
    assert!(
        settled,
        "the lease is no longer renewed once the execution is dropped"
    );
    let run = store.get_run(id).await.unwrap().expect("the run");
    assert_eq!(
        run.status,
        RunStatus::Running,
        "left for another worker to take over"
    );

    let again = tokio::time::timeout(Duration::from_secs(10), engine.execute(id))
        .await
        .expect("executed again, not waiting on the dropped execution")
        .expect("execute");
    assert_eq!(again.status, RunStatus::Succeeded);
}
