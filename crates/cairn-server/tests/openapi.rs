//! `GET /openapi.json` describes what the server really does: real responses of every route,
//! for the statuses and content types the routes answer with, are checked against the
//! document the server serves. A status, a media type or a body the document does not
//! describe fails the test.

mod support;

use std::sync::Arc;

use cairn_engine::{Credential, Field, OAuth};
use cairn_server::{ApiKeys, ServeOptions};
use cairn_test_support::oauth::FakeProvider;
use reqwest::{StatusCode, header};
use serde_json::json;
use support::{spec::Spec, start, start_public, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workflow_has_a_start_operation_with_its_input_schema() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let catalog = spec
        .check("/workflows", "get", server.get("/workflows").await)
        .await;
    let workflows = catalog["workflows"].as_array().expect("workflows");
    assert!(workflows.len() >= 4);
    for workflow in workflows {
        let slug = workflow["slug"].as_str().expect("a slug");
        let path = format!("/workflows/{slug}");
        let body = &spec.doc["paths"][&path]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let mut documented = spec.resolve(body).clone();
        let mut expected = workflow["inputSchema"].clone();
        for schema in [&mut documented, &mut expected] {
            if let Some(fields) = schema.as_object_mut() {
                fields.remove("$schema");
                fields.remove("$defs");
            }
        }
        assert_eq!(
            documented, expected,
            "{path}'s body is {slug}'s input schema"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_their_refusals_match_the_document() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let greet = "/workflows/greet";
    spec.check(
        greet,
        "post",
        server.post(greet, &json!({"name": "ada"})).await,
    )
    .await;
    let waited = server
        .post("/workflows/greet?wait=30s", &json!({"name": "bo"}))
        .await;
    assert_eq!(waited.status(), StatusCode::OK);
    let run = spec.check(greet, "post", waited).await;
    assert_eq!(run["status"], "succeeded");
    for _ in 0..2 {
        let keyed = server
            .client
            .post(server.url(greet))
            .header("Idempotency-Key", "k-1")
            .json(&json!({"name": "cy"}))
            .send()
            .await
            .unwrap();
        spec.check(greet, "post", keyed).await;
    }
    let refusals = [
        server.post(greet, &json!({"name": 7})).await,
        server
            .post("/workflows/greet?wait=soon", &json!({"name": "x"}))
            .await,
        server
            .client
            .post(server.url(greet))
            .header(header::CONTENT_TYPE, "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap(),
        server
            .client
            .post(server.url(greet))
            .header(header::CONTENT_TYPE, "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
        server
            .post(greet, &json!({"name": "x".repeat(support::PAYLOAD_LIMIT)}))
            .await,
    ];
    let mut statuses = Vec::new();
    for response in refusals {
        statuses.push(response.status().as_u16());
        spec.check(greet, "post", response).await;
    }
    assert_eq!(statuses, [422, 400, 400, 415, 413]);
    let unknown = server.post("/workflows/nope", &json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    spec.check("/workflows/{slug}", "post", unknown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_their_management_match_the_document() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let done = server.start_run("greet", json!({"name": "ada"})).await;
    let detail = server.wait_for_status(&done, "succeeded").await;
    assert!(!detail["events"].as_array().unwrap().is_empty());

    let run_path = format!("/runs/{done}");
    let got = spec
        .check("/runs/{id}", "get", server.get(&run_path).await)
        .await;
    assert_eq!(got["steps"].as_array().unwrap().len(), 2);
    for path in ["/runs", "/runs?limit=1&workflow=greet&status=succeeded"] {
        spec.check("/runs", "get", server.get(path).await).await;
    }
    for bad in ["/runs?limit=0", "/runs?cursor=nope", "/runs?status=done"] {
        let response = server.get(bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        spec.check("/runs", "get", response).await;
    }
    let unknown = format!("/runs/{}", uuid_like());
    for (template, method, response) in [
        ("/runs/{id}", "get", server.get(&unknown).await),
        ("/runs/{id}", "get", server.get("/runs/not-an-id").await),
        (
            "/runs/{id}/retry",
            "post",
            server.post(&format!("{run_path}/retry"), &json!({})).await,
        ),
        (
            "/runs/{id}/cancel",
            "post",
            server.post(&format!("{run_path}/cancel"), &json!({})).await,
        ),
        (
            "/runs/{id}/cancel",
            "post",
            server
                .post(&format!("{run_path}/cancel"), &json!({"reason": 3}))
                .await,
        ),
        (
            "/runs/{id}/rerun",
            "post",
            server
                .post(
                    &format!("{run_path}/rerun"),
                    &json!({"fromStep": "shout#1"}),
                )
                .await,
        ),
        (
            "/runs/{id}/rerun",
            "post",
            server.post(&format!("{run_path}/rerun"), &json!({})).await,
        ),
        (
            "/runs/{id}/stream",
            "get",
            server.get(&format!("{run_path}/stream")).await,
        ),
        (
            "/runs/{id}/stream",
            "get",
            server.get(&format!("{unknown}/stream")).await,
        ),
    ] {
        spec.check(template, method, response).await;
    }

    let slow = server
        .start_run(
            "slow",
            json!({"name": "x", "file": server.file("never").to_str().unwrap()}),
        )
        .await;
    let slow_path = format!("/runs/{slow}");
    let canceled = server
        .post(&format!("{slow_path}/cancel"), &json!({"reason": "test"}))
        .await;
    assert_eq!(canceled.status(), StatusCode::OK);
    spec.check("/runs/{id}/cancel", "post", canceled).await;
    let retried = server.post(&format!("{slow_path}/retry"), &json!({})).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    spec.check("/runs/{id}/retry", "post", retried).await;
    server
        .post(&format!("{slow_path}/cancel"), &json!({}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_health_metrics_and_keys_match_the_document() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let run_id = server.start_run("approval", json!({"name": "ada"})).await;
    let hook = server.pending_hook(&run_id).await;
    let hook_path = format!("/hooks/{}", hook.token);
    let template = "/hooks/{token}";
    let bad = server.post(&hook_path, &json!({"approved": "yes"})).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    spec.check(template, "post", bad).await;
    let page = server
        .client
        .get(server.url("/hooks/unknown?approved=true"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    spec.check(template, "get", page).await;
    let resumed = server.get(&format!("{hook_path}?approved=true")).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    spec.check(template, "get", resumed).await;
    let again = server.post(&hook_path, &json!({"approved": false})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    spec.check(template, "post", again).await;
    let unknown = server.post("/hooks/unknown", &json!({})).await;
    spec.check(template, "post", unknown).await;

    for path in ["/healthz", "/readyz", "/metrics"] {
        spec.check(path, "get", server.get(path).await).await;
    }

    let keyed = start_with(ServeOptions {
        api_keys: ApiKeys::from_list("key-one"),
        ..ServeOptions::default()
    })
    .await;
    for (path, method) in [
        ("/runs", "get"),
        ("/openapi.json", "get"),
        ("/workflows", "get"),
    ] {
        let refused = keyed.get(path).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        spec.check(path, method, refused).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_match_the_document() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let template = "/triggers/{endpoint}";
    let body = json!({"name": "linus"});
    let unset = server.post("/triggers/github", &body).await;
    assert_eq!(unset.status(), StatusCode::SERVICE_UNAVAILABLE);
    spec.check(template, "post", unset).await;
    support::set_signing_secrets(&server, &[("secret", "s3cret")]).await;
    for (path, status) in [
        ("/triggers/github", StatusCode::UNAUTHORIZED),
        ("/triggers/nowhere", StatusCode::NOT_FOUND),
    ] {
        let refused = server.post(path, &body).await;
        assert_eq!(refused.status(), status);
        spec.check(template, "post", refused).await;
    }
    let log = "/webhooks/{endpoint}/deliveries";
    for (path, status) in [
        ("/webhooks/github/deliveries", StatusCode::OK),
        (
            "/webhooks/github/deliveries?limit=x",
            StatusCode::BAD_REQUEST,
        ),
        ("/webhooks/nowhere/deliveries", StatusCode::NOT_FOUND),
    ] {
        let answer = server.get(path).await;
        assert_eq!(answer.status(), status, "{path}");
        spec.check(log, "get", answer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_match_the_document() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let (list, one) = ("/credentials", "/credentials/{id}");
    let bad = server.post(list, &json!({"fields": []})).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    spec.check(list, "post", bad).await;
    let unknown_type = server
        .post(list, &json!({"key": "nope", "fields": {"a": "b"}}))
        .await;
    assert_eq!(unknown_type.status(), StatusCode::BAD_REQUEST);
    spec.check(list, "post", unknown_type).await;
    let replace_nothing = json!({"key": "chat", "fields": {"token": "t"}, "replace": "cred_0"});
    let missing = server.post(list, &replace_nothing).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    spec.check(list, "post", missing).await;
    let saved = server
        .post(
            list,
            &json!({"key": "chat", "scope": "project", "fields": {"token": "t"}}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::CREATED);
    let saved = spec.check(list, "post", saved).await;
    let id = saved["id"].as_str().expect("an id").to_owned();
    spec.check(list, "get", server.get("/credentials?key=chat").await)
        .await;
    spec.check(one, "get", server.get(&format!("/credentials/{id}")).await)
        .await;
    spec.check(one, "get", server.get("/credentials/cred_0").await)
        .await;
    let default = server
        .post(&format!("/credentials/{id}/default"), &json!({}))
        .await;
    spec.check("/credentials/{id}/default", "post", default)
        .await;
    let unknown = server.post("/credentials/cred_0/default", &json!({})).await;
    spec.check("/credentials/{id}/default", "post", unknown)
        .await;
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let deleted = server
            .client
            .delete(server.url(&format!("/credentials/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), expected);
        spec.check(one, "delete", deleted).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_connect_and_callback_match_the_document() {
    let provider = FakeProvider::start("client", "secret", 60).await;
    let slack = Credential::new("slack")
        .field("accessToken", Field::secret())
        .field("refreshToken", Field::secret().optional())
        .oauth(
            OAuth::new(provider.authorize_url(), provider.token_url())
                .client_id("client")
                .client_secret("secret"),
        );
    let server = start_public(&slack, ServeOptions::default()).await;
    let spec = Spec::of(&server).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (connect, callback) = ("/credentials/connect/{key}", "/credentials/callback/{key}");
    let get = |path: &str, accept: &str| {
        browser
            .get(server.url(path))
            .header(header::ACCEPT, accept)
            .send()
    };
    let json = "application/json";
    let redirect = get("/credentials/connect/slack?user=ada", "*/*")
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    spec.check(connect, "get", redirect).await;
    let url = spec
        .check(
            connect,
            "get",
            get("/credentials/connect/slack?user=ada", json)
                .await
                .unwrap(),
        )
        .await;
    assert!(url["authorizeUrl"].is_string());
    for bad in [
        "/credentials/connect/slack",
        "/credentials/connect/chat?user=ada",
    ] {
        let refused = get(bad, json).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        spec.check(connect, "get", refused).await;
    }
    let approved = browser.get(&location).send().await.unwrap();
    let back = approved.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let path = back.strip_prefix(&server.base).expect("on the server");
    let connected = get(path, json).await.unwrap();
    assert_eq!(connected.status(), StatusCode::OK);
    spec.check(callback, "get", connected).await;
    let again = get(path, "text/html").await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "a code is good once"
    );
    spec.check(callback, "get", again).await;
    for accept in [json, "text/html"] {
        let declined = get("/credentials/callback/slack?error=access_denied", accept)
            .await
            .unwrap();
        assert_eq!(declined.status(), StatusCode::BAD_REQUEST);
        spec.check(callback, "get", declined).await;
    }
    let fresh = get("/credentials/connect/slack?user=bo", json)
        .await
        .unwrap();
    let fresh: serde_json::Value = fresh.json().await.unwrap();
    let approved = browser
        .get(fresh["authorizeUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let back = approved.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    provider.fail_with(Some(503));
    let path = back.strip_prefix(&server.base).expect("on the server");
    let unreachable = get(path, json).await.unwrap();
    assert_eq!(unreachable.status(), StatusCode::BAD_GATEWAY);
    spec.check(callback, "get", unreachable).await;
}

#[test]
fn the_document_is_refused_when_it_lies() {
    // The checks above fail on a body the document does not describe: a run without its id.
    let spec = Spec {
        doc: Arc::new(json!({
            "paths": {"/runs/{id}": {"get": {"responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Run"}}}}}}}},
            "components": {"schemas": {"Run": {"type": "object", "required": ["runId"]}}},
        })),
    };
    let lying = std::panic::catch_unwind(|| {
        spec.check_body(
            "/runs/{id}",
            "get",
            200,
            "application/json",
            &json!({"status": "x"}),
        );
    });
    assert!(lying.is_err());
    spec.check_body(
        "/runs/{id}",
        "get",
        200,
        "application/json",
        &json!({"runId": "x"}),
    );
}

/// An id no run has.
fn uuid_like() -> String {
    "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee".to_owned()
}
