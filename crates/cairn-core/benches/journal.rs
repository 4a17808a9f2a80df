//! Micro-benchmarks of the sans-IO step path (divan): step key assignment, the journal's
//! decision for a new or a recorded step, and the JSON encoding/decoding of step events as
//! the store writes and reads them.
//!
//! ```sh
//! cargo bench -p cairn-core --bench journal
//! ```
//! Under `cargo test --benches` each case runs once, as a smoke test.

use cairn_core::{Call, ChangedInput, Decision, Event, Journal, StepKey, StepKind};
use divan::{Bencher, black_box, counter::ItemsCount};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

/// Steps per measured iteration (and in the replayed history).
const STEPS: usize = 1_000;
/// The action slug every step calls.
const SLUG: &str = "noop";

fn empty_journal() -> Journal {
    Journal::new(std::iter::empty::<&Event>(), ChangedInput::Fail)
}

fn started(key: &StepKey, input: &Value) -> Event {
    Event::StepStarted {
        call: None,
        key: key.clone(),
        kind: StepKind::Action,
        slug: SLUG.to_owned(),
        input: input.clone(),
        attempt: 1,
        credentials: Vec::new(),
    }
}

fn completed(key: &StepKey, output: &Value) -> Event {
    Event::StepCompleted {
        call: None,
        key: key.clone(),
        kind: StepKind::Action,
        slug: SLUG.to_owned(),
        output: output.clone(),
    }
}

/// A history of `steps` completed no-op steps, as the engine records them.
fn history(steps: usize) -> Vec<Event> {
    (0..steps)
        .flat_map(|n| {
            let key = StepKey::numbered(SLUG, u32::try_from(n).expect("few steps"));
            let value = json!({ "n": n });
            [started(&key, &value), completed(&key, &value)]
        })
        .collect()
}

/// `<slug>#<n>` assignment alone.
#[divan::bench]
fn step_key_assignment(bencher: Bencher) {
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        let mut journal = empty_journal();
        for _ in 0..STEPS {
            black_box(journal.make_call(black_box(SLUG), None));
        }
    });
}

/// Key assignment plus the decision for a step the history does not have (execute).
#[divan::bench]
fn key_and_decide_new_step(bencher: Bencher) {
    let input = json!({ "n": 41 });
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        let mut journal = empty_journal();
        for _ in 0..STEPS {
            let (key, position) = journal.make_call(SLUG, None);
            let decision = journal.decide(Call {
                key: &key,
                kind: StepKind::Action,
                slug: SLUG,
                input: &input,
                position,
            });
            debug_assert!(matches!(decision, Decision::Execute { .. }));
            black_box(decision);
        }
    });
}

/// One executed step's write-side work: key, decision, both events built and encoded to the
/// JSON text the store inserts (the execution's journal does not take them back: see
/// `cairn_core::journal`).
#[divan::bench]
fn key_decide_and_encode_step(bencher: Bencher) {
    let value = json!({ "n": 41 });
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        let mut journal = empty_journal();
        for _ in 0..STEPS {
            let (key, position) = journal.make_call(SLUG, None);
            black_box(journal.decide(Call {
                key: &key,
                kind: StepKind::Action,
                slug: SLUG,
                input: &value,
                position,
            }));
            for event in [started(&key, &value), completed(&key, &value)] {
                black_box(serde_json::to_string(&event).expect("encodes"));
            }
        }
    });
}

/// Encoding one step completion to JSON text.
#[divan::bench]
fn encode_step_completed(bencher: Bencher) {
    let event = completed(&StepKey::numbered(SLUG, 7), &json!({ "n": 41 }));
    bencher.bench_local(|| serde_json::to_string(black_box(&event)).expect("encodes"));
}

/// Decoding one stored step completion.
#[divan::bench]
fn decode_step_completed(bencher: Bencher) {
    let text = serde_json::to_string(&completed(&StepKey::numbered(SLUG, 7), &json!({ "n": 41 })))
        .expect("encodes");
    bencher.bench_local(|| serde_json::from_str::<Event>(black_box(&text)).expect("decodes"));
}

/// Replay in memory: fold a 1,000-step history into a journal, then key and decide each call
/// (every one a replay).
#[divan::bench]
fn replay_1000_steps_in_memory(bencher: Bencher) {
    let events = history(STEPS);
    let inputs: Vec<Value> = (0..STEPS).map(|n| json!({ "n": n })).collect();
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        let mut journal = Journal::new(&events, ChangedInput::Fail);
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
