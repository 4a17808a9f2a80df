//! Time as a limit and as a leak: a request over the server's time limit is stopped with a
//! problem (503), and a hook token that names nothing is answered as fast as one that names a
//! hook (no timing oracle for guessing tokens).

mod support;

use std::time::{Duration, Instant};

use cairn_server::ServeOptions;
use reqwest::StatusCode;
use serde_json::json;
use support::{problem, start, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_time_limit_is_stopped_with_a_problem() {
    let limit = Duration::from_millis(300);
    let server = start_with(ServeOptions {
        request_timeout: limit,
        ..ServeOptions::default()
    })
    .await;
    let never = server.file("never");
    let began = Instant::now();
    // The run waits for a file that never appears; the request would wait 30 s for it.
    let response = server
        .post(
            "/workflows/slow?wait=30s",
            &json!({"name": "x", "file": never.to_str().unwrap()}),
        )
        .await;
    let took = began.elapsed();
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:cairn:problem:timeout", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("300ms"), "{body}");
    assert!(
        took >= limit && took < Duration::from_secs(10),
        "stopped after {took:?}, the limit being {limit:?}"
    );
    // The server still answers, and the run the request started was kept.
    let runs = server.get_json("/runs?workflow=slow").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_hook_token_is_answered_as_fast_as_a_known_one() {
    let server = start().await;
    let run_id = server.start_run("approval", json!({"name": "ada"})).await;
    let hook = server.pending_hook(&run_id).await;
    let known = format!("/hooks/{}", hook.token);
    let resumed = server.post(&known, &json!({"approved": true})).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    // A guess as long as a real token, so nothing but the lookup differs.
    let unknown = format!("/hooks/{}", "x".repeat(hook.token.len()));

    // Interleaved, so load on the machine falls on both alike; medians, so a stray stall does
    // not decide.
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for round in 0..400 {
        for (path, status, times) in [
            (&known, StatusCode::CONFLICT, &mut known_times),
            (&unknown, StatusCode::NOT_FOUND, &mut unknown_times),
        ] {
            let began = Instant::now();
            let response = server.post(path, &json!({"approved": false})).await;
            let took = began.elapsed();
            assert_eq!(response.status(), status);
            response.bytes().await.unwrap();
            if round >= 50 {
                times.push(took);
            }
        }
    }
    let (known, unknown) = (median(known_times), median(unknown_times));
    let (fast, slow) = (known.min(unknown), known.max(unknown));
    assert!(
        slow <= fast * 3 / 2 + Duration::from_micros(200),
        "a known (resumed) token's median answer took {known:?}, an unknown one's {unknown:?}: \
         the difference tells a guesser which tokens exist"
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
