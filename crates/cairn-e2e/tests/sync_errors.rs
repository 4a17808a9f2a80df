//! Failed `fdatasync`s under a real worker: the fixture's worker runs under
//! `fiu-run -x` (libfiu's POSIX preload), which makes each `fsync`/`fdatasync` fail with `EIO`
//! at random (2%), among them the SQLite store's syncs of its WAL. (The ledger is written
//! `O_DSYNC`, without a sync call, so only the store's syncs fail.)
//!
//! Designed behaviour (decision 0043): the first failed sync is final. The store
//! acknowledges no write after it, syncs nothing again and answers every write
//! `Unavailable`, saying to restart the process; the worker stays up making no progress
//! (its executions give up their writes, its claims are refused, with growing pauses) and
//! says why in its log. So no action's attempt begins after it: an attempt begins only once
//! the writes before it were acknowledged. The test checks that over the faulty worker's
//! next claims, kills it (the restart 0043 asks for), starts a worker without faults, and
//! checks that nothing was lost: every step a reader saw completed keeps its result, every
//! run seen succeeded stays so, every run ends, and invariant 1 holds on the ledger.
//!
//! The faults are random (libfiu's generator is not seeded by the test): which sync fails
//! first differs from run to run; what must hold does not.

mod support;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use cairn::{Engine, Event, RunStatus};
use cairn_test_support::Prerequisite;
use support::{
    KillOnDrop, Sandbox,
    invariant::{CutOff, check_every_step, enqueue, runs_with},
    wait_for,
};

/// Runs of `marked` (three `mark` steps each).
const RUNS: usize = 200;
/// libfiu's command: every `fsync` and `fdatasync` fails with `EIO` (5) with probability 2%.
const FAULTS: &str = "enable_random name=posix/io/sync/*,probability=0.02,failinfo=5";
/// What the store logs at the first failed sync of its WAL.
const SYNC_FAILED: &str = "the WAL could not be synced";
/// What the worker logs each time the store refuses its claim.
const CLAIM_REFUSED: &str = "store unavailable; the worker will try again";
/// What every refusal after the first failure says.
const FINAL: &str = "this store takes no more writes: restart the process";

/// What a reader of the store saw: each run's recorded steps (key → the nonce of the
/// execution recorded) and whether it had succeeded.
fn seen(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
) -> HashMap<String, (HashMap<String, String>, bool)> {
    let all = runs_with(runtime, engine, RunStatus::Succeeded, RUNS)
        .into_iter()
        .chain(runs_with(runtime, engine, RunStatus::Running, RUNS))
        .chain(runs_with(runtime, engine, RunStatus::Queued, RUNS));
    let mut seen = HashMap::new();
    for run in all {
        let detail = runtime
            .block_on(engine.get_run(run.run_id))
            .expect("the run");
        let steps = detail
            .events
            .iter()
            .filter_map(|record| match &record.event {
                Event::StepCompleted { key, output, .. } => Some((
                    key.as_str().to_owned(),
                    output["nonce"].as_str().unwrap_or_default().to_owned(),
                )),
                _ => None,
            })
            .collect();
        let succeeded = run.status == RunStatus::Succeeded;
        seen.insert(run.run_id.to_string(), (steps, succeeded));
    }
    seen
}

#[test]
fn after_a_failed_wal_sync_a_worker_acknowledges_nothing_and_a_restart_loses_nothing() {
    if Prerequisite::Fiu.missing() {
        return;
    }
    let sandbox = Sandbox::new();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = enqueue(&sandbox, &runtime, RUNS);
    let mut faulty = KillOnDrop::new(sandbox.spawn_under(
        &["fiu-run", "-x", "-f", "", "-c", FAULTS],
        &["worker", "--concurrency", "4"],
    ));
    let faulty_pid = faulty.id().to_string();
    let claims_refused = || sandbox.process_log().matches(CLAIM_REFUSED).count();
    wait_for("a sync of the WAL to fail", Duration::from_secs(60), || {
        sandbox.process_log().contains(SYNC_FAILED)
    });
    // By its third refused claim (≥ 350 ms on), the attempts in flight at the failure
    // (3 ms each) are over.
    wait_for(
        "the faulty worker's claims to be refused",
        Duration::from_secs(30),
        || claims_refused() >= 3,
    );
    let began = sandbox.ledger_lines().len();
    let before_restart = seen(&runtime, &engine);
    // Two more refused claims (another 1.2 s at least): nothing acknowledged, so no attempt
    // begins, and the process is still up.
    wait_for(
        "two more of the faulty worker's claims to be refused",
        Duration::from_secs(30),
        || claims_refused() >= 5,
    );
    let log = sandbox.process_log();
    assert!(
        faulty.exit_status().is_none(),
        "the worker stays up after a failed sync (decision 0043):\n{log}"
    );
    assert_eq!(
        sandbox.ledger_lines().len(),
        began,
        "an attempt began after the WAL's sync failed, so a write was acknowledged:\n{log}"
    );
    assert!(log.contains(FINAL), "the refusals say to restart:\n{log}");
    assert!(
        began < RUNS * 3,
        "the sync failed before the workload's end ({began} executions began)"
    );

    // The restart decision 0043 asks for: the store is reopened from its files.
    faulty.kill();
    let _restarted = KillOnDrop::new(sandbox.spawn(&["worker"]));
    let cut_off = CutOff {
        processes: HashSet::from([faulty_pid]),
        ..CutOff::default()
    };
    let ran_again = check_every_step(&sandbox, &runtime, &engine, RUNS, &cut_off, "sync errors");
    let after = seen(&runtime, &engine);
    for (run, (steps, succeeded)) in &before_restart {
        let (steps_after, succeeded_after) = &after[run];
        for (key, nonce) in steps {
            assert_eq!(
                steps_after.get(key),
                Some(nonce),
                "step {key} of run {run} was seen completed before the restart, with this result"
            );
        }
        assert!(
            !succeeded || *succeeded_after,
            "run {run} was seen succeeded before the restart"
        );
    }
    eprintln!(
        "{began} executions began before the failed sync stopped the worker; {ran_again} run again after the restart"
    );
}
