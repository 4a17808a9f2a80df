//! The CLI as a client of a running `serve` (`--server URL`, `CAIRN_SERVER`): the same
//! stdout and exit codes as the same commands run locally on the server's SQLite file, live
//! step progress from the event stream, API keys from `CAIRN_API_KEY`, clear errors when the
//! server refuses the key or is not there, and no store opened by the client.

mod support;

use std::{
    process::{Output, Stdio},
    time::Duration,
};

use cairn_test_support::signing::github_signature;
use serde_json::{Value, json};
use support::{KillOnDrop, Sandbox, Served, wait_for};

/// Runs the fixture with `args`, against `served` when given (`--server`), else locally.
fn cli(sandbox: &Sandbox, served: Option<&Served>, args: &[&str]) -> Output {
    let mut command = match served {
        Some(served) => {
            let url = served.url();
            let mut full = vec!["--server", url.as_str()];
            full.extend_from_slice(args);
            sandbox.command(&full)
        }
        None => sandbox.command(args),
    };
    command.output().expect("run the fixture")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn parsed(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", stdout(output), stderr(output)))
}

/// Runs `args` remotely and locally and asserts the same exit code and stdout; returns the
/// remote output.
fn same_as_local(sandbox: &Sandbox, served: &Served, args: &[&str]) -> Output {
    let remote = cli(sandbox, Some(served), args);
    let local = cli(sandbox, None, args);
    assert_eq!(
        (code(&remote), stdout(&remote)),
        (code(&local), stdout(&local)),
        "`{}` over HTTP and locally; stderr over HTTP: {}",
        args.join(" "),
        stderr(&remote)
    );
    remote
}

/// `{runId, …}` without the run id, which differs between two runs.
fn without_id(mut outcome: Value) -> Value {
    outcome
        .as_object_mut()
        .expect("an object")
        .remove("runId")
        .expect("a runId");
    outcome
}

#[test]
fn runs_over_http_print_and_exit_as_local_ones() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[]);
    let input = json!({"tag": "remote"}).to_string();

    let shown = cli(
        &sandbox,
        Some(&served),
        &["run", "three-steps", "--input", &input],
    );
    assert_eq!(code(&shown), 0, "{}", stderr(&shown));
    assert_eq!(
        parsed(&shown),
        json!({"tag": "remote"}),
        "the output, as local"
    );
    let progress = stderr(&shown);
    for step in ["record#0", "record#1", "record#2"] {
        assert!(
            progress.contains(&format!("✓ {step} (action)")),
            "the event stream's steps are shown live: {progress}"
        );
    }
    assert!(progress.contains("succeeded in"), "{progress}");

    let remote = cli(
        &sandbox,
        Some(&served),
        &["run", "three-steps", "--input", &input, "--json"],
    );
    let local = cli(
        &sandbox,
        None,
        &["run", "three-steps", "--input", &input, "--json"],
    );
    assert_eq!((code(&remote), code(&local)), (0, 0), "{}", stderr(&remote));
    let run_id = parsed(&remote)["runId"].as_str().expect("runId").to_owned();
    assert_eq!(without_id(parsed(&remote)), without_id(parsed(&local)));

    same_as_local(&sandbox, &served, &["runs", "get", &run_id, "--json"]);
    same_as_local(&sandbox, &served, &["runs", "get", &run_id]);
    let listed = same_as_local(&sandbox, &served, &["runs", "list", "--json"]);
    assert_eq!(parsed(&listed).as_array().map(Vec::len), Some(3));
    same_as_local(
        &sandbox,
        &served,
        &["runs", "list", "--workflow", "three-steps", "--limit", "2"],
    );
    same_as_local(&sandbox, &served, &["runs", "list", "--status", "failed"]);
    same_as_local(&sandbox, &served, &["workflows", "list", "--json"]);

    // The same idempotency key names the same run, which is not started again.
    let keyed = [
        "run",
        "three-steps",
        "--input",
        &input,
        "--idempotency-key",
        "k-1",
        "--json",
    ];
    let first = cli(&sandbox, Some(&served), &keyed);
    let again = cli(&sandbox, Some(&served), &keyed);
    assert_eq!((code(&first), code(&again)), (0, 0), "{}", stderr(&again));
    assert_eq!(parsed(&first), parsed(&again), "the same run, as it ended");
    let keyed_text = cli(&sandbox, Some(&served), &keyed[..6]);
    assert!(
        stderr(&keyed_text).contains("resuming existing run"),
        "{}",
        stderr(&keyed_text)
    );
    let records = sandbox.ledger_count(parsed(&first)["runId"].as_str().expect("runId"));
    assert_eq!(records, 3, "three steps, executed once");

    // CAIRN_SERVER does what --server does.
    let by_env = sandbox
        .command(&["runs", "list", "--json"])
        .env("CAIRN_SERVER", served.url())
        .output()
        .expect("run the fixture");
    let by_flag = cli(&sandbox, Some(&served), &["runs", "list", "--json"]);
    assert_eq!(parsed(&by_flag).as_array().map(Vec::len), Some(4));
    assert_eq!(stdout(&by_env), stdout(&by_flag), "{}", stderr(&by_env));
}

