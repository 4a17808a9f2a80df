//! [`TestEnv::mock_llm`] (feature `llm`): script a model by turn (text, tool calls or a
//! structured answer) so agent and `prompt_llm` workflows run offline, with no provider, key
//! or server. It stands in for the `llm` action (`cairn_llm::LLM`) as any mock does, so every
//! model turn is still a recorded `llm` step.

use cairn_llm::{LLM, LlmResponse, ToolCall};
use serde::Serialize;
use serde_json::Value;

use super::TestEnv;

/// One scripted model answer: what the model "says" on its turn.
///
/// ```
/// # use cairn::testing::ModelTurn;
/// # use serde_json::json;
/// let turns = [
///     ModelTurn::tool_call("lookup", json!("acme.com")),  // the agent runs the `lookup` action
///     ModelTurn::text("Acme sells anvils."),               // its final answer
/// ];
/// # let _ = turns;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTurn {
    text: String,
    calls: Vec<(String, Value)>,
    input_tokens: u64,
    output_tokens: u64,
}

impl ModelTurn {
    /// A text answer (an agent's final answer, or `prompt_llm`'s).
    pub fn text(text: impl Into<String>) -> ModelTurn {
        ModelTurn {
            text: text.into(),
            calls: Vec::new(),
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    /// A structured answer (`prompt_llm_as::<T>`, `Agent::prompt_as::<T>`): `answer` as JSON.
    ///
    /// # Panics
    ///
    /// If `answer` does not serialize to JSON (a test's mistake).
    pub fn structured(answer: impl Serialize) -> ModelTurn {
        let json = serde_json::to_string(&answer)
            .unwrap_or_else(|err| panic!("ModelTurn::structured: the answer is not JSON: {err}"));
        ModelTurn::text(json)
    }

    /// A turn that calls the tool (an action's slug) `name` with `arguments`.
    ///
    /// # Panics
    ///
    /// If `arguments` does not serialize to JSON (a test's mistake).
    pub fn tool_call(name: impl Into<String>, arguments: impl Serialize) -> ModelTurn {
        ModelTurn::text("").and_call(name, arguments)
    }

    /// Adds a tool call to this turn (a turn's calls run as parallel steps).
    ///
    /// # Panics
    ///
    /// If `arguments` does not serialize to JSON (a test's mistake).
    pub fn and_call(mut self, name: impl Into<String>, arguments: impl Serialize) -> ModelTurn {
        let arguments = serde_json::to_value(arguments)
            .unwrap_or_else(|err| panic!("ModelTurn: tool arguments are not JSON: {err}"));
        self.calls.push((name.into(), arguments));
        self
    }

    /// The tokens the turn reports (0 and 0 unless set), for tests of token budgets.
    pub fn tokens(mut self, input: u64, output: u64) -> ModelTurn {
        self.input_tokens = input;
        self.output_tokens = output;
        self
    }

    /// The answer the `llm` step records for this turn, the `n`-th of the script: tool call
    /// ids are `call-<n>-<i>`, the model `mock`.
    fn into_response(self, n: usize) -> LlmResponse {
        let finish_reason = if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        LlmResponse {
            text: self.text,
            tool_calls: self
                .calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall {
                    id: format!("call-{n}-{i}"),
                    name,
                    arguments,
                })
                .collect(),
            model: "mock".into(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            finish_reason: finish_reason.into(),
            latency_ms: 0,
        }
    }
}

impl From<&str> for ModelTurn {
    fn from(text: &str) -> ModelTurn {
        ModelTurn::text(text)
    }
}

impl From<String> for ModelTurn {
    fn from(text: String) -> ModelTurn {
        ModelTurn::text(text)
    }
}

impl TestEnv {
    /// Scripts the model (feature `llm`): the `n`-th model call of the test (an agent's turn,
    /// a `prompt_llm`, a re-ask; attempts included) answers `turns[n]`, the last turn every
    /// later call. Built on [`TestEnv::mock_sequence`] of the `llm` action, so each call is
    /// still a recorded `llm` step and replays as one.
    ///
    /// ```
    /// # use cairn::testing::{ModelTurn, TestEnv};
    /// # use serde_json::json;
    /// let env = TestEnv::new().mock_llm([
    ///     ModelTurn::tool_call("lookup", json!("acme.com")),
    ///     ModelTurn::text("Acme sells anvils."),
    /// ]);
    /// # let _ = env;
    /// ```
    ///
    /// # Panics
    ///
    /// If `turns` is empty.
    pub fn mock_llm(self, turns: impl IntoIterator<Item = impl Into<ModelTurn>>) -> Self {
        let answers: Vec<_> = turns
            .into_iter()
            .enumerate()
            .map(|(n, turn)| Ok(turn.into().into_response(n)))
            .collect();
        assert!(!answers.is_empty(), "mock_llm needs at least one turn");
        self.mock_sequence(&LLM, answers)
    }
}
