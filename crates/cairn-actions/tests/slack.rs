//! Slack's actions run as steps of real workflows against a local Slack stand-in (wiremock):
//! the exact requests, Slack's `ok: false` codes as fatal errors, rate limits retried after
//! `Retry-After`, and no request without a credential.

mod support;

use std::time::Duration;

use cairn_actions::slack::{
    Channel, ChannelType, Channels, LIST_CHANNELS, ListChannels, SEND_MESSAGE, SendMessage,
    SentMessage,
};
use cairn_core::ErrorKind;
use cairn_engine::Workflow;
use serde_json::json;
use support::{
    Env, assert_missing_credentials, calling, config, env, fail_once_then, failed_at_once,
    only_step, output, retried_once,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param, query_param_is_missing},
};

const TOKEN: &str = "xoxb-test-token";

/// An engine whose Slack is `server`, with the organization's bot token if `with_token`, and
/// a workflow that posts one message.
async fn slack_env(
    server: &MockServer,
    with_token: bool,
) -> (Env, Workflow<SendMessage, SentMessage>) {
    let workflow = calling("notify", &SEND_MESSAGE);
    let config = config()
        .slack_base_url(&format!("{}/api", server.uri()))
        .expect("a base URL");
    let env = env(&workflow, config);
    if with_token {
        env.set_credential("slack", &[("botToken", TOKEN)]).await;
    }
    (env, workflow)
}

fn message() -> SendMessage {
    SendMessage {
        channel: "C0123456789".into(),
        markdown_text: "*Deploy* finished: <https://example.com|details>".into(),
        thread_ts: Some("1700000000.000100".into()),
    }
}

#[tokio::test]
async fn a_message_is_posted_with_the_bot_token_and_its_ts_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("user-agent", "cairn"))
        .and(header("content-type", "application/json; charset=utf-8"))
        .and(body_json(json!({
            "channel": "C0123456789",
            "markdown_text": "*Deploy* finished: <https://example.com|details>",
            "thread_ts": "1700000000.000100",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": "C0123456789", "ts": "1700000001.000200",
            "message": {"text": "Deploy finished"},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (env, workflow) = slack_env(&server, true).await;

    let detail = env.run(&workflow, &message()).await;

    let sent: SentMessage = output(&detail);
    assert_eq!(
        sent,
        SentMessage {
            channel: "C0123456789".into(),
            ts: "1700000001.000200".into()
        }
    );
    let step = only_step(&detail);
    assert_eq!(step.attempts, 1);
    assert_eq!(step.credentials.len(), 1);
    assert_eq!(step.credentials[0].key, "slack");
    let recorded = serde_json::to_string(&detail.events).unwrap();
    assert!(!recorded.contains(TOKEN), "the token is in the run's log");
}

#[tokio::test]
async fn slack_error_codes_fail_the_step_at_once_with_the_code() {
    for (code, hint) in [
        ("channel_not_found", "check the channel"),
        ("invalid_auth", "botToken"),
        ("not_in_channel", "invite the bot"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let (env, workflow) = slack_env(&server, true).await;

        let detail = env.run(&workflow, &message()).await;

        let error = failed_at_once(&detail);
        assert_eq!(error.kind, ErrorKind::Action);
        assert!(
            error.message.contains(&format!("error \"{code}\"")) && error.message.contains(hint),
            "{}",
            error.message
        );
        assert!(!error.message.contains(TOKEN));
    }
}

#[tokio::test]
async fn a_rate_limited_call_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    fail_once_then(
        &server,
        "POST",
        "/api/chat.postMessage",
        ResponseTemplate::new(429)
            .insert_header("retry-after", "1")
            .set_body_json(json!({"ok": false, "error": "ratelimited"})),
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": "C0123456789", "ts": "1700000001.000300",
        })),
    )
    .await;
    let (env, workflow) = slack_env(&server, true).await;

    let detail = env.run(&workflow, &message()).await;

    let sent: SentMessage = output(&detail);
    assert_eq!(sent.ts, "1700000001.000300");
    assert_eq!(retried_once(&detail, "HTTP 429"), Duration::from_secs(1));
}

#[tokio::test]
async fn channels_are_listed_page_by_page_up_to_the_limit() {
    let channel = |id: &str| json!({"id": id, "name": format!("n-{id}"), "is_private": false, "is_archived": false, "is_member": true, "num_members": 3, "topic": {"value": "x"}});
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.list"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(query_param("types", "public_channel,private_channel"))
        .and(query_param("exclude_archived", "true"))
        .and(query_param("limit", "3"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channels": [channel("C1"), channel("C2")],
            "response_metadata": {"next_cursor": "page-2"},
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.list"))
        .and(query_param("cursor", "page-2"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channels": [channel("C3")],
            "response_metadata": {"next_cursor": "page-3"},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = calling("channels", &LIST_CHANNELS);
    let config = config()
        .slack_base_url(&format!("{}/api", server.uri()))
        .unwrap();
    let env = env(&workflow, config);
    env.set_credential("slack", &[("botToken", TOKEN)]).await;
    let input = ListChannels {
        types: vec![ChannelType::PublicChannel, ChannelType::PrivateChannel],
        limit: Some(3),
        ..ListChannels::default()
    };

    let listed: Channels = output(&env.run(&workflow, &input).await);

    let ids: Vec<&str> = listed.channels.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["C1", "C2", "C3"]);
    assert_eq!(listed.next_cursor.as_deref(), Some("page-3"));
    assert_eq!(
        listed.channels[0],
        Channel {
            id: "C1".into(),
            name: "n-C1".into(),
            is_private: false,
            is_archived: false,
            is_member: true,
            num_members: Some(3),
        }
    );
}

#[tokio::test]
async fn without_a_credential_the_step_fails_with_missing_credentials_and_sends_nothing() {
    let server = MockServer::start().await;
    let (env, workflow) = slack_env(&server, false).await;

    let detail = env.run(&workflow, &message()).await;

    assert_missing_credentials(&detail, "slack", &server).await;
}
