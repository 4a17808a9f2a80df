//! The signup pipeline: research a signup lead, then post a brief — the shape of the seed's
//! example, offline. The "post" writes to an outbox file under the data dir, so you can see
//! that a replay does not post twice.
//!
//! ```text
//! cargo run -p signup-pipeline -- run signup-pipeline --input '{"name":"Ada","email":"ada@analytical.engines"}'
//! cargo run -p signup-pipeline -- runs get <run-id>
//! ```

use std::{io::Write, path::PathBuf, process::ExitCode, sync::LazyLock, time::Duration};

use cairn::{Action, ActionCtx, ActionError, Registry, Retry, Workflow, WorkflowCtx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signup from the website.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Signup {
    /// Full name.
    name: String,
    /// Work email: its domain names the company.
    #[schemars(email)]
    email: String,
}

/// A short brief about the lead.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Brief {
    /// The text.
    brief: String,
}

/// What to post.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct PostBrief {
    /// The message.
    text: String,
}

/// Where the brief went.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Posted {
    /// The outbox file.
    outbox: String,
    /// The line number of the message in it.
    line: usize,
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
        "a placeholder company that appears in every tutorial",
    ),
    ("cairn.dev", "Cairn", "makes durable workflows for Rust"),
];

static RESEARCH_SIGNUP: LazyLock<Action<Signup, Brief>> = LazyLock::new(|| {
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
                Some((_, company, about)) => {
                    format!("{} from {company}, which {about}.", input.name)
                }
                None => format!(
                    "{} from {domain}: no company on file; worth a personal reply.",
                    input.name
                ),
            };
            Ok(Brief { brief })
        })
});

static POST_BRIEF: LazyLock<Action<PostBrief, Posted>> = LazyLock::new(|| {
    Action::new("post-brief")
        .name("Post brief")
        .description("Post the brief to the team's channel (here: append it to an outbox file)")
        .run(|input: PostBrief, ctx: ActionCtx| async move {
            let path = outbox_path();
            let line = append_line(
                &path,
                &format!("[{}] {}", ctx.idempotency_key(), input.text),
            )
            .map_err(|err| {
                ActionError::retryable(format!("cannot write {}: {err}", path.display()))
            })?;
            eprintln!("posted to {}: {}", path.display(), input.text);
            Ok(Posted {
                outbox: path.display().to_string(),
                line,
            })
        })
});

static SIGNUP_PIPELINE: LazyLock<Workflow<Signup, Brief>> = LazyLock::new(|| {
    Workflow::new("signup-pipeline")
        .description("Research a signup lead and post a brief.")
        .run(|input: Signup, _ctx: WorkflowCtx| async move {
            let Brief { brief } = RESEARCH_SIGNUP.run(input).await?;
            POST_BRIEF
                .run(PostBrief {
                    text: brief.clone(),
                })
                .await?;
            Ok(Brief { brief })
        })
});

/// The outbox lives next to the store: `$CAIRN_DATA_DIR/outbox.log` (default `.cairn/`).
fn outbox_path() -> PathBuf {
    let dir = std::env::var_os("CAIRN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cairn"));
    dir.join("outbox.log")
}

/// Appends a line and returns its number.
fn append_line(path: &PathBuf, text: &str) -> std::io::Result<usize> {
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

fn main() -> ExitCode {
    let registry = Registry::new()
        .workflow(&SIGNUP_PIPELINE)
        .action(&RESEARCH_SIGNUP)
        .action(&POST_BRIEF);
    cairn::cli::main(registry)
}
