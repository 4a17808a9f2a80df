//! A storm of `kill -9`s on real worker processes: 1,000 runs of `marked` (three `mark`
//! steps, each writing `start <nonce>` to the fsync'd ledger before it works) shared by two
//! workers on one SQLite file, one of which is killed 100 times at seeded points of progress
//! and started again. Afterwards every run has succeeded, and for every step the execution
//! whose result the log recorded is the last one the ledger saw begin: no execution of a step
//! began after its result was durable (a completed step never runs again), and every earlier
//! execution was cut off by a kill (a live worker never repeats a step).
//!
//! The seed (printed) picks the kill points and victims; `CAIRN_STORM_SEED=0x…` replays
//! another, e.g. one a failure printed.

mod support;

use std::{
    collections::{HashMap, HashSet},
    process::Child,
    time::Duration,
};

use cairn::{Engine, Event, RunFilter, RunStatus, StartOptions};
use serde_json::json;
use support::{Sandbox, wait_for};

const RUNS: usize = 1_000;
const KILLS: usize = 100;
const WORKERS: usize = 2;
const DEFAULT_SEED: u64 = 0x0057_094d_c0de;

/// xorshift64*: enough to pick kill points, and the same from the same seed.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

fn seed() -> u64 {
    std::env::var("CAIRN_STORM_SEED")
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok())
        .unwrap_or(DEFAULT_SEED)
}

/// One execution of a step, as the ledger saw it begin.
struct Start {
    nonce: String,
    pid: String,
}

/// The ledger's executions of `mark`, by (run, step), in the order they began.
fn starts(sandbox: &Sandbox) -> HashMap<(String, String), Vec<Start>> {
    let mut by_step: HashMap<(String, String), Vec<Start>> = HashMap::new();
    for line in sandbox.ledger_lines() {
        let parts: Vec<&str> = line.split('|').collect();
        let [run, step, what, pid] = parts[..] else {
            panic!("a ledger line of four parts: {line}");
        };
        let nonce = what.strip_prefix("start ").expect("a start line");
        by_step
            .entry((run.to_owned(), step.to_owned()))
            .or_default()
            .push(Start {
                nonce: nonce.to_owned(),
                pid: pid.to_owned(),
            });
    }
    by_step
}

#[test]
fn a_storm_of_kills_never_runs_a_recorded_step_again() {
    let sandbox = Sandbox::new();
    let seed = seed();
    eprintln!("kill storm seed=0x{seed:x} (CAIRN_STORM_SEED=0x{seed:x} replays it)");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = runtime.block_on(async {
        let engine = Engine::new(sandbox.store().await, cairn_e2e::registry()).expect("engine");
        for n in 0..RUNS {
            let input = json!({ "tag": format!("t{n}") });
            engine
                .start_json("marked", input, StartOptions::default())
                .await
                .expect("start");
        }
        engine
    });

    let spawn = || sandbox.spawn(&["worker", "--max-step-recoveries", "1000"]);
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| spawn()).collect();
    let mut killed = HashSet::new();
    let mut rng = Seeded(seed | 1);
    for _ in 0..KILLS {
        // At most 25 starts between kills: 100 kills fit in the 3,000 steps' first executions.
        let target = sandbox.ledger_lines().len() + 5 + rng.below(21) as usize;
        wait_for("the workers to go on", Duration::from_secs(60), || {
            sandbox.ledger_lines().len() >= target
        });
        let victim = &mut workers[rng.below(WORKERS as u64) as usize];
        killed.insert(victim.id().to_string());
        victim.kill().expect("kill -9");
        victim.wait().ok();
        *victim = spawn();
    }
    let runs = |status: RunStatus| {
        let filter = RunFilter {
            status: Some(status),
            limit: RUNS + 1,
            ..RunFilter::default()
        };
        runtime.block_on(engine.list_runs(&filter)).expect("list")
    };
    wait_for("every run to succeed", Duration::from_secs(240), || {
        runs(RunStatus::Succeeded).len() == RUNS
    });
    for worker in &mut workers {
        worker.kill().ok();
        worker.wait().ok();
    }

    let starts = starts(&sandbox);
    let mut repeated = 0;
    for run in runs(RunStatus::Succeeded) {
        let detail = runtime
            .block_on(engine.get_run(run.run_id))
            .expect("the run");
        let mut recorded = 0;
        for record in detail.events {
            let Event::StepCompleted { key, output, .. } = record.event else {
                continue;
            };
            recorded += 1;
            let step = (run.run_id.to_string(), key.as_str().to_owned());
            let began = starts.get(&step).expect("the ledger saw the step begin");
            let last = began.last().expect("one start at least");
            assert_eq!(
                output["nonce"], last.nonce,
                "step {} of run {}: an execution began after the recorded one (seed 0x{seed:x})",
                step.1, step.0
            );
            for earlier in &began[..began.len() - 1] {
                assert!(
                    killed.contains(&earlier.pid),
                    "step {} of run {} ran again though process {} was never killed (seed 0x{seed:x})",
                    step.1,
                    step.0,
                    earlier.pid
                );
            }
            repeated += began.len() - 1;
        }
        assert_eq!(recorded, 3, "run {} recorded its three steps", run.run_id);
    }
    assert_eq!(starts.len(), RUNS * 3, "the ledger saw every step");
    eprintln!(
        "{RUNS} runs, {} steps, {KILLS} kills: {repeated} executions cut off by a kill and run again",
        RUNS * 3
    );
    assert!(
        repeated > 0,
        "no kill cut a step off: the storm tested nothing"
    );
}