#[test]
fn bad_requests_over_http_exit_2_with_the_local_message() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[]);
    let bad_input = json!({"tag": 7}).to_string();
    let unknown_run = "01a23d64-ae61-7a64-9095-9c7d24392157";
    for args in [
        &["run", "no-such-workflow"][..],
        &["run", "three-steps", "--input", &bad_input],
        &["runs", "get", unknown_run],
        &["runs", "cancel", unknown_run],
        &["runs", "retry", unknown_run],
        &["runs", "list", "--status", "sideways"],
        &["hooks", "resume", "hk_unknown"],
    ] {
        let remote = cli(&sandbox, Some(&served), args);
        let local = cli(&sandbox, None, args);
        assert_eq!(
            code(&remote),
            2,
            "`{}`: {}",
            args.join(" "),
            stderr(&remote)
        );
        assert_eq!(
            stderr(&remote),
            stderr(&local),
            "`{}` says what the local command says",
            args.join(" ")
        );
    }
    let violation = cli(
        &sandbox,
        Some(&served),
        &["run", "three-steps", "--input", &bad_input],
    );
    assert!(
        stderr(&violation).contains("/tag"),
        "the JSON path: {}",
        stderr(&violation)
    );
    let no_runs = cli(&sandbox, None, &["runs", "list", "--json"]);
    assert_eq!(parsed(&no_runs), json!([]), "no bad request made a run");

    for (args, named) in [
        (&["hooks", "list"][..], "hooks list"),
        (&["worker"], "worker"),
        (
            &["runs", "list", "--with-patch", "p1"],
            "runs list --with-patch",
        ),
    ] {
        let refused = cli(&sandbox, Some(&served), args);
        assert_eq!(code(&refused), 2);
        assert!(
            stderr(&refused).contains(named)
                && stderr(&refused).contains("not available with --server"),
            "{}",
            stderr(&refused)
        );
    }
}

#[test]
fn a_failed_run_over_http_exits_1_and_retry_rerun_and_cancel_answer_as_locally() {
    let sandbox = Sandbox::new();
    // Both the server and the local commands close the gate.
    let served = sandbox.serve(&[], &[("FIXTURE_FAIL", "1")]);
    let input = json!({"tag": "closed"}).to_string();
    let remote = cli(
        &sandbox,
        Some(&served),
        &["run", "gated", "--input", &input, "--json"],
    );
    assert_eq!(code(&remote), 1, "{}", stderr(&remote));
    assert_eq!(parsed(&remote)["status"], "failed");
    let local = sandbox
        .command(&["run", "gated", "--input", &input, "--json"])
        .env("FIXTURE_FAIL", "1")
        .output()
        .expect("run the fixture");
    assert_eq!(code(&local), 1);
    assert_eq!(without_id(parsed(&remote)), without_id(parsed(&local)));
    let run_id = parsed(&remote)["runId"].as_str().expect("runId").to_owned();

    let retried = cli(&sandbox, Some(&served), &["runs", "retry", &run_id]);
    assert_eq!(code(&retried), 1, "still closed: {}", stderr(&retried));
    let progress = stderr(&retried);
    assert!(
        progress.contains("retrying run") && progress.contains("✗ gate#0"),
        "{progress}"
    );
    assert!(
        !progress.contains("✓ record#0"),
        "only what the retry executes is shown: {progress}"
    );

    let forked = cli(
        &sandbox,
        Some(&served),
        &["runs", "rerun", &run_id, "--from", "gate#0", "--json"],
    );
    assert_eq!(code(&forked), 1, "{}", stderr(&forked));
    let shown = cli(
        &sandbox,
        Some(&served),
        &["runs", "rerun", &run_id, "--from", "gate#0"],
    );
    let progress = stderr(&shown);
    assert!(
        progress.contains("forked from") && progress.contains("✗ gate#0"),
        "{progress}"
    );
    assert!(
        !progress.contains("record#0"),
        "the copied steps are not shown, as a local rerun shows only what it executes: {progress}"
    );
    let fork_id = parsed(&forked)["runId"].as_str().expect("runId").to_owned();
    let fork = sandbox.run_json(&fork_id);
    assert_eq!(fork["forkedFrom"]["runId"], run_id.as_str());

    same_as_local(&sandbox, &served, &["runs", "get", &fork_id, "--json"]);
    let ended = same_as_local(&sandbox, &served, &["runs", "cancel", &run_id]);
    assert_eq!(code(&ended), 2, "an ended run cannot be canceled");
}

