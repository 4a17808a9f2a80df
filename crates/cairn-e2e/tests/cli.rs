//! The embedded CLI as a user drives it: output formats, exit codes, clear errors for bad
//! input, retry and rerun from the command line.

mod support;

use serde_json::Value;
use support::Sandbox;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not one JSON value ({err}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn run_json_prints_one_object_and_runs_get_shows_every_step() {
    let sandbox = Sandbox::new();
    let out = sandbox.output(&["run", "three-steps", "--input", r#"{"tag":"a"}"#, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result = json(&out);
    let keys: Vec<_> = result.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["error", "output", "runId", "status"]);
    assert_eq!(result["status"], "succeeded");
    let run_id = result["runId"].as_str().unwrap();

    let run = sandbox.run_json(run_id);
    assert_eq!(run["workflow"], "three-steps");
    assert_eq!(run["input"], serde_json::json!({"tag": "a"}));
    let steps = run["steps"].as_array().unwrap();
    let keys: Vec<_> = steps.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["record#0", "record#1", "record#2"]);
    for step in steps {
        for field in [
            "kind",
            "status",
            "attempts",
            "input",
            "output",
            "error",
            "startedAt",
            "finishedAt",
            "durationMs",
        ] {
            assert!(step.get(field).is_some(), "step has {field}: {step}");
        }
        assert_eq!(step["status"], "completed");
    }

    let out = sandbox.output(&["runs", "list", "--workflow", "three-steps", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
    let out = sandbox.output(&["runs", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(run_id),
        "the table lists the run"
    );
    let out = sandbox.output(&["runs", "list", "--status", "succeeded"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(run_id),
        "an ended status lists it"
    );
    let out = sandbox.output(&["runs", "list", "--status", "running"]);
    let none = String::from_utf8_lossy(&out.stdout);
    assert!(
        none.contains("no runs match") && !none.contains(run_id),
        "an empty filtered listing says the filter matched nothing: {none}"
    );
    let out = sandbox.output(&["runs", "get", run_id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("record#2"));
    let out = sandbox.output(&["workflows", "list", "--json"]);
    let slugs: Vec<_> = json(&out)["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].clone())
        .collect();
    assert!(slugs.contains(&Value::from("three-steps")));
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["run", "no-such-workflow", "--input", "{}"],
            "unknown workflow \"no-such-workflow\"",
        ),
        (
            &["run", "three-steps", "--input", "{not json"],
            "--input is not valid JSON",
        ),
        (
            &["run", "three-steps", "--input", r#"{"tag": 5}"#],
            "/tag: 5 is not of type \"string\"",
        ),
        (
            &[
                "run",
                "three-steps",
                "--input",
                r#"{"tag":"long"}"#,
                "--max-payload-bytes",
                "5",
            ],
            "over the payload limit of 5 bytes",
        ),
        (
            &["runs", "get", "0193a6c4-0000-7000-8000-000000000000"],
            "not found",
        ),
        (&["runs", "get", "not-an-id"], "is not a run id"),
    ];
    for (args, expected) in cases {
        let out = sandbox.output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in {}",
            stderr(&out)
        );
    }
    let out = sandbox.output(&["runs", "list", "--json"]);
    assert_eq!(
        json(&out),
        serde_json::json!([]),
        "bad input created no run"
    );
}

#[test]
fn retry_replays_a_failed_run_and_rerun_forks_from_a_step() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .command(&["run", "gated", "--input", r#"{"tag":"g"}"#, "--json"])
        .env("FIXTURE_FAIL", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let failed = json(&out);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["step"], "gate#0");
    let run_id = failed["runId"].as_str().unwrap().to_owned();

    let out = sandbox.output(&["runs", "retry", &run_id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["status"], "succeeded");
    let count = |needle: &str| {
        sandbox
            .ledger_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(count("record#0"), 1, "retry skipped the completed step");
    assert_eq!(count("gate#0"), 2);

    let out = sandbox.output(&["runs", "rerun", &run_id, "--from", "record#1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fork_id = json(&out)["runId"].as_str().unwrap().to_owned();
    assert_ne!(fork_id, run_id);
    let fork = sandbox.run_json(&fork_id);
    assert_eq!(fork["forkedFrom"]["runId"], run_id.as_str());
    assert_eq!(fork["forkedFrom"]["step"], "record#1");
    assert_eq!(
        (count("record#0"), count("gate#0"), count("record#1")),
        (1, 2, 2)
    );

    let out = sandbox.output(&["runs", "cancel", &run_id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already ended (succeeded)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_detached_run_is_canceled_before_a_worker_takes_it() {
    let sandbox = Sandbox::new();
    let out = sandbox.output(&[
        "run",
        "three-steps",
        "--input",
        r#"{"tag":"c"}"#,
        "--detach",
    ]);
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(sandbox.run_json(&run_id)["status"], "queued");
    let out = sandbox.output(&["runs", "cancel", &run_id, "--reason", "not needed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = sandbox.run_json(&run_id);
    assert_eq!(run["status"], "canceled");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not needed")
    );
}
