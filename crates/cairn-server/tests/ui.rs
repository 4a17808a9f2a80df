//! The web UI over real HTTP, checked in the store as well as in the HTML: the runs list and
//! its filters, a run's page with its steps (payloads escaped), bad input as error pages that
//! change nothing, retry/cancel/rerun through their forms (a missing CSRF token refused), and
//! signing in with an API key (cookie, then the pages and the event streams).

mod support;

use std::time::Duration;

use cairn_core::RunStatus;
use cairn_server::{ApiKeys, ServeOptions};
use reqwest::{StatusCode, header};
use serde_json::json;
use support::{
    TestServer, start, start_with,
    ui::{browser, csrf, page, submit},
};

async fn status_of(server: &TestServer, run_id: &str) -> RunStatus {
    let run_id = run_id.parse().expect("a run id");
    server
        .engine
        .get_run(run_id)
        .await
        .expect("the run")
        .run
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_and_a_runs_page_show_the_store() {
    let server = start().await;
    let hostile = "<script>alert(1)</script>";
    let run_id = server.start_run("greet", json!({"name": hostile})).await;
    server.wait_for_status(&run_id, "succeeded").await;

    let (status, html) = page(&server, "/ui/runs", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&run_id[..8]) && html.contains("succeeded"),
        "{html}"
    );
    assert!(html.contains("<th scope=\"col\">Status</th>") && html.contains("lang=\"en\""));
    let (_, failed) = page(&server, "/ui/runs?status=failed", "").await;
    assert!(!failed.contains(&run_id[..8]), "the filter applies");
    assert!(
        failed.contains(r#"name="status" value="failed" checked"#),
        "the filter shows"
    );

    let (status, html) = page(&server, &format!("/ui/runs/{run_id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "shout#0",
        "shout#1",
        "greet",
        "organization default, project default",
    ] {
        assert!(html.contains(text), "{text} in the run's page");
    }
    assert!(!html.contains(hostile), "a payload is never markup");
    let escaped = ["&lt;script&gt;alert(1)", "&#60;script&#62;alert(1)"];
    assert!(
        escaped.iter().any(|text| html.contains(text)),
        "it is shown as text"
    );
    let download = server
        .get(&format!("/ui/runs/{run_id}/payload?part=input"))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    let body: serde_json::Value = download.json().await.expect("JSON");
    assert_eq!(body, json!({"name": hostile}));

    let runs_before = server.row_counts();
    for (path, expected) in [
        ("/ui/runs?status=bogus", StatusCode::BAD_REQUEST),
        ("/ui/runs?cursor=forged", StatusCode::BAD_REQUEST),
        (
            "/ui/runs/01a23e00-7b83-7919-979b-de2c8cfc41fc",
            StatusCode::NOT_FOUND,
        ),
        ("/ui/runs/not-an-id", StatusCode::NOT_FOUND),
    ] {
        let (status, html) = page(&server, path, "").await;
        assert_eq!(status, expected, "{path}");
        assert!(html.contains("href=\"/ui/runs\""), "{path}: a link back");
    }
    let (_, bogus) = page(&server, "/ui/runs?status=bogus", "").await;
    let named = ["status=&quot;bogus&quot;", "status=&#34;bogus&#34;"];
    assert!(
        named.iter().any(|text| bogus.contains(text)),
        "the page names the parameter: {bogus}"
    );
    assert_eq!(
        server.row_counts(),
        runs_before,
        "bad input changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_cancel_and_rerun_go_through_their_forms() {
    let server = start().await;
    let gate = server.file("gate");
    std::fs::write(&gate, "closed").expect("gate");
    let file = gate.to_str().expect("utf-8").to_owned();
    let run_id = server
        .start_run("checked", json!({"name": "ada", "file": file}))
        .await;
    server.wait_for_status(&run_id, "failed").await;
    let (cookie, token) = csrf(&server, &format!("/ui/runs/{run_id}")).await;

    // Without the token: refused, nothing changed.
    let retry = format!("/ui/runs/{run_id}/retry");
    let (status, _) = submit(&server, &retry, &cookie, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = submit(&server, &retry, "", &[("csrf", &token)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the cookie must match the form"
    );
    assert_eq!(status_of(&server, &run_id).await, RunStatus::Failed);

    std::fs::remove_file(&gate).expect("open the gate");
    let (status, location) = submit(&server, &retry, &cookie, &[("csrf", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        location
            .expect("a redirect")
            .starts_with(&format!("/ui/runs/{run_id}"))
    );
    server.wait_for_status(&run_id, "succeeded").await;

    // Cancel an ended run: 409, nothing changed.
    let cancel = format!("/ui/runs/{run_id}/cancel");
    let (status, _) = submit(
        &server,
        &cancel,
        &cookie,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(status_of(&server, &run_id).await, RunStatus::Succeeded);

    // Rerun from the second step: a new run, linked to the original.
    let rerun = format!("/ui/runs/{run_id}/rerun");
    let form = [("csrf", token.as_str()), ("from", "refuse-while-file#0")];
    let (status, location) = submit(&server, &rerun, &cookie, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.expect("to the new run");
    let new_id = location
        .strip_prefix("/ui/runs/")
        .and_then(|rest| rest.split('?').next())
        .expect("a run page")
        .to_owned();
    assert_ne!(new_id, run_id);
    let new = server
        .engine
        .get_run(new_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        new.run.forked_from.expect("linked").run_id.to_string(),
        run_id
    );
    let (_, html) = page(&server, &location, &cookie).await;
    assert!(
        html.contains(&format!("href=\"/ui/runs/{run_id}\"")),
        "links to the original"
    );

    // Cancel a waiting run.
    let waiting = server.start_run("approval", json!({"name": "bo"})).await;
    server.wait_for_status(&waiting, "waiting").await;
    let cancel = format!("/ui/runs/{waiting}/cancel");
    let (status, _) = submit(
        &server,
        &cancel,
        &cookie,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(status_of(&server, &waiting).await, RunStatus::Canceled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_ui_asks_for_it_once() {
    let server = start_with(ServeOptions {
        api_keys: ApiKeys::from_list("ui-key"),
        ..ServeOptions::default()
    })
    .await;
    let (status, _) = page(&server, "/ui/runs", "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = browser()
        .get(server.url("/ui/runs?status=failed"))
        .send()
        .await
        .unwrap();
    let to = location.headers()[header::LOCATION].to_str().unwrap();
    assert!(to.starts_with("/ui/login?next=%2Fui%2Fruns"), "{to}");

    let wrong = browser()
        .post(server.url("/ui/login"))
        .form(&[("key", "nope"), ("next", "/ui/runs")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let right = browser()
        .post(server.url("/ui/login"))
        .form(&[("key", "ui-key"), ("next", "https://elsewhere.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        right.headers()[header::LOCATION],
        "/ui/runs",
        "never to another site"
    );
    let set = right.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();

    let (status, _) = page(&server, "/ui/runs", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let stream = browser()
        .get(server.url("/runs/stream"))
        .header(header::COOKIE, &cookie)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.status(),
        StatusCode::OK,
        "the event stream takes the cookie"
    );
    let refused = browser()
        .get(server.url("/runs/stream"))
        .header(header::COOKIE, "cairn_key=6e6f7065")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong key in the cookie"
    );
    let post = browser()
        .post(server.url("/ui/runs/01a23e00-7b83-7919-979b-de2c8cfc41fc/retry"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status(),
        StatusCode::UNAUTHORIZED,
        "a post without signing in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_filters_by_statuses_time_and_search() {
    let server = start().await;
    let keyed = server
        .engine
        .start_json(
            "greet",
            json!({"name": "keyed"}),
            cairn_engine::StartOptions {
                idempotency_key: Some("order-77".into()),
                ..cairn_engine::StartOptions::default()
            },
        )
        .await
        .expect("started")
        .run_id
        .to_string();
    let other = server.start_run("greet", json!({"name": "other"})).await;
    let waiting = server.start_run("approval", json!({"name": "w"})).await;
    for (run, status) in [
        (&keyed, "succeeded"),
        (&other, "succeeded"),
        (&waiting, "waiting"),
    ] {
        server.wait_for_status(run, status).await;
    }
    let shown = |html: &str| -> Vec<bool> {
        [&keyed, &other, &waiting]
            .iter()
            .map(|run| html.contains(&format!("/ui/runs/{run}\"")))
            .collect()
    };
    let (_, both) = page(&server, "/ui/runs?status=waiting&status=failed", "").await;
    assert_eq!(shown(&both), [false, false, true], "any of the statuses");
    assert!(
        both.contains(r#"value="waiting" checked"#) && both.contains(r#"value="failed" checked"#)
    );
    let (_, by_key) = page(&server, "/ui/runs?q=order-77", "").await;
    assert_eq!(shown(&by_key), [true, false, false], "by idempotency key");
    let (_, by_prefix) = page(&server, &format!("/ui/runs?q={}", &other[..24]), "").await;
    assert_eq!(
        shown(&by_prefix),
        [false, true, false],
        "by a run id prefix"
    );
    let (_, future) = page(&server, "/ui/runs?from=2999-01-01T00:00", "").await;
    assert_eq!(
        shown(&future),
        [false, false, false],
        "created after the range"
    );
    assert!(
        future.contains(r#"value="2999-01-01T00:00""#),
        "the range shows"
    );
    let (_, past) = page(
        &server,
        "/ui/runs?from=2000-01-01T00:00&to=2999-01-01T00:00:00Z",
        "",
    )
    .await;
    assert_eq!(shown(&past), [true, true, true], "within the range");
    let (status, bad) = page(&server, "/ui/runs?from=yesterday", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("from="), "the parameter is named: {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_model_calls_show_their_model_tokens_and_latency() {
    let server = start().await;
    let run_id = server.start_run("ask", json!({"name": "ada"})).await;
    server.wait_for_status(&run_id, "succeeded").await;
    let (_, html) = page(&server, &format!("/ui/runs/{run_id}"), "").await;
    assert!(
        html.contains("<dt>Tokens</dt><dd>300 (240 in, 60 out) over 2 model calls</dd>"),
        "the run's total in its header: {html}"
    );
    let each = "openai/test-model: 120 in, 30 out tokens, 812 ms";
    assert_eq!(html.matches(each).count(), 2, "each call's step: {html}");
    let greeted = server.start_run("greet", json!({"name": "bob"})).await;
    server.wait_for_status(&greeted, "succeeded").await;
    let (_, plain) = page(&server, &format!("/ui/runs/{greeted}"), "").await;
    assert!(
        !plain.contains("<dt>Tokens</dt>"),
        "no model calls, no tokens line"
    );
}