#[test]
fn a_run_over_http_waits_for_its_hook_and_resumes_over_http() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[]);
    let input = json!({"tag": "hooked"}).to_string();
    let runner = KillOnDrop::new(
        sandbox
            .command(&["run", "approval", "--input", &input, "--json"])
            .env("CAIRN_SERVER", served.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run"),
    );
    let mut hooks = Value::Null;
    wait_for("a pending hook", Duration::from_secs(60), || {
        hooks = parsed(&cli(&sandbox, None, &["hooks", "list", "--json"]));
        hooks.as_array().is_some_and(|hooks| hooks.len() == 1)
    });
    let token = hooks[0]["token"].as_str().expect("token").to_owned();
    let bad = cli(
        &sandbox,
        Some(&served),
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved": "yes"}"#,
        ],
    );
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("/approved"), "{}", stderr(&bad));
    let resumed = cli(
        &sandbox,
        Some(&served),
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved": true}"#,
            "--json",
        ],
    );
    assert_eq!(code(&resumed), 0, "{}", stderr(&resumed));
    let listed = parsed(&cli(&sandbox, None, &["hooks", "list", "--all", "--json"]));
    assert_eq!(
        parsed(&resumed),
        listed[0],
        "the hook as `hooks list` shows it"
    );

    let run = runner.wait_with_output();
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(
        parsed(&run)["output"],
        json!({"tag": "hooked approved=true"})
    );
}

#[test]
fn api_keys_come_from_cairn_api_key_and_are_never_printed() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[("CAIRN_API_KEYS", "old-key,new-key")]);
    let with_key = |key: Option<&str>| {
        let mut command = sandbox.command(&["--server", &served.url(), "runs", "list", "--json"]);
        if let Some(key) = key {
            command.env("CAIRN_API_KEY", key);
        }
        command.output().expect("run the fixture")
    };
    let missing = with_key(None);
    assert_eq!(code(&missing), 2);
    assert!(
        stderr(&missing).contains("needs an API key") && stderr(&missing).contains("CAIRN_API_KEY"),
        "{}",
        stderr(&missing)
    );
    let wrong = with_key(Some("guessed-secret"));
    assert_eq!(code(&wrong), 2);
    assert!(
        stderr(&wrong).contains("refused the API key")
            && !stderr(&wrong).contains("guessed-secret"),
        "{}",
        stderr(&wrong)
    );
    let right = with_key(Some("new-key"));
    assert_eq!(code(&right), 0, "{}", stderr(&right));
    assert_eq!(parsed(&right), json!([]));
    assert!(!stderr(&right).contains("new-key"));
}

#[test]
fn a_client_opens_no_store_and_names_a_server_that_is_not_there() {
    let sandbox = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let down = sandbox
        .command(&["runs", "list"])
        .env("CAIRN_SERVER", &url)
        .output()
        .expect("run the fixture");
    assert_eq!(code(&down), 1);
    let message = stderr(&down);
    assert!(
        message.contains(&format!("cannot reach the Cairn server at {url}"))
            && message.contains("serve")
            && message.contains("CAIRN_SERVER"),
        "{message}"
    );
    let not_url = cli(
        &sandbox,
        None,
        &["--server", "localhost:8080", "runs", "list"],
    );
    assert_eq!(code(&not_url), 2, "{}", stderr(&not_url));
    assert!(
        !sandbox.data_dir().exists(),
        "no store was opened (or made) by a client"
    );
}

