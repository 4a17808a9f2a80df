//! GitHub's actions run as steps of real workflows against a local GitHub stand-in
//! (wiremock): the exact requests, GitHub's messages on fatal 4xx, rate limits retried when
//! GitHub says, and no request without a credential.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_actions::github::{ADD_COMMENT, AddComment, CREATE_ISSUE, Comment, CreateIssue, Issue};
use cairn_core::{ErrorKind, RunStatus, StepStatus};
use cairn_engine::{Payload, Workflow, WorkflowCtx};
use serde_json::json;
use support::{Env, calling, config, env, first_retry_delay, only_step, output};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

const TOKEN: &str = "ghp_test_token";
const ISSUES: &str = "/repos/octo-org/hello.world/issues";

async fn github_env<I: Payload, O: Payload>(
    server: &MockServer,
    workflow: &Workflow<I, O>,
    with_token: bool,
) -> Env {
    let config = config().github_base_url(&server.uri()).expect("a base URL");
    let env = env(workflow, config);
    if with_token {
        env.set_credential("github", &[("token", TOKEN)]).await;
    }
    env
}

fn issue() -> CreateIssue {
    CreateIssue {
        owner: "octo-org".into(),
        repo: "hello.world".into(),
        title: "Nightly build failed".into(),
        body: Some("See the run log.".into()),
        labels: vec!["ci".into()],
        assignees: Vec::new(),
    }
}

#[tokio::test]
async fn an_issue_is_created_with_the_token_and_its_number_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("user-agent", "cairn"))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(body_json(json!({
            "title": "Nightly build failed",
            "body": "See the run log.",
            "labels": ["ci"],
            "assignees": [],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 1001, "number": 42, "state": "open",
            "html_url": "https://github.com/octo-org/hello.world/issues/42",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, true).await;

    let created: Issue = output(&env.run(&workflow, &issue()).await);

    assert_eq!(
        created,
        Issue {
            number: 42,
            id: 1001,
            html_url: "https://github.com/octo-org/hello.world/issues/42".into(),
        }
    );
}

#[tokio::test]
async fn a_comment_is_added_to_the_issue() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{ISSUES}/42/comments")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(json!({"body": "Fixed in #43."})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 555,
            "html_url": "https://github.com/octo-org/hello.world/issues/42#issuecomment-555",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("comment", &ADD_COMMENT);
    let env = github_env(&server, &workflow, true).await;
    let input = AddComment {
        owner: "octo-org".into(),
        repo: "hello.world".into(),
        issue_number: 42,
        body: "Fixed in #43.".into(),
    };

    let comment: Comment = output(&env.run(&workflow, &input).await);

    assert_eq!(comment.id, 555);
    assert!(comment.html_url.ends_with("#issuecomment-555"));
}

#[tokio::test]
async fn client_errors_fail_the_step_at_once_with_githubs_message() {
    for (status, message, hint) in [
        (401, "Bad credentials", "credentials set github"),
        (
            403,
            "Resource not accessible by personal access token",
            "permission",
        ),
        (404, "Not Found", "check the owner"),
        (422, "Validation Failed", "rejected a field"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ISSUES))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "message": message,
                "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                "documentation_url": "https://docs.github.com/rest",
            })))
            .expect(1)
            .mount(&server)
            .await;
        let workflow = calling("file-issue", &CREATE_ISSUE);
        let env = github_env(&server, &workflow, true).await;

        let detail = env.run(&workflow, &issue()).await;

        assert_eq!(detail.run.status, RunStatus::Failed);
        let step = only_step(&detail);
        assert_eq!(
            (step.status, step.attempts),
            (StepStatus::Failed, 1),
            "{status}"
        );
        let error = step.error.as_ref().expect("an error");
        assert!(!error.retryable);
        assert!(
            error.message.contains(&format!("HTTP {status}"))
                && error.message.contains(message)
                && error.message.contains("missing_field")
                && error.message.contains(hint),
            "{}",
            error.message
        );
        assert!(!error.message.contains(TOKEN));
    }
}

#[tokio::test]
async fn a_secondary_rate_limit_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit."})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 1, "number": 1, "html_url": "https://github.com/octo-org/hello.world/issues/1",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, true).await;

    let detail = env.run(&workflow, &issue()).await;

    let created: Issue = output(&detail);
    assert_eq!(created.number, 1);
    assert_eq!(only_step(&detail).attempts, 2);
    assert_eq!(first_retry_delay(&detail), Duration::from_secs(1));
}

#[tokio::test]
async fn an_exhausted_primary_rate_limit_is_retried_when_it_resets() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 2, "number": 2, "html_url": "https://github.com/octo-org/hello.world/issues/2",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, true).await;

    let detail = env.run(&workflow, &issue()).await;

    let created: Issue = output(&detail);
    assert_eq!(created.number, 2);
    let step = only_step(&detail);
    assert_eq!(step.attempts, 2);
    assert!(step.attempt_errors[0].error.message.contains("rate limit"));
    // Until the reset: whole seconds, read from the wall clock during the attempt.
    let delay = first_retry_delay(&detail);
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&delay),
        "{delay:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad gateway"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 3, "number": 3, "html_url": "https://github.com/octo-org/hello.world/issues/3",
        })))
        .mount(&server)
        .await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, true).await;

    let detail = env.run(&workflow, &issue()).await;

    let created: Issue = output(&detail);
    assert_eq!(created.number, 3);
    let step = only_step(&detail);
    assert_eq!(step.attempts, 2);
    let first = &step.attempt_errors[0].error;
    assert!(
        first.retryable && first.message.contains("HTTP 502"),
        "{}",
        first.message
    );
}

#[tokio::test]
async fn without_a_credential_the_step_fails_with_missing_credentials_and_sends_nothing() {
    let server = MockServer::start().await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, false).await;

    let detail = env.run(&workflow, &issue()).await;

    assert_eq!(detail.run.status, RunStatus::Failed);
    let step = only_step(&detail);
    let error = step.error.as_ref().expect("an error");
    assert_eq!(
        error.kind,
        ErrorKind::MissingCredentials,
        "{}",
        error.message
    );
    assert!(error.message.contains("github"), "{}", error.message);
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn a_path_breaking_owner_is_refused_before_any_request() {
    let server = MockServer::start().await;
    // The workflow takes any owner; the action's input schema refuses this one.
    let workflow =
        Workflow::new("file-issue-for").run(|owner: String, _ctx: WorkflowCtx| async move {
            Ok(CREATE_ISSUE.run(CreateIssue { owner, ..issue() }).await?)
        });
    let env = github_env(&server, &workflow, true).await;

    let detail = env.run(&workflow, &"../admin".to_owned()).await;

    let error = only_step(&detail).error.as_ref().expect("an error");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{}", error.message);
    assert!(error.message.contains("/owner"), "{}", error.message);
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
