//! Credentials from the command line as a user drives them: a step that needs one fails with
//! `MissingCredentials` and a clear fix; `credentials set` takes values from the environment,
//! a file or stdin only; the retry then succeeds and `runs get` shows which credential (id and
//! scope) the step used; `rotate-key` re-encrypts; and the secret's bytes are nowhere in the
//! SQLite files (WAL included) or anything printed, at `CAIRN_LOG=trace`.

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
    let printed = scenario(&sandbox);
    assert!(!printed.contains(SECRET), "printed output holds the secret");
    // The secret's bytes: in no file of the data dir (the database, its WAL, the key file).
    for entry in std::fs::read_dir(sandbox.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes
            .windows(SECRET.len())
            .any(|window| window == SECRET.as_bytes());
        assert!(!found, "{} holds the secret", path.display());
    }
}

#[test]
fn on_postgresql_the_secret_is_in_no_dump() {
    let Some(sandbox) = Sandbox::postgres() else {
        return;
    };
    let printed = scenario(&sandbox);
    assert!(!printed.contains(SECRET), "printed output holds the secret");
    let (url, schema) = sandbox.postgres_target().expect("a PostgreSQL sandbox");
    let out = std::process::Command::new(pg_dump())
        .args(["--data-only", "--schema", &schema, &url])
        .output()
        .expect("run pg_dump");
    assert!(out.status.success(), "pg_dump: {}", text(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        dump.contains("credentials"),
        "the dump has the credentials table"
    );
    let hex: String = SECRET.bytes().map(|byte| format!("{byte:02x}")).collect();
    assert!(
        !dump.contains(SECRET) && !dump.contains(&hex),
        "the dump holds the secret"
    );
}

/// `pg_dump` from PATH, else from the installed PostgreSQL's directory.
fn pg_dump() -> std::path::PathBuf {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pg_dump"))
        .find(|path| path.exists());
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pg_dump"))
            .find(|path| path.exists())
    });
    on_path
        .or(installed)
        .expect("pg_dump (PostgreSQL's client programs) is installed where the server is")
}

/// The CLI scenario on `sandbox`; returns everything the commands printed.
fn scenario(sandbox: &Sandbox) -> String {
    // Every log line on (the CLI reads CAIRN_LOG; RUST_LOG for good measure).
    let trace = [
        ("CAIRN_LOG", "trace"),
        ("RUST_LOG", "trace"),
        ("SLACK_TOKEN", SECRET),
    ];
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

    assert!(
        printed.contains("credentials resolved") && printed.contains("Secret([redacted])"),
        "the commands logged at debug level, the resolved credentials with their values redacted"
    );
    printed
}