/// `credentials …` over `--server`: the same answers as locally (the value read here and
/// sent, never shown), a run started remotely for the user resolves it on the server, and
/// `rotate-key` is refused with where to run it.
#[test]
fn credentials_are_managed_over_http_and_used_by_the_servers_runs() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[]);
    let secret = "remote-SECRET-77";
    let set = sandbox
        .command(&[
            "--server",
            &served.url(),
            "credentials",
            "set",
            "chat",
            "--scope",
            "user",
            "--user",
            "ada",
            "--field",
            "token=@env:CHAT_TOKEN",
            "--json",
        ])
        .env("CHAT_TOKEN", secret)
        .output()
        .expect("run the fixture");
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let saved = parsed(&set);
    let id = saved["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        saved["holder"],
        json!({"scope": "user", "org": "default", "user": "ada"})
    );

    let listed = same_as_local(&sandbox, &served, &["credentials", "list", "--json"]);
    assert_eq!(parsed(&listed)[0]["id"], id.as_str());
    let run = cli(
        &sandbox,
        Some(&served),
        &[
            "run",
            "notify",
            "--user",
            "ada",
            "--input",
            r#"{"as_user":true}"#,
            "--json",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(parsed(&run)["output"]["via"], id.as_str());

    let rotate = cli(&sandbox, Some(&served), &["credentials", "rotate-key"]);
    assert_eq!(code(&rotate), 2);
    assert!(
        stderr(&rotate).contains("where the master key is"),
        "{}",
        stderr(&rotate)
    );
    let deleted = cli(&sandbox, Some(&served), &["credentials", "delete", &id]);
    assert_eq!(code(&deleted), 0, "{}", stderr(&deleted));
    let again = cli(&sandbox, Some(&served), &["credentials", "delete", &id]);
    assert_eq!(code(&again), 2, "an unknown id is the caller's mistake");
    for output in [&set, &listed, &run, &rotate, &deleted, &again] {
        assert!(!stdout(output).contains(secret) && !stderr(output).contains(secret));
    }
}

/// Posts `body` to `/triggers/tags` on `served`, signed with `secret`; the status.
fn deliver(served: &Served, secret: &str, body: &str, delivery: &str) -> u16 {
    static RUSTLS: std::sync::Once = std::sync::Once::new();
    RUSTLS.call_once(|| {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/triggers/tags", served.url()))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                github_signature(secret, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .expect("the server answers")
            .status()
            .as_u16()
    })
}

/// `webhooks deliveries <endpoint>`: the log of a served endpoint, the same over `--server`
/// as locally, each delivery with its answer, and never its body or the signing secret.
#[test]
fn webhook_deliveries_are_listed_over_http_as_locally() {
    let sandbox = Sandbox::new();
    let served = sandbox.serve(&[], &[]);
    let secret = "tags-SIGNING-4242";
    let set = sandbox
        .command(&[
            "credentials",
            "set",
            "tags-signing",
            "--field",
            "secret=@env:TAGS_SECRET",
        ])
        .env("TAGS_SECRET", secret)
        .output()
        .expect("run the fixture");
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let body = r#"{"tag":"hello-webhook"}"#;
    assert_eq!(deliver(&served, secret, body, "d-1"), 202);
    assert_eq!(deliver(&served, secret, body, "d-1"), 202, "a duplicate");
    assert_eq!(deliver(&served, "not-the-secret", body, "d-2"), 401);

    let listed = same_as_local(
        &sandbox,
        &served,
        &["webhooks", "deliveries", "tags", "--json"],
    );
    let rows = parsed(&listed);
    let outcomes: Vec<(&str, &str)> = rows
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["outcome"].as_str().unwrap(),
                row["deliveryId"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("invalid_signature", "-"),
            ("duplicate", "d-1"),
            ("started", "d-1")
        ]
    );
    assert_eq!(rows[1]["runId"], rows[2]["runId"]);
    let table = same_as_local(&sandbox, &served, &["webhooks", "deliveries", "tags"]);
    assert!(
        stdout(&table).contains("invalid_signature"),
        "{}",
        stdout(&table)
    );
    let unknown = same_as_local(&sandbox, &served, &["webhooks", "deliveries", "nowhere"]);
    assert_eq!(
        code(&unknown),
        2,
        "an unknown endpoint is the caller's mistake"
    );
    for output in [&listed, &table] {
        let text = stdout(output);
        assert!(
            !text.contains("hello-webhook") && !text.contains(secret),
            "{text}"
        );
    }
}
