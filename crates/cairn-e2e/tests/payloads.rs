//! Payloads as large as the limit through the real CLI: an operating system caps one argument
//! near 128 KiB, so `--input` and `hooks resume --payload` also take `@path` (a file) and `-`
//! (stdin). At the limit (1 MiB by default) a payload is accepted; one byte over, the command
//! exits 2 naming the limit and changes nothing.

mod support;

use std::{
    io::Write,
    process::{Output, Stdio},
};

use serde_json::{Value, json};
use support::Sandbox;

/// The default payload limit, which the commands below do not change.
const LIMIT: usize = 1024 * 1024;

/// Compact JSON of exactly `size` bytes: `shape` given a padding string of the right length.
fn json_of_size(size: usize, shape: impl Fn(String) -> Value) -> String {
    let frame = serde_json::to_string(&shape(String::new())).expect("serialize");
    let text = serde_json::to_string(&shape("x".repeat(size - frame.len()))).expect("serialize");
    assert_eq!(text.len(), size);
    text
}

/// Runs the fixture with `bytes` on its stdin.
fn with_stdin(sandbox: &Sandbox, args: &[&str], bytes: Vec<u8>) -> Output {
    let mut child = sandbox
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fixture");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let output = child.wait_with_output().expect("wait for fixture");
    writer.join().expect("writer").expect("write stdin");
    output
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn runs(sandbox: &Sandbox) -> usize {
    let out = sandbox.output(&["runs", "list", "--limit", "1000", "--json"]);
    assert!(out.status.success(), "runs list: {}", stderr(&out));
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs list --json");
    runs.as_array().expect("an array").len()
}

/// The limit as the error message states it.
fn names_the_limit(out: &Output) -> bool {
    stderr(out).contains(&format!("over the payload limit of {LIMIT} bytes"))
}

#[test]
fn an_input_at_the_limit_is_accepted_and_one_byte_over_creates_nothing() {
    let sandbox = Sandbox::new();
    let missing = sandbox.dir.path().join("missing.json");
    let out = sandbox.output(&[
        "run",
        "three-steps",
        "--input",
        &format!("@{}", missing.display()),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read --input file") && stderr(&out).contains("missing.json"),
        "the error names the option and the file: {}",
        stderr(&out)
    );
    assert!(
        !sandbox.data_dir().exists(),
        "an unreadable file changes nothing"
    );

    let at_limit = json_of_size(LIMIT, |tag| json!({ "tag": tag }));
    let file = sandbox.dir.path().join("input.json");
    std::fs::write(&file, &at_limit).expect("write the input file");
    let file_arg = format!("@{}", file.display());
    let out = sandbox.output(&["run", "three-steps", "--input", &file_arg, "--detach"]);
    assert!(out.status.success(), "at the limit: {}", stderr(&out));
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let input = &sandbox.run_json(&run_id)["input"];
    assert_eq!(serde_json::to_string(input).expect("serialize"), at_limit);

    let over = json_of_size(LIMIT + 1, |tag| json!({ "tag": tag }));
    let args = ["run", "three-steps", "--input", "-", "--detach"];
    let out = with_stdin(&sandbox, &args, over.into_bytes());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(names_the_limit(&out), "{}", stderr(&out));
    assert_eq!(runs(&sandbox), 1, "one byte over creates no run");

    let out = with_stdin(&sandbox, &args, at_limit.into_bytes());
    assert!(
        out.status.success(),
        "at the limit from stdin: {}",
        stderr(&out)
    );
    assert_eq!(runs(&sandbox), 2);
}

#[test]
fn a_hook_payload_one_byte_over_leaves_the_hook_pending_and_one_at_the_limit_resumes_it() {
    let sandbox = Sandbox::new();
    let (runner, hook) = sandbox.start_approval("big");
    let token = hook["token"].as_str().expect("a token").to_owned();
    let payload = |size| json_of_size(size, |note| json!({ "approved": true, "note": note }));

    let file = sandbox.dir.path().join("payload.json");
    std::fs::write(&file, payload(LIMIT + 1)).expect("write the payload file");
    let file_arg = format!("@{}", file.display());
    let out = sandbox.output(&["hooks", "resume", &token, "--payload", &file_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(names_the_limit(&out), "{}", stderr(&out));
    let out = sandbox.output(&["hooks", "list", "--json"]);
    let pending: Value = serde_json::from_slice(&out.stdout).expect("hooks list --json");
    assert_eq!(
        pending[0]["token"],
        token.as_str(),
        "the hook is still listed"
    );
    assert_eq!(pending[0]["state"], "pending", "and still pending");

    let args = ["hooks", "resume", &token, "--payload", "-"];
    let out = with_stdin(&sandbox, &args, payload(LIMIT).into_bytes());
    assert!(out.status.success(), "at the limit: {}", stderr(&out));
    let out = runner.wait_with_output();
    let result: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"]["tag"], "big approved=true");
}
