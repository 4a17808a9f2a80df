//! `signup-agent`: the seed's shape with a model in the middle. Research the signup with the
//! action, ask an agent (the research action is its tool) to draft the brief, post it with the
//! Slack action (falling back to the outbox, as the pipeline does). Each model turn and each
//! tool call is a step of its own, with the model's tokens recorded.
//!
//! The model is `CAIRN_EXAMPLE_MODEL` (default `openai/gpt-4o-mini`). With no `openai`
//! credential and no `CAIRN_OPENAI_BASE_URL`, the binary answers it with the bundled offline
//! model ([`crate::fake_model`]) and says so.

use std::sync::LazyLock;

use cairn::{Workflow, WorkflowCtx, llm::Agent};

use crate::{Brief, RESEARCH_SIGNUP, Signup, post};

/// The variable naming the agent's model.
pub const MODEL_VAR: &str = "CAIRN_EXAMPLE_MODEL";

/// The agent's model when [`MODEL_VAR`] is not set.
pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";

/// The agent's instructions.
const SYSTEM_PROMPT: &str = "You write short briefs about new signups for the sales team. \
    Call research-signup with the signup to learn about the company, then answer with the \
    brief only: two sentences, the second a suggested next step.";

/// Research a signup, have an agent draft the brief, post it.
pub static SIGNUP_AGENT: LazyLock<Workflow<Signup, Brief>> = LazyLock::new(|| {
    Workflow::new("signup-agent")
        .description("Research a signup, have an agent draft the brief, post it.")
        .run(|input: Signup, _ctx: WorkflowCtx| async move {
            let research = RESEARCH_SIGNUP.run(input.clone()).await?;
            let model = std::env::var(MODEL_VAR).unwrap_or_else(|_| DEFAULT_MODEL.to_owned());
            let agent = Agent::new("brief-writer")
                .model(model)
                .system_prompt(SYSTEM_PROMPT)
                .tools(&[&RESEARCH_SIGNUP]);
            let signup = serde_json::to_string(&input)?;
            let brief = agent
                .prompt(format!(
                    "Our notes so far: {}\nDraft the brief for this signup: {signup}",
                    research.brief
                ))
                .await?;
            post(brief.clone()).await?;
            Ok(Brief { brief })
        })
});
