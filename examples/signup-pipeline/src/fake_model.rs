//! The example's offline model: a tiny deterministic OpenAI-compatible server on loopback
//! (plain tokio, HTTP/1.1, one request per connection), so `signup-agent` runs with no key and
//! no network. Its first answer calls the first tool offered with the JSON object in the
//! prompt; once a tool result is in the conversation, it answers a brief built from it.
//!
//! A request that carries a key (an `openai` credential resolved for the run) is not answered
//! here: it is forwarded as it is to OpenAI's API, so a credential makes the agent real.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Where a request with a key is forwarded.
const OPENAI_CHAT_COMPLETIONS: &str = "https://api.openai.com/v1/chat/completions";

/// The largest request read (the conversation grows with the turns).
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Starts the server on a loopback port, on a thread of its own, and returns its base URL
/// (`http://127.0.0.1:<port>/v1`).
///
/// # Errors
/// If no loopback port can be bound or the thread's runtime cannot be made.
pub fn start() -> std::io::Result<String> {
    cairn_actions::config::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr: SocketAddr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fake-model".into())
        .spawn(move || runtime.block_on(serve(listener)))?;
    Ok(format!("http://{addr}/v1"))
}

/// Answers connections until the process ends.
async fn serve(listener: TcpListener) {
    let client = reqwest::Client::new();
    while let Ok((stream, _)) = listener.accept().await {
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, &client).await {
                eprintln!("the example's offline model: {err}");
            }
        });
    }
}

/// Reads one request and writes its answer.
async fn answer(mut stream: TcpStream, client: &reqwest::Client) -> std::io::Result<()> {
    let (head, body) = read_request(&mut stream).await?;
    let authorization = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    let (status, reply) = match authorization {
        Some(key) => forward(client, &key, body).await,
        None => match serde_json::from_slice::<Value>(&body) {
            Ok(request) => {
                eprintln!(
                    "the example's offline model answered (no openai credential and no \
                     CAIRN_OPENAI_BASE_URL; `credentials set openai --field \
                     apiKey=@env:OPENAI_API_KEY` asks OpenAI)"
                );
                (200, completion(&request).to_string())
            }
            Err(err) => (
                400,
                json!({"error": {"message": err.to_string()}}).to_string(),
            ),
        },
    };
    let response = format!(
        "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request's head (request line and headers) and its body (`content-length` bytes).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if length > MAX_REQUEST_BYTES {
                return Err(std::io::Error::other("request too large"));
            }
            let mut body = buffer[end + 4..].to_vec();
            while body.len() < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Ok((head, body));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buffer.len() > MAX_REQUEST_BYTES {
            return Err(std::io::Error::other(
                "connection closed before a whole request",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a request that carries a key to OpenAI and hands back its status and answer.
async fn forward(client: &reqwest::Client, authorization: &str, body: Vec<u8>) -> (u16, String) {
    let sent = client
        .post(OPENAI_CHAT_COMPLETIONS)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (
            502,
            json!({"error": {"message": format!("cannot reach OpenAI: {}", err.without_url())}})
                .to_string(),
        ),
    }
}

/// The offline model's answer to a Chat Completions request.
pub fn completion(request: &Value) -> Value {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let tool_result = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str());
    let message = match tool_result {
        Some(result) => json!({"role": "assistant", "content": draft(result)}),
        None => {
            let tool = request
                .pointer("/tools/0/function/name")
                .and_then(Value::as_str)
                .unwrap_or("research-signup");
            let prompt = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default();
            let arguments = prompt
                .find('{')
                .map(|start| &prompt[start..])
                .unwrap_or("{}");
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{}", messages.len()), "type": "function",
                "function": {"name": tool, "arguments": arguments}}]})
        }
    };
    let finish_reason = if tool_result.is_some() {
        "stop"
    } else {
        "tool_calls"
    };
    let prompt_tokens = request.to_string().len() / 4;
    let completion_tokens = message.to_string().len() / 4;
    json!({
        "id": "offline-example",
        "object": "chat.completion",
        "model": "cairn-example-offline-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    })
}

/// The brief drafted from the research tool's result (`{"brief": "…"}`, or any text).
fn draft(result: &str) -> String {
    let research = serde_json::from_str::<Value>(result)
        .ok()
        .and_then(|v| v["brief"].as_str().map(str::to_owned))
        .unwrap_or_else(|| result.to_owned());
    format!(
        "New signup: {research} Suggested next step: a personal reply from sales within a day. \
         (drafted by the example's offline model)"
    )
}
