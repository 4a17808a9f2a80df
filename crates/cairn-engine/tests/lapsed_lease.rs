//! An action's attempt does not start on a lapsed lease (decision 0042): when the engine's
//! clock has passed the lease the store last confirmed, as a process stopped or starved past
//! its lease's time to live finds on waking, the lease is renewed before the attempt starts,
//! so no other worker can have taken the run over and begun the same step. A virtual clock
//! jumps a minute inside one step; the next step's attempt, as it starts, finds its run's
//! lease renewed in the store.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cairn_engine::{
    Action, ActionCtx, Clock, Engine, ManualClock, Registry, Workflow, WorkflowCtx,
};
use cairn_store::{MemoryStore, Store};
use support::{Num, start};

const T0: i64 = 1_772_409_600_000;

#[tokio::test(flavor = "current_thread")]
async fn an_attempt_on_a_lapsed_lease_renews_it_before_it_starts() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    // A minute passes inside `stall`, as it would for a process stopped that long.
    let stalled = clock.clone();
    let stall = Action::new("stall").run(move |input: Num, _ctx: ActionCtx| {
        stalled.advance(Duration::from_secs(60));
        async move { Ok(input) }
    });
    // `observe` notes, as its attempt starts, its run's lease expiry as stored and the time.
    let seen = Arc::new(Mutex::new(None));
    let (noted, observed_store, observed_clock) = (seen.clone(), store.clone(), clock.clone());
    let observe = Action::new("observe").run(move |input: Num, ctx: ActionCtx| {
        let (noted, store, clock) = (
            noted.clone(),
            observed_store.clone(),
            observed_clock.clone(),
        );
        async move {
            let run = store
                .get_run(ctx.run_id())
                .await
                .expect("read")
                .expect("the run");
            *noted.lock().expect("lock") = Some((run.lease_expires_at_ms, clock.now_ms()));
            Ok(input)
        }
    });
    let workflow = Workflow::new("stalls").run(move |input: Num, _ctx: WorkflowCtx| {
        let (stall, observe) = (stall.clone(), observe.clone());
        async move {
            let stalled = stall.run(input).await?;
            Ok(observe.run(stalled).await?)
        }
    });
    let engine_clock: Arc<dyn Clock> = clock.clone();
    let engine = Engine::builder(store.clone(), Registry::new().workflow(&workflow))
        .clock(engine_clock)
        .build()
        .expect("a valid registry");
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    engine.execute(id).await.expect("the run ends");
    let (expires, now) = seen.lock().expect("lock").expect("observe ran");
    let expires = expires.expect("the run was leased while observe ran");
    assert!(
        expires > now,
        "the lapsed lease was renewed before the attempt started: it lapses at {expires}, \
         the attempt started at {now}"
    );
}
