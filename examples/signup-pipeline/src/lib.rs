//! The signup pipeline: research a signup lead, then post a brief to Slack — the shape of the
//! seed's example. The post is `cairn_actions::slack::SEND_MESSAGE`, called directly as a step
//! and pinned to the run's user (`.scope(Scope::User)`). Offline by default: when no Slack
//! credential resolves for the run's user, the step fails with `MissingCredentials` (recorded,
//! not retried) and the brief is appended to an outbox file under the data dir instead, which
//! the output says. To post to Slack:
//!
//! ```text
//! SLACK_BOT_TOKEN=xoxb-… cargo run -p signup-pipeline -- credentials set slack --scope user --user ada --field botToken=@env:SLACK_BOT_TOKEN
//! cargo run -p signup-pipeline -- run signup-pipeline --user ada --input '{"name":"Ada","email":"ada@analytical.engines"}'
//! ```
//!
//! `signup-agent` ([`agent`]) has a model draft the brief: an agent whose tool is the research
//! action, answered offline by a bundled fake OpenAI-compatible server ([`fake_model`]) when
//! no `openai` credential and no `CAIRN_OPENAI_BASE_URL` are set.
//!
//! `signup-followup` goes on after the brief: it sleeps two days, then asks sales (through a
//! hook) whether to follow up, and posts a reminder if so.
//!
//! ```text
//! cargo run -p signup-pipeline -- run signup-pipeline --input '{"name":"Ada","email":"ada@analytical.engines"}'
//! cargo run -p signup-pipeline -- runs get <run-id>
//! ```

pub mod agent;
pub mod fake_model;

use std::{io::Write, path::Path, sync::LazyLock, time::Duration};

use cairn::{
    Action, ActionCtx, ActionError, ErrorKind, HookOptions, Registry, Retry, Scope, Workflow,
    WorkflowCtx, WorkflowError, cli::DataDir, llm::LlmConfig,
};
use cairn_actions::slack::{self, SendMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signup from the website.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signup {
    /// Full name.
    pub name: String,
    /// Work email: its domain names the company.
    #[schemars(email)]
    pub email: String,
}

/// A short brief about the lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Brief {
    /// The text.
    pub brief: String,
}

/// What to post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostBrief {
    /// The message.
    pub text: String,
}

/// Where the brief went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Posted {
    /// The outbox file.
    pub outbox: String,
    /// The line number of the message in it.
    pub line: usize,
}

/// Sales' answer to "follow up with this lead?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpDecision {
    /// Whether to follow up.
    pub follow_up: bool,
}

/// What the follow-up workflow did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    /// The brief.
    pub brief: String,
    /// Whether a follow-up reminder was posted.
    pub followed_up: bool,
}

/// Companies the research step knows, by email domain (a stand-in for an enrichment API).
const DIRECTORY: &[(&str, &str, &str)] = &[
    (
        "analytical.engines",
        "Analytical Engines Ltd",
        "builds programmable calculating machines (12 people, London)",
    ),
    (
        "example.com",
        "Example Corp",
        "the company in every tutorial",
    ),
    ("cairn.dev", "Cairn", "makes durable workflows for Rust"),
];

/// Looks up the company behind a signup and writes a brief.
pub static RESEARCH_SIGNUP: LazyLock<Action<Signup, Brief>> = LazyLock::new(|| {
    Action::new("research-signup")
        .name("Research signup")
        .description("Look up the company behind a signup and write a short brief")
        .retry(
            Retry::exponential()
                .max_attempts(3)
                .initial_backoff(Duration::from_millis(200)),
        )
        .run(|input: Signup, _ctx: ActionCtx| async move {
            let domain = input
                .email
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_lowercase();
            let brief = match DIRECTORY.iter().find(|(d, _, _)| *d == domain) {
                Some((_, company, about)) => format!("{} from {company}: {about}.", input.name),
                None => format!(
                    "{} from {domain}: no company on file; worth a personal reply.",
                    input.name
                ),
            };
            Ok(Brief { brief })
        })
});

/// The Slack channel briefs go to.
pub const SIGNUPS_CHANNEL: &str = "#signups";

