//! A worker whose clock runs two hours ahead (libfaketime's `FAKETIME=+2h`) beside a worker
//! with the right time, on SQLite and on PostgreSQL. Leases and due runs are judged by the
//! store's clock (decision 0046), so the skewed worker:
//! - takes none of the runs the other worker holds mid-step (their leases are live by the
//!   store's time, though long lapsed by the skewed worker's own): every step still begins
//!   once;
//! - wakes no run early: a run the other worker parked for an hour stays asleep, though by
//!   the skewed worker's own clock it was due an hour ago;
//! - still works: it takes the runs nobody holds.
//!
//! Judged by the worker's own clock, the skewed worker takes both over at its first look.

mod support;

use std::{collections::HashMap, process::Command, time::Duration};

use cairn::{Engine, RunId, RunStatus, StartOptions};
use cairn_test_support::Prerequisite;
use serde_json::json;
use support::{KillOnDrop, Sandbox, wait_for};

/// Runs held mid-step (the `block` step waits for the go file) by the worker on time.
const HELD: usize = 6;
/// Runs left for the skewed worker, once the other is full.
const LEFT: usize = 4;
/// libfaketime's setting that puts a process's clock two hours ahead.
const AHEAD: &str = "+2h";

#[test]
fn on_sqlite_a_worker_two_hours_ahead_takes_no_live_lease_and_wakes_nothing_early() {
    if Prerequisite::Faketime.missing() {
        return;
    }
    skewed(&Sandbox::new());
}

#[test]
fn on_postgres_a_worker_two_hours_ahead_takes_no_live_lease_and_wakes_nothing_early() {
    if Prerequisite::Faketime.missing() {
        return;
    }
    if let Some(sandbox) = Sandbox::postgres() {
        skewed(&sandbox);
    }
}

/// The scenario on `sandbox`'s store (see the file's docs).
fn skewed(sandbox: &Sandbox) {
    let skew = skewed_environment();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (engine, sleeper, held) = runtime.block_on(async {
        let engine = Engine::new(sandbox.store().await, cairn_e2e::registry()).expect("engine");
        let sleeper = start(&engine, "long-sleeper", "sleeper").await;
        let mut held = Vec::new();
        for n in 0..HELD {
            held.push(start(&engine, "crash-pipeline", &format!("held{n}")).await);
        }
        (engine, sleeper, held)
    });
    // The worker on time takes them all: the sleeper parks for an hour, the rest block.
    let on_time = KillOnDrop::new(sandbox.spawn(&["worker", "--concurrency", &HELD.to_string()]));
    let on_time_pid = on_time.id().to_string();
    let status = |run: RunId| {
        runtime
            .block_on(engine.get_run(run))
            .expect("the run")
            .run
            .status
    };
    wait_for(
        "the worker on time to block every held run and park the sleeper",
        Duration::from_secs(60),
        || {
            lines(sandbox, "started", |pid| pid == on_time_pid) == HELD
                && status(sleeper) == RunStatus::Sleeping
        },
    );

    // The skewed worker: it finds only runs that look lapsed or due by its own clock, until
    // the runs left for it come; once it has begun one of them, it has looked at least once.
    let skew: Vec<(&str, &str)> = skew.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let skewed = KillOnDrop::new(sandbox.spawn_with(&["worker"], &skew));
    let skewed_pid = skewed.id().to_string();
    let left: Vec<RunId> = runtime.block_on(async {
        let mut left = Vec::new();
        for n in 0..LEFT {
            left.push(start(&engine, "three-steps", &format!("left{n}")).await);
        }
        left
    });
    wait_for(
        "the skewed worker to take the runs nobody holds",
        Duration::from_secs(60),
        || left.iter().all(|run| status(*run) == RunStatus::Succeeded),
    );
    assert!(
        lines(sandbox, "done", |pid| pid == skewed_pid) > 0,
        "the skewed worker ran none of the runs left for it"
    );
    assert_eq!(
        status(sleeper),
        RunStatus::Sleeping,
        "the skewed worker woke a run due in an hour"
    );
    assert_eq!(
        lines(sandbox, "started", |pid| pid == skewed_pid),
        0,
        "the skewed worker began a step the worker on time held under a live lease"
    );

    // Let the held runs go on: each finishes, and its blocking step began once.
    std::fs::write(sandbox.go_file(), b"go").expect("write the go file");
    wait_for("every held run to succeed", Duration::from_secs(60), || {
        held.iter().all(|run| status(*run) == RunStatus::Succeeded)
    });
    let mut began: HashMap<String, usize> = HashMap::new();
    for line in sandbox.ledger_lines() {
        if line.contains("|started|") {
            *began
                .entry(line.split('|').next().unwrap_or("").to_owned())
                .or_default() += 1;
        }
    }
    for run in &held {
        assert_eq!(
            began.get(&run.to_string()),
            Some(&1),
            "run {run}'s blocking step began once: {began:?}"
        );
    }
    assert!(
        !sandbox
            .process_log()
            .contains("lease lost to another worker"),
        "no worker lost a lease: {}",
        sandbox.process_log()
    );
    drop((on_time, skewed));
}

/// Starts a run of `workflow` tagged `tag`.
async fn start(engine: &Engine, workflow: &str, tag: &str) -> RunId {
    engine
        .start_json(workflow, json!({ "tag": tag }), StartOptions::default())
        .await
        .expect("start")
        .run_id
}

/// How many ledger lines say `what`, of a process whose pid passes `by`.
fn lines(sandbox: &Sandbox, what: &str, by: impl Fn(&str) -> bool) -> usize {
    sandbox
        .ledger_lines()
        .iter()
        .filter(|line| {
            let parts: Vec<&str> = line.split('|').collect();
            parts.get(2) == Some(&what) && parts.get(3).is_some_and(|pid| by(pid))
        })
        .count()
}

/// The environment that runs a process two hours ahead: libfaketime preloaded (into the
/// worker itself, not through the `faketime` program, whose child would outlive a kill of
/// it). Checked: `date` run with it must print a time two hours ahead.
fn skewed_environment() -> Vec<(&'static str, String)> {
    let library = libfaketime().expect(
        "faketime is installed but its libfaketime.so.1 was not found under /usr/lib or \
         /usr/local/lib: reinstall it (Debian: apt-get install --reinstall libfaketime)",
    );
    let environment = vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME", AHEAD.to_owned()),
    ];
    let output = Command::new("date")
        .arg("+%s")
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run date");
    let shifted: i64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("date +%s prints seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let ahead = shifted - i64::try_from(now).expect("seconds fit");
    assert!(
        (7_100..7_300).contains(&ahead),
        "FAKETIME={AHEAD} should put the clock two hours ahead, not {ahead} s"
    );
    environment
}

/// Where libfaketime is: Debian's multiarch directory, or another lib directory.
fn libfaketime() -> Option<std::path::PathBuf> {
    let roots = ["/usr/lib", "/usr/local/lib"];
    roots.iter().find_map(|root| {
        let direct = std::path::Path::new(root).join("faketime/libfaketime.so.1");
        if direct.exists() {
            return Some(direct);
        }
        std::fs::read_dir(root).ok()?.flatten().find_map(|entry| {
            let candidate = entry.path().join("faketime/libfaketime.so.1");
            candidate.exists().then_some(candidate)
        })
    })
}
