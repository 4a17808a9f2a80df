//! The API over real HTTP on loopback, a real SQLite file and the server's own worker: start
//! and finish, idempotency, `?wait`, listing and pages, retry, rerun and cancel with their
//! conflicts, hooks over POST and GET, API keys, streams.

mod support;

use std::{collections::HashSet, time::Duration};

use cairn_server::{ApiKeys, ServeOptions, Server, ServerError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{problem, start, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_over_http_finishes() {
    let server = start().await;
    let response = server
        .post("/workflows/greet", &json!({"name": "ada"}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let run_id = body["runId"].as_str().unwrap();
    assert_eq!(location, format!("/runs/{run_id}"));
    assert_eq!(body["created"], true);

    let run = server.wait_for_status(run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA"}));
    assert_eq!(run["trigger"], "api");
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["key"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["shout#0", "shout#1"]);
    assert_eq!(
        run,
        server.get_json(&location).await,
        "Location names the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_names_one_run() {
    let server = start().await;
    let send = || {
        server
            .client
            .post(server.url("/workflows/greet"))
            .header("Idempotency-Key", "signup-42")
            .json(&json!({"name": "ada"}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let runs_after_first = server.row_counts();
    let second = send().await.unwrap();
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "an existing run is not accepted anew"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["runId"], second["runId"]);
    assert_eq!(
        (first["created"].clone(), second["created"].clone()),
        (json!(true), json!(false))
    );
    let runs = server.get_json("/runs?workflow=greet").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let runs_table = |counts: Vec<(String, i64)>| counts.into_iter().find(|(t, _)| t == "runs");
    assert_eq!(
        runs_table(runs_after_first),
        runs_table(server.row_counts())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_with_the_ended_run_or_202_in_time() {
    let server = start().await;
    let response = server
        .post("/workflows/greet?wait=20s", &json!({"name": "ada"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"name": "ADA"}));

    let go = server.file("go");
    let input = json!({"name": "bo", "file": go.display().to_string()});
    let started = std::time::Instant::now();
    let response = server.post("/workflows/slow?wait=300ms", &input).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "still running");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let run_id = response.json::<Value>().await.unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&go, "").unwrap();
    server.wait_for_status(&run_id, "succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_newest_first_in_pages() {
    let server = start().await;
    let mut started = Vec::new();
    for n in 0..5 {
        started.push(
            server
                .start_run("greet", json!({"name": format!("n{n}")}))
                .await,
        );
    }
    server
        .start_run("checked", json!({"name": "x", "file": "/nonexistent"}))
        .await;
    let mut listed = Vec::new();
    let mut path = "/runs?workflow=greet&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = server.get_json(&path).await;
        pages += 1;
        for run in page["runs"].as_array().unwrap() {
            assert_eq!(run["workflow"], "greet");
            listed.push(run["runId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/runs?workflow=greet&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    started.reverse();
    assert_eq!(listed, started, "every run once, newest first");
    assert_eq!(pages, 3);
    let all = server.get_json("/runs").await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 6);
    assert_eq!(all["nextCursor"], Value::Null);

    let bad = server.get("/runs?status=sleepy").await;
    let body = problem(bad, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("sleepy"),
        "{body}"
    );
    problem(server.get("/runs?limit=0").await, StatusCode::BAD_REQUEST).await;
    problem(
        server.get("/runs?cursor=abc").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_sends_a_failed_run_back_and_refuses_others() {
    let server = start().await;
    let gate = server.file("gate");
    std::fs::write(&gate, "").unwrap();
    let input = json!({"name": "ada", "file": gate.display().to_string()});
    let run_id = server.start_run("checked", input).await;
    let failed = server.wait_for_status(&run_id, "failed").await;
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("file exists")
    );

    std::fs::remove_file(&gate).unwrap();
    let response = server
        .post(&format!("/runs/{run_id}/retry"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA"}));
    let shouts = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["slug"] == "shout")
        .count();
    assert_eq!(shouts, 1, "the completed step was replayed, not run again");

    let again = server
        .post(&format!("/runs/{run_id}/retry"), &json!({}))
        .await;
    let body = problem(again, StatusCode::CONFLICT).await;
    assert!(
        body["detail"].as_str().unwrap().contains("succeeded"),
        "{body}"
    );
    let unknown = server
        .post(
            &format!("/runs/{}/retry", cairn_store::RunId::new()),
            &json!({}),
        )
        .await;
    problem(unknown, StatusCode::NOT_FOUND).await;
    problem(
        server.post("/runs/not-a-uuid/retry", &json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_forks_a_linked_run_from_a_step() {
    let server = start().await;
    let original = server.start_run("greet", json!({"name": "ada"})).await;
    server.wait_for_status(&original, "succeeded").await;
    let response = server
        .post(
            &format!("/runs/{original}/rerun"),
            &json!({"fromStep": "shout#1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let forked: Value = response.json().await.unwrap();
    let new_id = forked["runId"].as_str().unwrap();
    assert_ne!(new_id, original);
    assert_eq!(location, format!("/runs/{new_id}"));
    assert_eq!(forked["forkedFrom"]["runId"], original.as_str());
    assert_eq!(forked["trigger"], "rerun");
    let run = server.wait_for_status(new_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA"}));

    let counts = server.row_counts();
    let missing = server
        .post(&format!("/runs/{original}/rerun"), &json!({}))
        .await;
    let body = problem(missing, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["path"], "/fromStep", "{body}");
    let unknown_step = server
        .post(
            &format!("/runs/{original}/rerun"),
            &json!({"fromStep": "nope#0"}),
        )
        .await;
    problem(unknown_step, StatusCode::NOT_FOUND).await;
    assert_eq!(counts, server.row_counts(), "refused reruns create nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_running_run_once() {
    let server = start().await;
    let go = server.file("never");
    let run_id = server
        .start_run(
            "slow",
            json!({"name": "bo", "file": go.display().to_string()}),
        )
        .await;
    server.wait_for_status(&run_id, "running").await;
    let retry = server
        .post(&format!("/runs/{run_id}/retry"), &json!({}))
        .await;
    problem(retry, StatusCode::CONFLICT).await;

    let response = server
        .post(
            &format!("/runs/{run_id}/cancel"),
            &json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["previousStatus"], "running");
    let run = server.wait_for_status(&run_id, "canceled").await;
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not needed"),
        "{run}"
    );

    let again = server
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    problem(again, StatusCode::CONFLICT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_resume_over_post_and_get_and_refuse_bad_resumes() {
    let server = start().await;
    let run_id = server.start_run("approval", json!({"name": "ada"})).await;
    let hook = server.pending_hook(&run_id).await;
    let hook_path = format!("/hooks/{}", hook.token);
    // Parked: the run writes nothing more until it is resumed (its hook is registered before
    // the step after it finishes).
    server.wait_for_status(&run_id, "waiting").await;

    let counts = server.row_counts();
    let bad = server.post(&hook_path, &json!({"approved": "yes"})).await;
    let body = problem(bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["path"], "/approved", "{body}");
    let bad_query = server.get(&format!("{hook_path}?approved=maybe")).await;
    problem(bad_query, StatusCode::UNPROCESSABLE_ENTITY).await;
    let unknown = server
        .post("/hooks/not-a-token", &json!({"approved": true}))
        .await;
    problem(unknown, StatusCode::NOT_FOUND).await;
    assert_eq!(counts, server.row_counts(), "refused resumes write nothing");
    let run = server.get_json(&format!("/runs/{run_id}")).await;
    assert_ne!(run["status"], "succeeded", "the run keeps waiting");

    let page = server
        .client
        .get(server.url(&format!("{hook_path}?approved=true")))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains(&run_id));

    let second = server.post(&hook_path, &json!({"approved": false})).await;
    problem(second, StatusCode::CONFLICT).await;
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA APPROVED=TRUE"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_every_route_but_hooks_and_health() {
    let options = ServeOptions {
        api_keys: ApiKeys::from_list("old-key,new-key"),
        ..ServeOptions::default()
    };
    let server = start_with(options).await;
    let with_key = |key: Option<&str>| {
        let request = server.client.get(server.url("/workflows"));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
        .send()
    };
    let none = with_key(None).await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    problem(none, StatusCode::UNAUTHORIZED).await;
    problem(
        with_key(Some("new-ke")).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        with_key(Some("new-key2")).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        with_key(Some("old-key")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        with_key(Some("new-key")).await.unwrap().status(),
        StatusCode::OK
    );
    let start = server.post("/workflows/greet", &json!({"name": "x"})).await;
    problem(start, StatusCode::UNAUTHORIZED).await;
    problem(server.get("/runs/stream").await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(server.get("/readyz").await.status(), StatusCode::OK);
    let hook = server.post("/hooks/unknown", &json!({})).await;
    problem(hook, StatusCode::NOT_FOUND).await;
    let runs = server.engine.list_runs(&Default::default()).await.unwrap();
    assert!(runs.is_empty(), "nothing was started without a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_server_refuses_a_non_loopback_address() {
    let server = start().await;
    let options = ServeOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    let refused = Server::bind(server.engine.clone(), options).await;
    let Err(err @ ServerError::Insecure(_)) = refused else {
        panic!("refused");
    };
    let message = err.to_string();
    assert!(
        message.contains("CAIRN_API_KEYS") && message.contains("--insecure"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stream_shows_a_snapshot_then_every_event_until_the_end() {
    let server = start().await;
    let run_id = server.start_run("approval", json!({"name": "ada"})).await;
    let hook = server.pending_hook(&run_id).await;
    let mut stream = server.get(&format!("/runs/{run_id}/stream")).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let resume = server
        .post(
            &format!("/hooks/{}", hook.token),
            &json!({"approved": true}),
        )
        .await;
    assert_eq!(resume.status(), StatusCode::OK);

    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.chunk())
        .await
        .expect("the stream ended in time")
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = support::sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{text}");
    assert_eq!(names.last(), Some(&"end"), "{text}");
    let snapshot = &events[0].1;
    let mut seqs: Vec<u64> = snapshot["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    seqs.extend(
        events
            .iter()
            .filter(|(name, _)| name == "event")
            .map(|(_, record)| record["seq"].as_u64().unwrap()),
    );
    let stored = server.get_json(&format!("/runs/{run_id}")).await;
    let all: Vec<u64> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, all, "every event once, in order");
    assert_eq!(events.last().unwrap().1["status"], "succeeded");
    let unique: HashSet<_> = seqs.iter().collect();
    assert_eq!(unique.len(), seqs.len());
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_steps_and_their_latency() {
    let server = start().await;
    for name in ["ada", "bo"] {
        let run_id = server.start_run("greet", json!({"name": name})).await;
        server.wait_for_status(&run_id, "succeeded").await;
    }
    let go = server.file("go");
    let input = json!({"name": "cy", "file": go.display().to_string()});
    let slow = server.start_run("slow", input).await;
    server.wait_for_status(&slow, "running").await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let response = server.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = response.text().await.unwrap();
        let ended = ["workflow=\"greet\"", "status=\"succeeded\""];
        if sample(&text, "cairn_runs_ended_total", &ended) == Some(2.0) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(&text, "cairn_runs_started_total", &["workflow=\"greet\""]),
        Some(2.0),
        "{text}"
    );
    let completed = ["action=\"shout\"", "outcome=\"completed\""];
    assert_eq!(
        sample(&text, "cairn_steps_total", &completed),
        Some(4.0),
        "{text}"
    );
    let latency = ["action=\"shout\""];
    assert_eq!(
        sample(&text, "cairn_step_duration_seconds_count", &latency),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cairn_runs", &["status=\"running\""]),
        Some(1.0),
        "{text}"
    );
    // Every run and step above was committed (and fsync'd) by the SQLite store, which timed it.
    let commits = sample(&text, "cairn_store_commit_seconds_count", &[]).unwrap_or_default();
    let took = sample(&text, "cairn_store_commit_seconds_sum", &[]).unwrap_or_default();
    assert!(commits >= 3.0, "{text}");
    assert!(took > 0.0 && took / commits < 1.0, "{text}");
    let fast = ["le=\"1\""];
    assert_eq!(
        sample(&text, "cairn_store_commit_seconds_bucket", &fast),
        Some(commits),
        "commit latency buckets end at 1 s: {text}"
    );
    std::fs::write(&go, "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_stream_shows_runs_created_and_changing_status() {
    let server = start().await;
    let mut stream = server.get("/runs/stream").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let run_id = server.start_run("greet", json!({"name": "ada"})).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let statuses = loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("the run's end was streamed in time: {text}"))
            .expect("chunk")
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        let statuses: Vec<String> = support::sse_events(&text)
            .into_iter()
            .filter(|(name, run)| name == "run" && run["runId"] == run_id.as_str())
            .map(|(_, run)| run["status"].as_str().unwrap().to_owned())
            .collect();
        if statuses.last().is_some_and(|status| status == "succeeded") {
            break statuses;
        }
    };
    let mut shown = statuses.clone();
    shown.dedup();
    assert_eq!(shown, statuses, "a status is shown once per change: {text}");
    // Changes may be coalesced (created and claimed in one wake-up), so the first status
    // shown may be later than `queued`; the last is always the end.
}
