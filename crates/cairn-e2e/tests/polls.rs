//! A poll source read by a worker process from a local HTTP server: the worker is killed
//! with `kill -9` while the server holds back its first answer (the fetch done, nothing
//! committed), and a second worker, once the first's lease lapses, polls from the same
//! cursor: every item of the feed gets exactly one run, the ones the killed worker had
//! fetched and the one that appears later, however many polls see them again. On one SQLite
//! file and on PostgreSQL.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::{KillOnDrop, Sandbox, wait_for};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// The feed: `GET /feed?after={n}` answers the items from position `n` on and the cursor
/// after them. Its first answer is held back for a minute (the worker is killed meanwhile).
#[derive(Clone, Default)]
struct Feed {
    items: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
}

impl Feed {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn push(&self, id: &str) {
        self.items.lock().expect("the feed").push(id.to_owned());
    }
}

impl Respond for Feed {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let first = self.requests.fetch_add(1, Ordering::SeqCst) == 0;
        let after: usize = request
            .url
            .query_pairs()
            .find(|(name, _)| name == "after")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let items = self.items.lock().expect("the feed");
        let page: Vec<Value> = items
            .iter()
            .skip(after)
            .map(|id| json!({ "id": id }))
            .collect();
        let answer =
            ResponseTemplate::new(200).set_body_json(json!({"items": page, "cursor": items.len()}));
        if first {
            answer.set_delay(Duration::from_secs(60))
        } else {
            answer
        }
    }
}

/// The feed's runs (trigger `poll:feed:{id}`): status by id, and how many runs each id has.
fn feed_runs(sandbox: &Sandbox) -> BTreeMap<String, Vec<String>> {
    let out = sandbox.output(&["runs", "list", "--limit", "1000", "--json"]);
    assert!(out.status.success(), "runs list: {out:?}");
    let runs: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut by_item: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in runs.as_array().expect("an array") {
        let trigger = run["trigger"].as_str().unwrap_or_default();
        if let Some(id) = trigger.strip_prefix("poll:feed:") {
            let status = run["status"].as_str().unwrap_or_default().to_owned();
            by_item.entry(id.to_owned()).or_default().push(status);
        }
    }
    by_item
}

fn all_succeeded(sandbox: &Sandbox, ids: &[&str]) -> bool {
    let runs = feed_runs(sandbox);
    ids.iter().all(|id| {
        runs.get(*id)
            .is_some_and(|statuses| statuses.iter().all(|status| status == "succeeded"))
    })
}

/// A worker of `sandbox` is killed while the feed holds back its first answer; a second one
/// takes over once the lease lapses; then a new item appears: each item has one run.
async fn kill_between_fetch_and_commit(sandbox: &Sandbox) {
    let server = MockServer::start().await;
    let feed = Feed::default();
    for id in ["1", "2", "3"] {
        feed.push(id);
    }
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/feed"))
        .respond_with(feed.clone())
        .mount(&server)
        .await;
    let url = server.uri();
    // The sandbox's short lease time: the killed worker's poll lease (its 5 s timeout plus
    // that) lapses within seconds.
    let env = [("FIXTURE_POLL_URL", url.as_str())];
    let minute = Duration::from_secs(60);

    let first = KillOnDrop::new(sandbox.spawn_with(&["worker"], &env));
    wait_for("the first worker's fetch", minute, || feed.requests() >= 1);
    // `kill -9` while the server holds its answer back: the poll fetched, nothing committed.
    drop(first);
    assert!(
        feed_runs(sandbox).is_empty(),
        "a killed poll commits nothing"
    );
    let sources = sandbox.output(&["sources", "list", "--json"]);
    assert!(sources.status.success(), "sources list: {sources:?}");
    let listed: Value = serde_json::from_slice(&sources.stdout).expect("JSON");
    assert_eq!(listed[0]["name"], "feed");
    assert_eq!(listed[0]["seeded"], false, "{listed}");
    assert!(
        listed[0]["leaseOwner"].is_string(),
        "the dead worker's lease is still there: {listed}"
    );

    let _second = KillOnDrop::new(sandbox.spawn_with(&["worker"], &env));
    wait_for(
        "the killed worker's items to run, once its lease lapsed",
        minute,
        || all_succeeded(sandbox, &["1", "2", "3"]),
    );
    feed.push("4");
    wait_for("the new item to run", minute, || {
        all_succeeded(sandbox, &["1", "2", "3", "4"])
    });
    let polled = feed.requests();
    wait_for("three more polls", minute, || feed.requests() >= polled + 3);

    let runs = feed_runs(sandbox);
    let counts: BTreeMap<&str, usize> = runs
        .iter()
        .map(|(id, statuses)| (id.as_str(), statuses.len()))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([("1", 1), ("2", 1), ("3", 1), ("4", 1)]),
        "every item has exactly one run\n{}",
        sandbox.process_log()
    );
    let sources = sandbox.output(&["sources", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&sources.stdout).expect("JSON");
    assert_eq!(listed[0]["cursor"], 4, "{listed}");
    assert_eq!(listed[0]["consecutiveErrors"], 0, "{listed}");
}

// The tests block on processes and polls (as the other crash tests do); the mock server
// answers from the runtime's worker threads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_fetch_and_commit_loses_and_duplicates_no_item() {
    kill_between_fetch_and_commit(&Sandbox::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_worker_killed_between_fetch_and_commit_loses_and_duplicates_no_item() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    kill_between_fetch_and_commit(&sandbox).await;
}
