//! Poll sources on a virtual clock and a real SQLite file: the first poll seeds without
//! runs (unless the source starts from the beginning), new items start one run each, an
//! item polled again starts nothing, errors back off (jittered, capped at ten intervals) and
//! mark the source failing after five, `Retry-After` is honoured, pause/resume/poll-now, a
//! transform error, a panicking poll function, and declarations a registry refuses. The
//! poll of a real HTTP server is in `polls_http.rs`, the lease's fence in `polls_lease.rs`.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cairn_engine::{
    Clock, Engine, ManualClock, PollCtx, PollError, PollSource, Polled, Registry, StartFrom,
    Workflow, WorkflowCtx,
};
use cairn_store::{PollSourceRecord, PollState, RunFilter};
use cairn_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use support::Text;
use tempfile::TempDir;

const T0: i64 = 1_772_409_600_000;
const MINUTE: i64 = 60_000;

/// An issue tracker the poll function reads: issue ids, and whether it answers.
#[derive(Default)]
struct Tracker {
    issues: Vec<u64>,
    /// While set, each poll fails with this (and the Retry-After).
    failing: Option<(String, Option<Duration>)>,
    /// When set, polls ignore the cursor and return every issue (a source whose API has
    /// no cursor: the item keys decide).
    ignore_cursor: bool,
    polls: usize,
}

type Shared = Arc<Mutex<Tracker>>;

/// Issues after the cursor (an id), and the newest id as the next cursor.
fn list_issues(tracker: &Shared, cursor: Option<Value>) -> Result<Polled<u64>, PollError> {
    let mut tracker = tracker.lock().expect("the tracker");
    tracker.polls += 1;
    if let Some((message, wait)) = &tracker.failing {
        return Err(PollError::new(message.clone()).retry_after(*wait));
    }
    let after = cursor.and_then(|cursor| cursor.as_u64()).unwrap_or(0);
    let issues: Vec<u64> = tracker
        .issues
        .iter()
        .copied()
        .filter(|id| tracker.ignore_cursor || *id > after)
        .collect();
    let newest = tracker.issues.iter().max().copied().unwrap_or(after);
    Ok(Polled::new(issues, Some(json!(newest))))
}

fn triage() -> Workflow<Text, Text> {
    Workflow::new("triage").run(|input: Text, _ctx: WorkflowCtx| async move { Ok(input) })
}

fn source(tracker: &Shared, start_from: StartFrom) -> cairn_engine::Poll {
    let tracker = tracker.clone();
    PollSource::new("new-issues")
        .every("5m")
        .start_from(start_from)
        .poll(move |_ctx: PollCtx, cursor| {
            let tracker = tracker.clone();
            async move { list_issues(&tracker, cursor) }
        })
        .item_key(|id: &u64| id.to_string())
        .attach(&triage(), |id: u64| {
            Ok(Some(Text {
                text: format!("issue {id}"),
            }))
        })
}

/// An engine on a fresh SQLite file polling `tracker`, its clock at `T0`, the source saved.
async fn engine(tracker: &Shared, start_from: StartFrom) -> (Engine, Arc<ManualClock>, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let clock = Arc::new(ManualClock::new(T0));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let engine = Engine::builder(store, Registry::new().poll(source(tracker, start_from)))
        .clock(dyn_clock)
        .build()
        .expect("a valid registry");
    let saved = engine.declare_poll_sources().await.expect("declare");
    assert_eq!(saved, [PollSourceRecord::new("new-issues", "triage", T0)]);
    (engine, clock, dir)
}

async fn stored(engine: &Engine) -> PollSourceRecord {
    engine
        .list_poll_sources()
        .await
        .expect("list")
        .into_iter()
        .next()
        .expect("the source")
}

/// The triggers of every run, sorted (each is its idempotency key too).
async fn triggers(engine: &Engine) -> Vec<String> {
    let runs = engine
        .list_runs(&RunFilter {
            limit: 1_000,
            ..RunFilter::default()
        })
        .await
        .expect("list runs");
    let mut triggers: Vec<String> = runs
        .into_iter()
        .map(|run| {
            assert_eq!(run.idempotency_key.as_deref(), Some(run.trigger.as_str()));
            run.trigger
        })
        .collect();
    triggers.sort();
    triggers
}

fn tracker(issues: &[u64]) -> Shared {
    Arc::new(Mutex::new(Tracker {
        issues: issues.to_vec(),
        ..Tracker::default()
    }))
}

