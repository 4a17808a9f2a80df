//! Runs recorded before call positions were kept (their events have no `call`) replay with
//! today's code, key by key: a failed run retried, a run parked in a sleep woken, a run cut
//! off mid-step resumed, none executing a completed step again. The data file was written
//! by the fixture of that time: see `tests/data/before-call-positions/README.md`.

mod support;

use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use support::{Sandbox, wait_for};

/// A sandbox whose data dir holds a copy of the old data file (opening it migrates it).
fn sandbox_with_old_data() -> Sandbox {
    let sandbox = Sandbox::new();
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/before-call-positions")
        .join("cairn.db");
    std::fs::create_dir_all(sandbox.data_dir()).expect("data dir");
    std::fs::copy(&old, sandbox.data_dir().join("cairn.db")).expect("copy the old data file");
    sandbox
}

/// The id of the run started with idempotency key `key`.
fn run_by_key(sandbox: &Sandbox, key: &str) -> String {
    let out = sandbox.output(&["runs", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs list --json");
    runs.as_array()
        .and_then(|runs| runs.iter().find(|run| run["idempotencyKey"] == key))
        .and_then(|run| run["runId"].as_str())
        .unwrap_or_else(|| panic!("the old data has a run keyed {key}: {runs}"))
        .to_owned()
}

/// The keys of the steps of `run_id` that the ledger shows executed (today: the ledger
/// starts empty, so every line is an execution by today's code).
fn executed(sandbox: &Sandbox, run_id: &str) -> Vec<String> {
    sandbox
        .ledger_lines()
        .iter()
        .filter(|line| line.starts_with(run_id))
        .map(|line| {
            line.split('|')
                .take(3)
                .skip(1)
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn runs_recorded_before_call_positions_replay_with_todays_code() {
    let sandbox = sandbox_with_old_data();
    let failed = run_by_key(&sandbox, "old-failed");
    let parked = run_by_key(&sandbox, "old-parked");
    let cut_off = run_by_key(&sandbox, "old-cut-off");
    for (run, status) in [
        (&failed, "failed"),
        (&parked, "sleeping"),
        (&cut_off, "running"),
    ] {
        let detail = sandbox.run_json(run);
        assert_eq!(
            detail["status"], status,
            "as the old code left it: {detail}"
        );
        let events = detail["events"].as_array().expect("the log");
        assert!(
            events.iter().all(|record| record.get("call").is_none()
                && record["event"].get("call").is_none()),
            "recorded without call positions: {events:#?}"
        );
    }

    let out = sandbox.output(&["runs", "retry", &failed, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let retried: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["output"], json!({"tag": "old-failed"}));
    assert_eq!(
        executed(&sandbox, &failed),
        ["gate#0|done", "record#1|done"],
        "the recorded record#0 was replayed, the failed gate and the rest executed"
    );

    std::fs::write(sandbox.go_file(), b"go").expect("go file");
    let mut worker = sandbox.spawn(&["worker"]);
    for run in [&parked, &cut_off] {
        wait_for("the old run to finish", Duration::from_secs(60), || {
            sandbox.run_json(run)["status"] == "succeeded"
        });
    }
    worker.kill().ok();
    worker.wait().ok();
    assert_eq!(executed(&sandbox, &parked), ["record#1|done"]);
    assert_eq!(
        executed(&sandbox, &cut_off),
        ["block#0|started", "block#0|done", "record#1|done"],
        "the step cut off ran again, the completed one did not"
    );
    assert_eq!(
        sandbox.run_json(&parked)["output"],
        json!({"tag": "old-parked"})
    );
    let cut = sandbox.run_json(&cut_off);
    assert_eq!(cut["output"], json!({"tag": "old-cut-off"}));
    assert_eq!(
        cut["steps"][1]["attemptErrors"][0]["error"]["kind"], "interrupted",
        "the old attempt cut off is recorded as interrupted: {cut}"
    );
}