/// The offline stand-in for Slack: appends the message to the outbox file.
pub static POST_BRIEF: LazyLock<Action<PostBrief, Posted>> = LazyLock::new(|| {
    Action::new("post-brief")
        .name("Post brief to the outbox")
        .description(
            "Append the message to the outbox file: where briefs go when the run's user has no \
             Slack credential",
        )
        .run(|input: PostBrief, ctx: ActionCtx| async move {
            let path = ctx.resource::<DataDir>()?.0.join("outbox.log");
            let line = append_line(
                &path,
                &format!("[{}] {}", ctx.idempotency_key(), input.text),
            )
            .map_err(|err| {
                ActionError::retryable(format!("cannot write {}: {err}", path.display()))
            })?;
            eprintln!(
                "posted to {} (no Slack credential for this run's user; `credentials set slack \
                 --scope user --user <you> --field botToken=@env:SLACK_BOT_TOKEN` and `run … \
                 --user <you>` post to {SIGNUPS_CHANNEL}): {}",
                path.display(),
                input.text
            );
            Ok(Posted {
                outbox: path.display().to_string(),
                line,
            })
        })
});

/// Posts `text` to [`SIGNUPS_CHANNEL`] as the run's user; when no Slack credential resolves
/// for them, to the outbox instead.
async fn post(text: String) -> Result<(), WorkflowError> {
    let message = SendMessage {
        channel: SIGNUPS_CHANNEL.to_owned(),
        markdown_text: text.clone(),
        thread_ts: None,
    };
    match slack::SEND_MESSAGE.run(message).scope(Scope::User).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::MissingCredentials => {
            POST_BRIEF.run(PostBrief { text }).await?;
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// Research a signup lead and post a brief.
pub static SIGNUP_PIPELINE: LazyLock<Workflow<Signup, Brief>> = LazyLock::new(|| {
    Workflow::new("signup-pipeline")
        .description("Research a signup lead and post a brief.")
        .run(|input: Signup, _ctx: WorkflowCtx| async move {
            let Brief { brief } = RESEARCH_SIGNUP.run(input).await?;
            post(brief.clone()).await?;
            Ok(Brief { brief })
        })
});

/// The pipeline, then two days later ask sales whether to follow up (a week to answer).
pub static SIGNUP_FOLLOWUP: LazyLock<Workflow<Signup, FollowUp>> = LazyLock::new(|| {
    Workflow::new("signup-followup")
        .description("Brief a signup, wait two days, ask sales whether to follow up.")
        .run(|input: Signup, ctx: WorkflowCtx| async move {
            let name = input.name.clone();
            let Brief { brief } = SIGNUP_PIPELINE.run(input).await?;
            ctx.sleep("2d").await?;
            let options = HookOptions::new()
                .key("follow-up-decision")
                .timeout(Duration::from_secs(7 * 86_400));
            let decision = ctx.hook_with::<FollowUpDecision>(options);
            let ask = format!(
                "Follow up with {name}? Resume {} with {{\"followUp\": true}}",
                decision.resume_url()
            );
            post(ask).await?;
            let followed_up = match decision.await {
                Ok(FollowUpDecision { follow_up }) => follow_up,
                Err(err) if err.kind() == cairn::ErrorKind::Timeout => false,
                Err(err) => return Err(err.into()),
            };
            if followed_up {
                post(format!("Reminder: follow up with {name}")).await?;
            }
            Ok(FollowUp { brief, followed_up })
        })
});

/// Every workflow and action of the example, Slack's and the model's included (and so their
/// credential types), with Slack's base URL and HTTP client from `config` and the model
/// providers' from `llm`.
pub fn registry_with(config: cairn_actions::Config, llm: LlmConfig) -> Registry {
    let registry = Registry::new()
        .workflow(&SIGNUP_PIPELINE)
        .workflow(&SIGNUP_FOLLOWUP)
        .workflow(&agent::SIGNUP_AGENT)
        .action(&RESEARCH_SIGNUP)
        .action(&POST_BRIEF);
    let registry = cairn::llm::register(registry).resource(llm);
    slack::register(registry).resource(config)
}

/// [`registry_with`] the default configurations (Slack at slack.com, the models' public APIs).
///
/// # Panics
/// If the HTTP client cannot be made (the system has no usable TLS roots).
pub fn registry() -> Registry {
    registry_with(
        cairn_actions::Config::new().expect("an HTTP client"),
        LlmConfig::new().expect("an HTTP client"),
    )
}

/// Appends a line (one write call, fsync'd) and returns its number.
fn append_line(path: &Path, text: &str) -> std::io::Result<usize> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_data()?;
    Ok(std::fs::read_to_string(path)?.lines().count())
}
