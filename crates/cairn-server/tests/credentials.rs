//! `/credentials` over real HTTP: bad bodies are refused with each JSON path and change
//! nothing; a saved credential is used by a run started for its user (the owner from the
//! `Cairn-*` headers), which records the credential's id and scope; no response ever holds
//! the secret; default and delete work and unknown ids are 404s.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{problem, start};

const SECRET: &str = "tok-SECRET-93b1e0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_write_only_and_resolve_for_the_runs_owner() {
    let server = start().await;
    let mut seen = String::new();

    // Refusals name each path and save nothing.
    let response = server
        .post(
            "/credentials",
            &json!({"scope": "team", "fields": {"token": 7}}),
        )
        .await;
    let refused = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let paths: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/key", "/scope", "/fields/token"]);
    let body = json!({"key": "slack", "fields": {"token": SECRET}});
    let unknown = problem(
        server.post("/credentials", &body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        unknown["detail"].as_str().unwrap().contains("chat"),
        "{unknown}"
    );
    seen.push_str(&unknown.to_string());
    let listed = server.get_json("/credentials").await;
    assert_eq!(listed["credentials"], json!([]));

    // Saved for a user: the answer has no value.
    let body = json!({"key": "chat", "scope": "user", "org": "acme", "user": "ada", "fields": {"token": SECRET}});
    let response = server.post("/credentials", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    seen.push_str(&text);
    let saved: Value = serde_json::from_str(&text).unwrap();
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(
        saved["holder"],
        json!({"scope": "user", "org": "acme", "user": "ada"})
    );
    assert_eq!(saved["fields"], json!(["token"]));
    assert_eq!(saved["isDefault"], true);

    // A run for that user resolves it; the step records which one.
    let started = server
        .client
        .post(server.url("/workflows/signed?wait=20s"))
        .header("cairn-org", "acme")
        .header("cairn-user", "ada")
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::OK);
    let text = started.text().await.unwrap();
    seen.push_str(&text);
    let run: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let expected = format!("Ada via {id} ({})", SECRET.len());
    assert_eq!(run["output"]["name"], expected.as_str());
    let detail = server
        .get(&format!("/runs/{}", run["runId"].as_str().unwrap()))
        .await;
    let text = detail.text().await.unwrap();
    seen.push_str(&text);
    let detail: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        detail["owner"],
        json!({"org": "acme", "project": "default", "user": "ada"})
    );
    assert_eq!(
        detail["steps"][0]["credentials"],
        json!([{"key": "chat", "id": id, "scope": "user"}])
    );

    // Another user's run finds none: a fatal MissingCredentials, the fix named.
    let other = server
        .client
        .post(server.url("/workflows/signed?wait=20s"))
        .header("cairn-org", "acme")
        .header("cairn-user", "bob")
        .json(&json!({"name": "Bob"}))
        .send()
        .await
        .unwrap();
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["status"], "failed");
    assert_eq!(other["error"]["kind"], "missing_credentials");

    for path in [
        "/credentials",
        &format!("/credentials/{id}"),
        "/credentials?key=chat&org=acme",
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        seen.push_str(&response.text().await.unwrap());
    }
    let response = server
        .post(&format!("/credentials/{id}/default"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    seen.push_str(&response.text().await.unwrap());
    problem(
        server.get("/credentials/cred_nope").await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let delete = || {
        server
            .client
            .delete(server.url(&format!("/credentials/{id}")))
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    problem(delete().await.unwrap(), StatusCode::NOT_FOUND).await;
    assert!(!seen.contains(SECRET), "a response held the secret: {seen}");
}
