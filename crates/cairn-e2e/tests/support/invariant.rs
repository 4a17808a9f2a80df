//! Invariant 1 (TESTING.md), checked on the ledger of `marked` runs: every execution of a
//! `mark` step writes `start <nonce>` before it works and returns the nonce, so the ledger
//! says which executions of a step began, in order, and the run's log says whose result was
//! recorded. Shared by the fault scenarios (kill storm, crash points, sync errors, clock skew).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cairn::{Engine, Event, RunFilter, RunStatus, StartOptions};
use serde_json::json;

use super::{Sandbox, wait_for};

/// One execution of a step, as the ledger saw it begin.
pub struct Start {
    /// The execution's nonce (its output's `nonce` if its result was recorded).
    pub nonce: String,
    /// The process it ran in.
    pub pid: String,
}

/// The ledger's executions of `mark`, by (run, step), in the order they began.
pub fn starts(sandbox: &Sandbox) -> HashMap<(String, String), Vec<Start>> {
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

/// An engine of the test process on the sandbox's store, with `total` runs of `marked`.
pub fn enqueue(sandbox: &Sandbox, runtime: &tokio::runtime::Runtime, total: usize) -> Engine {
    runtime.block_on(async {
        let engine = Engine::new(sandbox.store().await, cairn_e2e::registry()).expect("engine");
        for n in 0..total {
            let input = json!({ "tag": format!("t{n}") });
            engine
                .start_json("marked", input, StartOptions::default())
                .await
                .expect("start");
        }
        engine
    })
}

/// Which processes a fault scenario cut off, and how.
#[derive(Default)]
pub struct CutOff {
    /// Killed or stopped: their executions may have been cut off, and run again.
    pub processes: HashSet<String>,
    /// When the store was out of reach (restarted, crashed, or a worker cut off from it): an
    /// execution that was in flight then, in a process it cut off, may have been cut off too
    /// (its result's write failed, or may have), and run again.
    pub outages: Vec<Outage>,
    /// Stopped and resumed: an execution of theirs may show in the ledger after another
    /// process's recorded one. A stop can land between the engine's last look at its lease
    /// and the action's first instruction (see decision 0042), so the resumed process writes
    /// its `start` late although the attempt began under its lease; its result is refused.
    pub resumed: HashSet<String>,
}

/// A time the store was out of reach, on the wall clock (as the nonces', which carry when
/// their execution began).
#[derive(Clone, Debug)]
pub struct Outage {
    /// When the fault began.
    pub from: SystemTime,
    /// When the store was back (answering again, or the partition healed).
    pub to: SystemTime,
    /// The one process cut off (a partition), or `None`: every process was.
    pub only: Option<String>,
}

impl Outage {
    /// Whether `start` may have been cut off by the outage: it ran in a process the outage
    /// cut off, at most [`IN_FLIGHT`] before it began and at most [`RECONNECTED`] after it
    /// ended.
    fn covers(&self, start: &Start) -> bool {
        let began = began_at(&start.nonce);
        self.only.as_ref().is_none_or(|pid| *pid == start.pid)
            && self.from - IN_FLIGHT <= began
            && began <= self.to + RECONNECTED
    }
}

/// How long before an outage an execution it cut off may have begun: one in flight then. A
/// `mark` takes 3 ms and its result is written with the next step's start (seen: up to 70 ms
/// before, on 2 busy cores).
pub const IN_FLIGHT: Duration = Duration::from_secs(1);

/// How long after an outage an execution it cut off may have begun. The PostgreSQL store runs
/// a lone write alone, in autocommit, on a connection that answered less than 1 s ago
/// without checking it first (its `alone::RECENTLY`): a write sent up to 1 s after the
/// connection last answered, so before the outage's end plus 1 s, may find that it died in
/// the outage, and fail as `MaybeCommitted`; its execution stops and the step runs again
/// (seen: up to 610 ms after a crash's recovery).
pub const RECONNECTED: Duration = Duration::from_secs(1);

/// When an execution began, from its nonce (`<pid>.<nanos since the epoch>.<count>`).
pub fn began_at(nonce: &str) -> SystemTime {
    let nanos: u64 = nonce
        .split('.')
        .nth(1)
        .and_then(|nanos| nanos.parse().ok())
        .unwrap_or_else(|| panic!("a nonce with a time: {nonce}"));
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

impl CutOff {
    /// Whether the fault scenario may have cut `start` off.
    fn may_have_cut(&self, start: &Start) -> bool {
        self.processes.contains(&start.pid)
            || self.outages.iter().any(|outage| outage.covers(start))
    }
}

/// The runs that have `status`, up to `total + 1` of them.
pub fn runs_with(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    status: RunStatus,
    total: usize,
) -> Vec<cairn::RunRecord> {
    let filter = RunFilter {
        status: Some(status),
        limit: total + 1,
        ..RunFilter::default()
    };
    runtime.block_on(engine.list_runs(&filter)).expect("list")
}

/// Waits until all `total` runs succeeded, then checks every step against the ledger: one
/// result per step, from an execution the ledger saw begin; every execution that began
/// before the recorded one was by a process cut off, or in flight during a store outage (a
/// live, untouched worker never repeats a step); none began after it, unless by a resumed process. Returns how many
/// executions were run again.
pub fn check_every_step(
    sandbox: &Sandbox,
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    total: usize,
    cut_off: &CutOff,
    seed: &str,
) -> usize {
    let succeeded = || runs_with(runtime, engine, RunStatus::Succeeded, total);
    wait_for("every run to succeed", Duration::from_secs(240), || {
        succeeded().len() == total
    });
    let starts = starts(sandbox);
    let mut repeated = 0;
    for run in succeeded() {
        let detail = runtime
            .block_on(engine.get_run(run.run_id))
            .expect("the run");
        let mut recorded = 0;
        for record in detail.events {
            let Event::StepCompleted { key, output, .. } = record.event else {
                continue;
            };
            recorded += 1;
            let (run_id, step) = (run.run_id.to_string(), key.as_str().to_owned());
            let began = &starts[&(run_id.clone(), step.clone())];
            let shown: Vec<String> = began
                .iter()
                .map(|start| format!("{} by {}", start.nonce, start.pid))
                .collect();
            let at = began
                .iter()
                .position(|start| output["nonce"] == start.nonce)
                .unwrap_or_else(|| panic!("step {step} of run {run_id}: the recorded execution never began ({seed}): {shown:?}"));
            for earlier in &began[..at] {
                assert!(
                    cut_off.may_have_cut(earlier),
                    "step {step} of run {run_id} ran again though process {} was neither \
                     killed nor stopped, nor the store out of reach then ({seed}): {shown:?}; \
                     outages: {:?}",
                    earlier.pid,
                    cut_off.outages
                );
            }
            for later in &began[at + 1..] {
                assert!(
                    cut_off.resumed.contains(&later.pid),
                    "step {step} of run {run_id}: an execution began after the recorded one \
                     ({seed}): {shown:?}"
                );
            }
            repeated += began.len() - 1;
        }
        assert_eq!(
            recorded, 3,
            "run {} recorded its three steps once",
            run.run_id
        );
    }
    assert_eq!(starts.len(), total * 3, "the ledger saw every step");
    repeated
}
