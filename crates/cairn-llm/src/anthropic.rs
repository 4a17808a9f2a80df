//! Anthropic Messages (`POST {base}/messages`, `x-api-key`, `anthropic-version`). Structured
//! output is a tool the model is made to call (`tool_choice`; beside an agent's tools, it must
//! call one of them), whose input is the answer; tool results are `tool_result` blocks of one
//! user message.

use serde_json::{Map, Value, json};

use crate::types::{LlmRequest, LlmResponse, Message, ToolCall};

/// The service's name in messages.
pub(crate) const SERVICE: &str = "Anthropic";
/// The API version sent.
pub(crate) const VERSION: &str = "2023-06-01";
/// Anthropic requires a limit; this one is used when none is given.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The request body for `request`, calling the model `name`.
pub(crate) fn body(request: &LlmRequest, name: &str) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for message in &request.messages {
        match message {
            Message::User { content } => {
                messages.push(json!({"role": "user", "content": content}));
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if !content.is_empty() {
                    blocks.push(json!({"type": "text", "text": content}));
                }
                for call in tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": call.arguments}));
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Message::Tool {
                call_id,
                content,
                is_error,
            } => {
                let block = json!({"type": "tool_result", "tool_use_id": call_id,
                    "content": content, "is_error": is_error});
                // The results of one turn's calls go in one user message.
                match messages.last_mut() {
                    Some(last) if last["role"] == "user" && last["content"].is_array() => {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    _ => messages.push(json!({"role": "user", "content": [block]})),
                }
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(name));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = &request.system {
        body.insert("system".into(), json!(system));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    body.insert("messages".into(), Value::Array(messages));
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| {
            json!({"name": tool.name, "description": tool.description,
                "input_schema": tool.parameters})
        })
        .collect();
    if let Some(answer) = &request.answer_schema {
        tools.push(json!({"name": answer.name,
            "description": "Give your answer: its input is the answer, matching the schema.",
            "input_schema": answer.schema}));
        // With other tools, the model must call one of them or the answer's; alone, the
        // answer's.
        let choice = if request.tools.is_empty() {
            json!({"type": "tool", "name": answer.name})
        } else {
            json!({"type": "any"})
        };
        body.insert("tool_choice".into(), choice);
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(body)
}

/// The answer in `body`, or what in it is not the documented shape. For a structured answer,
/// the input of the answer tool's call is the text.
pub(crate) fn answer(
    request: &LlmRequest,
    body: &Value,
    latency_ms: u64,
) -> Result<LlmResponse, String> {
    let blocks = body["content"]
        .as_array()
        .ok_or("it has no content array")?;
    let answer_tool = request.answer_schema.as_ref().map(|a| a.name.as_str());
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let name = block["name"]
                    .as_str()
                    .ok_or("a tool_use block has no name")?;
                if Some(name) == answer_tool {
                    text = block["input"].to_string();
                    continue;
                }
                tool_calls.push(ToolCall {
                    id: block["id"]
                        .as_str()
                        .ok_or("a tool_use block has no id")?
                        .to_owned(),
                    name: name.to_owned(),
                    arguments: block["input"].clone(),
                });
            }
            _ => {}
        }
    }
    let tokens = |name: &str| body["usage"][name].as_u64().unwrap_or(0);
    Ok(LlmResponse {
        text,
        tool_calls,
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens: tokens("input_tokens"),
        output_tokens: tokens("output_tokens"),
        finish_reason: body["stop_reason"].as_str().unwrap_or_default().to_owned(),
        latency_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_of_one_turn_share_a_user_message() {
        let result = |id: &str| Message::Tool {
            call_id: id.into(),
            content: "{}".into(),
            is_error: false,
        };
        let request = LlmRequest {
            model: "anthropic/m".into(),
            system: None,
            messages: vec![
                Message::User {
                    content: "hi".into(),
                },
                Message::Assistant {
                    content: String::new(),
                    tool_calls: vec![],
                },
                result("a"),
                result("b"),
            ],
            temperature: None,
            max_tokens: None,
            tools: vec![],
            answer_schema: None,
        };
        let body = body(&request, "m");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(body["messages"][2]["content"][1]["tool_use_id"], "b");
        assert_eq!(body["max_tokens"], 4096);
    }
}
