//! Process-level end-to-end tests of Cairn: crash recovery with `kill -9`, several worker
//! processes on one data dir or one PostgreSQL database, and the CLI as a user drives it.
//!
//! This library holds the fixture's workflows: actions write one ledger line per execution
//! (`$FIXTURE_LEDGER`), and a step blocks until `$FIXTURE_GO_FILE` exists so a test can kill
//! the process at a known point. The `cairn-fixture` binary (`src/bin/`) is the user binary
//! the tests in `tests/` drive; tests also use [`registry`] to start runs in-process.
//! `$FIXTURE_VERSION` (`v1`, the default, or `v2`) picks which code some workflows register
//! under their slug, as if the binary had been replaced (see `versions`).

mod agents;
mod feed;
mod storm;
mod versions;

use std::{io::Write, path::PathBuf, sync::LazyLock, time::Duration};

use cairn::{
    Action, ActionCtx, ActionError, Credential, Field, Registry, Retry, Scope, Workflow,
    WorkflowCtx,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Tag {
    pub(crate) tag: String,
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} must be set")))
}

/// Appends `<run>|<step>|<what>|<pid>` to the ledger, durably (see [`ledger_line`]).
fn ledger(ctx: &ActionCtx, what: &str) -> Result<(), ActionError> {
    Ok(ledger_line(
        &ctx.run_id().to_string(),
        ctx.step_key().as_str(),
        what,
    )?)
}

/// Appends `<run>|<step>|<what>|<pid>` to the ledger, durably: the file is opened with
/// `O_DSYNC`, so the write returns once the line is on disk, as a write and an `fdatasync`
/// would, without an `fdatasync` call. A test that makes a worker's `fdatasync`s fail
/// (`fiu-run`, tests/sync_errors.rs) thus fails the store's syncs, not the ledger's.
fn ledger_line(run: &str, step: &str, what: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_DSYNC)
        .open(env_path("FIXTURE_LEDGER"))?;
    // One write call per line: O_APPEND keeps lines from concurrent steps whole.
    let line = format!("{run}|{step}|{what}|{}\n", std::process::id());
    file.write_all(line.as_bytes())
}

static RECORD: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("record")
        .description("Writes a ledger line")
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, "done")?;
            Ok(input)
        })
});

pub(crate) static BLOCK: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("block")
        .description("Waits for the go file, then writes a ledger line")
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, "started")?;
            let go = env_path("FIXTURE_GO_FILE");
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !go.exists() {
                if std::time::Instant::now() > deadline {
                    return Err(ActionError::fatal("go file never appeared"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ledger(&ctx, "done")?;
            Ok(input)
        })
});

static FLAKY: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("flaky")
        .description("Fails its first attempt, retried after 1.5 s")
        .retry(
            Retry::default()
                .max_attempts(3)
                .initial_backoff(Duration::from_millis(1500))
                .jitter(0.0),
        )
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, &format!("attempt {}", ctx.attempt()))?;
            if ctx.attempt() == 1 {
                Err(ActionError::retryable("first attempt always fails"))
            } else {
                Ok(input)
            }
        })
});

static GATE: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("gate")
        .description("Fails (fatally) while $FIXTURE_FAIL is set")
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, "done")?;
            if std::env::var_os("FIXTURE_FAIL").is_some() {
                return Err(ActionError::fatal(
                    "the gate is closed (FIXTURE_FAIL is set)",
                ));
            }
            Ok(input)
        })
});

static GATED: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("gated")
        .description("record, gate, record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = GATE.run(tag).await?;
            Ok(RECORD.run(tag).await?)
        })
});

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
}

static SLEEPER: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("sleeper")
        .description("record, sleep 2 s, record")
        .run(|input: Tag, ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            ctx.sleep("2s").await?;
            Ok(RECORD.run(tag).await?)
        })
});

static LONG_SLEEPER: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("long-sleeper")
        .description("record, sleep 1 h, record")
        .run(|input: Tag, ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            ctx.sleep("1h").await?;
            Ok(RECORD.run(tag).await?)
        })
});

static APPROVAL: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("approval")
        .description("record, wait for an approval hook, record")
        .run(|input: Tag, ctx: WorkflowCtx| async move {
            let hook = ctx.hook::<Approval>();
            let tag = RECORD.run(input).await?;
            let approval = hook.await?;
            Ok(RECORD
                .run(Tag {
                    tag: format!("{} approved={}", tag.tag, approval.approved),
                })
                .await?)
        })
});

