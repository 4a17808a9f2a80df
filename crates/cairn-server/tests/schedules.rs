//! `/schedules` over real HTTP on loopback (a real SQLite file): a schedule created with
//! `PUT` (the id the dedup key: the same spec 200, another 409 naming the difference; a bad
//! workflow, input, cron or zone 422 naming each path), listed, read, paused, resumed,
//! triggered, backfilled (twice: the same runs) and deleted; every answer checked against
//! the OpenAPI document the server serves. Without the API key, every route refuses.

mod support;

use cairn_server::{ApiKeys, ServeOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestServer, spec::Spec, start, start_with};

const ONE: &str = "/schedules/{id}";

async fn put(server: &TestServer, spec: &Spec, id: &str, body: &Value) -> (StatusCode, Value) {
    let response = server
        .client
        .put(server.url(&format!("/schedules/{id}")))
        .json(body)
        .send()
        .await
        .expect("PUT");
    let status = response.status();
    (status, spec.check(ONE, "put", response).await)
}

async fn post(
    server: &TestServer,
    spec: &Spec,
    id: &str,
    action: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = server
        .post(&format!("/schedules/{id}/{action}"), body)
        .await;
    let status = response.status();
    let template = format!("/schedules/{{id}}/{action}");
    (status, spec.check(&template, "post", response).await)
}

fn paths(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("the problem lists its errors")
        .iter()
        .map(|error| error["path"].as_str().expect("a path"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_created_managed_and_deleted_over_http() {
    let server = start().await;
    let spec = Spec::of(&server).await;
    let daily = json!({"workflow": "greet", "input": {"name": "Ada"}, "cron": "0 9 * * *", "timezone": "Europe/Berlin", "overlap": "skip"});

    let (status, problem) = put(
        &server,
        &spec,
        "daily",
        &json!({"workflow": "nope", "cron": "0 25 * * *", "timezone": "Mars/Base"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        paths(&problem),
        ["/workflow", "/cron", "/timezone"],
        "{problem}"
    );
    let (status, problem) = put(
        &server,
        &spec,
        "daily",
        &json!({"workflow": "greet", "input": {"name": 5}, "cron": "0 25 * * *"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(paths(&problem), ["/input/name", "/cron"], "{problem}");
    let (status, problem) = put(&server, &spec, "daily", &json!({"cron": 5, "extra": true})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        paths(&problem),
        ["/workflow", "/cron", "/extra"],
        "{problem}"
    );

    let (status, created) = put(&server, &spec, "daily", &daily).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["expression"], "0 9 * * *");
    let (status, same) = put(&server, &spec, "daily", &daily).await;
    assert_eq!(status, StatusCode::OK, "the same spec again");
    assert_eq!(same, created, "nothing changed");
    let mut other = daily.clone();
    other["cron"] = json!("0 10 * * *");
    let (status, conflict) = put(&server, &spec, "daily", &other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let detail = conflict["detail"].as_str().expect("a detail");
    assert!(
        detail.contains(r#"cron: stored "0 9 * * *", asked "0 10 * * *""#),
        "{detail}"
    );

    let listed = spec
        .check("/schedules", "get", server.get("/schedules").await)
        .await;
    assert_eq!(listed["schedules"][0]["id"], "daily");
    let (status, paused) = post(&server, &spec, "daily", "pause", &json!({})).await;
    assert_eq!((status, &paused["paused"]), (StatusCode::OK, &json!(true)));
    let (status, resumed) = post(&server, &spec, "daily", "resume", &json!({})).await;
    assert_eq!(
        (status, &resumed["paused"]),
        (StatusCode::OK, &json!(false))
    );

    let (status, triggered) = post(&server, &spec, "daily", "trigger", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let run_id = triggered["runId"].as_str().expect("a run id").to_owned();
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["startedBy"]["kind"], "schedule", "{run}");
    assert_eq!(run["startedBy"]["by"], "manual");
    assert_eq!(run["startedBy"]["timezone"], "Europe/Berlin");

    let range = json!({"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"});
    let (status, first) = post(&server, &spec, "daily", "backfill", &range).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let runs = first["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "09:00 Berlin on March 1 and 2: {first}");
    assert_eq!(
        runs[0]["scheduledAtMs"], 1_772_352_000_000_i64,
        "2026-03-01T08:00:00Z"
    );
    assert!(runs.iter().all(|run| run["created"] == true));
    let (_, second) = post(&server, &spec, "daily", "backfill", &range).await;
    let ids = |answer: &Value| -> Vec<Value> {
        answer["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|run| run["runId"].clone())
            .collect()
    };
    assert_eq!(ids(&second), ids(&first), "twice: the same runs");
    assert!(
        second["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .all(|run| run["created"] == false)
    );
    let future = json!({"from": "2026-03-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"});
    let (status, _) = post(&server, &spec, "daily", "backfill", &future).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a range ending after now");
    let (status, problem) = post(
        &server,
        &spec,
        "daily",
        "backfill",
        &json!({"from": "yesterday"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(paths(&problem), ["/from", "/to"]);

    let detail = spec
        .check(ONE, "get", server.get("/schedules/daily").await)
        .await;
    assert_eq!(detail["upcomingMs"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        detail["recentRuns"].as_array().map(Vec::len),
        Some(3),
        "the trigger's and the backfill's"
    );

    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let deleted = server
            .client
            .delete(server.url("/schedules/daily"))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(deleted.status(), expected);
        spec.check(ONE, "delete", deleted).await;
    }
    let gone = server.get("/schedules/daily").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    spec.check(ONE, "get", gone).await;
    let (status, _) = post(&server, &spec, "daily", "trigger", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_routes_need_the_api_key() {
    let options = ServeOptions {
        api_keys: ApiKeys::from_list("the-key"),
        ..ServeOptions::default()
    };
    let server = start_with(options).await;
    let body = json!({"workflow": "greet", "input": {"name": "Ada"}, "cron": "0 9 * * *"});
    let requests = [
        server.client.get(server.url("/schedules")),
        server.client.get(server.url("/schedules/daily")),
        server
            .client
            .put(server.url("/schedules/daily"))
            .json(&body),
        server.client.delete(server.url("/schedules/daily")),
        server.client.post(server.url("/schedules/daily/trigger")),
    ];
    for request in requests {
        let refused = request.send().await.expect("a request");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let allowed = server
        .client
        .put(server.url("/schedules/daily"))
        .bearer_auth("the-key")
        .json(&body)
        .send()
        .await
        .expect("PUT");
    assert_eq!(allowed.status(), StatusCode::CREATED, "with the key");
}
