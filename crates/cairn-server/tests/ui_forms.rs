//! The UI's generated forms over real HTTP, checked in the store: a run started from its
//! workflow's input form (and "Start like this" filled from it), a form that cannot be read
//! or breaks the schema shown again (422) with the user's values and the field's error and
//! no run created, a hook resumed once from its payload form (a second resume is 409), and
//! posts without the CSRF token refused.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{
    start,
    ui::{csrf, page, submit},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_started_from_its_workflows_form() {
    let server = start().await;
    let (status, listed) = page(&server, "/ui/workflows", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.contains("href=\"/ui/workflows/greet/start\""),
        "{listed}"
    );

    let path = "/ui/workflows/greet/start";
    let (status, form) = page(&server, path, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        form.contains(r#"name="f/name" type="text""#) && form.contains("Who."),
        "the field, with its description: {form}"
    );
    let (cookie, token) = csrf(&server, path).await;
    let refused = submit(&server, path, &cookie, &[("f/name", "ada")]).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert_eq!(server.run_count().await, 0, "a refused form starts nothing");

    let (status, location) = submit(
        &server,
        path,
        &cookie,
        &[("csrf", &token), ("f/name", "ada")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.expect("to the run");
    let run_id = location
        .strip_prefix("/ui/runs/")
        .and_then(|rest| rest.split('?').next())
        .expect("a run page");
    let run = server.wait_for_status(run_id, "succeeded").await;
    assert_eq!(run["input"], json!({"name": "ada"}));
    assert_eq!(run["output"], json!({"name": "ADA"}));
    assert_eq!(run["trigger"], "ui");

    let like = format!("{path}?from={run_id}");
    let (status, filled) = page(&server, &like, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        filled.contains(r#"value="ada""#),
        "filled from the run: {filled}"
    );
    let (status, _) = page(&server, "/ui/workflows/nope/start", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_form_is_shown_again_with_its_errors_and_starts_nothing() {
    let server = start().await;
    let path = "/ui/workflows/tally/start";
    let (cookie, token) = csrf(&server, path).await;
    for (typed, error) in [
        ("three", "must be a whole number"),
        ("11", "greater than the maximum of 10"),
    ] {
        let response = support::ui::browser()
            .post(server.url(path))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&[("csrf", token.as_str()), ("f/count", typed)])
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{typed}"
        );
        let shown = response.text().await.expect("a page");
        assert!(
            shown.contains(&format!(r#"value="{typed}""#)),
            "kept: {shown}"
        );
        assert!(
            shown.contains(r#"aria-describedby="in-count-help in-count-error""#)
                && shown.contains(error),
            "{typed}: the field's error, linked: {shown}"
        );
    }
    assert_eq!(server.run_count().await, 0, "no run was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_is_resumed_once_from_its_payload_form() {
    let server = start().await;
    let run_id = server.start_run("approval", json!({"name": "grace"})).await;
    let hook = server.pending_hook(&run_id).await;
    let step = hook.step_key.as_str().to_owned();
    let (status, listed) = page(&server, "/ui/hooks", "").await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/ui/runs/{run_id}/resume?step={}", step.replace('#', "%23"));
    assert!(listed.contains(&path), "{listed}");
    assert!(
        !listed.contains(&hook.token),
        "the token stays on the server"
    );

    let (status, form) = page(&server, &path, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        form.contains(r#"name="f/approved" type="checkbox""#),
        "{form}"
    );
    let (cookie, token) = csrf(&server, &path).await;
    let (status, location) = submit(
        &server,
        &path,
        &cookie,
        &[("csrf", &token), ("f/approved", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some(format!("/ui/runs/{run_id}?notice=Resumed").as_str())
    );
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "GRACE APPROVED=TRUE"}));

    let (status, _) = submit(&server, &path, &cookie, &[("csrf", &token)]).await;
    assert_eq!(status, StatusCode::CONFLICT, "a hook resumes once");
    let stored = server
        .engine
        .get_run(run_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        stored.run.output,
        Some(json!({"name": "GRACE APPROVED=TRUE"})),
        "the second resume changed nothing"
    );
    let (status, _) = page(&server, &format!("/ui/runs/{run_id}/resume?step=nope"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
