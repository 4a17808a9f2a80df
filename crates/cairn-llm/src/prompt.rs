//! One-shot prompts: [`prompt_llm`] (text) and [`prompt_llm_as`] (an answer of a type,
//! through the provider's structured output, checked against the type's schema and re-asked
//! a bounded number of times with the violations).

use cairn_core::{ErrorInfo, ErrorKind};
use cairn_engine::{Payload, StepError, validate_payload};
use serde_json::Value;

use crate::{
    provider::ask,
    types::{AnswerSchema, LlmRequest, Message},
};

/// How many times an answer that does not match its schema is re-asked.
pub const MAX_REASKS: u32 = 2;

/// How to prompt: the model and its settings. Build it with a literal:
/// `LlmOptions { model: "openai/gpt-4o-mini".into(), ..Default::default() }`, or
/// [`LlmOptions::new`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmOptions {
    /// `<provider>/<model>`: `openai/gpt-4o-mini` (also Ollama, vLLM, … with a base URL),
    /// `anthropic/claude-sonnet-4-5`.
    pub model: String,
    /// The system prompt.
    pub system: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// The step's key instead of `llm#<n>` (a re-ask of a structured answer is
    /// `<key>/reask#<n>`).
    pub key: Option<String>,
}

impl LlmOptions {
    /// Options for `model`, nothing else set.
    pub fn new(model: impl Into<String>) -> LlmOptions {
        LlmOptions {
            model: model.into(),
            ..LlmOptions::default()
        }
    }

    /// The request of one call with `messages`.
    fn request(&self, messages: Vec<Message>, answer_schema: Option<AnswerSchema>) -> LlmRequest {
        LlmRequest {
            model: self.model.clone(),
            system: self.system.clone(),
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tools: Vec::new(),
            answer_schema,
        }
    }
}

/// Prompts a model once, as one durable step of kind `llm`, and returns its text. Replay
/// returns the recorded answer without calling the model again. Inside an action's body the
/// call is part of that action's step (no step of its own), with the action's credentials:
/// declare `.optional_credential(&cairn_llm::OPENAI)` (or the provider's) on it.
pub async fn prompt_llm(
    prompt: impl Into<String>,
    options: LlmOptions,
) -> Result<String, StepError> {
    let messages = vec![Message::User {
        content: prompt.into(),
    }];
    let answer = ask(options.request(messages, None), |call| match &options.key {
        Some(key) => call.key(key.clone()),
        None => call,
    });
    Ok(answer.await?.text)
}

/// Prompts a model for an answer of type `T`: the provider is given `T`'s JSON Schema
/// (structured output), and the answer is checked with the validator of actions' outputs. An
/// answer that does not match is re-asked (up to [`MAX_REASKS`] times, each its own step)
/// with the violations; then the error (`invalid_output`) names the JSON paths. `T` should be
/// a struct: both providers want an object at the root of the schema.
pub async fn prompt_llm_as<T: Payload>(
    prompt: impl Into<String>,
    options: LlmOptions,
) -> Result<T, StepError> {
    let schema = answer_schema::<T>();
    let mut messages = vec![Message::User {
        content: prompt.into(),
    }];
    let mut problems = String::new();
    for n in 0..=MAX_REASKS {
        let request = options.request(messages.clone(), Some(schema.clone()));
        let answer = ask(request, |call| match (&options.key, n) {
            (Some(key), 0) => call.key(key.clone()),
            (Some(key), n) => call.key(format!("{key}/reask#{n}")),
            (None, _) => call,
        })
        .await?;
        match parse::<T>(&answer.text) {
            Ok(value) => return Ok(value),
            Err(found) => problems = found,
        }
        messages.extend(reask(answer.text, &problems));
    }
    Err(never_matched(&options.model, &schema, &problems))
}

/// The messages that re-ask for an answer that did not match its schema: the answer, and
/// what is wrong with it.
pub(crate) fn reask(answer: String, problems: &str) -> [Message; 2] {
    [
        Message::Assistant {
            content: answer,
            tool_calls: Vec::new(),
        },
        Message::User {
            content: format!(
                "Your answer does not match the JSON Schema it must follow: {problems}. Answer again with only the JSON, matching the schema."
            ),
        },
    ]
}

/// The error once every re-ask is spent: `invalid_output`, naming the paths.
pub(crate) fn never_matched(model: &str, schema: &AnswerSchema, problems: &str) -> StepError {
    StepError::from_info(ErrorInfo::new(
        ErrorKind::InvalidOutput,
        format!(
            "model {model} answered {} times without matching the schema of {} (the last answer: {problems}); make the prompt say what is wanted, or use a stronger model",
            MAX_REASKS + 1,
            schema.name
        ),
    ))
}

/// `T`'s schema as the answer's, named by its title.
pub(crate) fn answer_schema<T: Payload>() -> AnswerSchema {
    let mut schema = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| Value::Object(Default::default()));
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    let name: String = schema["title"]
        .as_str()
        .unwrap_or("answer")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .take(64)
        .collect();
    AnswerSchema {
        name: if name.is_empty() {
            "answer".into()
        } else {
            name
        },
        schema,
    }
}

/// The answer as a `T`, or what is wrong with it (JSON paths and rules).
pub(crate) fn parse<T: Payload>(text: &str) -> Result<T, String> {
    let text = text.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|inner| inner.strip_suffix("```"))
        .unwrap_or(text);
    let value: Value =
        serde_json::from_str(text).map_err(|err| format!("it is not JSON ({err})"))?;
    validate_payload::<T>(&value).map_err(|violations| violations.to_string())?;
    serde_json::from_value(value).map_err(|err| format!("/: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Verdict {
        score: u8,
    }

    #[test]
    fn answers_are_parsed_or_their_paths_named() {
        assert_eq!(
            parse::<Verdict>(r#"{"score": 3}"#),
            Ok(Verdict { score: 3 })
        );
        assert_eq!(
            parse::<Verdict>("```json\n{\"score\": 3}\n```"),
            Ok(Verdict { score: 3 })
        );
        let err = parse::<Verdict>(r#"{"score": "high"}"#).unwrap_err();
        assert!(err.starts_with("/score: "), "{err}");
        assert!(parse::<Verdict>("high").unwrap_err().contains("not JSON"));
        let schema = answer_schema::<Verdict>();
        assert_eq!(schema.name, "Verdict");
        assert!(schema.schema.get("$schema").is_none());
    }
}