#[tokio::test]
async fn the_first_poll_seeds_and_each_new_item_starts_one_run() {
    let tracker = tracker(&[1, 2]);
    let (engine, clock, _dir) = engine(&tracker, StartFrom::Now).await;
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    assert!(triggers(&engine).await.is_empty(), "seeding starts nothing");
    let seeded = stored(&engine).await;
    assert!(seeded.seeded);
    assert_eq!(seeded.cursor, Some(json!(2)));
    assert_eq!(seeded.next_poll_at_ms, T0 + 5 * MINUTE);

    clock.advance(Duration::from_secs(60));
    tracker.lock().expect("tracker").issues.push(3);
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    assert_eq!(tracker.lock().expect("tracker").polls, 1, "not due yet");

    clock.advance_to(T0 + 5 * MINUTE);
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 1);
    assert_eq!(triggers(&engine).await, ["poll:new-issues:3"]);

    // A source without a cursor returns every item again: the item keys decide.
    {
        let mut tracker = tracker.lock().expect("tracker");
        tracker.ignore_cursor = true;
        tracker.issues.push(4);
    }
    clock.advance_to(T0 + 10 * MINUTE);
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 1);
    assert_eq!(
        triggers(&engine).await,
        ["poll:new-issues:3", "poll:new-issues:4"],
        "items 1 and 2 (seeded) and 3 (started) start nothing again"
    );
    // Five hours down: one poll, then the next slot after now.
    clock.advance_to(T0 + 5 * 60 * MINUTE + 1);
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    assert_eq!(
        stored(&engine).await.next_poll_at_ms,
        T0 + 5 * 60 * MINUTE + 5 * MINUTE,
        "missed polls collapse into one"
    );
    let run = engine
        .list_runs(&RunFilter::default())
        .await
        .expect("runs")
        .into_iter()
        .find(|run| run.trigger == "poll:new-issues:4")
        .expect("issue 4's run");
    assert_eq!(run.input, json!({"text": "issue 4"}));
}

#[tokio::test]
async fn a_source_that_starts_from_the_beginning_starts_its_first_items() {
    let tracker = tracker(&[1, 2]);
    let (engine, _clock, _dir) = engine(&tracker, StartFrom::Beginning).await;
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 2);
    assert_eq!(
        triggers(&engine).await,
        ["poll:new-issues:1", "poll:new-issues:2"]
    );
}

#[tokio::test]
async fn errors_back_off_and_mark_the_source_failing_after_five_in_a_row() {
    let tracker = tracker(&[1]);
    let (engine, clock, _dir) = engine(&tracker, StartFrom::Now).await;
    tracker.lock().expect("tracker").failing = Some(("the tracker is down".into(), None));
    let interval = 5 * MINUTE;
    let mut waits = Vec::new();
    for errors in 1..=6u32 {
        let due = stored(&engine).await.next_poll_at_ms;
        clock.advance_to(due);
        engine.poll_due_sources().await.expect("poll");
        let source = stored(&engine).await;
        let wait = source.next_poll_at_ms - due;
        let full = (interval << errors).min(10 * interval);
        assert!(
            wait >= full / 2 && wait <= full,
            "error {errors}: waited {wait} ms, not within [{}, {full}]",
            full / 2
        );
        waits.push(wait);
        assert_eq!(source.consecutive_errors, errors);
        assert_eq!(source.last_error.as_deref(), Some("the tracker is down"));
        let expected = if errors >= 5 {
            PollState::Failing
        } else {
            PollState::Active
        };
        assert_eq!(source.state, expected, "after {errors} errors");
        assert!(!source.seeded, "a failed poll records nothing");
    }
    assert!(
        waits[0] > interval - 1,
        "the first error stretches the interval"
    );
    tracker.lock().expect("tracker").failing = None;
    clock.advance_to(stored(&engine).await.next_poll_at_ms);
    engine.poll_due_sources().await.expect("poll");
    let source = stored(&engine).await;
    assert_eq!(
        (source.state, source.consecutive_errors, source.last_error),
        (PollState::Active, 0, None),
        "a success ends the streak"
    );
    assert!(source.seeded);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let tracker = tracker(&[1]);
    let (engine, _clock, _dir) = engine(&tracker, StartFrom::Now).await;
    tracker.lock().expect("tracker").failing =
        Some(("HTTP 429".into(), Some(Duration::from_secs(3 * 3_600))));
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(
        stored(&engine).await.next_poll_at_ms,
        T0 + 3 * 60 * MINUTE,
        "three hours, beyond the backoff's ten-minute start"
    );
}

