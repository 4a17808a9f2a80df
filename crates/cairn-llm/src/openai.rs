//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`, `Authorization:
//! Bearer`): OpenAI, and with a base URL Ollama, vLLM, llama.cpp or OpenRouter. Structured
//! output uses `response_format: json_schema`; tools are `function` tools.

use serde_json::{Map, Value, json};

use crate::types::{LlmRequest, LlmResponse, Message, ToolCall};

/// The service's name in messages.
pub(crate) const SERVICE: &str = "OpenAI-compatible API";

/// The request body for `request`, calling the model `name`.
pub(crate) fn body(request: &LlmRequest, name: &str) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        messages.push(match message {
            Message::User { content } => json!({"role": "user", "content": content}),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut turn = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    let calls: Vec<Value> = tool_calls
                        .iter()
                        .map(|call| {
                            json!({"id": call.id, "type": "function", "function": {
                                "name": call.name, "arguments": arguments_text(&call.arguments)}})
                        })
                        .collect();
                    turn["tool_calls"] = Value::Array(calls);
                }
                turn
            }
            Message::Tool {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(name));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(|tool| {
            json!({"type": "function", "function": {
                "name": tool.name, "description": tool.description, "parameters": tool.parameters}})
        });
        body.insert("tools".into(), Value::Array(tools.collect()));
    }
    if let Some(answer) = &request.answer_schema {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {
                "name": answer.name, "schema": answer.schema, "strict": false}}),
        );
    }
    Value::Object(body)
}

/// The answer in `body`, or what in it is not the documented shape.
pub(crate) fn answer(body: &Value, latency_ms: u64) -> Result<LlmResponse, String> {
    let choice = body.pointer("/choices/0").ok_or("it has no choices[0]")?;
    let message = choice.get("message").ok_or("choices[0] has no message")?;
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut tool_calls = Vec::new();
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |pointer: &str| {
            call.pointer(pointer)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a tool call has no {pointer}"))
        };
        let arguments = field("/function/arguments")?;
        tool_calls.push(ToolCall {
            id: field("/id")?.to_owned(),
            name: field("/function/name")?.to_owned(),
            arguments: serde_json::from_str(arguments)
                .unwrap_or_else(|_| Value::String(arguments.to_owned())),
        });
    }
    let tokens = |name: &str| {
        body.pointer(&format!("/usage/{name}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LlmResponse {
        text,
        tool_calls,
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        latency_ms,
    })
}

/// A tool call's arguments as the JSON text the API carries.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_and_usage_are_read() {
        let body = json!({"model": "m-1", "choices": [{"finish_reason": "tool_calls", "message": {
            "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
        let answer = answer(&body, 7).unwrap();
        assert_eq!(answer.tool_calls[0].arguments, json!({"q": 1}));
        assert_eq!((answer.input_tokens, answer.output_tokens), (5, 2));
        assert_eq!(answer.finish_reason, "tool_calls");
        assert!(super::answer(&json!({"choices": []}), 0).is_err());
    }
}
