//! Every bad request is answered with a problem (RFC 9457) that says what was wrong, and
//! changes nothing: the store's row counts, read from its SQLite file, are the same after.

mod support;

use reqwest::{Body, StatusCode};
use serde_json::json;
use support::{PAYLOAD_LIMIT, problem, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems_and_write_nothing() {
    let server = start().await;
    // One run, so the tables are not all empty.
    let run_id = server.start_run("greet", json!({"name": "ada"})).await;
    server.wait_for_status(&run_id, "succeeded").await;
    let before = server.row_counts();
    let post = |path: &str| server.client.post(server.url(path));

    let malformed = post("/workflows/greet")
        .header("content-type", "application/json")
        .body("{\n  \"name\": \"ada\",\n}")
        .send()
        .await
        .unwrap();
    let body = problem(malformed, StatusCode::BAD_REQUEST).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("line 3, column 1"), "{detail}");

    let text = post("/workflows/greet")
        .header("content-type", "text/plain")
        .body(r#"{"name": "ada"}"#)
        .send()
        .await
        .unwrap();
    problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let untyped = post("/workflows/greet")
        .body(r#"{"name": "ada"}"#)
        .send()
        .await
        .unwrap();
    problem(untyped, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let empty = post("/workflows/greet").send().await.unwrap();
    let body = problem(empty, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("no body"),
        "{body}"
    );

    // Declared too large: refused before reading.
    let large = format!(r#"{{"name": "{}"}}"#, "a".repeat(PAYLOAD_LIMIT));
    let declared = post("/workflows/greet")
        .header("content-type", "application/json")
        .body(large.clone())
        .send()
        .await;
    // The server may answer before the client has sent everything, and close: then the
    // client may see the closed connection instead of the answer.
    let mut answered = 0;
    if let Ok(response) = declared {
        problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        answered += 1;
    }
    // Streamed without a length: refused while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = large
        .into_bytes()
        .chunks(4096)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let streamed = post("/workflows/greet")
        .header("content-type", "application/json")
        .body(Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(response) = streamed {
        problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        answered += 1;
    }
    assert!(answered > 0, "a 413 was seen");

    let invalid = server
        .post("/workflows/greet", &json!({"name": 42, "extra": true}))
        .await;
    let body = problem(invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/name"), "{body}");

    problem(
        server.post("/workflows/nope", &json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        server
            .post("/workflows/greet?wait=soon", &json!({"name": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let long_key = post("/workflows/greet")
        .header("Idempotency-Key", "k".repeat(300))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    problem(long_key, StatusCode::BAD_REQUEST).await;
    let cancel = server
        .post(&format!("/runs/{run_id}/cancel"), &json!({"reason": 3}))
        .await;
    problem(cancel, StatusCode::UNPROCESSABLE_ENTITY).await;
    problem(
        server
            .post(&format!("/runs/{run_id}/cancel"), &json!({}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(server.get("/nowhere").await, StatusCode::NOT_FOUND).await;
    problem(
        server
            .client
            .delete(server.url("/runs"))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    problem(
        server
            .get(&format!("/runs/{}", cairn_store::RunId::new()))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    assert_eq!(
        before,
        server.row_counts(),
        "no bad request changed the store"
    );
}
