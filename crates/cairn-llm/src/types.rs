//! What a model call records: the request (the step's input: model, system prompt, messages,
//! tools, the answer's schema) and the answer (the step's output: text or tool calls, tokens,
//! finish reason, latency), in one shape for every provider. No key is ever part of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One model call: the input of an `llm` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmRequest {
    /// `<provider>/<model>`: `openai/gpt-4o-mini`, `anthropic/claude-sonnet-4-5`.
    pub model: String,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The most tokens to generate (Anthropic requires one; the default is 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// The JSON Schema the answer must match (structured output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_schema: Option<AnswerSchema>,
}

/// A message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// What the user (or the workflow) says.
    User {
        /// The text.
        content: String,
    },
    /// What the model answered earlier.
    Assistant {
        /// Its text (may be empty when it only called tools).
        content: String,
        /// The tools it called.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answering the model's call `call_id`.
    Tool {
        /// The id of the call it answers.
        call_id: String,
        /// The result as text (JSON for an action's output, a message for an error).
        content: String,
        /// Whether the call failed (the content says why).
        #[serde(default)]
        is_error: bool,
    },
}

/// A tool offered to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSpec {
    /// Its name as the provider sees it (an action's slug, in the allowed characters).
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub parameters: Value,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The provider's id of the call (a tool result names it).
    pub id: String,
    /// The tool's name, as offered.
    pub name: String,
    /// Its arguments (JSON; a string when the model's arguments were not JSON).
    pub arguments: Value,
}

/// The schema a structured answer must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnswerSchema {
    /// Its name (`[a-zA-Z0-9_-]`, up to 64 characters), from the type's name.
    pub name: String,
    /// The JSON Schema.
    pub schema: Value,
}

/// A model's answer: the output of an `llm` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmResponse {
    /// The text answered (the JSON, for a structured answer).
    pub text: String,
    /// The tools it asked to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Tokens in the prompt.
    pub input_tokens: u64,
    /// Tokens generated.
    pub output_tokens: u64,
    /// Why the model stopped (`stop`, `length`, `tool_calls`, `end_turn`, …: the provider's
    /// word).
    pub finish_reason: String,
    /// How long the call took, in milliseconds.
    pub latency_ms: u64,
}

/// The wire formats this crate speaks: the built-in providers' (chosen by the model's
/// prefix) and those of providers registered by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Chat Completions (`openai/`): OpenAI, Ollama, vLLM, llama.cpp, OpenRouter.
    OpenAi,
    /// Messages (`anthropic/`).
    Anthropic,
}

impl Wire {
    /// The built-in provider and the model's own name, from `<provider>/<model>`;
    /// `registered` names the providers registered by name, for the error.
    pub(crate) fn split<'m>(
        model: &'m str,
        registered: &[String],
    ) -> Result<(Wire, &'m str), String> {
        let (prefix, name) = model.split_once('/').unwrap_or(("", model));
        let provider = match prefix {
            "openai" => Wire::OpenAi,
            "anthropic" => Wire::Anthropic,
            _ => {
                let registered = if registered.is_empty() {
                    "none".to_owned()
                } else {
                    registered.join(", ")
                };
                return Err(format!(
                    "model {model:?} names no known provider; write openai/<model> (also Ollama, vLLM and other OpenAI-compatible servers, with a base URL), anthropic/<model>, or the name of a provider registered with cairn_llm::register_provider (registered: {registered})"
                ));
            }
        };
        if name.is_empty() {
            return Err(format!(
                "model {model:?} has no model name after the provider's prefix"
            ));
        }
        Ok((provider, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_name_their_provider() {
        assert_eq!(
            Wire::split("openai/gpt-4o-mini", &[]),
            Ok((Wire::OpenAi, "gpt-4o-mini"))
        );
        assert_eq!(
            Wire::split("anthropic/claude-x", &[]),
            Ok((Wire::Anthropic, "claude-x"))
        );
        assert_eq!(
            Wire::split("openai/library/llama3:8b", &[]),
            Ok((Wire::OpenAi, "library/llama3:8b"))
        );
        for bad in ["gpt-4o", "mistral/x", "openai/"] {
            assert!(Wire::split(bad, &[]).is_err(), "{bad}");
        }
    }
}
