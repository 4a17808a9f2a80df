//! A cron schedule fired by several worker processes on one SQLite file, and on one
//! PostgreSQL schema, one of them killed with `kill -9` midway: every fire instant between
//! the first and the last has exactly one run.

mod support;

use std::{
    collections::BTreeMap,
    process::Child,
    time::{Duration, UNIX_EPOCH},
};

use support::{KillOnDrop, Sandbox, wait_for};

/// The scheduled runs (trigger `schedule:tick@<instant>[;…]`), by instant: how many each has.
fn runs_by_instant(sandbox: &Sandbox) -> BTreeMap<String, usize> {
    let out = sandbox.output(&["runs", "list", "--limit", "10000", "--json"]);
    assert!(out.status.success(), "runs list: {out:?}");
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut by_instant = BTreeMap::new();
    for run in runs.as_array().expect("an array") {
        let trigger = run["trigger"].as_str().unwrap_or_default();
        if let Some(rest) = trigger.strip_prefix("schedule:tick@") {
            let instant = rest.split(';').next().unwrap_or_default();
            *by_instant.entry(instant.to_owned()).or_insert(0) += 1;
        }
    }
    by_instant
}

fn worker(sandbox: &Sandbox) -> Child {
    sandbox.spawn_with(&["worker"], &[("FIXTURE_SCHEDULE", "1")])
}

/// `processes` workers fire `tick` every second; one is killed (`kill -9`) once five instants
/// have runs; the others go on for five more. Then each instant from the first to the last
/// has exactly one run.
fn fire_with_workers(sandbox: &Sandbox, processes: usize) {
    let mut workers: Vec<KillOnDrop> = (0..processes)
        .map(|_| KillOnDrop::new(worker(sandbox)))
        .collect();
    let deadline = Duration::from_secs(60);
    wait_for("five fire instants", deadline, || {
        runs_by_instant(sandbox).len() >= 5
    });
    // `kill -9`: the process gets no chance to release anything.
    drop(workers.remove(0));
    let after_kill = runs_by_instant(sandbox).len();
    wait_for("five more fire instants", deadline, || {
        runs_by_instant(sandbox).len() >= after_kill + 5
    });
    drop(workers);
    let by_instant = runs_by_instant(sandbox);
    let twice: Vec<_> = by_instant.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "instants with more than one run: {twice:?}"
    );
    let seconds: Vec<u64> = by_instant
        .keys()
        .map(|instant| {
            let at = humantime::parse_rfc3339(instant).expect("an RFC 3339 instant");
            at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
        })
        .collect();
    let (first, last) = (seconds[0], seconds[seconds.len() - 1]);
    assert_eq!(
        seconds,
        (first..=last).collect::<Vec<_>>(),
        "every second from the first fire to the last has a run (catch-up: all)\n{}",
        sandbox.process_log()
    );
}

#[test]
fn two_worker_processes_on_one_sqlite_file_start_each_fire_instant_once() {
    fire_with_workers(&Sandbox::new(), 2);
}

#[test]
fn three_worker_processes_on_postgres_start_each_fire_instant_once() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    fire_with_workers(&sandbox, 3);
}
