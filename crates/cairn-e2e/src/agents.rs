//! The fixture's agent: `agent-crash` asks a model (`openai/scripted`, at
//! `$CAIRN_OPENAI_BASE_URL`: a test's scripted provider) which may call the `block` action as
//! a tool, so a test can kill the process while a tool step of an agent runs.

use std::sync::LazyLock;

use cairn::{
    Registry, Workflow, WorkflowCtx,
    llm::{Agent, LlmConfig},
};

use crate::{BLOCK, Tag};

/// An agent whose tool is `block`; its final answer is the output's tag.
static AGENT_CRASH: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("agent-crash")
        .description("An agent whose tool blocks on the go file")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let agent = Agent::new("crasher")
                .model("openai/scripted")
                .tools(&[&BLOCK]);
            let answer = agent.prompt(format!("Block on {}", input.tag)).await?;
            Ok(Tag { tag: answer })
        })
});

/// Adds the agent workflow, the `llm` action and the model providers' configuration from the
/// environment.
///
/// # Panics
/// If `$CAIRN_OPENAI_BASE_URL` or `$CAIRN_ANTHROPIC_BASE_URL` is not a URL (a test's mistake).
pub(crate) fn register(registry: Registry) -> Registry {
    let config = LlmConfig::from_env().unwrap_or_else(|err| panic!("the fixture's models: {err}"));
    cairn::llm::register(registry.workflow(&AGENT_CRASH)).resource(config)
}
