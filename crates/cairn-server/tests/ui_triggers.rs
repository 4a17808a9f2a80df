//! The web UI's trigger pages over real HTTP, checked against the store: the schedules list
//! and a schedule's page (next fire times, pause, resume and trigger through CSRF-checked
//! forms, the triggered run among the recent ones), the
//! webhook endpoints and an endpoint's logged deliveries (no body in them), and unknown ids
//! as error pages.

mod support;

use reqwest::StatusCode;
use support::{
    TestServer, set_signing_secrets, start,
    ui::{csrf, page, submit},
};

async fn paused(server: &TestServer) -> bool {
    server
        .engine
        .get_schedule("new-year")
        .await
        .expect("the schedule")
        .schedule
        .paused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_shown_paused_and_resumed() {
    let server = start().await;
    server.engine.declare_schedules().await.expect("declare");
    let (status, list) = page(&server, "/ui/schedules", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("href=\"/ui/schedules/new-year\""), "{list}");
    assert!(
        list.contains("0 0 1 1 *") && list.contains("active"),
        "{list}"
    );

    let path = "/ui/schedules/new-year";
    let (status, shown) = page(&server, path, "").await;
    assert_eq!(status, StatusCode::OK);
    let detail = server
        .engine
        .get_schedule("new-year")
        .await
        .expect("detail");
    assert_eq!(detail.upcoming_ms.len(), 5);
    for at in &detail.upcoming_ms {
        let at = cairn_engine::timestamp(*at);
        assert!(shown.contains(&at), "the next fire {at} is shown: {shown}");
    }
    assert!(shown.contains("new year"), "the input is shown: {shown}");

    let (cookie, token) = csrf(&server, path).await;
    let refused = submit(&server, &format!("{path}/pause"), &cookie, &[]).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(!paused(&server).await, "a refused form changes nothing");
    let (status, location) = submit(
        &server,
        &format!("{path}/pause"),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/ui/schedules/new-year?notice=Paused")
    );
    assert!(paused(&server).await, "paused in the store");
    let (_, shown) = page(&server, path, &cookie).await;
    assert!(
        shown.contains("paused") && shown.contains("/resume"),
        "{shown}"
    );
    submit(
        &server,
        &format!("{path}/resume"),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert!(!paused(&server).await, "resumed in the store");

    let (status, missing) = page(&server, "/ui/schedules/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("nope"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_and_their_deliveries_are_shown() {
    let server = start().await;
    let (status, endpoints) = page(&server, "/ui/webhooks", "").await;
    assert_eq!(status, StatusCode::OK);
    for endpoint in ["github", "stripe"] {
        assert!(
            endpoints.contains(&format!("href=\"/ui/webhooks/{endpoint}\"")),
            "{endpoints}"
        );
    }
    set_signing_secrets(&server, &[("secret", "whsec_ui")]).await;
    // Unsigned: refused, and logged without its body.
    let body = r#"{"id":"evt_9","type":"customer.created","data":{"name":"secret-name"}}"#;
    let refused = server
        .client
        .post(server.url("/triggers/stripe"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, log) = page(&server, "/ui/webhooks/stripe", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        log.contains("missing_signature") && log.contains("401"),
        "{log}"
    );
    assert!(!log.contains("secret-name"), "no body in the log: {log}");
    let (status, _) = page(&server, "/ui/webhooks/nowhere", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
