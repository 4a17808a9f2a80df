//! Workflows whose code "changes between deployments", for the replay-safety tests: the
//! same slug is registered with the body of `$FIXTURE_VERSION` (`v1`, the default, or
//! `v2`), so running the fixture with `FIXTURE_VERSION=v2` is the binary replaced by a new
//! version. Also the workflows that panic, crash their process, or take it down every time.

use std::{sync::LazyLock, time::Duration};

use cairn::{
    Action, ActionCtx, ActionError, Registry, Retry, Workflow, WorkflowCtx, WorkflowError,
};

use super::{GATE, RECORD, Tag, env_path, ledger, ledger_line};

/// Whether this process runs version 2 of the versioned workflows.
fn v2() -> bool {
    match std::env::var("FIXTURE_VERSION").as_deref() {
        Ok("v2") => true,
        Ok("v1") | Err(_) => false,
        Ok(other) => panic!("FIXTURE_VERSION must be v1 or v2, not {other:?}"),
    }
}

/// The workflows of this module, in the version `$FIXTURE_VERSION` names.
pub(crate) fn register(registry: Registry) -> Registry {
    let (reorder, append, changed_input, patch) = if v2() {
        (&REORDER_V2, &APPEND_V2, &CHANGED_INPUT_V2, &PATCH_V2)
    } else {
        (&REORDER_V1, &APPEND_V1, &CHANGED_INPUT_V1, &PATCH_V1)
    };
    registry
        .workflow(reorder)
        .workflow(append)
        .workflow(changed_input)
        .workflow(patch)
        .workflow(&PANICKY)
        .workflow(&FRAGILE_PIPELINE)
        .workflow(&POISON_PILL)
        .action(&EXTRA)
        .action(&FRAGILE)
        .action(&POISON)
}

static REORDER_V1: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("reorder")
        .description("v1: record, gate; v2: gate, record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            Ok(GATE.run(tag).await?)
        })
});

static REORDER_V2: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("reorder")
        .description("v1: record, gate; v2: gate, record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = GATE.run(input).await?;
            Ok(RECORD.run(tag).await?)
        })
});

static APPEND_V1: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("append")
        .description("v1: record, gate; v2: record, gate, extra")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            Ok(GATE.run(tag).await?)
        })
});

static APPEND_V2: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("append")
        .description("v1: record, gate; v2: record, gate, extra")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = GATE.run(tag).await?;
            Ok(EXTRA.run(tag).await?)
        })
});

static CHANGED_INPUT_V1: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("changed-input")
        .description("record, record, gate; v2 passes a different input to the second record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = RECORD.run(tag).await?;
            Ok(GATE.run(tag).await?)
        })
});

static CHANGED_INPUT_V2: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("changed-input")
        .description("record, record, gate; v2 passes a different input to the second record")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            let tag = RECORD
                .run(Tag {
                    tag: format!("{} (v2)", tag.tag),
                })
                .await?;
            Ok(GATE.run(tag).await?)
        })
});

static PATCH_V1: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("patch")
        .description("record, sleep 3 s, record; v2 adds extra before the sleep, patched")
        .run(|input: Tag, ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            ctx.sleep("3s").await?;
            Ok(RECORD.run(tag).await?)
        })
});

static PATCH_V2: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("patch")
        .description("record, sleep 3 s, record; v2 adds extra before the sleep, patched")
        .run(|input: Tag, ctx: WorkflowCtx| async move {
            let mut tag = RECORD.run(input).await?;
            if ctx.patched("extra-step") {
                tag = EXTRA.run(tag).await?;
            }
            ctx.sleep("3s").await?;
            Ok(RECORD.run(tag).await?)
        })
});

static EXTRA: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("extra")
        .description("Writes a ledger line and marks the tag: the new code's step")
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, "done")?;
            Ok(Tag {
                tag: format!("{} +extra", input.tag),
            })
        })
});

static PANICKY: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("panicky")
        .description("record, then the body panics (one ledger line per execution of the body)")
        .run(panicky)
});

async fn panicky(input: Tag, ctx: WorkflowCtx) -> Result<Tag, WorkflowError> {
    ledger_line(&ctx.run_id().to_string(), "body", "executed")
        .map_err(|err| WorkflowError::new(err.to_string()))?;
    let tag = RECORD.run(input).await?;
    panic!("the body of panicky blew up on {}", tag.tag);
}

static FRAGILE: LazyLock<Action<Tag, Tag>> =
    LazyLock::new(|| {
        Action::new("fragile")
        .description(
            "Waits for the go file, fails once (retryably), then succeeds; two attempts at most",
        )
        .retry(
            Retry::default()
                .max_attempts(2)
                .initial_backoff(Duration::from_millis(100))
                .jitter(0.0),
        )
        .run(|input: Tag, ctx: ActionCtx| async move {
            ledger(&ctx, &format!("attempt {}", ctx.attempt()))?;
            let go = env_path("FIXTURE_GO_FILE");
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !go.exists() {
                if std::time::Instant::now() > deadline {
                    return Err(ActionError::fatal("go file never appeared"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let failed_once = go.with_extension("failed-once");
            if !failed_once.exists() {
                std::fs::write(&failed_once, b"")?;
                return Err(ActionError::retryable("a transient failure after the crash"));
            }
            ledger(&ctx, "done")?;
            Ok(input)
        })
    });

static FRAGILE_PIPELINE: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("fragile-pipeline")
        .description("record, fragile")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            Ok(FRAGILE.run(tag).await?)
        })
});

static POISON: LazyLock<Action<Tag, Tag>> = LazyLock::new(|| {
    Action::new("poison")
        .description("Writes a ledger line, then aborts its process: a poison pill")
        .run(|_input: Tag, ctx: ActionCtx| poison(ctx))
});

async fn poison(ctx: ActionCtx) -> Result<Tag, ActionError> {
    ledger(&ctx, "aborting")?;
    std::process::abort();
}

static POISON_PILL: LazyLock<Workflow<Tag, Tag>> = LazyLock::new(|| {
    Workflow::new("poison-pill")
        .description("record, poison")
        .run(|input: Tag, _ctx: WorkflowCtx| async move {
            let tag = RECORD.run(input).await?;
            Ok(POISON.run(tag).await?)
        })
});
