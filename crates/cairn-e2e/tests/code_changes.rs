//! Replay safety with real processes: a workflow's code changes between two processes
//! (`FIXTURE_VERSION=v1`, then `v2`: the binary replaced) while runs of it are failed or
//! parked. The side-effect ledger shows what ran again.

mod support;

use std::{process::Output, time::Duration};

use serde_json::{Value, json};
use support::{Sandbox, wait_for};

const V2: &[(&str, &str)] = &[("FIXTURE_VERSION", "v2")];
const FAIL: &[(&str, &str)] = &[("FIXTURE_FAIL", "1")];

/// The one JSON object `run --json`, `runs retry --json` and `runs rerun --json` print.
fn outcome(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "one JSON object ({err}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `workflow` under v1 with the gate closed: it fails at the gate. Returns the run id.
fn failed_under_v1(sandbox: &Sandbox, workflow: &str, tag: &str) -> String {
    let input = json!({ "tag": tag }).to_string();
    let out = sandbox.output_with(&["run", workflow, "--input", &input, "--json"], FAIL);
    assert_eq!(out.status.code(), Some(1), "the run failed: {out:?}");
    let run = outcome(&out);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the gate is closed")),
        "{run}"
    );
    run["runId"].as_str().expect("a run id").to_owned()
}

#[test]
fn a_retry_under_reordered_code_fails_with_non_determinism_and_runs_nothing_again() {
    let sandbox = Sandbox::new();
    let run_id = failed_under_v1(&sandbox, "reorder", "r");
    let before = sandbox.ledger_lines();
    assert_eq!(sandbox.ledger_count("record#0|done"), 1);
    assert_eq!(sandbox.ledger_count("gate#0|done"), 1);

    let out = sandbox.output_with(&["runs", "retry", &run_id, "--json"], V2);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let retried = outcome(&out);
    assert_eq!(retried["status"], "failed", "{retried}");
    let error = &retried["error"];
    assert_eq!(error["kind"], "non_determinism", "{error}");
    let message = error["message"].as_str().expect("a message");
    assert!(
        message.contains(
            "at call 0: the history has record#0 (action record) but the workflow now calls gate#0 (action gate)"
        ),
        "the position and both calls: {message}"
    );
    assert!(
        message.contains(&format!("runs rerun {run_id} --from record#0")),
        "what to do: {message}"
    );
    let shown = sandbox.run_json(&run_id);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["error"], *error, "`runs get --json` shows the error");
    assert_eq!(
        sandbox.ledger_lines(),
        before,
        "nothing ran again: neither the recorded record#0 nor the failed gate#0"
    );
}

#[test]
fn a_retry_under_code_with_a_call_appended_succeeds_without_repeating_recorded_steps() {
    let sandbox = Sandbox::new();
    let run_id = failed_under_v1(&sandbox, "append", "a");

    let out = sandbox.output_with(&["runs", "retry", &run_id, "--json"], V2);
    assert!(out.status.success(), "{out:?}");
    let retried = outcome(&out);
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["output"], json!({"tag": "a +extra"}));
    assert_eq!(
        sandbox.ledger_count("record#0|done"),
        1,
        "the completed step did not run again"
    );
    assert_eq!(
        sandbox.ledger_count("gate#0|done"),
        2,
        "the failed step ran again, as a retry does"
    );
    assert_eq!(
        sandbox.ledger_count("extra#0|done"),
        1,
        "the appended call ran"
    );
}

