//! `serve` as a real process: its event stream shows every step of a run that a separate
//! `worker` process executes (SQLite and PostgreSQL); SIGTERM under load loses nothing; two
//! `serve` processes on one PostgreSQL database answer for the same runs.

mod support;

use std::{
    sync::Once,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{KillOnDrop, Sandbox};

fn client() -> Client {
    static RUSTLS: Once = Once::new();
    RUSTLS.call_once(|| {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
    });
    Client::new()
}

async fn start_run(client: &Client, base: &str, workflow: &str, input: Value) -> String {
    let response = client
        .post(format!("{base}/workflows/{workflow}"))
        .json(&input)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("JSON");
    body["runId"].as_str().expect("runId").to_owned()
}

async fn get_run(client: &Client, base: &str, run_id: &str) -> Value {
    let response = client
        .get(format!("{base}/runs/{run_id}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// The `(name, data)` of each Server-Sent Event in `text`.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block
                .lines()
                .find_map(|line| line.strip_prefix("event:"))?
                .trim()
                .to_owned();
            let data: String = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            Some((name, serde_json::from_str(&data).expect("JSON data")))
        })
        .collect()
}

async fn a_stream_shows_every_step_a_worker_process_executes(sandbox: Sandbox) {
    let served = sandbox.serve(&["--no-worker"], &[]);
    let client = client();
    let base = format!("http://{}", served.base);
    let run_id = start_run(&client, &base, "sleeper", json!({"tag": "streamed"})).await;
    let mut stream = client
        .get(format!("{base}/runs/{run_id}/stream"))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    // Only now does anything execute the run: in another process.
    let _worker = KillOnDrop::new(sandbox.spawn(&["worker"]));
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.chunk())
        .await
        .unwrap_or_else(|_| panic!("the stream ended in time:\n{}", sandbox.process_log()))
        .expect("chunk")
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = sse_events(&text);
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some("snapshot"),
        "{text}"
    );
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("end"), "{text}");
    assert_eq!(events.last().unwrap().1["status"], "succeeded");
    let streamed: Vec<Value> = events[0].1["events"]
        .as_array()
        .expect("snapshot events")
        .iter()
        .cloned()
        .chain(
            events
                .iter()
                .filter(|(name, _)| name == "event")
                .map(|(_, record)| record.clone()),
        )
        .collect();
    let stored = get_run(&client, &base, &run_id).await;
    assert_eq!(
        &Value::Array(streamed.clone()),
        &stored["events"],
        "every committed event once, in order"
    );
    let finished: Vec<&str> = streamed
        .iter()
        .filter(|record| record["event"]["type"] == "step_completed")
        .filter_map(|record| record["event"]["key"].as_str())
        .collect();
    assert!(
        finished.contains(&"record#0") && finished.contains(&"record#1"),
        "both steps' completions were streamed: {streamed:#?}"
    );
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shows_every_step_a_worker_process_executes_on_sqlite() {
    a_stream_shows_every_step_a_worker_process_executes(Sandbox::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shows_every_step_a_worker_process_executes_on_postgres() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    a_stream_shows_every_step_a_worker_process_executes(sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&["--concurrency", "4"], &[]);
    let client = client();
    let base = format!("http://{}", served.base);
    let mut runs = Vec::new();
    for n in 0..8 {
        let input = json!({"tag": format!("load-{n}")});
        runs.push(start_run(&client, &base, "crash-pipeline", input).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::read_lines(&sandbox.ledger())
        .iter()
        .filter(|line| line.contains("block#0|started"))
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "{}", sandbox.process_log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &served.pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    // The steps in flight may finish now.
    std::fs::write(sandbox.go_file(), b"go").expect("go file");
    let output = served.process.wait_with_output();
    assert!(
        output.status.success(),
        "a graceful stop exits 0: {output:?}\n{}",
        sandbox.process_log()
    );
    let refused = client.get(format!("{base}/healthz")).send().await;
    assert!(refused.is_err(), "the server no longer accepts connections");

    let again = sandbox.serve(&[], &[]);
    let base = format!("http://{}", again.base);
    for run_id in &runs {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = get_run(&client, &base, run_id).await;
            if run["status"] == "succeeded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{run}\n{}",
                sandbox.process_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lines = sandbox.ledger_lines();
    let mut done: Vec<String> = lines
        .iter()
        .filter(|line| line.contains("|done|"))
        .map(|line| line.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    let total = done.len();
    done.sort();
    done.dedup();
    assert_eq!(done.len(), total, "no completed step ran twice: {lines:#?}");
    assert_eq!(total, runs.len() * 3, "every step of every run: {lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_database_answer_for_the_same_runs() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    let first = sandbox.serve(&[], &[]);
    let second = sandbox.serve(&["--no-worker"], &[]);
    let client = client();
    let (a, b) = (
        format!("http://{}", first.base),
        format!("http://{}", second.base),
    );
    let run_id = start_run(&client, &b, "three-steps", json!({"tag": "shared"})).await;
    let response = client
        .post(format!("{a}/workflows/three-steps?wait=30s"))
        .json(&json!({"tag": "waited"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (on_a, on_b) = (
            get_run(&client, &a, &run_id).await,
            get_run(&client, &b, &run_id).await,
        );
        if on_a["status"] == "succeeded" {
            // Steps' durations may be read while the row changes; compare once it ended.
            assert_eq!(on_a, get_run(&client, &b, &run_id).await);
            break;
        }
        assert_eq!(on_a["runId"], on_b["runId"]);
        assert!(
            Instant::now() < deadline,
            "{on_a}\n{}",
            sandbox.process_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed_on_b: Value = client
        .get(format!("{b}/runs?workflow=three-steps"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed_on_b["runs"].as_array().map(Vec::len), Some(2));
}
