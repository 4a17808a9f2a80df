//! An agent killed with `kill -9` while its tool step runs: on restart, the recorded model
//! turn is replayed, not asked again (a scripted provider on loopback counts the requests of
//! each turn), the interrupted tool call runs again and the run finishes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

mod support;

use serde_json::{Value, json};
use support::{Sandbox, wait_for};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// A scripted OpenAI-compatible model: turn 0 (no tool result yet) calls `block`, turn 1
/// answers `finished`. Counts the requests of each turn.
#[derive(Clone, Default)]
struct ScriptedModel {
    requests: Arc<Mutex<HashMap<usize, usize>>>,
}

impl ScriptedModel {
    fn requests_of(&self, turn: usize) -> usize {
        let requests = self.requests.lock().expect("counts");
        requests.get(&turn).copied().unwrap_or(0)
    }
}

impl Respond for ScriptedModel {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let turn = body["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
        *self
            .requests
            .lock()
            .expect("counts")
            .entry(turn)
            .or_default() += 1;
        let message = if turn == 0 {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call-1",
                "type": "function",
                "function": {"name": "block", "arguments": "{\"tag\":\"agent\"}"}}]})
        } else {
            json!({"role": "assistant", "content": "finished"})
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "model": "scripted",
            "choices": [{"index": 0, "message": message,
                "finish_reason": if turn == 0 { "tool_calls" } else { "stop" }}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        }))
    }
}

// The test blocks on processes and polls (as the other crash tests do); the mock server
// answers from the runtime's worker threads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_in_its_tool_step_replays_its_model_turn_on_restart() {
    let server = MockServer::start().await;
    let model = ScriptedModel::default();
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/chat/completions"))
        .respond_with(model.clone())
        .mount(&server)
        .await;
    let base_url = format!("{}/v1", server.uri());
    let env = [("CAIRN_OPENAI_BASE_URL", base_url.as_str())];
    let sandbox = Sandbox::new();
    let args = [
        "run",
        "agent-crash",
        "--input",
        r#"{"tag":"a"}"#,
        "--idempotency-key",
        "agent-1",
        "--json",
    ];

    let mut first = sandbox.spawn_with(&args, &env);
    let tool_started = "agent:crasher/tool:block#0|started";
    wait_for(
        "the agent's tool step to start",
        Duration::from_secs(60),
        || sandbox.ledger_count(tool_started) == 1,
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    assert_eq!(model.requests_of(0), 1, "the first turn was asked once");
    assert_eq!(
        model.requests_of(1),
        0,
        "the process died before the second turn"
    );

    std::fs::write(sandbox.go_file(), b"go").expect("go file");
    // The same idempotency key resumes the same run once the killed process's lease lapses.
    let out = sandbox.output_with(&args, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("a JSON result");
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"], json!({"tag": "finished"}));

    assert_eq!(
        model.requests_of(0),
        1,
        "the recorded first turn was replayed, not asked again"
    );
    assert_eq!(model.requests_of(1), 1, "the second turn was asked once");
    assert_eq!(
        sandbox.ledger_count(tool_started),
        2,
        "the interrupted tool call ran again"
    );
    assert_eq!(sandbox.ledger_count("agent:crasher/tool:block#0|done"), 1);
    let run = sandbox.run_json(result["runId"].as_str().expect("a run id"));
    assert_eq!(run["executions"], 2);
    let keys: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "agent:crasher/model#0",
            "agent:crasher/tool:block#0",
            "agent:crasher/model#1"
        ]
    );
}