#[test]
fn a_changed_input_fails_the_retry_and_rerun_from_the_step_executes_the_new_code() {
    let sandbox = Sandbox::new();
    let run_id = failed_under_v1(&sandbox, "changed-input", "c");
    let before = sandbox.ledger_lines();

    let out = sandbox.output_with(&["runs", "retry", &run_id, "--json"], V2);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = outcome(&out)["error"].clone();
    assert_eq!(error["kind"], "non_determinism", "{error}");
    let message = error["message"].as_str().expect("a message");
    assert!(
        message.contains("at step record#1")
            && message.contains(r#"{"tag":"c"}"#)
            && message.contains(r#"{"tag":"c (v2)"}"#),
        "the step and both inputs: {message}"
    );
    let fix = format!("runs rerun {run_id} --from record#1");
    assert!(message.contains(&fix), "what to do: {message}");
    assert_eq!(sandbox.ledger_lines(), before, "nothing ran again");

    let out = sandbox.output_with(
        &["runs", "rerun", &run_id, "--from", "record#1", "--json"],
        V2,
    );
    assert!(out.status.success(), "{out:?}");
    let rerun = outcome(&out);
    assert_eq!(rerun["status"], "succeeded", "{rerun}");
    assert_eq!(rerun["output"], json!({"tag": "c (v2)"}));
    let new_id = rerun["runId"].as_str().expect("the new run's id");
    assert_ne!(new_id, run_id, "a new run");
    let new_lines: Vec<String> = sandbox
        .ledger_lines()
        .into_iter()
        .filter(|line| line.starts_with(new_id))
        .map(|line| line.split('|').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        new_lines,
        ["record#1", "gate#0"],
        "the step before record#1 was copied, not executed"
    );
}

/// `runs list --json` with `args`: the listed run ids.
fn listed(sandbox: &Sandbox, args: &[&str]) -> Vec<String> {
    let mut all = vec!["runs", "list", "--json"];
    all.extend_from_slice(args);
    let out = sandbox.output(&all);
    assert!(out.status.success(), "{out:?}");
    let runs: Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    runs.as_array()
        .expect("a JSON array")
        .iter()
        .map(|run| run["runId"].as_str().expect("an id").to_owned())
        .collect()
}

/// Starts `patch` under `env` and kills the process once the run is parked in its sleep.
fn parked_patch_run(sandbox: &Sandbox, tag: &str, env: &[(&str, &str)]) -> String {
    let input = json!({ "tag": tag }).to_string();
    let key = format!("patch-{tag}");
    let mut process = sandbox.spawn_with(
        &["run", "patch", "--input", &input, "--idempotency-key", &key],
        env,
    );
    let mut run_id = String::new();
    wait_for(
        "the run to park in its sleep",
        Duration::from_secs(60),
        || {
            let out = sandbox.output(&["runs", "list", "--json"]);
            let runs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let run = runs.as_array().and_then(|runs| {
                runs.iter()
                    .find(|run| run["idempotencyKey"] == key.as_str())
            });
            if let Some(run) = run {
                run_id = run["runId"].as_str().unwrap_or_default().to_owned();
                return run["status"] == "sleeping";
            }
            false
        },
    );
    process.kill().expect("kill -9");
    process.wait().expect("reap");
    run_id
}

#[test]
fn a_run_parked_under_old_code_wakes_under_patched_code_and_finishes_on_the_old_path() {
    let sandbox = Sandbox::new();
    let old = parked_patch_run(&sandbox, "old", &[]);
    let new = parked_patch_run(&sandbox, "new", V2);
    assert_eq!(
        sandbox.ledger_count("extra#0|done"),
        1,
        "the new run's new path"
    );

    // Which unended runs lack the marker, or have it: what retiring the patch looks at.
    let patch = ["--workflow", "patch"];
    let without = [&patch[..], &["--without-patch", "extra-step"]].concat();
    let with = [&patch[..], &["--with-patch", "extra-step"]].concat();
    assert_eq!(listed(&sandbox, &without), std::slice::from_ref(&old));
    assert_eq!(listed(&sandbox, &with), std::slice::from_ref(&new));

    let mut worker = sandbox.spawn_with(&["worker"], V2);
    for run in [&old, &new] {
        wait_for("the run to finish", Duration::from_secs(60), || {
            sandbox.run_json(run)["status"] == "succeeded"
        });
    }
    let worker_pid = worker.id().to_string();
    worker.kill().ok();
    worker.wait().ok();

    let (old_run, new_run) = (sandbox.run_json(&old), sandbox.run_json(&new));
    assert_eq!(old_run["output"], json!({"tag": "old"}), "the old path");
    assert_eq!(
        new_run["output"],
        json!({"tag": "new +extra"}),
        "the new path"
    );
    let kinds = |run: &Value| -> Vec<String> {
        run["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|step| step["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(kinds(&old_run), ["action", "sleep", "action"]);
    assert_eq!(
        kinds(&new_run),
        ["action", "patch", "action", "sleep", "action"]
    );
    let lines = sandbox.ledger_lines();
    let of = |run: &str| -> Vec<&String> { lines.iter().filter(|l| l.starts_with(run)).collect() };
    assert_eq!(
        of(&old).len(),
        2,
        "record#0 once, record#1 once: {lines:#?}"
    );
    assert!(
        of(&old)[1].contains("record#1|done") && of(&old)[1].ends_with(&worker_pid),
        "the old run finished in the v2 worker: {lines:#?}"
    );
    assert_eq!(sandbox.ledger_count("extra#0|done"), 1, "{lines:#?}");

    assert!(listed(&sandbox, &without).is_empty(), "no unended run left");
    assert_eq!(
        listed(
            &sandbox,
            &[&without[..], &["--status", "succeeded"]].concat()
        ),
        [old],
        "--status looks at ended runs too"
    );
    let unnamed = sandbox.output(&["runs", "list", "--without-patch", "extra-step"]);
    assert_eq!(unnamed.status.code(), Some(2), "{unnamed:?}");
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("--workflow"),
        "{unnamed:?}"
    );
}
