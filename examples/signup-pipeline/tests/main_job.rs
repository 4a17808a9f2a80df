//! The README's main job through the example's real binary: a run on the embedded store, its
//! brief appended to the outbox under the data dir given on the command line (no Slack
//! credential), or posted to Slack as the run's user when they have one.

use std::process::Command;

#[test]
fn the_main_job_posts_to_the_outbox_under_the_data_dir_it_was_given() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_signup-pipeline"))
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["run", "signup-pipeline", "--json", "--input"])
        .arg(r#"{"name":"Ada Lovelace","email":"ada@analytical.engines"}"#)
        .env_remove("CAIRN_DATA_DIR")
        .current_dir(dir.path())
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no Slack credential for this run's user"),
        "the output says why the brief went to the outbox: {stderr}"
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON result");
    assert_eq!(result["status"], "succeeded", "{result}");
    let outbox = std::fs::read_to_string(data_dir.join("outbox.log")).expect("the outbox");
    let brief = result["output"]["brief"].as_str().expect("a brief");
    assert!(outbox.contains(brief), "{outbox}");
    assert!(
        !dir.path().join(".cairn").exists(),
        "nothing under the default data dir"
    );
}

/// With a Slack credential for the run's user, the brief goes to Slack (here a stand-in on
/// loopback, `CAIRN_SLACK_BASE_URL`), as that user's bot token, and not to the outbox.
#[tokio::test]
async fn with_the_users_slack_credential_the_brief_goes_to_slack() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{header, method, path},
    };
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-ada-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"ok": true, "channel": "C42", "ts": "1.5"})),
        )
        .expect(1)
        .mount(&slack)
        .await;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("data");
    let example = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_signup-pipeline"))
            .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
            .args(args)
            .env("CAIRN_SLACK_BASE_URL", slack.uri())
            .env("SLACK_BOT_TOKEN", "xoxb-ada-test")
            .env_remove("CAIRN_MASTER_KEY")
            .env_remove("CAIRN_USER")
            .current_dir(dir.path())
            .output()
            .expect("run the example")
    };
    let set = example(&[
        "credentials",
        "set",
        "slack",
        "--scope",
        "user",
        "--user",
        "ada",
        "--field",
        "botToken=@env:SLACK_BOT_TOKEN",
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let run = example(&[
        "run",
        "signup-pipeline",
        "--user",
        "ada",
        "--json",
        "--input",
        r#"{"name":"Ada Lovelace","email":"ada@analytical.engines"}"#,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON result");
    let brief = result["output"]["brief"].as_str().expect("a brief");
    let requests = slack.received_requests().await.expect("recorded");
    let body: serde_json::Value = requests[0].body_json().expect("a JSON body");
    assert_eq!(body["channel"], "#signups");
    assert_eq!(body["markdown_text"], brief);
    assert!(
        !data_dir.join("outbox.log").exists(),
        "nothing went to the outbox"
    );
}
