//! The HTTP action runs as a step of a real workflow against a local server (wiremock): the
//! request as given, unauthenticated without a credential and authenticated with one, JSON
//! and text bodies, and statuses mapped to fatal, retryable or allowed.

mod support;

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use cairn_actions::http::{Body, Method, REQUEST, Request, Response};
use cairn_core::{RunStatus, StepStatus};
use serde_json::json;
use support::{
    calling, config, env, fail_once_then, failed_at_once, only_step, output, retried_once,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, body_string, header, method, path},
};

fn post_json(server: &MockServer) -> Request {
    Request {
        method: Method::Post,
        url: format!("{}/hooks/deploy?env=prod", server.uri()),
        headers: BTreeMap::from([("X-Request-Source".to_owned(), "cairn-test".to_owned())]),
        body: Some(Body::Json(json!({"service": "api", "version": 7}))),
        allow_status: Vec::new(),
    }
}

#[tokio::test]
async fn without_a_credential_the_request_goes_out_unauthenticated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/deploy"))
        .and(header("x-request-source", "cairn-test"))
        .and(header("user-agent", "cairn"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"service": "api", "version": 7})))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("x-deploy-id", "d-9")
                .set_body_json(json!({"accepted": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("call-hook", &REQUEST);
    let env = env(&workflow, config());

    let detail = env.run(&workflow, &post_json(&server)).await;

    let response: Response = output(&detail);
    assert_eq!(response.status, 201);
    assert_eq!(response.body, Some(Body::Json(json!({"accepted": true}))));
    assert_eq!(response.headers["x-deploy-id"], "d-9");
    assert_eq!(response.headers["content-type"], "application/json");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), Some("env=prod"));
    assert!(!requests[0].headers.contains_key("authorization"));
    assert!(only_step(&detail).credentials.is_empty());
}

#[tokio::test]
async fn a_bearer_token_authenticates_the_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/deploy"))
        .and(header("authorization", "Bearer tok-123"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("call-hook", &REQUEST);
    let env = env(&workflow, config());
    env.set_credential("http", &[("bearerToken", "tok-123")])
        .await;
    let mut request = post_json(&server);
    // The credential's header wins over one in the (recorded) input.
    request
        .headers
        .insert("Authorization".into(), "Bearer from-input".into());

    let detail = env.run(&workflow, &request).await;

    let response: Response = output(&detail);
    assert_eq!((response.status, response.body), (204, None));
    assert_eq!(only_step(&detail).credentials[0].key, "http");
    let recorded = serde_json::to_string(&detail.events).unwrap();
    assert!(
        !recorded.contains("tok-123"),
        "the token is in the run's log"
    );
}

#[tokio::test]
async fn basic_auth_and_an_api_key_header_authenticate_the_request() {
    let server = MockServer::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:s3cret");
    Mock::given(method("GET"))
        .and(path("/status"))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .and(header("x-tenant-key", "k-42"))
        .respond_with(ResponseTemplate::new(200).set_body_string("all good"))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("status", &REQUEST);
    let env = env(&workflow, config());
    env.set_credential(
        "http",
        &[
            ("basicUser", "ops"),
            ("basicPassword", "s3cret"),
            ("apiKeyHeader", "X-Tenant-Key"),
            ("apiKey", "k-42"),
        ],
    )
    .await;

    let response: Response = output(
        &env.run(&workflow, &Request::get(format!("{}/status", server.uri())))
            .await,
    );

    assert_eq!(response.body, Some(Body::Text("all good".into())));
}

#[tokio::test]
async fn a_text_body_is_sent_as_text() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/notes/1"))
        .and(header("content-type", "text/plain; charset=utf-8"))
        .and(body_string("remember the milk"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"saved": 1})))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("note", &REQUEST);
    let env = env(&workflow, config());
    let request = Request {
        method: Method::Put,
        body: Some(Body::Text("remember the milk".into())),
        ..Request::get(format!("{}/notes/1", server.uri()))
    };

    let response: Response = output(&env.run(&workflow, &request).await);

    assert_eq!(response.body, Some(Body::Json(json!({"saved": 1}))));
}

#[tokio::test]
async fn a_client_error_fails_the_step_at_once_unless_allowed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no such thing"))
        .mount(&server)
        .await;
    let workflow = calling("fetch", &REQUEST);
    let env = env(&workflow, config());
    let request = Request::get(format!("{}/missing?key=not-for-logs", server.uri()));

    let failed = env.run(&workflow, &request).await;

    let error = failed_at_once(&failed);
    assert!(
        error.message.contains("HTTP 404 Not Found")
            && error.message.contains("no such thing")
            && error.message.contains("allow_status"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("not-for-logs"), "{}", error.message);

    let allowed = Request {
        allow_status: vec![404],
        ..request
    };
    let response: Response = output(&env.run(&workflow, &allowed).await);
    assert_eq!(response.status, 404);
    assert_eq!(response.body, Some(Body::Text("no such thing".into())));
}

#[tokio::test]
async fn too_many_requests_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    fail_once_then(
        &server,
        "POST",
        "/hooks/deploy",
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        ResponseTemplate::new(200).set_body_json(json!({"accepted": true})),
    )
    .await;
    let workflow = calling("call-hook", &REQUEST);
    let env = env(&workflow, config());

    let detail = env.run(&workflow, &post_json(&server)).await;

    let response: Response = output(&detail);
    assert_eq!(response.status, 200);
    assert_eq!(retried_once(&detail, "HTTP 429"), Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_policy_gives_up() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/flaky"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down for maintenance"))
        .expect(5)
        .mount(&server)
        .await;
    let workflow = calling("fetch", &REQUEST);
    let env = env(&workflow, config());

    let detail = env
        .run(&workflow, &Request::get(format!("{}/flaky", server.uri())))
        .await;

    assert_eq!(detail.run.status, RunStatus::Failed);
    let step = only_step(&detail);
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 5));
    assert!(
        step.attempt_errors
            .iter()
            .all(|attempt| attempt.error.retryable)
    );
    let error = step.error.as_ref().expect("an error");
    assert!(error.message.contains("HTTP 503"), "{}", error.message);
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    drop(listener);
    let workflow = calling("ping", &REQUEST);
    let env = env(&workflow, config());

    let detail = env.run(&workflow, &Request::get(url)).await;

    let step = only_step(&detail);
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 5));
    let error = step.error.as_ref().expect("an error");
    assert!(error.retryable);
    assert!(
        error.message.contains("could not be reached"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_server_that_answers_too_late_is_retried() {
    let server = MockServer::start().await;
    fail_once_then(
        &server,
        "GET",
        "/slow",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
        ResponseTemplate::new(200).set_body_string("in time"),
    )
    .await;
    let workflow = calling("fetch", &REQUEST);
    let env = env(
        &workflow,
        config().request_timeout(Duration::from_millis(200)),
    );

    let detail = env
        .run(&workflow, &Request::get(format!("{}/slow", server.uri())))
        .await;

    let response: Response = output(&detail);
    assert_eq!(response.body, Some(Body::Text("in time".into())));
    retried_once(&detail, "did not answer within 200ms");
}
