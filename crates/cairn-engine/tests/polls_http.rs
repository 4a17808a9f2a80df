//! A poll source reading a real HTTP server on loopback (wiremock) through `PollCtx::http`,
//! on a virtual clock and a real SQLite file: 500s stretch the interval (each error waits
//! longer), a 503's `Retry-After` is honoured, and once the server answers, its items are
//! recorded and the next poll starts the new one.

mod support;

use std::sync::Arc;

use cairn_engine::{
    Clock, Engine, ManualClock, PollCtx, PollError, PollSource, Polled, Registry, Workflow,
    WorkflowCtx,
};
use cairn_store::{PollSourceRecord, RunFilter};
use cairn_store_sqlite::SqliteStore;
use serde::Deserialize;
use serde_json::{Value, json};
use support::Text;
use tempfile::TempDir;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const T0: i64 = 1_772_409_600_000;
const INTERVAL_MS: i64 = 60_000;

#[derive(Debug, Deserialize)]
struct Issue {
    id: u64,
    title: String,
}

/// `GET {base}/issues?after={cursor}`: a 2xx body is `{"issues": [...], "cursor": ...}`;
/// anything else is an error carrying the `Retry-After` it asked for.
async fn list_issues(
    ctx: PollCtx,
    base: String,
    cursor: Option<Value>,
) -> Result<Polled<Issue>, PollError> {
    let after = cursor.map(|cursor| cursor.to_string()).unwrap_or_default();
    let response = ctx
        .http()
        .get(format!("{base}/issues?after={after}"))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| ctx.retry_after(value));
        return Err(
            PollError::new(format!("the tracker answered HTTP {status}")).retry_after(wait),
        );
    }
    #[derive(Deserialize)]
    struct Page {
        issues: Vec<Issue>,
        cursor: Value,
    }
    let page: Page = response.json().await?;
    Ok(Polled::new(page.issues, Some(page.cursor)))
}

async fn engine(base: String) -> (Engine, Arc<ManualClock>, TempDir) {
    let triage: Workflow<Text, Text> =
        Workflow::new("triage").run(|input: Text, _ctx: WorkflowCtx| async move { Ok(input) });
    let poll = PollSource::new("tracker")
        .every("1m")
        .poll(move |ctx, cursor| list_issues(ctx, base.clone(), cursor))
        .item_key(|issue: &Issue| issue.id.to_string())
        .attach(&triage, |issue: Issue| Ok(Some(Text { text: issue.title })));
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let clock = Arc::new(ManualClock::new(T0));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let engine = Engine::builder(store, Registry::new().poll(poll))
        .clock(dyn_clock)
        .build()
        .expect("a valid registry");
    engine.declare_poll_sources().await.expect("declare");
    (engine, clock, dir)
}

async fn stored(engine: &Engine) -> PollSourceRecord {
    engine.list_poll_sources().await.expect("list").remove(0)
}

fn page(ids: &[u64]) -> ResponseTemplate {
    let issues: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "title": format!("issue {id}")}))
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({
        "issues": issues,
        "cursor": ids.iter().max(),
    }))
}

/// Polls once at the source's next poll time; returns how long after it the next one is.
async fn poll_when_due(engine: &Engine, clock: &ManualClock) -> i64 {
    let due = stored(engine).await.next_poll_at_ms;
    clock.advance_to(due);
    engine.poll_due_sources().await.expect("poll");
    stored(engine).await.next_poll_at_ms - due
}

#[tokio::test]
async fn server_errors_stretch_the_interval_and_retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/issues"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/issues"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1800"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let (engine, clock, _dir) = engine(server.uri()).await;

    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(poll_when_due(&engine, &clock).await);
    }
    assert!(
        waits[0] >= INTERVAL_MS,
        "a 500 waits at least the interval: {waits:?}"
    );
    assert!(
        waits[2] >= 4 * INTERVAL_MS && waits.iter().all(|wait| *wait <= 10 * INTERVAL_MS),
        "each 500 waits longer, up to ten intervals: {waits:?}"
    );
    let source = stored(&engine).await;
    assert_eq!(source.consecutive_errors, 3);
    assert!(
        source
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("500")),
        "{source:?}"
    );
    assert_eq!(
        poll_when_due(&engine, &clock).await,
        1_800_000,
        "the 503's Retry-After of 30 minutes"
    );

    Mock::given(method("GET"))
        .and(path("/issues"))
        .respond_with(page(&[1, 2]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    assert_eq!(poll_when_due(&engine, &clock).await, INTERVAL_MS);
    let source = stored(&engine).await;
    assert_eq!(
        (source.consecutive_errors, source.cursor),
        (0, Some(json!(2)))
    );
    Mock::given(method("GET"))
        .and(path("/issues"))
        .respond_with(page(&[3]))
        .mount(&server)
        .await;
    poll_when_due(&engine, &clock).await;
    let runs = engine.list_runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), 1, "seeded 1 and 2; 3 is new");
    assert_eq!(runs[0].trigger, "poll:tracker:3");
    assert_eq!(runs[0].input, json!({"text": "issue 3"}));
    let asked: Vec<String> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|request| request.url.query().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        asked.last().map(String::as_str),
        Some("after=2"),
        "the stored cursor is passed on: {asked:?}"
    );
}