#[tokio::test]
async fn pause_resume_and_poll_now() {
    let tracker = tracker(&[1]);
    let (engine, clock, _dir) = engine(&tracker, StartFrom::Now).await;
    let paused = engine.pause_poll_source("new-issues").await.expect("pause");
    assert_eq!(paused.state, PollState::Paused);
    clock.advance(Duration::from_secs(3_600));
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(
        tracker.lock().expect("tracker").polls,
        0,
        "paused: not polled"
    );
    let now = engine
        .poll_source_now("new-issues")
        .await
        .expect("poll now");
    assert_eq!(now.state, PollState::Paused, "poll-now does not resume");
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(tracker.lock().expect("tracker").polls, 0);

    let resumed = engine
        .resume_poll_source("new-issues")
        .await
        .expect("resume");
    assert_eq!(resumed.state, PollState::Active);
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(
        tracker.lock().expect("tracker").polls,
        1,
        "resumed: polled now"
    );
    clock.advance(Duration::from_secs(1));
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(
        tracker.lock().expect("tracker").polls,
        1,
        "next in 5 minutes"
    );
    engine
        .poll_source_now("new-issues")
        .await
        .expect("poll now");
    engine.poll_due_sources().await.expect("poll");
    assert_eq!(
        tracker.lock().expect("tracker").polls,
        2,
        "poll-now: polled now"
    );
    let missing = engine.pause_poll_source("nope").await.expect_err("unknown");
    assert!(missing.to_string().contains("sources list"), "{missing}");
}

#[tokio::test]
async fn a_transform_error_fails_the_poll_and_records_nothing() {
    let tracker = tracker(&[1, 2]);
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let shared = tracker.clone();
    let poll = PollSource::new("picky")
        .every("1m")
        .start_from(StartFrom::Beginning)
        .poll(move |_ctx: PollCtx, cursor| {
            let tracker = shared.clone();
            async move { list_issues(&tracker, cursor) }
        })
        .item_key(|id: &u64| id.to_string())
        .attach(&triage(), |id: u64| {
            if id == 2 {
                return Err(cairn_engine::TransformError::new("issue 2 is malformed"));
            }
            Ok(Some(Text {
                text: id.to_string(),
            }))
        });
    let engine = Engine::builder(store, Registry::new().poll(poll))
        .build()
        .expect("a valid registry");
    engine.declare_poll_sources().await.expect("declare");
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    let source = stored(&engine).await;
    assert_eq!(source.cursor, None, "the cursor stays: item 2 comes again");
    let error = source.last_error.expect("the error");
    assert!(
        error.contains("\"2\"") && error.contains("malformed"),
        "{error}"
    );
    assert!(
        triggers(&engine).await.is_empty(),
        "item 1 waits with item 2"
    );
}

#[tokio::test]
async fn a_panicking_poll_function_is_an_error_of_the_poll() {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let poll = PollSource::new("boom")
        .poll(|_ctx: PollCtx, cursor: Option<Value>| async move {
            if cursor.is_none() {
                panic!("the tracker client panicked");
            }
            Ok(Polled::new(Vec::<u64>::new(), None))
        })
        .item_key(|id: &u64| id.to_string())
        .attach(&triage(), |id: u64| {
            Ok(Some(Text {
                text: id.to_string(),
            }))
        });
    let engine = Engine::builder(store, Registry::new().poll(poll))
        .build()
        .expect("a valid registry");
    engine.declare_poll_sources().await.expect("declare");
    assert_eq!(engine.poll_due_sources().await.expect("poll"), 0);
    let source = stored(&engine).await;
    assert_eq!(source.consecutive_errors, 1);
    assert_eq!(
        source.last_error.as_deref(),
        Some("the poll function panicked: the tracker client panicked")
    );
    assert!(source.lease_owner.is_none(), "the lease is freed at once");
}

#[test]
fn declarations_a_registry_refuses() {
    let tracker = tracker(&[]);
    let polling = |name: &str, every: &str| {
        let tracker = tracker.clone();
        PollSource::new(name)
            .every(every)
            .poll(move |_ctx: PollCtx, cursor| {
                let tracker = tracker.clone();
                async move { list_issues(&tracker, cursor) }
            })
    };
    let text = |id: u64| {
        Ok(Some(Text {
            text: id.to_string(),
        }))
    };
    let cases = [
        (
            Registry::new().poll(polling("a", "5m").attach(&triage(), text)),
            "no item key",
        ),
        (
            Registry::new().poll(
                polling("a", "5 minutes")
                    .item_key(|id| id.to_string())
                    .attach(&triage(), text),
            ),
            "\"5 minutes\" is not valid",
        ),
        (
            Registry::new().poll(
                polling("Bad Name", "5m")
                    .item_key(|id| id.to_string())
                    .attach(&triage(), text),
            ),
            "a-z, 0-9",
        ),
        (
            Registry::new()
                .poll(
                    polling("a", "5m")
                        .item_key(|id| id.to_string())
                        .attach(&triage(), text),
                )
                .poll(
                    polling("a", "1h")
                        .item_key(|id| id.to_string())
                        .attach(&triage(), text),
                ),
            "two poll sources",
        ),
    ];
    for (registry, expected) in cases {
        let error = registry.check().expect_err(expected);
        assert!(error.to_string().contains(expected), "{error}");
    }
}
