//! `cairn::testing` itself: mocks by call index, virtual retries, children and hooks in the
//! harness, and the replayer catching a changed workflow.

use std::{sync::LazyLock, time::Duration};

use cairn::{
    Action, ActionCtx, ActionError, ErrorKind, StepStatus, Workflow, WorkflowCtx,
    testing::{Outcome, ReplayError, TestEnv, Wait, replay},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct N {
    n: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Vote {
    yes: bool,
}

static DOUBLE: LazyLock<Action<N, N>> = LazyLock::new(|| {
    Action::new("double").run(|i: N, _ctx: ActionCtx| async move { Ok(N { n: i.n * 2 }) })
});

static FLAKY: LazyLock<Action<N, N>> = LazyLock::new(|| {
    Action::new("flaky")
        .retry(
            cairn::Retry::default()
                .max_attempts(4)
                .initial_backoff(Duration::from_secs(3600))
                .max_backoff(Duration::from_secs(7200))
                .jitter(0.0),
        )
        .run(|_: N, _ctx: ActionCtx| async move {
            Err::<N, _>(ActionError::retryable("real body never runs"))
        })
});

static CHILD: LazyLock<Workflow<N, N>> = LazyLock::new(|| {
    Workflow::new("child").run(|i: N, ctx: WorkflowCtx| async move {
        ctx.sleep("1h").await?;
        Ok(DOUBLE.run(i).await?)
    })
});

static PARENT: LazyLock<Workflow<N, N>> = LazyLock::new(|| {
    Workflow::new("parent")
        .run(|i: N, _ctx: WorkflowCtx| async move { Ok(CHILD.run(FLAKY.run(i).await?).await?) })
});

static VOTE: LazyLock<Workflow<N, N>> = LazyLock::new(|| {
    Workflow::new("vote").run(|i: N, ctx: WorkflowCtx| async move {
        let vote = ctx.hook::<Vote>().await?;
        Ok(N {
            n: if vote.yes { i.n } else { -i.n },
        })
    })
});

#[tokio::test]
async fn an_unmocked_action_runs_for_real() {
    let outcome = TestEnv::new().execute_workflow(&CHILD, N { n: 2 }).await;
    assert!(matches!(
        outcome.waits().as_deref(),
        Some([Wait::Sleep { .. }])
    ));
}

#[tokio::test]
async fn mocks_by_call_index_and_retries_on_the_virtual_clock() {
    let results = vec![
        Err(ActionError::retryable("1")),
        Err(ActionError::retryable("2")),
        Ok(N { n: 5 }),
    ];
    let env = TestEnv::new().mock_sequence(&FLAKY, results);
    let started = env.now();
    let waits = env
        .execute_workflow(&PARENT, N { n: 1 })
        .await
        .waits()
        .unwrap();
    assert_eq!(waits.len(), 1, "the child's sleep: {waits:?}");
    let flaky = &env.steps(env.last_run().unwrap()).await[0];
    assert_eq!((flaky.attempts, flaky.status), (3, StepStatus::Completed));
    let skipped = env.now().duration_since(started).unwrap();
    assert_eq!(
        skipped,
        Duration::from_secs(3 * 3600),
        "1 h then 2 h of backoff, skipped"
    );
}

#[tokio::test]
async fn a_parked_child_run_wakes_with_its_parent() {
    let env = TestEnv::new().mock(&FLAKY, Ok);
    env.execute_workflow(&PARENT, N { n: 4 }).await;
    env.skip_time(Duration::from_secs(3600)).await;
    assert_eq!(
        env.outcome::<N>(env.last_run().unwrap()).await,
        Outcome::Completed { output: N { n: 8 } }
    );
}

#[tokio::test]
async fn a_hook_payload_is_checked_against_its_schema_in_the_harness_too() {
    let env = TestEnv::new();
    let Some(Wait::Hook { token, schema, .. }) = env
        .execute_workflow(&VOTE, N { n: 3 })
        .await
        .waits()
        .unwrap()
        .pop()
    else {
        panic!("waits on the hook")
    };
    assert_eq!(schema["properties"]["yes"]["type"], "boolean");
    let err = env
        .resume_hook(&token, serde_json::json!({"yes": "maybe"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/yes"), "{err}");
    env.resume_hook(&token, Vote { yes: false }).await.unwrap();
    assert_eq!(
        env.outcome::<N>(env.last_run().unwrap()).await.completed(),
        Some(N { n: -3 })
    );
}

#[tokio::test]
async fn a_fatal_mock_fails_the_run_at_its_step() {
    let env = TestEnv::new().mock_err(&FLAKY, ActionError::fatal("no"));
    let error = env
        .execute_workflow(&PARENT, N { n: 1 })
        .await
        .failed()
        .unwrap();
    assert_eq!(
        (error.kind, error.step.map(|s| s.to_string())),
        (ErrorKind::Action, Some("flaky#0".into()))
    );
    assert_eq!(
        env.steps(env.last_run().unwrap()).await[0].attempts,
        1,
        "fatal errors are not retried"
    );
}

#[tokio::test]
async fn the_replayer_accepts_an_unfinished_history_and_rejects_a_changed_step() {
    let env = TestEnv::new();
    env.execute_workflow(&VOTE, N { n: 1 }).await;
    let export = env.export(env.last_run().unwrap()).await.unwrap();
    replay(&VOTE, &export).await.unwrap();
    let changed = Workflow::new("vote")
        .run(|i: N, _ctx: WorkflowCtx| async move { Ok(DOUBLE.run(i).key("cairn.hook#0").await?) });
    let err = replay(&changed, &export).await.unwrap_err();
    assert!(
        matches!(&err, ReplayError::NonDeterminism(info) if info.message.contains("hook cairn.hook")),
        "{err}"
    );
    assert!(matches!(
        replay(&VOTE, &serde_json::json!({})).await,
        Err(ReplayError::BadExport(_))
    ));
}

static SLOW: LazyLock<Action<N, N>> = LazyLock::new(|| {
    Action::new("slow")
        .timeout(Duration::from_secs(30))
        .retry(cairn::Retry::default().max_attempts(2).jitter(0.0))
        .run(|i: N, _ctx: ActionCtx| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(i)
        })
});

static SLOW_ONCE: LazyLock<Workflow<N, N>> = LazyLock::new(|| {
    Workflow::new("slow-once").run(|i: N, _ctx: WorkflowCtx| async move { Ok(SLOW.run(i).await?) })
});

#[tokio::test(start_paused = true)]
async fn an_action_timeout_and_its_retry_follow_virtual_time() {
    let wall = std::time::Instant::now();
    let env = TestEnv::new();
    let started = env.now();
    let error = env
        .execute_workflow(&SLOW_ONCE, N { n: 1 })
        .await
        .failed()
        .unwrap();
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    let step = &env.steps(env.last_run().unwrap()).await[0];
    assert_eq!(step.attempts, 2);
    let virtual_time = env.now().duration_since(started).unwrap();
    assert!(
        virtual_time >= Duration::from_secs(60),
        "two 30 s timeouts and a backoff passed on the virtual clock: {virtual_time:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(10),
        "not on the wall clock: {:?}",
        wall.elapsed()
    );
}

#[tokio::test]
async fn a_mock_runs_where_the_action_would_so_its_panic_is_a_failed_attempt() {
    let env = TestEnv::new().mock(&DOUBLE, |_: N| -> Result<N, ActionError> {
        panic!("the mock blew up")
    });
    let error = env.execute_workflow(&CHILD, N { n: 1 }).await;
    assert!(
        matches!(error, Outcome::Suspended { .. }),
        "parked on the sleep first"
    );
    env.skip_time(Duration::from_secs(3600)).await;
    let error = env
        .outcome::<N>(env.last_run().unwrap())
        .await
        .failed()
        .unwrap();
    assert!(error.message.contains("the mock blew up"), "{error}");
    let step = &env.steps(env.last_run().unwrap()).await[1];
    assert_eq!(
        step.attempts, 3,
        "a panic is retryable, as in a real action"
    );
}
