//! Agents: a model that calls actions as tools, in a loop where every model call and every
//! tool call is its own durable step. Keys: `agent:<name>/model#<n>` for the model's turns and
//! `agent:<name>/tool:<slug>#<n>` for each tool's calls (`n` counting from 0 in the
//! execution), so a run resumed after a crash replays every recorded turn and tool call and
//! goes on from the first one not recorded.
//!
//! Tool names are the actions' slugs: 1 to 64 of `a-z 0-9 - _`, which both providers accept
//! as they are (the mapping is the identity, and so reversible). A tool call's arguments are
//! checked against the action's input schema; a violation, a fatal action error or an unknown
//! tool goes back to the model as the tool's result (an error), up to
//! [`Agent::max_tool_errors`]; other failures (retries exhausted, missing credentials) end
//! the prompt with the step's error. [`Agent::prompt_as`] asks for a final answer of a type,
//! checked and re-asked as [`prompt_llm_as`](crate::prompt_llm_as) does.

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind};
use cairn_engine::{ActionCtx, ActionError, Payload, Scope, StepError, Tool};
use futures::future::{BoxFuture, join_all};
use serde_json::Value;

use crate::{
    prompt::{MAX_REASKS, answer_schema, never_matched, parse, reask},
    provider::ask,
    types::{AnswerSchema, LlmRequest, Message, ToolCall, ToolSpec},
};

/// A tool defined in a `static`.
struct Static(&'static dyn Tool);

impl Tool for Static {
    fn info(&self) -> &cairn_engine::ActionInfo {
        self.0.info()
    }

    fn run_json(&self, input: Value) -> cairn_engine::StepCall<Value> {
        self.0.run_json(input)
    }

    fn run_inline(
        &self,
        input: Value,
        ctx: ActionCtx,
    ) -> BoxFuture<'static, Result<Value, ActionError>> {
        self.0.run_inline(input, ctx)
    }
}

/// A tool of an agent, and the scope its calls resolve credentials at, if it has its own.
#[derive(Clone)]
struct AgentTool {
    tool: Arc<dyn Tool>,
    scope: Option<Scope>,
}

impl AgentTool {
    fn slug(&self) -> &str {
        &self.tool.info().slug
    }
}

/// A model with actions as tools. Build it in the workflow body or in a `static`; each
/// [`prompt`](Agent::prompt) runs the tool loop as steps of the current run.
///
/// ```no_run
/// # use std::sync::LazyLock;
/// # use cairn_engine::{Action, ActionCtx, Workflow, WorkflowCtx};
/// # static LOOKUP_COMPANY: LazyLock<Action<String, String>> = LazyLock::new(|| {
/// #     Action::new("lookup-company").run(|d: String, _c: ActionCtx| async move { Ok(d) })
/// # });
/// use cairn_llm::Agent;
///
/// static RESEARCH: LazyLock<Workflow<String, String>> = LazyLock::new(|| {
///     Workflow::new("research").run(|domain: String, _ctx: WorkflowCtx| async move {
///         let agent = Agent::new("researcher")
///             .model("anthropic/claude-sonnet-4-5")
///             .system_prompt("You research companies.")
///             .tools(&[&LOOKUP_COMPANY])
///             .max_turns(10);
///         Ok(agent.prompt(format!("Who is behind {domain}?")).await?)
///     })
/// });
/// ```
#[derive(Clone)]
pub struct Agent {
    name: String,
    model: String,
    system: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    tools: Vec<AgentTool>,
    key: Option<String>,
    scope: Option<Scope>,
    max_turns: u32,
    max_tool_calls_per_turn: usize,
    max_tool_errors: u32,
    max_total_tokens: Option<u64>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tools: Vec<&str> = self.tools.iter().map(AgentTool::slug).collect();
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("tools", &tools)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent called `name` (it names its steps), with no model yet, no tools, at most 10
    /// turns, 8 tool calls a turn and 3 tool errors handed back.
    pub fn new(name: impl Into<String>) -> Agent {
        Agent {
            name: name.into(),
            model: String::new(),
            system: None,
            temperature: None,
            max_tokens: None,
            tools: Vec::new(),
            key: None,
            scope: None,
            max_turns: 10,
            max_tool_calls_per_turn: 8,
            max_tool_errors: 3,
            max_total_tokens: None,
        }
    }

    /// The model, `<provider>/<model>` (see [`LlmOptions::model`](crate::LlmOptions)).
    pub fn model(mut self, model: impl Into<String>) -> Agent {
        self.model = model.into();
        self
    }

    /// The system prompt.
    pub fn system_prompt(mut self, system: impl Into<String>) -> Agent {
        self.system = Some(system.into());
        self
    }

    /// Sampling temperature.
    pub fn temperature(mut self, temperature: f64) -> Agent {
        self.temperature = Some(temperature);
        self
    }

