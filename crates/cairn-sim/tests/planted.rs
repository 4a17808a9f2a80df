//! Each planted bug is caught: seeds derived from the commit are run with the bug in place
//! until one breaks an invariant, within a budget far below the smoke test's. A bug the
//! invariants cannot see would run out the budget and fail here.

use std::time::{Duration, Instant};

use cairn_sim::{Planted, commit, derived_seed, run_seed};

/// Runs seeds with `bug` planted until one breaks an invariant; panics if none does in time.
fn caught(bug: Planted) {
    let commit = commit();
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while Instant::now() < until {
        let seed = derived_seed(&commit, 1_000_000 + n);
        n += 1;
        let report = run_seed(seed, Some(bug), false);
        if let Some(violation) = report.violation {
            println!("{bug:?} caught by seed {seed:#x} (seed {n} tried): {violation}");
            return;
        }
    }
    panic!("{bug:?} was planted and {n} seeds broke no invariant");
}

#[test]
fn a_skipped_fence_is_caught() {
    caught(Planted::FenceSkipped);
}

#[test]
fn an_ack_before_fsync_is_caught() {
    caught(Planted::AckBeforeFsync);
}

#[test]
fn a_recorded_step_run_again_is_caught() {
    caught(Planted::RecordedStepRerun);
}