static CRASH_PIPELINE: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("crash-pipeline")
        .description("record, block, record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = BLOCK.run(tag).await?;
            Ok(RECORD.run(tag).await?)
        })
});

static BACKOFF_PIPELINE: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("backoff-pipeline")
        .description("record, flaky")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            Ok(FLAKY.run(tag).await?)
        })
});

static SLOW_RECORD: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("slow-record")
        .description("Writes a ledger line, then takes 20 ms")
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, "done")?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(input)
        })
});

static SLOW_STEPS: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("slow-steps")
        .description("three 20 ms steps")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = SLOW_RECORD.run(input).await?;
            let tag = SLOW_RECORD.run(tag).await?;
            Ok(SLOW_RECORD.run(tag).await?)
        })
});

pub(crate) static THREE_STEPS: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("three-steps")
        .description("record three times")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = RECORD.run(tag).await?;
            Ok(RECORD.run(tag).await?)
        })
});

/// A chat bot's token: what `notify` needs.
pub static CHAT: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("chat")
        .description("A chat bot")
        .field("token", Field::secret().description("the bot's token"))
});

/// The signing secret of the `tags` webhook endpoint.
pub static TAGS_SIGNING: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("tags-signing")
        .description("The signing secret GitHub-style deliveries to /triggers/tags carry")
        .field("secret", Field::secret())
});

/// `POST /triggers/tags`: a GitHub-signed `{"tag": …}` starts `three-steps`.
fn tags_webhook() -> cairn::Webhook {
    cairn::WebhookSource::new("tags")
        .verify(cairn::GitHubSignature::new(&TAGS_SIGNING))
        .attach(&THREE_STEPS, |request| request.json().map(Some))
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Notice {
    /// Pin the user scope.
    as_user: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Notified {
    /// The credential used.
    via: String,
}

static NOTIFY: LazyLock<Action<Notice, Notified>> = LazyLock::new(|| {
    Action::new("notify")
        .description("Uses the chat token: writes its length to the ledger")
        .credential(&CHAT)
        .run(|_input: Notice, ctx: ActionCtx| async move {
            let chat = ctx.credential(&CHAT)?;
            let length = chat.field("token")?.expose().len();
            ledger(
                &ctx,
                &format!("notified with a token of {length} characters"),
            )?;
            Ok(Notified {
                via: chat.id().to_owned(),
            })
        })
});

static NOTIFY_FLOW: LazyLock<Workflow<Notice, Notified>> = LazyLock::new(|| {
    Workflow::new("notify")
        .description("notify, pinned to the user scope when asked")
        .run(|input: Notice, _ctx: WorkflowCtx| async move {
            let call = NOTIFY.run(input.clone());
            let call = if input.as_user {
                call.scope(Scope::User)
            } else {
                call
            };
            Ok(call.await?)
        })
});

/// Every workflow and action of the fixture (the versioned ones as `$FIXTURE_VERSION` says),
/// the poll source `feed` when `$FIXTURE_POLL_URL` is set (see `feed`), and, when
/// `$FIXTURE_SCHEDULE` is set, the schedule `tick`: `three-steps` every second, catching up
/// every missed second of the last hour.
pub fn registry() -> Registry {
    let registry = feed::register(registered());
    if std::env::var_os("FIXTURE_SCHEDULE").is_none() {
        return registry;
    }
    let tick = cairn::Schedule::cron("tick", "* * * * * *")
        .expect("a valid expression")
        .catch_up(cairn::CatchUp::All {
            window: Duration::from_secs(3_600),
        });
    let input = Tag {
        tag: "tick".to_owned(),
    };
    registry.schedule(tick, &THREE_STEPS, input)
}

fn registered() -> Registry {
    storm::register(agents::register(versions::register(Registry::new())))
        .workflow(&CRASH_PIPELINE)
        .workflow(&BACKOFF_PIPELINE)
        .workflow(&THREE_STEPS)
        .workflow(&SLOW_STEPS)
        .action(&SLOW_RECORD)
        .workflow(&GATED)
        .workflow(&SLEEPER)
        .workflow(&LONG_SLEEPER)
        .workflow(&APPROVAL)
        .action(&GATE)
        .action(&RECORD)
        .action(&BLOCK)
        .action(&FLAKY)
        .workflow(&NOTIFY_FLOW)
        .action(&NOTIFY)
        .webhook(tags_webhook())
}
