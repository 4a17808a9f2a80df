//! Durable waits with real processes: a sleeping run survives `kill -9`; a waiting run is
//! resumed from another process through the CLI.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Sandbox, wait_for};

fn count(sandbox: &Sandbox, needle: &str) -> usize {
    sandbox
        .ledger_lines()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

fn only_run_id(sandbox: &Sandbox) -> String {
    let out = sandbox.output(&["runs", "list", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs list --json");
    runs[0]["runId"].as_str().expect("one run").to_owned()
}

#[test]
fn a_sleeping_run_killed_with_kill_9_wakes_in_a_new_worker() {
    let sandbox = Sandbox::new();
    let started = Instant::now();
    let mut first = sandbox.spawn(&["run", "sleeper", "--input", r#"{"tag":"z"}"#]);
    wait_for("the first step", Duration::from_secs(60), || {
        count(&sandbox, "record#0|done") == 1
    });
    let run_id = only_run_id(&sandbox);
    wait_for("the run to park", Duration::from_secs(30), || {
        sandbox.run_json(&run_id)["status"] == "sleeping"
    });
    first.kill().expect("kill -9");
    first.wait().expect("reap");

    let mut worker = sandbox.spawn(&["worker"]);
    wait_for("the run to finish", Duration::from_secs(60), || {
        sandbox.run_json(&run_id)["status"] == "succeeded"
    });
    worker.kill().ok();
    worker.wait().ok();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the run slept its 2 s"
    );
    assert_eq!(
        count(&sandbox, "record#0|done"),
        1,
        "the step before the sleep did not run again"
    );
    assert_eq!(count(&sandbox, "record#1|done"), 1);
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["steps"][1]["kind"], "sleep");
    assert_eq!(run["steps"][1]["status"], "completed");
}

#[test]
fn a_waiting_run_is_resumed_from_another_process() {
    let sandbox = Sandbox::new();
    let (runner, hook) = sandbox.start_approval("deal");
    let token = hook["token"].as_str().expect("a token").to_owned();
    let run_id = hook["runId"].as_str().expect("a run").to_owned();
    wait_for("the run to park", Duration::from_secs(30), || {
        sandbox.run_json(&run_id)["status"] == "waiting"
    });

    let bad = sandbox.output(&[
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":"yes"}"#,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("/approved"),
        "the error names the path: {stderr}"
    );
    assert_eq!(
        sandbox.run_json(&run_id)["status"],
        "waiting",
        "a bad payload leaves the run waiting"
    );
    let unknown = sandbox.output(&["hooks", "resume", "hk_unknown", "--payload", "{}"]);
    assert_eq!(unknown.status.code(), Some(2));

    let good = sandbox.output(&[
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":true}"#,
    ]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let again = sandbox.output(&[
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":false}"#,
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("resumed"),
        "second resume is refused"
    );

    let out = runner.wait_with_output();
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"]["tag"], "deal approved=true");
    assert_eq!(count(&sandbox, "record#0|done"), 1);
}
