//! `signup-agent` through the example's real binary, offline: the bundled fake model answers
//! the agent (a call of the research tool, then a brief built from its result), every model
//! turn and tool call is a recorded step with its tokens, and the brief goes to the outbox.

use std::{path::Path, process::Command};

use serde_json::Value;

/// Runs the example's binary on `data_dir` with `args`, with no model or Slack configured.
fn example(dir: &Path, args: &[&str]) -> std::process::Output {
    command(dir, args).output().expect("run the example")
}

/// The example's binary on `dir`'s data dir with `args`, the environment cleared of models
/// and Slack.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signup-pipeline"));
    command
        .args(["--data-dir", dir.join("data").to_str().expect("utf-8 path")])
        .args(args)
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_OPENAI_BASE_URL")
        .env_remove("CAIRN_EXAMPLE_MODEL")
        .env_remove("CAIRN_SLACK_BASE_URL")
        .current_dir(dir);
    command
}

#[test]
fn the_agent_drafts_the_brief_with_the_offline_model_and_records_each_turn() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let output = example(
        dir.path(),
        &[
            "run",
            "signup-agent",
            "--json",
            "--input",
            r#"{"name":"Ada Lovelace","email":"ada@analytical.engines"}"#,
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the example's offline model answered"),
        "the output says the offline model answered: {stderr}"
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON result");
    assert_eq!(result["status"], "succeeded", "{result}");
    let brief = result["output"]["brief"].as_str().expect("a brief");
    assert!(
        brief.contains("Analytical Engines Ltd") && brief.contains("offline model"),
        "the brief is built from the research tool's result: {brief}"
    );
    let outbox = std::fs::read_to_string(dir.path().join("data/outbox.log")).expect("outbox");
    assert!(outbox.contains(brief), "{outbox}");

    let run_id = result["runId"].as_str().expect("a run id");
    let detail = example(dir.path(), &["runs", "get", run_id, "--json"]);
    assert!(
        detail.status.success(),
        "{}",
        String::from_utf8_lossy(&detail.stderr)
    );
    let detail: Value = serde_json::from_slice(&detail.stdout).expect("JSON run");
    let steps = detail["steps"].as_array().expect("steps");
    let keys: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap_or(""),
                s["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("research-signup#0", "action"),
            ("agent:brief-writer/model#0", "llm"),
            ("agent:brief-writer/tool:research-signup#0", "action"),
            ("agent:brief-writer/model#1", "llm"),
            ("slack-send-message#0", "action"),
            ("post-brief#0", "action"),
        ]
    );
    let first_turn = &steps[1]["output"];
    assert_eq!(first_turn["tool_calls"][0]["name"], "research-signup");
    assert_eq!(
        first_turn["tool_calls"][0]["arguments"]["email"],
        "ada@analytical.engines"
    );
    for turn in [&steps[1], &steps[3]] {
        assert!(
            turn["output"]["input_tokens"].as_u64() > Some(0)
                && turn["output"]["output_tokens"].as_u64() > Some(0),
            "each model turn records its tokens: {turn}"
        );
    }
}

/// With `CAIRN_OPENAI_BASE_URL` set, the agent asks that server (here a stand-in answering at
/// once) and the offline model stays out of it.
#[tokio::test]
async fn a_configured_base_url_is_asked_instead_of_the_offline_model() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "model": "stand-in",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "A brief from the stand-in."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let output = command(
        dir.path(),
        &[
            "run",
            "signup-agent",
            "--json",
            "--input",
            r#"{"name":"Ada Lovelace","email":"ada@analytical.engines"}"#,
        ],
    )
    .env("CAIRN_OPENAI_BASE_URL", format!("{}/v1", server.uri()))
    .output()
    .expect("run the example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("offline model"), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON result");
    assert_eq!(result["output"]["brief"], "A brief from the stand-in.");
}
