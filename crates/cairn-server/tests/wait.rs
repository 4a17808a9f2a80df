//! A start with `?wait=` executes its run in the server's process, as `Engine::run` does (no
//! claim by the worker: fewer commits), and leaves a run that parks to the worker.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestServer, start};

/// Commits the store has made so far (the server's `cairn_store_commit_seconds_count`).
async fn commits(server: &TestServer) -> f64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("cairn_store_commit_seconds_count "))
        .map_or(0.0, |count| count.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_start_executes_its_run_here_with_fewer_commits() {
    let server = start().await;
    // Warm up: the first run's commits include the worker's first look.
    let warm = server
        .post("/workflows/greet?wait=20s", &json!({"name": "w"}))
        .await;
    assert_eq!(warm.status(), StatusCode::OK);

    let before = commits(&server).await;
    let waited = server
        .post("/workflows/greet?wait=20s", &json!({"name": "ada"}))
        .await;
    assert_eq!(waited.status(), StatusCode::OK);
    let run: Value = waited.json().await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let executed_here = commits(&server).await - before;

    let before = commits(&server).await;
    let run_id = server.start_run("greet", json!({"name": "bo"})).await;
    server.wait_for_status(&run_id, "succeeded").await;
    let claimed = commits(&server).await - before;
    assert!(
        executed_here < claimed,
        "a waiting start made {executed_here} commits, a start the worker claimed {claimed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_parks_during_a_wait_is_left_to_the_worker() {
    let server = start().await;
    let response = server
        .post("/workflows/approval?wait=500ms", &json!({"name": "ada"}))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "it waits for a person"
    );
    let run_id = response.json::<Value>().await.unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = server.pending_hook(&run_id).await;
    let resumed = server
        .post(
            &format!("/hooks/{}", hook.token),
            &json!({"approved": true}),
        )
        .await;
    assert_eq!(resumed.status(), StatusCode::OK);
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA APPROVED=TRUE"}));
}
