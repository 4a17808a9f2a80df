//! `POST /triggers/{endpoint}` over real HTTP on loopback, with signatures computed here:
//! a delivery starts its run once (duplicates and parallel copies name the same run), and
//! every refusal (bad, missing or stale signature, oversize, not JSON, transform error,
//! unknown endpoint) starts nothing. The signing secret is never in a response or the store.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use cairn_test_support::signing::{github_signature, hmac_sha256_hex as hex_hmac};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use support::{PAYLOAD_LIMIT, TestServer, problem, set_signing_secrets, start};

const SECRET: &str = "whsec_current_7f3a9c";
const PREVIOUS: &str = "whsec_previous_51d2e0";

/// A server whose `webhook-signing` credential holds `SECRET` (and `PREVIOUS`).
async fn server() -> TestServer {
    let server = start().await;
    set_signing_secrets(&server, &[("secret", SECRET), ("previous", PREVIOUS)]).await;
    server
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// `Stripe-Signature` for `body` signed with `secret` at `t`.
fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    format!(
        "t={t},v1={}",
        hex_hmac(secret, format!("{t}.{body}").as_bytes())
    )
}

fn event(id: &str, name: &str) -> String {
    json!({"id": id, "type": "customer.created", "data": {"name": name}}).to_string()
}

impl Deliveries for TestServer {
    fn deliver(&self, endpoint: &str, body: &str) -> RequestBuilder {
        self.client
            .post(self.url(&format!("/triggers/{endpoint}")))
            .header("content-type", "application/json")
            .body(body.to_owned())
    }
}

trait Deliveries {
    fn deliver(&self, endpoint: &str, body: &str) -> RequestBuilder;
}

async fn stripe(server: &TestServer, secret: &str, t: i64, body: &str) -> Response {
    server
        .deliver("stripe", body)
        .header("stripe-signature", stripe_signature(secret, t, body))
        .send()
        .await
        .expect("the server answers")
}

fn run_count(server: &TestServer) -> i64 {
    server
        .row_counts()
        .into_iter()
        .find(|(table, _)| table == "runs")
        .map(|(_, count)| count)
        .expect("a runs table")
}

