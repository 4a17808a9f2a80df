//! Credentials from the command line as a user drives them: a step that needs one fails with
//! `MissingCredentials` and a clear fix; `credentials set` takes values from the environment,
//! a file or stdin only; the retry then succeeds and `runs get` shows which credential (id and
//! scope) the step used; `rotate-key` re-encrypts; and the secret's bytes are nowhere in the
//! SQLite files (WAL included) or anything printed, at `RUST_LOG=trace`.

mod support;

use std::{io::Write, os::unix::fs::PermissionsExt, process::Stdio};

use serde_json::Value;
use support::Sandbox;

const SECRET: &str = "xoxb-SECRET-4f1c9a7e";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", text(out)))
}

#[test]
fn credentials_from_the_cli_resolve_per_step_and_never_show_their_value() {
    let sandbox = Sandbox::new();
    let trace = [("RUST_LOG", "trace"), ("SLACK_TOKEN", SECRET)];
    let mut printed = String::new();
    let mut run = |args: &[&str]| {
        let out = sandbox.output_with(args, &trace);
        printed.push_str(&text(&out));
        out
    };

    // No credential: the step fails once, fatally, saying what to set.
    let out = run(&[
        "run",
        "notify",
        "--input",
        r#"{"as_user":true}"#,
        "--user",
        "ada",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed = json(&out);
    let run_id = failed["runId"].as_str().expect("a run id").to_owned();
    assert_eq!(failed["error"]["kind"], "missing_credentials");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("credentials set chat --scope user") && message.contains("--user ada"),
        "{message}"
    );

    // Values never on the command line; a missing variable is named.
    let out = run(&[
        "credentials",
        "set",
        "chat",
        "--field",
        "token=plain",
        "--scope",
        "user",
        "--user",
        "ada",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("never given on the command line"),
        "{}",
        text(&out)
    );
    let out = run(&[
        "credentials",
        "set",
        "chat",
        "--field",
        "token=@env:NOT_SET_ANYWHERE",
        "--scope",
        "user",
        "--user",
        "ada",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("NOT_SET_ANYWHERE"), "{}", text(&out));
    let out = run(&[
        "credentials",
        "set",
        "chat",
        "--field",
        "token=@env:SLACK_TOKEN",
        "--scope",
        "user",
    ]);
    assert_eq!(out.status.code(), Some(2), "a user credential needs --user");

    let out = run(&[
        "credentials",
        "set",
        "chat",
        "--field",
        "token=@env:SLACK_TOKEN",
        "--scope",
        "user",
        "--user",
        "ada",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let saved = json(&out);
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(saved["holder"]["scope"], "user");
    assert_eq!(
        saved["isDefault"], true,
        "a holder's first credential is its default"
    );
    let key_file = sandbox.data_dir().join("master.key");
    let mode = std::fs::metadata(&key_file)
        .expect("a key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");

    // From stdin, for the organization.
    let mut child = sandbox
        .command(&["credentials", "set", "chat", "--field", "token=@-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"org-token-value\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = run(&["credentials", "list", "--json"]);
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["fields"], serde_json::json!(["token"]));

    // The retry resolves the user's credential; the step records its id and scope.
    let out = run(&["runs", "retry", &run_id, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["output"]["via"], id.as_str());
    let out = run(&["runs", "get", &run_id, "--json"]);
    let detail = json(&out);
    assert_eq!(detail["owner"]["user"], "ada");
    assert_eq!(
        detail["steps"][0]["credentials"],
        serde_json::json!([{"key": "chat", "id": id, "scope": "user"}])
    );
    let out = run(&["runs", "get", &run_id]);
    assert!(
        text(&out).contains(&format!("chat {id} (user scope)")),
        "{}",
        text(&out)
    );
    assert_eq!(
        sandbox.ledger_count(&format!("a token of {} characters", SECRET.len())),
        1
    );

    // Rotation: a new key file, everything still opens.
    let old_key = std::fs::read(&key_file).unwrap();
    let out = run(&["credentials", "rotate-key"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("re-encrypted 2 credentials"),
        "{}",
        text(&out)
    );
    assert_ne!(std::fs::read(&key_file).unwrap(), old_key);
    let out = run(&["run", "notify", "--input", r#"{"as_user":false}"#, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(
        json(&out)["output"]["via"],
        id.as_str(),
        "unpinned: the organization's default"
    );

    // A wrong key is named, never garbage.
    let out = sandbox.output_with(
        &[
            "run",
            "notify",
            "--input",
            r#"{"as_user":true}"#,
            "--user",
            "ada",
            "--json",
        ],
        &[("CAIRN_MASTER_KEY", &"ab".repeat(32))],
    );
    assert_eq!(
        json(&out)["error"]["kind"],
        "credential_unavailable",
        "{}",
        text(&out)
    );

    let out = run(&["credentials", "delete", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["credentials", "delete", &id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown id is the caller's mistake"
    );

    // The secret's bytes: nowhere on disk beside the sealed rows, nowhere printed.
    assert!(!printed.contains(SECRET), "printed output holds the secret");
    for entry in std::fs::read_dir(sandbox.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes
            .windows(SECRET.len())
            .any(|window| window == SECRET.as_bytes());
        assert!(!found, "{} holds the secret", path.display());
    }
}
