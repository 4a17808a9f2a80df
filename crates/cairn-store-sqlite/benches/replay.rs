//! Micro-benchmark of replaying a 1,000-step history from the SQLite store (divan): loading
//! the run's log in one query and decoding it, then folding it into a journal and deciding
//! each of the 1,000 calls (all replays). Reported per step.
//!
//! ```sh
//! cargo bench -p cairn-store-sqlite --bench replay
//! ```
//! Under `cargo test --benches` each case runs once, as a smoke test.

use cairn_core::{Call, ChangedInput, Decision, Event, Journal, StepKey, StepKind};
use cairn_store::{NewRun, RunId, Store};
use cairn_store_sqlite::SqliteStore;
use divan::{Bencher, black_box, counter::ItemsCount};
use serde_json::{Value, json};
use tempfile::TempDir;

fn main() {
    divan::main();
}

/// Recorded steps in the history.
const STEPS: usize = 1_000;
/// The action slug every step calls.
const SLUG: &str = "noop";

/// A store holding one run whose log is `RunCreated` plus 1,000 started-and-completed steps.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: SqliteStore,
    id: RunId,
    _dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_in_dir(dir.path()).expect("store");
        let history = (0..STEPS)
            .flat_map(|n| {
                let key = StepKey::numbered(SLUG, u32::try_from(n).expect("few steps"));
                [
                    Event::StepStarted {
                        call: None,
                        key: key.clone(),
                        kind: StepKind::Action,
                        slug: SLUG.to_owned(),
                        input: json!({ "n": n }),
                        attempt: 1,
                        credentials: Vec::new(),
                    },
                    Event::StepCompleted {
                        call: None,
                        key,
                        kind: StepKind::Action,
                        slug: SLUG.to_owned(),
                        output: json!({ "n": n + 1 }),
                    },
                ]
            })
            .collect();
        let run = NewRun {
            id: RunId::new(),
            workflow: "replayed".to_owned(),
            input: json!({ "n": 0 }),
            idempotency_key: None,
            parent_run_id: None,
            forked_from: None,
            trigger: "bench".to_owned(),
            owner: Default::default(),
            history,
            lease: None,
            now_ms: 1_700_000_000_000,
        };
        let id = runtime
            .block_on(store.create_run(run))
            .expect("create")
            .run_id;
        Fixture {
            runtime,
            store,
            id,
            _dir: dir,
        }
    }

    fn load(&self) -> Vec<cairn_core::EventRecord> {
        self.runtime
            .block_on(self.store.events(self.id))
            .expect("events")
    }
}

/// One query for the log, and decoding its 2,001 events.
#[divan::bench(sample_count = 50)]
fn load_history_1000_steps(bencher: Bencher) {
    let fixture = Fixture::new();
    assert_eq!(fixture.load().len(), 2 * STEPS + 1);
    bencher
        .counter(ItemsCount::new(STEPS))
        .bench_local(|| fixture.load());
}

/// The store side of a replay: load the log, fold it into a journal, and decide each call.
#[divan::bench(sample_count = 50)]
fn replay_1000_steps_from_store(bencher: Bencher) {
    let fixture = Fixture::new();
    let inputs: Vec<Value> = (0..STEPS).map(|n| json!({ "n": n })).collect();
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        let events = fixture.load();
        let mut journal = Journal::new(
            events.iter().map(|record| &record.event),
            ChangedInput::Fail,
        );
        for input in &inputs {
            let (key, position) = journal.make_call(SLUG, None);
            let decision = journal.decide(Call {
                key: &key,
                kind: StepKind::Action,
                slug: SLUG,
                input,
                position,
            });
            debug_assert!(matches!(decision, Decision::Replay { .. }));
            black_box(decision);
        }
    });
}
