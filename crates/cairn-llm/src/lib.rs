//! Language models as durable steps: [`prompt_llm`] (text) and [`prompt_llm_as`] (an answer
//! of a type, through the provider's structured output) each make one step of kind `llm`,
//! whose output records the answer, the model, the tokens, the finish reason and the
//! latency; replay returns the recorded answer without calling the model.
//! Inside an action's body they make no steps: the calls are part of that action's step.
//!
//! ```no_run
//! # use std::sync::LazyLock;
//! # use cairn_engine::{Registry, Workflow, WorkflowCtx};
//! use cairn_llm::{LlmOptions, prompt_llm};
//!
//! static SUMMARIZE: LazyLock<Workflow<String, String>> = LazyLock::new(|| {
//!     Workflow::new("summarize").run(|text: String, _ctx: WorkflowCtx| async move {
//!         let options = LlmOptions::new("openai/gpt-4o-mini");
//!         Ok(prompt_llm(format!("Summarize in one line: {text}"), options).await?)
//!     })
//! });
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = cairn_llm::register(Registry::new().workflow(&SUMMARIZE))
//!     .resource(cairn_llm::LlmConfig::from_env()?);
//! # Ok(()) }
//! ```
//!
//! Providers, chosen by the model's prefix: `openai/` (Chat Completions: OpenAI, and with a
//! base URL Ollama, vLLM, llama.cpp, OpenRouter) and `anthropic/` (Messages). Keys are
//! credentials ([`OPENAI`], [`ANTHROPIC`]: field `apiKey`, and an optional `baseUrl`); base
//! URLs also come from [`LlmConfig`] (`CAIRN_OPENAI_BASE_URL`, `CAIRN_ANTHROPIC_BASE_URL`).
//! Providers of your own ([`LlmProvider`]: OpenRouter, a local Ollama, a gateway) are named by
//! their models' prefix, each with its base URL and its own credential type for the key.
//! 408, 429, 5xx and no answer are retried (after `Retry-After`); other statuses fail the
//! step with the provider's message. No key is ever in a step, a log or an error.
//! docs/decisions/0035-llm-steps.md has the decisions.

mod action;
mod agent;
mod anthropic;
pub mod config;
mod openai;
mod prompt;
mod provider;
mod transport;
mod types;

pub use action::{ANTHROPIC, LLM, LLM_SLUG, OPENAI, register};
pub use agent::Agent;
pub use config::LlmConfig;
pub use prompt::{LlmOptions, MAX_REASKS, prompt_llm, prompt_llm_as};
pub use provider::{LlmProvider, ProviderError, register_provider};
pub use types::{AnswerSchema, LlmRequest, LlmResponse, Message, ToolCall, ToolSpec};
