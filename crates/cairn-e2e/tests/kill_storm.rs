//! A storm of `kill -9`s on real worker processes: 1,000 runs of `marked` (three `mark`
//! steps, each writing `start <nonce>` to the fsync'd ledger before it works) shared by two
//! workers on one SQLite file, one of which is killed 100 times at seeded points of progress
//! and started again. Afterwards every run has succeeded, and for every step the execution
//! whose result the log recorded is the last one the ledger saw begin: no execution of a step
//! began after its result was durable (a completed step never runs again), and every earlier
//! execution was cut off by a kill (a live worker never repeats a step).
//!
//! A second test, on PostgreSQL, makes a zombie: a worker stopped (`SIGSTOP`) while it holds
//! 40 runs, most mid-step, until another worker has taken them over, then resumed
//! (`SIGCONT`). (Not on SQLite: a process stopped inside a write transaction holds the
//! database's one write lock, and no other process can take anything over until it goes on.)
//! Each step still has one result; the resumed worker says it lost its leases (or that the
//! runs ended elsewhere: the other worker may have finished them all by then), and its late
//! commits are refused by the fence. An execution of the resumed worker may show in the
//! ledger after the recorded one: a stop can land between the engine's last look at the
//! lease and the action's first line (decision 0042).
//!
//! The seed (printed) picks the kill points and victims; `CAIRN_STORM_SEED=0x…` replays
//! another, e.g. one a failure printed.

mod support;

use std::{collections::HashSet, process::Command, time::Duration};

use support::{
    KillOnDrop, Sandbox, Seeded,
    invariant::{CutOff, check_every_step, enqueue},
    seed_from, wait_for,
};

const RUNS: usize = 1_000;
const KILLS: usize = 100;
const WORKERS: usize = 2;
const DEFAULT_SEED: u64 = 0x0057_094d_c0de;

fn seed() -> u64 {
    seed_from("CAIRN_STORM_SEED", DEFAULT_SEED)
}

#[test]
fn a_storm_of_kills_never_runs_a_recorded_step_again() {
    let sandbox = Sandbox::new();
    let seed = seed();
    eprintln!("kill storm seed=0x{seed:x} (CAIRN_STORM_SEED=0x{seed:x} replays it)");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = enqueue(&sandbox, &runtime, RUNS);

    // Four runs at a time per worker: a kill cuts off few steps and a restarted worker's
    // first claim begins few, so the 100 kills come before the workload's end.
    let spawn = || {
        KillOnDrop::new(sandbox.spawn(&[
            "worker",
            "--concurrency",
            "4",
            "--max-step-recoveries",
            "1000",
        ]))
    };
    let mut workers: Vec<KillOnDrop> = (0..WORKERS).map(|_| spawn()).collect();
    let mut killed = HashSet::new();
    let mut rng = Seeded(seed | 1);
    for _ in 0..KILLS {
        // 5 to 15 starts between kills: 100 kills fit in the 3,000 steps' first executions.
        let target = sandbox.ledger_lines().len() + 5 + rng.below(11) as usize;
        wait_for("the workers to go on", Duration::from_secs(60), || {
            sandbox.ledger_lines().len() >= target
        });
        let victim = &mut workers[rng.below(WORKERS as u64) as usize];
        killed.insert(victim.id().to_string());
        victim.kill();
        *victim = spawn();
    }
    let repeated = check_every_step(
        &sandbox,
        &runtime,
        &engine,
        RUNS,
        &CutOff {
            processes: killed,
            ..CutOff::default()
        },
        &format!("seed 0x{seed:x}"),
    );
    drop(workers);
    eprintln!(
        "{RUNS} runs, {} steps, {KILLS} kills: {repeated} executions cut off by a kill and run again",
        RUNS * 3
    );
    assert!(
        repeated > 0,
        "no kill cut a step off: the storm tested nothing"
    );
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn on_postgres_a_stopped_worker_overtaken_by_another_commits_nothing_when_it_resumes() {
    if let Some(sandbox) = Sandbox::postgres() {
        zombie(&sandbox);
    }
}

/// The zombie scenario on `sandbox`'s store (see the file's docs).
fn zombie(sandbox: &Sandbox) {
    const ZOMBIE_RUNS: usize = 40;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let engine = enqueue(sandbox, &runtime, ZOMBIE_RUNS);
    // Its executions' notes too: a run the other worker has finished by the time it resumes
    // "ended elsewhere" (info), one the other still holds "lease lost" (warn).
    let zombie = KillOnDrop::new(sandbox.spawn_with(
        &["worker", "--concurrency", "40"],
        &[("CAIRN_LOG", "warn,cairn_engine::run=info")],
    ));
    let pid = zombie.id().to_string();
    let by = |pid: &str| {
        let pid = pid.to_owned();
        move |sandbox: &Sandbox| {
            sandbox
                .ledger_lines()
                .iter()
                .filter(|line| line.ends_with(&format!("|{pid}")))
                .count()
        }
    };
    // Stopped (SIGSTOP) while it holds every run, most of them mid-step; another worker takes
    // them over once their leases lapse, and begins their steps again.
    wait_for(
        "the first worker to begin every run",
        Duration::from_secs(60),
        || by(&pid)(sandbox) >= ZOMBIE_RUNS,
    );
    signal("-STOP", zombie.id());
    let other = KillOnDrop::new(sandbox.spawn(&["worker"]));
    let other_pid = other.id().to_string();
    wait_for(
        "the other worker to take over",
        Duration::from_secs(60),
        || by(&other_pid)(sandbox) >= 1,
    );
    // Resumed (SIGCONT): its steps in flight finish, and the fence must refuse their commits.
    signal("-CONT", zombie.id());
    let repeated = check_every_step(
        sandbox,
        &runtime,
        &engine,
        ZOMBIE_RUNS,
        &CutOff {
            processes: HashSet::from([pid.clone()]),
            resumed: HashSet::from([pid.clone()]),
            ..CutOff::default()
        },
        "the zombie test",
    );
    // Whichever of its writes or lease renewals finds out first (a run's end says "… lost
    // the lease on run … to another worker").
    wait_for(
        "the resumed worker to find out",
        Duration::from_secs(30),
        || {
            let log = sandbox.process_log();
            log.contains("to another worker") || log.contains("run ended elsewhere")
        },
    );
    drop((zombie, other));
    assert!(
        repeated > 0,
        "the other worker began steps the stopped one had begun"
    );
}
