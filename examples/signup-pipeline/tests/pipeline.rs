//! The signup workflows tested with `cairn::testing`: mocks, a failing step, time skipped
//! forward, a hook resumed, a seeded history replayed.

use std::time::Duration;

use cairn::{
    ActionError, ErrorKind,
    testing::{Outcome, TestEnv, Wait, replay},
};
use cairn_actions::slack;
use signup_pipeline::*;

fn ada() -> Signup {
    Signup {
        name: "Ada".into(),
        email: "ada@analytical.engines".into(),
    }
}

fn posted(_: PostBrief) -> Result<Posted, ActionError> {
    Ok(Posted {
        outbox: "test".into(),
        line: 1,
    })
}

fn env() -> TestEnv {
    TestEnv::new()
        .mock(&RESEARCH_SIGNUP, |s: Signup| {
            Ok(Brief {
                brief: format!("about {}", s.name),
            })
        })
        .mock(&POST_BRIEF, posted)
}

#[tokio::test]
async fn the_pipeline_posts_the_research_brief() {
    let env = env();
    let outcome = env.execute_workflow(&SIGNUP_PIPELINE, ada()).await;
    assert_eq!(
        outcome,
        Outcome::Completed {
            output: Brief {
                brief: "about Ada".into()
            }
        }
    );
    let steps = env.steps(env.last_run().unwrap()).await;
    let keys: Vec<_> = steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        ["research-signup#0", "slack-send-message#0", "post-brief#0"],
        "no Slack credential for the run's user: the outbox"
    );
    let missing = steps[1].error.as_ref().expect("the Slack step failed");
    assert_eq!(missing.kind, ErrorKind::MissingCredentials);
    assert_eq!(steps[1].attempts, 1, "and was not retried");
    assert_eq!(
        steps[2].input,
        Some(serde_json::json!({"text": "about Ada"}))
    );
}

#[tokio::test]
async fn with_a_slack_credential_for_the_user_the_brief_goes_to_slack() {
    let env = env()
        .owner(cairn::Owner {
            user: Some("ada".into()),
            ..cairn::Owner::default()
        })
        .mock(&slack::SEND_MESSAGE, |message: slack::SendMessage| {
            assert_eq!(message.channel, SIGNUPS_CHANNEL);
            Ok(slack::SentMessage {
                channel: "C1".into(),
                ts: "1.0".into(),
            })
        });
    let outcome = env.execute_workflow(&SIGNUP_PIPELINE, ada()).await;
    assert!(outcome.completed().is_some());
    let steps = env.steps(env.last_run().unwrap()).await;
    let keys: Vec<_> = steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(keys, ["research-signup#0", "slack-send-message#0"]);
    assert_eq!(
        steps[1].input,
        Some(serde_json::json!({"channel": "#signups", "markdown_text": "about Ada"}))
    );
}

#[tokio::test]
async fn a_post_that_keeps_failing_fails_the_run_at_that_step() {
    let env = env().mock_err(&POST_BRIEF, ActionError::retryable("slack down"));
    let error = env
        .execute_workflow(&SIGNUP_PIPELINE, ada())
        .await
        .failed()
        .unwrap();
    assert_eq!(
        (error.kind, error.message.as_str()),
        (ErrorKind::Action, "slack down")
    );
    assert_eq!(error.step.unwrap().as_str(), "post-brief#0");
    let steps = env.steps(env.last_run().unwrap()).await;
    assert_eq!(
        steps[2].attempts, 3,
        "retried with backoff on the virtual clock"
    );
}

#[tokio::test]
async fn the_follow_up_sleeps_two_days_then_waits_for_sales() {
    let env = env();
    let waits = env
        .execute_workflow(&SIGNUP_FOLLOWUP, ada())
        .await
        .waits()
        .unwrap();
    assert!(matches!(&waits[..], [Wait::Sleep { .. }]), "{waits:?}");
    env.skip_time(Duration::from_secs(2 * 86_400)).await;
    let outcome = env.outcome::<FollowUp>(env.last_run().unwrap()).await;
    let waits = outcome.waits().unwrap();
    assert!(
        matches!(&waits[..], [Wait::Hook { key, .. }] if key.as_str() == "follow-up-decision"),
        "{waits:?}"
    );
}

#[tokio::test]
async fn resuming_the_hook_posts_the_reminder() {
    let env = env();
    env.execute_workflow(&SIGNUP_FOLLOWUP, ada()).await;
    env.skip_time(Duration::from_secs(2 * 86_400)).await;
    let run = env.last_run().unwrap();
    let Some(Wait::Hook { token, .. }) = env.outcome::<FollowUp>(run).await.waits().unwrap().pop()
    else {
        panic!()
    };
    env.resume_hook(&token, FollowUpDecision { follow_up: true })
        .await
        .unwrap();
    let output = env.outcome::<FollowUp>(run).await.completed().unwrap();
    assert_eq!(
        output,
        FollowUp {
            brief: "about Ada".into(),
            followed_up: true
        }
    );
}

#[tokio::test]
async fn no_answer_within_a_week_means_no_follow_up() {
    let env = env();
    env.execute_workflow(&SIGNUP_FOLLOWUP, ada()).await;
    env.skip_time(Duration::from_secs(2 * 86_400)).await;
    env.skip_time(Duration::from_secs(7 * 86_400)).await;
    let output = env
        .outcome::<FollowUp>(env.last_run().unwrap())
        .await
        .completed()
        .unwrap();
    assert!(!output.followed_up);
}

#[tokio::test]
async fn a_seeded_research_step_is_replayed_not_run() {
    let env = TestEnv::new()
        .mock(&RESEARCH_SIGNUP, |_: Signup| -> Result<Brief, _> {
            panic!("must replay")
        })
        .mock(&POST_BRIEF, posted);
    let run = env.start(&SIGNUP_PIPELINE, ada()).await.unwrap();
    env.seed_step(
        run,
        "research-signup#0",
        Brief {
            brief: "seeded".into(),
        },
    )
    .await
    .unwrap();
    let outcome = env.outcome::<Brief>(run).await;
    assert_eq!(
        outcome.completed(),
        Some(Brief {
            brief: "seeded".into()
        })
    );
}

#[tokio::test]
async fn a_recorded_history_replays_against_the_current_code() {
    let env = env();
    env.execute_workflow(&SIGNUP_PIPELINE, ada()).await;
    let export = env.export(env.last_run().unwrap()).await.unwrap();
    replay(&SIGNUP_PIPELINE, &export).await.unwrap();
    let err = replay(&SIGNUP_FOLLOWUP, &export).await.unwrap_err();
    assert!(err.to_string().contains("non-determinism"), "{err}");
}
