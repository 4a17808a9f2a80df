//! A panicking workflow body and crashing steps, with real processes: a panic fails its run
//! once (and reads as one line), a crash is an interrupted attempt that costs no retry, and
//! a step that takes its process down every time is given up on.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Sandbox, wait_for};

/// `run <workflow> --detach` with `{"tag": tag}`: the run's id.
fn detached(sandbox: &Sandbox, workflow: &str, tag: &str) -> String {
    let input = json!({ "tag": tag }).to_string();
    let out = sandbox.output(&["run", workflow, "--input", &input, "--detach"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// How many times the body of run `run_id` was executed (the panicky body's ledger lines).
fn body_executions(sandbox: &Sandbox, run_id: &str) -> usize {
    sandbox.ledger_count(&format!("{run_id}|body|executed"))
}

/// Asserts that `stderr` reports the panic in one line and has no Rust panic report.
fn one_line_panic_report(stderr: &str) {
    for noise in [
        "panicked at",
        "thread '",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        assert!(!stderr.contains(noise), "no {noise:?} in: {stderr}");
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("blew up")).collect();
    assert_eq!(lines.len(), 1, "one line names the panic: {stderr}");
    assert!(
        lines[0].contains("workflow panicky panicked: the body of panicky blew up on p"),
        "{stderr}"
    );
}

#[test]
fn a_panicking_body_fails_its_run_once_with_a_one_line_report() {
    let sandbox = Sandbox::new();
    let out = sandbox.output(&["run", "panicky", "--input", r#"{"tag":"p"}"#]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    one_line_panic_report(&String::from_utf8_lossy(&out.stderr));
    let run_id = sandbox.output(&["runs", "list", "--json"]).stdout;
    let runs: Value = serde_json::from_slice(&run_id).expect("runs list --json");
    let run_id = runs[0]["runId"].as_str().expect("the run").to_owned();
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "panic", "{run}");
    let message = run["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("workflow panicky panicked: the body of panicky blew up on p"),
        "names the workflow and the message: {message}"
    );
    assert_eq!(body_executions(&sandbox, &run_id), 1);
    let text = sandbox.output(&["runs", "get", &run_id]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("blew up on p"),
        "`runs get` shows it: {text:?}"
    );

    let retry = sandbox.output(&["runs", "retry", &run_id]);
    assert_eq!(retry.status.code(), Some(1), "{retry:?}");
    one_line_panic_report(&String::from_utf8_lossy(&retry.stderr));
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["kind"], "panic");
    assert_eq!(
        body_executions(&sandbox, &run_id),
        2,
        "the retry executed the body once more, and only once"
    );
    assert_eq!(
        sandbox.ledger_count(&format!("{run_id}|record#0|done")),
        1,
        "the recorded step was replayed"
    );
}

#[test]
fn a_worker_fails_a_panicking_run_once_and_goes_on_with_other_runs() {
    let sandbox = Sandbox::new();
    let panicking = detached(&sandbox, "panicky", "p");
    let before: Vec<String> = (0..3)
        .map(|n| detached(&sandbox, "three-steps", &format!("before-{n}")))
        .collect();
    let mut worker = sandbox.spawn(&["worker"]);
    let ended = |run: &str| {
        let status = sandbox.run_json(run)["status"].clone();
        status == "succeeded" || status == "failed"
    };
    wait_for("the runs to end", Duration::from_secs(60), || {
        ended(&panicking) && before.iter().all(|run| ended(run))
    });
    // Runs started after the panic are executed too: the worker went on.
    let after: Vec<String> = (0..3)
        .map(|n| detached(&sandbox, "three-steps", &format!("after-{n}")))
        .collect();
    wait_for("the later runs to end", Duration::from_secs(60), || {
        after.iter().all(|run| ended(run))
    });
    worker.kill().ok();
    worker.wait().ok();

    for run in before.iter().chain(&after) {
        assert_eq!(sandbox.run_json(run)["status"], "succeeded");
    }
    let run = sandbox.run_json(&panicking);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["kind"], "panic");
    assert_eq!(run["executions"], 1, "{run}");
    assert_eq!(body_executions(&sandbox, &panicking), 1);
    let log = sandbox.process_log();
    assert!(!log.contains("panicked at"), "no panic report: {log}");
}

#[test]
fn a_step_cut_off_by_kill_9_is_interrupted_and_costs_no_retry() {
    let sandbox = Sandbox::new();
    let args = [
        "run",
        "fragile-pipeline",
        "--input",
        r#"{"tag":"f"}"#,
        "--idempotency-key",
        "f",
        "--json",
    ];
    let mut first = sandbox.spawn(&args);
    wait_for("the fragile step", Duration::from_secs(60), || {
        sandbox.ledger_count("fragile#0|attempt 1") == 1
    });
    let out = sandbox.output(&["runs", "list", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs list --json");
    let run_id = runs[0]["runId"].as_str().expect("the run").to_owned();
    wait_for(
        "the attempt to be shown in flight",
        Duration::from_secs(30),
        || sandbox.run_json(&run_id)["steps"][1]["status"] == "running",
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    std::fs::write(sandbox.go_file(), b"go").expect("go file");

    // The step's retry policy allows 2 attempts: the crash and the transient failure after
    // it would use both if the crash counted.
    let out = sandbox.output(&args);
    assert!(out.status.success(), "{out:?}");
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let step = &run["steps"][1];
    let kinds: Vec<&str> = step["attemptErrors"]
        .as_array()
        .expect("attempt errors")
        .iter()
        .map(|e| e["error"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["interrupted", "action"], "{step}");
    let interrupted = step["attemptErrors"][0]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        interrupted.contains("not counted against the retry policy"),
        "{interrupted}"
    );
    assert_eq!(sandbox.ledger_count("record#0|done"), 1);
    assert_eq!(
        sandbox.ledger_count("fragile#0|attempt"),
        3,
        "{:#?}",
        sandbox.ledger_lines()
    );
    assert_eq!(sandbox.ledger_count("fragile#0|done"), 1);
    let text = sandbox.output(&["runs", "get", &run_id]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("interrupted"),
        "`runs get` shows the interrupted attempt: {text:?}"
    );
}

#[test]
fn a_step_that_takes_its_process_down_every_time_fails_its_run_after_the_recovery_limit() {
    let sandbox = Sandbox::new();
    let args = [
        "run",
        "poison-pill",
        "--input",
        r#"{"tag":"x"}"#,
        "--idempotency-key",
        "pill",
        "--max-step-recoveries",
        "2",
        "--json",
    ];
    let mut crashes = 0;
    let ended = loop {
        let out = sandbox.output(&args);
        match out.status.code() {
            Some(_) => break out,
            // Aborted by the step: the next `run` with the key resumes the same run.
            None => crashes += 1,
        }
        assert!(crashes <= 5, "the poison pill was never given up on");
    };
    assert_eq!(ended.status.code(), Some(1), "{ended:?}");
    let run: Value = serde_json::from_slice(&ended.stdout).expect("one JSON object");
    assert_eq!(run["status"], "failed", "{run}");
    let error = &run["error"];
    assert_eq!(error["kind"], "recoveries", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("step poison#0 was interrupted 2 times")
            && message.contains("max_step_recoveries"),
        "names the step and the count: {message}"
    );
    assert_eq!(
        sandbox.ledger_count("poison#0|aborting"),
        crashes,
        "every crash was the step's"
    );
    // The first crash of a fresh execution leaves no trace (a fast step's start is written
    // with its outcome, decision 0007); every execution after it writes the start first, so
    // the next two crashes are the two interruptions the limit allows.
    assert_eq!(crashes, 3, "given up after the limit");
    assert_eq!(sandbox.ledger_count("record#0|done"), 1);
}
