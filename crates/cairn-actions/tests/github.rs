//! GitHub's actions run as steps of real workflows against a local GitHub stand-in
//! (wiremock): the exact requests, GitHub's messages on fatal 4xx, rate limits retried when
//! GitHub says, and no request without a credential.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_actions::github::{ADD_COMMENT, AddComment, CREATE_ISSUE, Comment, CreateIssue, Issue};
use cairn_core::ErrorKind;
use cairn_engine::{Payload, Workflow, WorkflowCtx};
use serde_json::json;
use support::{
    Env, assert_missing_credentials, calling, config, env, fail_once_then, failed_at_once,
    only_step, output, retried_once,
};
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
        .respond_with(created(42))
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
            id: 1042,
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

        let error = failed_at_once(&detail);
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

/// GitHub's answer to an issue created: number `n`.
fn created(n: u64) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "id": 1000 + n, "number": n,
        "html_url": format!("https://github.com/octo-org/hello.world/issues/{n}"),
    }))
}

/// Runs the issue workflow against a server that answers `failure` once, then creates issue
/// 7; the run's detail.
async fn created_after(failure: ResponseTemplate) -> cairn_engine::RunDetail {
    let server = MockServer::start().await;
    fail_once_then(&server, "POST", ISSUES, failure, created(7)).await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, true).await;
    let detail = env.run(&workflow, &issue()).await;
    let issue: Issue = output(&detail);
    assert_eq!(issue.number, 7);
    detail
}

#[tokio::test]
async fn a_secondary_rate_limit_is_retried_after_retry_after() {
    let detail = created_after(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "1")
            .set_body_json(json!({"message": "You have exceeded a secondary rate limit."})),
    )
    .await;

    assert_eq!(
        retried_once(&detail, "secondary rate limit"),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn an_exhausted_primary_rate_limit_is_retried_when_it_resets() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let detail = created_after(
        ResponseTemplate::new(403)
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.to_string().as_str())
            .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."})),
    )
    .await;

    // Until the reset: whole seconds, read from the wall clock during the attempt.
    let delay = retried_once(&detail, "rate limit exceeded");
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&delay),
        "{delay:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried() {
    let detail = created_after(ResponseTemplate::new(502).set_body_string("Bad gateway")).await;

    retried_once(&detail, "HTTP 502 Bad Gateway: Bad gateway");
}

#[tokio::test]
async fn without_a_credential_the_step_fails_with_missing_credentials_and_sends_nothing() {
    let server = MockServer::start().await;
    let workflow = calling("file-issue", &CREATE_ISSUE);
    let env = github_env(&server, &workflow, false).await;

    let detail = env.run(&workflow, &issue()).await;

    assert_missing_credentials(&detail, "github", &server).await;
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
