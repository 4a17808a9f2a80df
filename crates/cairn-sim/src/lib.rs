//! Cairn's deterministic simulator (issue 27 §1, decision
//! [0044](../../docs/decisions/0044-deterministic-simulation.md)): the real engine's worker
//! loops, several at once, on one thread in virtual time, against [`store::SimStore`] (the
//! memory store with a durable log and an unflushed tail), with one seeded generator behind
//! every choice. Each seed enables a random subset of faults (swarm testing): worker crashes
//! and zombies, store crashes, failed commits and lost answers, failing, panicking, slow and
//! timed-out actions, late timers. The invariants of `TESTING.md` are checked as the world
//! runs and once it has healed; a violation names the seed that replays it bit for bit.
//!
//! ```text
//! CAIRN_SIM_SEED=0x… cargo test -p cairn-sim --release replay -- --nocapture
//! cargo run -p cairn-sim --release -- soak --minutes 60 [--seed N]
//! ```

mod checks;
mod clock;
mod faults;
mod gate;
mod rng;
mod sim;
mod store;
mod workers;
mod workload;
mod world;

use std::collections::BTreeMap;

/// A bug planted on purpose, to show the invariants catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// The store accepts a write from a worker whose lease was taken over.
    FenceSkipped,
    /// The store answers a commit before it is durable.
    AckBeforeFsync,
    /// A claimed run's log is handed over without its last recorded result, so the step
    /// runs again.
    RecordedStepRerun,
}

/// What one seed's world did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// A hash of the whole trace: one seed run twice gives the same.
    pub trace_hash: u64,
    /// Runs in the end (children included).
    pub runs: usize,
    /// Step events recorded in the end.
    pub steps: usize,
    /// Virtual time the world took, in milliseconds.
    pub virtual_ms: u64,
    /// The faults the seed enabled.
    pub faults: String,
    /// How often each fault fired, and other counts (`fence-rejections`, `action-attempts`).
    pub counters: BTreeMap<&'static str, u64>,
    /// The first invariant the world broke.
    pub violation: Option<String>,
    /// The trace (its last lines, or all of it when kept).
    pub trace: Vec<String>,
}

impl Report {
    /// The lines to print when the seed broke an invariant: seed, commit, the replay
    /// command and the trace.
    pub fn failure(&self, commit: &str) -> String {
        format!(
            "seed={:#x} commit={commit}\n{}\nfaults: {}\nreplay: CAIRN_SIM_SEED={:#x} cargo test \
             -p cairn-sim --release replay -- --nocapture\ntrace (last lines):\n{}",
            self.seed,
            self.violation.as_deref().unwrap_or("no violation"),
            self.faults,
            self.seed,
            self.trace.join("\n")
        )
    }
}

/// How long one seed may take in real time before it counts as stuck.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs one seed's world on a fresh single-threaded runtime with a paused clock (on a thread
/// of its own). A world still going after a minute of real time is reported as a violation:
/// something loops without letting virtual time pass (a busy loop), which would otherwise
/// hang the caller. `CAIRN_SIM_TRACE_LIVE=1` prints its trace as it goes.
pub fn run_seed(seed: u64, planted: Option<Planted>, keep_trace: bool) -> Report {
    quiet_simulated_panics();
    let (done, report) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
            .block_on(sim::simulate(seed, planted, keep_trace));
        let _ = done.send(report);
    });
    match report.recv_timeout(STUCK_AFTER) {
        Ok(report) => report,
        Err(_) => Report {
            seed,
            trace_hash: 0,
            runs: 0,
            steps: 0,
            virtual_ms: 0,
            faults: "(see the trace)".into(),
            counters: BTreeMap::new(),
            violation: Some(format!(
                "the world did not end within {} s of real time: something loops without \
                 letting virtual time pass (run it with CAIRN_SIM_TRACE_LIVE=1 to see where)",
                STUCK_AFTER.as_secs()
            )),
            trace: Vec::new(),
        },
    }
}

/// The seeds of `regressions.txt`: one per line, `0x…`, with `#` comments.
pub fn regression_seeds() -> Vec<u64> {
    include_str!("../regressions.txt")
        .lines()
        .filter_map(|line| parse_seed(line.split('#').next().unwrap_or("")))
        .collect()
}

/// A seed written in hex (`0x…`) or decimal.
pub fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if !text.is_empty() => text.parse().ok(),
        None => None,
    }
}

/// The commit being tested (`git rev-parse HEAD`, or `unknown`), from which the smoke test
/// derives its seeds so that every commit tries new ones.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The `n`-th seed derived from `commit`.
pub fn derived_seed(commit: &str, n: u64) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    commit.hash(&mut hasher);
    n.hash(&mut hasher);
    hasher.finish()
}

/// A panic hook that keeps the simulated action panics off stderr (the engine catches them
/// and records a failed attempt); other panics print as before.
fn quiet_simulated_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let simulated = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|message| message.starts_with("simulated"));
            if !simulated {
                previous(info);
            }
        }));
    });
}
