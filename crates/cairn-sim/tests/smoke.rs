//! The simulator's CI budget: the seeds of `regressions.txt` first, then seeds derived from
//! the commit, until `CAIRN_SIM_SMOKE_SECONDS` (default 120) have passed. Every seed must keep
//! every invariant; over the budget, every kind of fault must have fired and stale writes
//! must have been refused by the fence (so the budget exercised what it claims to).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use cairn_sim::{commit, derived_seed, regression_seeds, run_seed};

#[test]
fn smoke() {
    let budget = std::env::var("CAIRN_SIM_SMOKE_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(120);
    let commit = commit();
    let until = Instant::now() + Duration::from_secs(budget);
    let regressions = regression_seeds();
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut seeds, mut runs, mut steps) = (0u64, 0usize, 0usize);
    while seeds < regressions.len() as u64 || Instant::now() < until {
        let seed = match regressions.get(usize::try_from(seeds).unwrap_or(usize::MAX)) {
            Some(&seed) => seed,
            None => derived_seed(&commit, seeds - regressions.len() as u64),
        };
        if std::env::var_os("CAIRN_SIM_VERBOSE").is_some() {
            eprintln!("cairn-sim smoke: seed {seed:#x}");
        }
        let report = run_seed(seed, None, false);
        seeds += 1;
        runs += report.runs;
        steps += report.steps;
        for (name, count) in &report.counters {
            *totals.entry(name).or_default() += count;
        }
        assert!(report.violation.is_none(), "{}", report.failure(&commit));
    }
    println!(
        "cairn-sim smoke: {seeds} seeds ({} regressions), {runs} runs, {steps} steps, commit {commit}",
        regressions.len()
    );
    println!("cairn-sim smoke: counts {totals:?}");
    for fault in [
        "worker-crashes",
        "worker-pauses",
        "store-crashes",
        "commit-fails",
        "ack-lost",
        "action-fails",
        "action-fatal",
        "action-panics",
        "action-times-out",
        "action-slow",
        "timers-early",
        "replay-every-step-workers",
        "wake-ups-lost",
        "wake-ups-doubled",
        "fence-rejections",
        "non-determinism-checks",
    ] {
        assert!(
            totals.get(fault).copied().unwrap_or(0) > 0,
            "in {seeds} seeds, `{fault}` never happened: the budget does not exercise it"
        );
    }
}
