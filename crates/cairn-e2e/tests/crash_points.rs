//! Deaths at exact points: a worker started with `FAILPOINTS=<point>=<n>*off->panic` aborts
//! the `n + 1`-th time it passes one of the engine's crash points (compiled into the fixture
//! through cairn-engine's `failpoints` feature; see TESTING.md), as if `kill -9`ed there. A
//! worker started after it, without the variable, takes the dead worker's runs over once
//! their leases lapse and finishes every run. Then invariant 1 holds on the ledger (no
//! execution of a step began after the one whose result was recorded; earlier ones only in
//! the dead process), each run succeeded with one result per step, and the point decided
//! exactly how many executions were run again: the doomed worker runs one run at a time, so
//! only the run it was at when it died can have lost anything.

mod support;

use std::{collections::HashSet, os::unix::process::ExitStatusExt, time::Duration};

use support::{
    KillOnDrop, Sandbox,
    invariant::{CutOff, check_every_step, enqueue},
    wait_for,
};

/// Runs of `marked` (three `mark` steps each) per scenario.
const RUNS: usize = 12;

/// How a crash point's death must show.
struct Scenario {
    /// The crash point.
    point: &'static str,
    /// How many passes it lets by before the process dies at the next.
    passes: usize,
    /// How many executions of steps the restarted worker must run again: those whose
    /// attempt began in the dead process but whose result was not durable.
    repeated: usize,
}

/// Starts a worker armed to die at `scenario.point`, waits for it to abort there, starts a
/// worker without the crash point and checks what it finished (see the file's docs).
fn a_worker_dies_at(scenario: &Scenario) {
    let Scenario {
        point,
        passes,
        repeated,
    } = *scenario;
    let sandbox = Sandbox::new();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = enqueue(&sandbox, &runtime, RUNS);
    let failpoints = format!("{point}={passes}*off->panic");
    let mut doomed = KillOnDrop::new(sandbox.spawn_with(
        &["worker", "--concurrency", "1"],
        &[("FAILPOINTS", &failpoints)],
    ));
    let dead = doomed.id().to_string();
    let mut status = None;
    wait_for(
        &format!("the worker to die at {point}"),
        Duration::from_secs(60),
        || {
            status = doomed.exit_status();
            status.is_some()
        },
    );
    let status = status.expect("it ended");
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the worker with FAILPOINTS={failpoints} aborted ({status}):\n{}",
        sandbox.process_log()
    );
    assert!(
        sandbox
            .process_log()
            .contains(&format!("crash point {point}: the process dies here")),
        "it died at {point}:\n{}",
        sandbox.process_log()
    );
    let before = sandbox.ledger_lines().len();
    assert!(
        before < RUNS * 3,
        "the worker died before the workload's end ({before} executions began)"
    );

    let _restarted = KillOnDrop::new(sandbox.spawn(&["worker"]));
    let cut_off = CutOff {
        processes: HashSet::from([dead]),
        ..CutOff::default()
    };
    let ran_again = check_every_step(&sandbox, &runtime, &engine, RUNS, &cut_off, point);
    assert_eq!(
        ran_again, repeated,
        "executions run again after a death at {point}"
    );
}

#[test]
fn a_death_between_an_actions_attempt_and_the_commit_of_its_result_runs_that_step_again() {
    // The attempt's side effect happened, its result was only in memory: that one step, and
    // no other, is executed again.
    a_worker_dies_at(&Scenario {
        point: "after-action-before-commit",
        passes: 7,
        repeated: 1,
    });
}

#[test]
fn a_death_after_the_commit_before_the_next_attempt_runs_nothing_again() {
    // Every result recorded before the attempt was durable: the restarted worker replays
    // them and begins the next step for the first time.
    a_worker_dies_at(&Scenario {
        point: "after-commit-before-attempt",
        passes: 7,
        repeated: 0,
    });
}

#[test]
fn a_death_right_after_a_claim_leaves_the_run_to_be_taken_over_once_its_lease_lapses() {
    // The claimed run is this worker's until its lease lapses, and none of its steps began.
    a_worker_dies_at(&Scenario {
        point: "after-claim-before-execute",
        passes: 3,
        repeated: 0,
    });
}