/// A 401 problem of `kind`, with no secret in it.
async fn refused(response: Response, status: StatusCode, kind: &str) -> Value {
    let body = problem(response, status).await;
    assert_eq!(body["type"], format!("urn:cairn:problem:{kind}"), "{body}");
    let text = body.to_string();
    assert!(!text.contains(SECRET) && !text.contains(PREVIOUS), "{text}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_starts_its_run_once() {
    let server = server().await;
    let body = event("evt_1", "ada");
    let first = stripe(&server, SECRET, now(), &body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let run_id = first["runId"].as_str().expect("a runId").to_owned();
    let run = server.wait_for_status(&run_id, "succeeded").await;
    assert_eq!(run["output"], json!({"name": "ADA"}), "{run}");
    assert_eq!(run["trigger"], "webhook:stripe:evt_1", "{run}");
    assert_eq!(run["idempotencyKey"], "wh:stripe:evt_1", "{run}");

    // The provider retries (a new signature, the same event): the same run, no new one.
    let again = stripe(&server, SECRET, now(), &body).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["runId"], run_id.as_str());
    // Signed with the previous secret while the provider rotates: accepted.
    let rotated = stripe(&server, PREVIOUS, now(), &body).await;
    assert_eq!(rotated.status(), StatusCode::ACCEPTED);
    assert_eq!(run_count(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_identical_deliveries_in_parallel_start_one_run() {
    let server = server().await;
    let body = event("evt_parallel", "grace");
    let t = now();
    let answers =
        futures::future::join_all((0..10).map(|_| stripe(&server, SECRET, t, &body))).await;
    let mut run_ids = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        let answer: Value = answer.json().await.unwrap();
        run_ids.push(answer["runId"].as_str().unwrap().to_owned());
    }
    run_ids.dedup();
    assert_eq!(run_ids.len(), 1, "{run_ids:?}");
    assert_eq!(run_count(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliveries_start_nothing() {
    let server = server().await;
    let body = event("evt_2", "ada");
    let t = now();
    let tampered = server
        .deliver("stripe", &event("evt_2", "mallory"))
        .header("stripe-signature", stripe_signature(SECRET, t, &body))
        .send()
        .await
        .unwrap();
    refused(tampered, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    let wrong = stripe(&server, "whsec_someone_else", t, &body).await;
    refused(wrong, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    // Past the 300 s tolerance either way; ahead by a margin, as the server's clock moves on
    // while the test runs (at +301 a second boundary between `now()` and the check accepts it).
    for skew in [-301, 330] {
        let off = stripe(&server, SECRET, now() + skew, &body).await;
        refused(off, StatusCode::UNAUTHORIZED, "timestamp_out_of_tolerance").await;
    }
    let unsigned = server.deliver("stripe", &body).send().await.unwrap();
    refused(unsigned, StatusCode::UNAUTHORIZED, "missing_signature").await;
    let garbled = server
        .deliver("stripe", &body)
        .header("stripe-signature", "t=1,v1=zz")
        .send()
        .await
        .unwrap();
    refused(garbled, StatusCode::UNAUTHORIZED, "invalid_signature").await;

    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(PAYLOAD_LIMIT));
    let oversize = stripe(&server, SECRET, t, &huge).await;
    refused(oversize, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    let not_json = stripe(&server, SECRET, t, "{\"id\": ").await;
    refused(not_json, StatusCode::BAD_REQUEST, "malformed-json").await;
    let no_name = json!({"id": "evt_3", "type": "customer.created"}).to_string();
    let transform = stripe(&server, SECRET, t, &no_name).await;
    let problem = refused(
        transform,
        StatusCode::UNPROCESSABLE_ENTITY,
        "transform-refused",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("data.name"),
        "{problem}"
    );
    let unknown = server.deliver("nowhere", &body).send().await.unwrap();
    let problem = refused(unknown, StatusCode::NOT_FOUND, "not-found").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("github, stripe"),
        "{problem}"
    );

    let ping = json!({"id": "evt_4", "type": "ping"}).to_string();
    let ignored = stripe(&server, SECRET, t, &ping).await;
    assert_eq!(ignored.status(), StatusCode::OK);
    assert_eq!(
        ignored.json::<Value>().await.unwrap(),
        json!({"ignored": true})
    );
    assert_eq!(
        run_count(&server),
        0,
        "no refused or ignored delivery starts a run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_deliveries_are_named_by_their_delivery_header_else_their_body() {
    let server = server().await;
    let body = json!({"name": "linus"}).to_string();
    let signature = github_signature(SECRET, body.as_bytes());
    let send = |delivery: Option<&str>| {
        let request = server
            .deliver("github", &body)
            .header("x-hub-signature-256", signature.clone());
        match delivery {
            Some(id) => request.header("x-github-delivery", id),
            None => request,
        }
        .send()
    };
    let named: Value = send(Some("72d3162e")).await.unwrap().json().await.unwrap();
    let run = server
        .get_json(&format!("/runs/{}", named["runId"].as_str().unwrap()))
        .await;
    assert_eq!(run["idempotencyKey"], "wh:github:72d3162e", "{run}");
    let unnamed: Value = send(None).await.unwrap().json().await.unwrap();
    let run = server
        .get_json(&format!("/runs/{}", unnamed["runId"].as_str().unwrap()))
        .await;
    let key = run["idempotencyKey"].as_str().unwrap();
    assert!(
        key.starts_with("wh:github:sha256:") && key.len() == "wh:github:sha256:".len() + 64,
        "{key}"
    );
    assert_ne!(named["runId"], unnamed["runId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_secret_is_in_no_response_and_not_in_the_store_in_clear() {
    let server = server().await;
    let body = event("evt_5", "ada");
    let accepted = stripe(&server, SECRET, now(), &body).await;
    let run_id = accepted.json::<Value>().await.unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_for_status(&run_id, "succeeded").await;
    for path in ["/credentials", "/runs", &format!("/runs/{run_id}")] {
        let text = server.get(path).await.text().await.unwrap();
        assert!(
            !text.contains(SECRET) && !text.contains(PREVIOUS),
            "{path}: {text}"
        );
    }
    server.engine.store().flush().await.unwrap();
    let data = server.dir.path().join("data");
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [SECRET, PREVIOUS] {
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "the store holds a signing secret in clear"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_its_secret_refuses_without_saying_more() {
    let server = start().await;
    let body = event("evt_6", "ada");
    let answer = stripe(&server, SECRET, now(), &body).await;
    let problem = refused(
        answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "webhook-secret-unavailable",
    )
    .await;
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-signing"),
        "{problem}"
    );
    assert_eq!(run_count(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_to_a_known_endpoint_is_logged_without_its_body() {
    let server = server().await;
    let body = event("evt_logged", "ada");
    let t = now();
    let started: Value = stripe(&server, SECRET, t, &body)
        .await
        .json()
        .await
        .unwrap();
    stripe(&server, SECRET, t, &body).await;
    let tampered = server
        .deliver("stripe", &event("evt_logged", "mallory"))
        .header("stripe-signature", stripe_signature(SECRET, t, &body))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(PAYLOAD_LIMIT));
    stripe(&server, SECRET, t, &huge).await;
    let bad_input = json!({"id": "evt_bad", "type": "customer.created", "data": {"name": 7}});
    stripe(&server, SECRET, t, &bad_input.to_string()).await;
    let ping = json!({"id": "evt_ping", "type": "ping"}).to_string();
    stripe(&server, SECRET, t, &ping).await;
    server.deliver("nowhere", &body).send().await.unwrap();

    let log = server.get_json("/webhooks/stripe/deliveries").await;
    let rows = log["deliveries"].as_array().expect("a list");
    let summary: Vec<(u64, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["status"].as_u64().unwrap(),
                row["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (200, "ignored"),
            (422, "transform-refused"),
            (413, "payload-too-large"),
            (401, "invalid_signature"),
            (202, "duplicate"),
            (202, "started"),
        ],
        "newest first, each with its answer: {log}"
    );
    assert_eq!(rows[5]["runId"], started["runId"], "{log}");
    assert_eq!(
        rows[4]["runId"], started["runId"],
        "the duplicate names the run"
    );
    assert_eq!(rows[5]["deliveryId"], "evt_logged");
    assert_eq!(rows[0]["deliveryId"], "evt_ping");
    assert!(
        rows[3]["reason"].as_str().unwrap().contains("signature"),
        "a refusal says why: {log}"
    );
    let text = log.to_string();
    for sent in ["ada", "mallory", "xxxx", SECRET, PREVIOUS] {
        assert!(!text.contains(sent), "{sent:?} is in the log: {text}");
    }

    let limited = server.get_json("/webhooks/stripe/deliveries?limit=2").await;
    assert_eq!(limited["deliveries"].as_array().unwrap().len(), 2);
    let unknown = server.get("/webhooks/nowhere/deliveries").await;
    problem(unknown, StatusCode::NOT_FOUND).await;
    let bad_limit = server.get("/webhooks/stripe/deliveries?limit=0").await;
    problem(bad_limit, StatusCode::BAD_REQUEST).await;
}
