//! Crash recovery with real processes: `kill -9` in the middle of a run, restart, and check
//! through the side-effect ledger that no completed step ran again.

use std::time::Duration;

mod support;

use serde_json::Value;
use support::{Sandbox, wait_for};

fn lines_matching(sandbox: &Sandbox, needle: &str) -> usize {
    sandbox
        .ledger_lines()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

fn run_id_of(sandbox: &Sandbox, key: &str) -> String {
    let out = sandbox.output(&["runs", "list", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs list --json");
    runs.as_array()
        .and_then(|runs| runs.iter().find(|r| r["idempotencyKey"] == key))
        .and_then(|run| run["runId"].as_str())
        .expect("the run exists")
        .to_owned()
}

fn wait_until_succeeded(sandbox: &Sandbox, run_id: &str) -> Value {
    let mut last = Value::Null;
    wait_for("the run to succeed", Duration::from_secs(60), || {
        last = sandbox.run_json(run_id);
        last["status"] == "succeeded"
    });
    last
}

#[test]
fn a_run_killed_mid_step_finishes_on_restart_without_repeating_completed_steps() {
    let sandbox = Sandbox::new();
    let input = r#"{"tag":"crash"}"#;
    let mut first = sandbox.spawn(&[
        "run",
        "crash-pipeline",
        "--input",
        input,
        "--idempotency-key",
        "k1",
    ]);
    wait_for(
        "the blocking step to start",
        Duration::from_secs(60),
        || lines_matching(&sandbox, "block#0|started") == 1,
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    let run_id = run_id_of(&sandbox, "k1");
    assert_eq!(
        sandbox.run_json(&run_id)["status"],
        "running",
        "the killed run is unfinished"
    );

    std::fs::write(sandbox.go_file(), b"go").unwrap();
    // Restarting `run` with the same idempotency key resumes the same run once its lease lapses.
    let out = sandbox.output(&[
        "run",
        "crash-pipeline",
        "--input",
        input,
        "--idempotency-key",
        "k1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("exactly one JSON object");
    assert_eq!(result["runId"], run_id.as_str());
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"], serde_json::json!({"tag": "crash"}));

    assert_eq!(
        lines_matching(&sandbox, "record#0|done"),
        1,
        "the completed first step did not run again"
    );
    assert_eq!(
        lines_matching(&sandbox, "block#0|started"),
        2,
        "the interrupted step ran again"
    );
    assert_eq!(lines_matching(&sandbox, "block#0|done"), 1);
    assert_eq!(lines_matching(&sandbox, "record#1|done"), 1);
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["executions"], 2);
}

#[test]
fn a_worker_takes_over_a_killed_run_and_keeps_its_retry_count() {
    let sandbox = Sandbox::new();
    let mut first = sandbox.spawn(&[
        "run",
        "backoff-pipeline",
        "--input",
        r#"{"tag":"b"}"#,
        "--idempotency-key",
        "k2",
    ]);
    // The first attempt failed and its 1.5 s backoff is recorded: kill during the backoff.
    wait_for("the first attempt", Duration::from_secs(60), || {
        lines_matching(&sandbox, "flaky#0|attempt 1") == 1
    });
    let run_id = run_id_of(&sandbox, "k2");
    wait_for(
        "the failed attempt to be recorded",
        Duration::from_secs(30),
        || {
            sandbox.run_json(&run_id)["steps"][1]["attemptErrors"]
                .as_array()
                .is_some_and(|e| e.len() == 1)
        },
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");

    let mut worker = sandbox.spawn(&["worker"]);
    let run = wait_until_succeeded(&sandbox, &run_id);
    worker.kill().ok();
    worker.wait().ok();
    assert_eq!(lines_matching(&sandbox, "record#0|done"), 1);
    let attempts: Vec<_> = sandbox
        .ledger_lines()
        .into_iter()
        .filter(|l| l.contains("flaky#0"))
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts[1].contains("attempt 2"),
        "the restart continued the attempt count: {attempts:?}"
    );
    assert_eq!(run["steps"][1]["attempts"], 2);
}

#[test]
fn two_worker_processes_share_the_queue_and_run_each_step_once() {
    let sandbox = Sandbox::new();
    let total = 24;
    for n in 0..total {
        let input = format!(r#"{{"tag":"t{n}"}}"#);
        let out = sandbox.output(&["run", "three-steps", "--input", &input, "--detach"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut workers = [sandbox.spawn(&["worker"]), sandbox.spawn(&["worker"])];
    wait_for("every run to succeed", Duration::from_secs(90), || {
        let out = sandbox.output(&[
            "runs",
            "list",
            "--status",
            "succeeded",
            "--limit",
            "1000",
            "--json",
        ]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(total)
    });
    for worker in &mut workers {
        worker.kill().ok();
        worker.wait().ok();
    }
    let lines = sandbox.ledger_lines();
    assert_eq!(lines.len(), total * 3, "{lines:#?}");
    let mut steps: Vec<_> = lines
        .iter()
        .map(|l| l.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    steps.sort();
    steps.dedup();
    assert_eq!(steps.len(), total * 3, "no step executed twice: {lines:#?}");
}

#[test]
fn sigterm_lets_the_step_in_flight_finish_and_hands_the_run_over() {
    let sandbox = Sandbox::new();
    let out = sandbox.output(&[
        "run",
        "crash-pipeline",
        "--input",
        r#"{"tag":"t"}"#,
        "--detach",
    ]);
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut worker = sandbox
        .command(&["worker"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn worker");
    wait_for("the blocking step", Duration::from_secs(60), || {
        lines_matching(&sandbox, "block#0|started") == 1
    });
    let term = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    // Drain stderr on a thread (the worker keeps writing to it) and watch for the stop line.
    let stderr = worker.stderr.take().expect("piped stderr");
    let (heard_tx, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.starts_with("stopping") {
                let _ = heard_tx.send(());
            }
        }
    });
    heard
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker acknowledges SIGTERM");
    std::fs::write(sandbox.go_file(), b"go").unwrap();
    let status = worker.wait().expect("the worker exits");
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    assert_eq!(
        lines_matching(&sandbox, "block#0|done"),
        1,
        "the step in flight finished"
    );
    assert_eq!(
        lines_matching(&sandbox, "record#1"),
        0,
        "no new step started after SIGTERM"
    );
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["status"], "queued", "the run was handed back: {run}");
    assert_eq!(
        run["steps"][1]["status"], "completed",
        "the finished step was recorded"
    );

    let mut next = sandbox.spawn(&["worker"]);
    wait_until_succeeded(&sandbox, &run_id);
    next.kill().ok();
    next.wait().ok();
    assert_eq!(
        lines_matching(&sandbox, "block#0|started"),
        1,
        "the recorded step did not run again"
    );
}