    /// The most tokens each turn may generate.
    pub fn max_tokens(mut self, max_tokens: u32) -> Agent {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Adds actions defined in `static`s as tools: `.tools(&[&LOOKUP, &slack::SEND_MESSAGE])`.
    /// Their calls resolve credentials as the agent's [`scope`](Agent::scope) says.
    pub fn tools(self, tools: &[&'static dyn Tool]) -> Agent {
        self.add_statics(tools, None)
    }

    /// Adds actions defined in `static`s as tools whose calls resolve their credentials at
    /// `scope` only, whatever the agent's scope: `.scoped_tools(Scope::User,
    /// &[&slack::SEND_MESSAGE])` posts as the person the run is for, while the agent's other
    /// tools and its model calls use the project's credentials.
    pub fn scoped_tools(self, scope: Scope, tools: &[&'static dyn Tool]) -> Agent {
        self.add_statics(tools, Some(scope))
    }

    /// Adds one tool (an [`Action`](cairn_engine::Action) made at run time, in an `Arc`).
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Agent {
        self.tools.push(AgentTool { tool, scope: None });
        self
    }

    fn add_statics(mut self, tools: &[&'static dyn Tool], scope: Option<Scope>) -> Agent {
        self.tools.extend(tools.iter().map(|tool| AgentTool {
            tool: Arc::new(Static(*tool)),
            scope,
        }));
        self
    }

    /// Names the steps `<key>/model#<n>` and `<key>/tool:<slug>#<n>` instead of
    /// `agent:<name>/…` (two prompts of one agent in a run share the counters, so their keys
    /// never collide; give each a key to keep them apart when calls are added before them).
    pub fn key(mut self, key: impl Into<String>) -> Agent {
        self.key = Some(key.into());
        self
    }

    /// Resolves the credentials of the model calls and tool calls at `scope` only (a tool
    /// added with [`scoped_tools`](Agent::scoped_tools) keeps its own).
    pub fn scope(mut self, scope: Scope) -> Agent {
        self.scope = Some(scope);
        self
    }

    /// The most model calls one prompt makes (default 10).
    pub fn max_turns(mut self, turns: u32) -> Agent {
        self.max_turns = turns;
        self
    }

    /// The most tool calls the model may ask for in one turn (default 8).
    pub fn max_tool_calls_per_turn(mut self, calls: usize) -> Agent {
        self.max_tool_calls_per_turn = calls;
        self
    }

    /// How many failed tool calls (bad arguments, fatal action errors, unknown tools) are
    /// handed back to the model to correct before the prompt fails (default 3).
    pub fn max_tool_errors(mut self, errors: u32) -> Agent {
        self.max_tool_errors = errors;
        self
    }

    /// The most tokens (in and out, over every turn) one prompt may use.
    pub fn max_total_tokens(mut self, tokens: u64) -> Agent {
        self.max_total_tokens = Some(tokens);
        self
    }

    /// Sends `message` and runs the tool loop until the model answers without calling a tool;
    /// returns that answer's text.
    pub async fn prompt(&self, message: impl Into<String>) -> Result<String, StepError> {
        let text = |text: &str| Ok(text.to_owned());
        self.run(message.into(), None, text).await
    }

    /// [`prompt`](Agent::prompt) for an answer of type `T`: every turn carries `T`'s schema
    /// (structured output), and a final answer that does not match it is re-asked (up to
    /// [`MAX_REASKS`] times, each a turn) with the violations, as [`prompt_llm_as`] does.
    ///
    /// [`prompt_llm_as`]: crate::prompt_llm_as
    pub async fn prompt_as<T: Payload>(&self, message: impl Into<String>) -> Result<T, StepError> {
        self.run(message.into(), Some(answer_schema::<T>()), parse::<T>)
            .await
    }

    /// The tool loop: turns until a final answer `accept` takes.
    async fn run<R>(
        &self,
        message: String,
        schema: Option<AnswerSchema>,
        accept: impl Fn(&str) -> Result<R, String>,
    ) -> Result<R, StepError> {
        let prefix = self
            .key
            .clone()
            .unwrap_or_else(|| format!("agent:{}", self.name));
        let specs: Vec<ToolSpec> = self
            .tools
            .iter()
            .map(|tool| {
                let info = tool.tool.info();
                ToolSpec {
                    name: info.slug.clone(),
                    description: info.description.clone(),
                    parameters: info.input_schema.clone(),
                }
            })
            .collect();
        let mut messages = vec![Message::User { content: message }];
        let (mut tool_errors, mut tokens, mut reasks) = (0, 0, 0);
        for _turn in 0..self.max_turns {
            let request = LlmRequest {
                model: self.model.clone(),
                system: self.system.clone(),
                messages: messages.clone(),
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                tools: specs.clone(),
                answer_schema: schema.clone(),
            };
            let answer = ask(request, |call| {
                let call = call.numbered_key(&format!("{prefix}/model"));
                match self.scope {
                    Some(scope) => call.scope(scope),
                    None => call,
                }
            })
            .await?;
            tokens += answer.input_tokens + answer.output_tokens;
            if let Some(limit) = self.max_total_tokens
                && tokens > limit
            {
                return Err(self.limit(format!(
                    "used {tokens} tokens, more than its limit of {limit} (Agent::max_total_tokens)"
                )));
            }
            if answer.tool_calls.is_empty() {
                let problems = match accept(&answer.text) {
                    Ok(done) => return Ok(done),
                    Err(problems) => problems,
                };
                reasks += 1;
                if let Some(schema) = schema.as_ref().filter(|_| reasks > MAX_REASKS) {
                    return Err(never_matched(&self.model, schema, &problems));
                }
                messages.extend(reask(answer.text, &problems));
                continue;
            }
            if answer.tool_calls.len() > self.max_tool_calls_per_turn {
                return Err(self.limit(format!(
                    "was asked for {} tool calls in one turn, more than its limit of {} (Agent::max_tool_calls_per_turn)",
                    answer.tool_calls.len(),
                    self.max_tool_calls_per_turn
                )));
            }
            let results = self.call_tools(&prefix, &answer.tool_calls).await;
            messages.push(Message::Assistant {
                content: answer.text,
                tool_calls: answer.tool_calls.clone(),
            });
            for (call, result) in answer.tool_calls.into_iter().zip(results) {
                let (content, is_error) = match result {
                    Ok(output) => (output.to_string(), false),
                    Err(error) if handed_back(&error) => {
                        tool_errors += 1;
                        if tool_errors > self.max_tool_errors {
                            return Err(error);
                        }
                        (error.to_string(), true)
                    }
                    Err(error) => return Err(error),
                };
                messages.push(Message::Tool {
                    call_id: call.id,
                    content,
                    is_error,
                });
            }
        }
        Err(self.limit(format!(
            "made {} model calls without a final answer (Agent::max_turns)",
            self.max_turns
        )))
    }

    /// Calls the tools of one turn as parallel steps, keyed in the order the model asked;
    /// inside an action's body, in that action's attempt (no steps, its credentials).
    async fn call_tools(&self, prefix: &str, calls: &[ToolCall]) -> Vec<Result<Value, StepError>> {
        if let Some(ctx) = ActionCtx::current() {
            let inline = calls.iter().map(|call| {
                let tool = self.tools.iter().find(|t| t.slug() == call.name);
                let run =
                    tool.map(|tool| tool.tool.run_inline(call.arguments.clone(), ctx.clone()));
                async move {
                    match run {
                        Some(run) => run.await.map_err(StepError::from),
                        None => Err(self.unknown_tool(&call.name)),
                    }
                }
            });
            return join_all(inline).await;
        }
        // Every step is made (and keyed) before any is awaited, in the model's order.
        let steps: Vec<_> = calls
            .iter()
            .map(|call| {
                let tool = self.tools.iter().find(|t| t.slug() == call.name);
                tool.map(|tool| {
                    let step = tool
                        .tool
                        .run_json(call.arguments.clone())
                        .numbered_key(&format!("{prefix}/tool:{}", call.name));
                    match tool.scope.or(self.scope) {
                        Some(scope) => step.scope(scope),
                        None => step,
                    }
                })
            })
            .collect();
        let futures = steps.into_iter().zip(calls).map(|(step, call)| async move {
            match step {
                Some(step) => step.await,
                None => Err(self.unknown_tool(&call.name)),
            }
        });
        join_all(futures).await
    }

    /// The error handed back for a call of a tool the agent does not have.
    fn unknown_tool(&self, name: &str) -> StepError {
        StepError::from_info(ErrorInfo::new(
            ErrorKind::InvalidInput,
            format!(
                "there is no tool named {name:?}; the tools are: {}",
                self.tool_names()
            ),
        ))
    }

    /// The tools' names, for messages.
    fn tool_names(&self) -> String {
        let names: Vec<&str> = self.tools.iter().map(AgentTool::slug).collect();
        names.join(", ")
    }

    /// The error of a limit this agent reached.
    fn limit(&self, what: String) -> StepError {
        StepError::from_info(ErrorInfo::new(
            ErrorKind::Workflow,
            format!(
                "agent {} {what}; raise the limit or narrow the task",
                self.name
            ),
        ))
    }
}

/// Whether a tool call's failure goes back to the model: its arguments did not match the
/// schema (or named no tool), or the action failed fatally. Retries exhausted, missing
/// credentials and the like end the prompt.
fn handed_back(error: &StepError) -> bool {
    match error.kind() {
        ErrorKind::InvalidInput => true,
        ErrorKind::Action => !error.info().retryable,
        _ => false,
    }
}
